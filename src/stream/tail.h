/* tail.h — the newest durable messages of a hosted channel, kept as the
 * binary stream's message frames (docs/streaming-api.md §7), so that a
 * pushed stream that has caught up copies frames, many at once, instead of
 * reading the log back (docs/streaming.md §4, "Tail cache").
 *
 * The owner puts each message's frame as it appends it (under the
 * channel's produce lock, in append order: the log's order), while the
 * request's bytes are at hand, and marks it durable with its id when the
 * writer acknowledges it (callbacks run in id order): readers see durable
 * frames only, so what they see is a run of consecutive messages of the
 * log. Frames are kept only while a stream is attached. A byte budget bounds it;
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

/* A frame put and not durable yet; gen 0: none (nothing kept). */
typedef struct {
    uint64_t gen, g;
} tail_tok;

/* The frame of a message being appended, in append order (its id comes
 * with tail_durable). A frame that cannot be kept (no memory) drops
 * everything, pending frames included. */
tail_tok tail_put(tail *t, const void *data, size_t len, size_t n_props,
                  const char *const *keys, const char *const *vals);
/* The append of the last frame put was refused at once: it goes. */
void tail_unput(tail *t, tail_tok tok);
/* The writer's callback for the frame of tok, in id order: durable with
 * id (rc 0), or the writer failed (nothing after the durable frames will
 * ever be: the tail keeps no more). */
void tail_durable(tail *t, tail_tok tok, int rc, wp_msg_id id);

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
