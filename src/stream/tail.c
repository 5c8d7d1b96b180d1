/* tail.c — the newest durable messages of a hosted channel as stream
 * frames (tail.h). Frames are kept in blocks of TAIL_BLOCK_BYTES (a bigger
 * frame gets a block of its own), each with the end offset and the id of
 * every frame; frames are numbered from 0 in the order they were put, and
 * a stream's cursor is the number of the next frame it wants. Frames
 * [first, g_durable) are readable; [g_durable, g_next) wait for their
 * writer's callback (their id is written into the frame then). */
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
    uint64_t g_durable;  /* number of the first frame not durable yet */
    tblock *dblk;        /* the block that holds frame g_durable (if put) */
    uint64_t gen;        /* tokens of this generation are live (>= 1) */
    bool broken;         /* the writer failed: no more frames */
};

static void block_free(tblock *b)
{
    if (b) {
        free(b->end);
        free(b->ids);
        free(b);
    }
}

/* Under t->mu. Pending frames go too: their callbacks find their
 * generation gone. */
static void drop_all(tail *t)
{
    while (t->head) {
        tblock *b = t->head;
        t->head = b->next;
        block_free(b);
    }
    t->last = t->dblk = NULL;
    t->bytes = 0;
    t->g_durable = t->g_next;
    t->gen++;
}

tail *tail_new(size_t budget)
{
    tail *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->budget = budget;
    t->gen = 1;
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

tail_tok tail_put(tail *t, const void *data, size_t len, size_t n_props,
                  const char *const *keys, const char *const *vals)
{
    tail_tok tok = {0, 0};
    if (atomic_load(&t->streams) == 0)
        return tok;
    size_t k = WPM_FRAME_MSG_FIXED + wpm_props_size(n_props, keys, vals) + len;
    pthread_mutex_lock(&t->mu);
    if (atomic_load(&t->streams) > 0 && !t->broken) {
        tblock *b = room(t, k);
        if (!b) {
            /* Not kept: nothing may be used across the gap, so streams go
             * back to the log. */
            drop_all(t);
        } else {
            wpm_put_frame_msg(b->data + b->used, (wp_msg_id){0, 0}, data, len, n_props, keys,
                              vals);
            b->used += k;
            b->end[b->n] = b->used;
            b->ids[b->n++] = (wp_msg_id){-1, -1};
            t->bytes += k;
            if (!t->dblk)
                t->dblk = b;
            tok = (tail_tok){t->gen, t->g_next++};
        }
    }
    pthread_mutex_unlock(&t->mu);
    return tok;
}

void tail_unput(tail *t, tail_tok tok)
{
    pthread_mutex_lock(&t->mu);
    if (tok.gen == t->gen && tok.g + 1 == t->g_next && t->last && t->last->n > 0 &&
        t->last->g0 + t->last->n == t->g_next) {
        tblock *b = t->last;
        size_t start = b->n > 1 ? b->end[b->n - 2] : 0;
        t->bytes -= b->used - start;
        b->used = start;
        b->n--;
        t->g_next--;
        if (t->g_durable == t->g_next && t->dblk == b && b->n == 0)
            t->dblk = NULL; /* nothing pending; the empty block stays, the next put fills it */
    }
    pthread_mutex_unlock(&t->mu);
}

void tail_durable(tail *t, tail_tok tok, int rc, wp_msg_id id)
{
    if (tok.gen == 0)
        return;
    pthread_mutex_lock(&t->mu);
    if (tok.gen != t->gen || tok.g != t->g_durable || t->broken) {
        pthread_mutex_unlock(&t->mu); /* dropped since (or out of order: cannot be) */
        return;
    }
    if (rc) { /* the writer failed: what is pending never will be */
        t->broken = true;
        pthread_mutex_unlock(&t->mu);
        return;
    }
    tblock *b = t->dblk;
    while (b && tok.g >= b->g0 + b->n)
        b = b->next;
    if (!b) { /* cannot be: the frame was put */
        t->broken = true;
        pthread_mutex_unlock(&t->mu);
        return;
    }
    size_t i = (size_t)(tok.g - b->g0);
    size_t start = i ? b->end[i - 1] : 0;
    wpm_put_frame_id(b->data + start, id);
    b->ids[i] = id;
    t->g_durable++;
    t->dblk = b;
    while (t->bytes > t->budget && t->head != t->last && t->head != t->dblk &&
           t->head->g0 + t->head->n <= t->g_durable) {
        tblock *o = t->head;
        t->head = o->next;
        t->bytes -= o->used;
        block_free(o);
    }
    if (t->waiters)
        pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

bool tail_seek(tail *t, wp_msg_id last, uint64_t *cur)
{
    bool found = false;
    pthread_mutex_lock(&t->mu);
    for (tblock *b = t->head; b && !found && b->g0 < t->g_durable; b = b->next) {
        size_t n = t->g_durable - b->g0 < b->n ? (size_t)(t->g_durable - b->g0) : b->n;
        if (n == 0 || wp_msg_id_cmp(last, b->ids[0]) < 0 || wp_msg_id_cmp(last, b->ids[n - 1]) > 0)
            continue;
        size_t lo = 0, hi = n; /* durable ids increase: binary search */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (wp_msg_id_cmp(b->ids[mid], last) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n && wp_msg_id_cmp(b->ids[lo], last) == 0) {
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
        if (*cur >= t->g_durable) {
            if (*cur > t->g_durable) { /* cannot be (cursors come from tail_seek) */
                got = TAIL_BEHIND;
                break;
            }
            if (wait_ms <= 0)
                break;
            t->waiters++;
            int w = pthread_cond_timedwait(&t->cond, &t->mu, &ts);
            t->waiters--;
            if (w != 0 && *cur >= t->g_durable)
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
        size_t nd = t->g_durable - b->g0 < b->n ? (size_t)(t->g_durable - b->g0) : b->n;
        size_t lo = i, hi = nd - 1; /* the last durable frame j with end[j] - start <= max */
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
