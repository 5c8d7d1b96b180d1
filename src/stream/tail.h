/* tail.h — the newest durable messages of a hosted channel, kept as the
 * binary stream's message frames (docs/streaming-api.md §7), so that a
 * pushed stream that has caught up copies frames, many at once, instead of
 * reading the log back (docs/streaming.md §4, "Tail cache").
 *
 * The owner puts each message when its writer acknowledges it (callbacks
 * run in id order, so what the tail holds is a run of consecutive messages
 * of the log), and only while a stream is attached. A byte budget bounds it;
 * the oldest block goes first. A stream finds its place by the id of the
 * last message it sent (tail_seek: only an exact match counts, so the tail
 * holds everything after it), and goes back to a log reader when it falls
 * behind what is kept. Thread-safe. */
#ifndef WP_STREAM_TAIL_H
#define WP_STREAM_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "woodpecker.h"

typedef struct tail tail;

/* budget: bytes of frames kept (at least one block is, whatever its size). */
tail *tail_new(size_t budget);
void tail_free(tail *t);

/* A stream starts or stops wanting frames. With none attached nothing is
 * kept (and what was is dropped). */
void tail_attach(tail *t);
void tail_detach(tail *t);

/* The frame of a durable message, in id order (the writer's callback). A
 * frame that cannot be kept (no memory) drops everything before it. */
void tail_put(tail *t, wp_msg_id id, const void *data, size_t len, size_t n_props,
              const char *const *keys, const char *const *vals);

/* Where the message after last is: true (and *cur set) if the tail holds
 * last itself. */
bool tail_seek(tail *t, wp_msg_id last, uint64_t *cur);

enum { TAIL_BEHIND = -1, TAIL_TOO_BIG = -2 };
/* Copies whole frames from *cur into buf (at most max bytes), waiting up
 * to wait_ms for one: the bytes copied (*cur and *last advanced past
 * them), 0 when none came, TAIL_BEHIND when *cur is no longer kept (go
 * back to the log after *last), TAIL_TOO_BIG when the next frame alone
 * is above max (*need: its size). */
ssize_t tail_read(tail *t, uint64_t *cur, void *buf, size_t max, int wait_ms, wp_msg_id *last,
                  size_t *need);

#endif
