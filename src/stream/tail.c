/* tail.c — the newest durable messages of a hosted channel as stream
 * frames (tail.h). Frames are kept in blocks of TAIL_BLOCK_BYTES (a bigger
 * frame gets a block of its own), each with the end offset and the id of
 * every frame; frames are numbered from 0 in the order they were put, and
 * a stream's cursor is the number of the next frame it wants. */
#include "stream/tail.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "codec/wpm.h"

#define TAIL_BLOCK_BYTES (256 * 1024)

typedef struct tblock {
    struct tblock *next;
    uint64_t g0;      /* number of its first frame */
    size_t n, cap_n;  /* frames */
    size_t used, cap; /* bytes */
    size_t *end;      /* frame i is [end[i-1] (0 for i = 0), end[i]) */
    wp_msg_id *ids;
    uint8_t *data;
} tblock;

struct tail {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a frame was put */
    size_t budget, bytes;
    atomic_int streams;  /* attached */
    int waiters;
    tblock *head, *last; /* oldest .. newest */
    uint64_t g_next;     /* number of the next frame put */
};

static void block_free(tblock *b)
{
    if (b) {
        free(b->end);
        free(b->ids);
        free(b);
    }
}

/* Under t->mu. */
static void drop_all(tail *t)
{
    while (t->head) {
        tblock *b = t->head;
        t->head = b->next;
        block_free(b);
    }
    t->last = NULL;
    t->bytes = 0;
}

tail *tail_new(size_t budget)
{
    tail *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->budget = budget;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    return t;
}

void tail_free(tail *t)
{
    if (!t)
        return;
    drop_all(t);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cond);
    free(t);
}

void tail_attach(tail *t) { atomic_fetch_add(&t->streams, 1); }

void tail_detach(tail *t)
{
    pthread_mutex_lock(&t->mu);
    if (atomic_fetch_sub(&t->streams, 1) == 1)
        drop_all(t);
    pthread_mutex_unlock(&t->mu);
}

/* A block for k more bytes and one more frame at the end (under t->mu). */
static tblock *room(tail *t, size_t k)
{
    tblock *b = t->last;
    if (!b || b->used + k > b->cap) {
        size_t cap = k > TAIL_BLOCK_BYTES ? k : TAIL_BLOCK_BYTES;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        *b = (tblock){.g0 = t->g_next, .cap = cap, .data = (uint8_t *)(b + 1)};
        if (t->last)
            t->last->next = b;
        else
            t->head = b;
        t->last = b;
    }
    if (b->n == b->cap_n) {
        size_t cn = b->cap_n ? 2 * b->cap_n : 256;
        size_t *e = realloc(b->end, cn * sizeof *e);
        if (e)
            b->end = e;
        wp_msg_id *ids = e ? realloc(b->ids, cn * sizeof *ids) : NULL;
        if (!ids)
            return NULL;
        b->ids = ids;
        b->cap_n = cn;
    }
    return b;
}

void tail_put(tail *t, wp_msg_id id, const void *data, size_t len, size_t n_props,
              const char *const *keys, const char *const *vals)
{
    if (atomic_load(&t->streams) == 0)
        return;
    size_t k = WPM_FRAME_MSG_FIXED + wpm_props_size(n_props, keys, vals) + len;
    pthread_mutex_lock(&t->mu);
    if (atomic_load(&t->streams) > 0) {
        tblock *b = room(t, k);
        if (!b) {
            /* Not kept: nothing before it may be used either (the tail
             * holds consecutive messages), so streams go back to the log. */
            drop_all(t);
            t->g_next++;
        } else {
            wpm_put_frame_msg(b->data + b->used, id, data, len, n_props, keys, vals);
            b->used += k;
            b->end[b->n] = b->used;
            b->ids[b->n++] = id;
            t->bytes += k;
            t->g_next++;
            while (t->bytes > t->budget && t->head != t->last) {
                tblock *o = t->head;
                t->head = o->next;
                t->bytes -= o->used;
                block_free(o);
            }
        }
        if (t->waiters)
            pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->mu);
}

bool tail_seek(tail *t, wp_msg_id last, uint64_t *cur)
{
    bool found = false;
    pthread_mutex_lock(&t->mu);
    for (tblock *b = t->head; b && !found; b = b->next) {
        if (b->n == 0 || wp_msg_id_cmp(last, b->ids[0]) < 0 ||
            wp_msg_id_cmp(last, b->ids[b->n - 1]) > 0)
            continue;
        size_t lo = 0, hi = b->n; /* ids increase: binary search */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (wp_msg_id_cmp(b->ids[mid], last) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < b->n && wp_msg_id_cmp(b->ids[lo], last) == 0) {
            *cur = b->g0 + lo + 1;
            found = true;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

ssize_t tail_read(tail *t, uint64_t *cur, void *buf, size_t max, int wait_ms, wp_msg_id *last,
                  size_t *need)
{
    int64_t deadline = wp__now_ns() + (int64_t)wait_ms * 1000000LL;
    struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
    ssize_t got = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        uint64_t first = t->head ? t->head->g0 : t->g_next;
        if (*cur < first) {
            got = TAIL_BEHIND;
            break;
        }
        if (*cur >= t->g_next) {
            if (*cur > t->g_next) { /* cannot be (cursors come from tail_seek) */
                got = TAIL_BEHIND;
                break;
            }
            if (wait_ms <= 0)
                break;
            t->waiters++;
            int w = pthread_cond_timedwait(&t->cond, &t->mu, &ts);
            t->waiters--;
            if (w != 0 && *cur >= t->g_next)
                break;
            continue;
        }
        tblock *b = t->head;
        while (*cur >= b->g0 + b->n)
            b = b->next;
        size_t i = (size_t)(*cur - b->g0);
        size_t start = i ? b->end[i - 1] : 0;
        if (b->end[i] - start > max) {
            *need = b->end[i] - start;
            got = TAIL_TOO_BIG;
            break;
        }
        size_t lo = i, hi = b->n - 1; /* the last frame j with end[j] - start <= max */
        while (lo < hi) {
            size_t mid = lo + (hi - lo + 1) / 2;
            if (b->end[mid] - start <= max)
                lo = mid;
            else
                hi = mid - 1;
        }
        got = (ssize_t)(b->end[lo] - start);
        memcpy(buf, b->data + start, (size_t)got);
        *cur = b->g0 + lo + 1;
        *last = b->ids[lo];
        break;
    }
    pthread_mutex_unlock(&t->mu);
    return got;
}
