/* stream_common.h — the publish/subscribe workload of `make bench-streaming`
 * (bench/streaming.sh), shared by its three clients so that every system
 * runs the same loop and is measured the same way:
 * tools/wp-stream-bench.c (Woodpecker's streaming service through the C
 * client, and the library used directly), bench/peers/stream_redis.c
 * (Redis Streams) and bench/peers/stream_nats.c (NATS JetStream).
 *
 * Workload: --channels C channels (streams, logs); per channel one producer
 * thread and one consumer thread. The producer sends batches of --batch B
 * messages of --size S bytes and waits until the whole batch is acked
 * (durable, as the system defines it) before it sends the next: one batch
 * in flight per channel, B messages. It starts batches for --seconds. The
 * consumer takes the channel's messages as the system pushes them (or as
 * its blocking read returns them) and checks each message's number: every
 * message exactly once and in order, or the run fails.
 *
 * Payload: bytes 0..7 the CLOCK_MONOTONIC time in ns at which the batch was
 * handed to the system (the produce call), bytes 8..15 the message's number
 * in its channel (host order), the rest incompressible xorshift64 bytes.
 * With --payload text the two numbers are 16 hex digits each and the rest
 * printable letters (valid UTF-8, so the streaming service carries it as a
 * JSON string, not as base64).
 *
 * Before the timed part every producer sends one warm-up message (number
 * SB_WARMUP) and waits until its consumer has it (connections open, the
 * channel served); it is not counted. Then all producers start together.
 *
 * Reported (one JSON line): MiB/s = payload bytes acked ÷ (start → last
 * ack of any channel); ack = produce call → the batch is acked (one value
 * per batch); e2e = produce call → the consumer has the message (one value
 * per message), nearest-rank percentiles as in peer_common.h; consume
 * MiB/s = payload consumed ÷ (start → last message consumed): below MiB/s
 * when consumers fall behind producers (then e2e grows with the run);
 * cpu_s = this
 * process's user + system CPU seconds over the timed part.
 *
 * Header-only (static functions), like peer_common.h: each client is one
 * translation unit. */
#ifndef WP_BENCH_STREAM_COMMON_H
#define WP_BENCH_STREAM_COMMON_H

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Bounds. */
#define SB_CHANNELS_MAX 64
#define SB_SIZE_MIN 32 /* room for the two numbers in text form */
#define SB_SIZE_MAX (4LL << 20)
#define SB_BATCH_MAX 10000
#define SB_SECONDS_MAX 600.0
#define SB_NAME_MAX 100
/* The warm-up message's number. */
#define SB_WARMUP INT64_MAX
/* How long a consumer may see nothing once its producer is done, and how
 * long a producer waits for its consumer to see the warm-up message. */
#define SB_IDLE_MS 15000
#define SB_WARMUP_WAIT_MS 30000
/* How long one receive call of a consumer waits. */
#define SB_POLL_MS 100

typedef struct {
    int channels;
    int64_t size, batch;
    double seconds;
    const char *name; /* channel i is "<name>-<i>" */
    bool text;        /* --payload text */
    bool no_consume;  /* --no-consume: producers only (the produce path's own limit) */
} sb_opts;

typedef struct {
    int64_t *v;
    size_t n, cap;
} sb_vec;

typedef struct sb_chan {
    int idx;
    char name[SB_NAME_MAX + 16];
    const sb_opts *o;
    void *sys; /* the system's per-channel state */
    /* Producer thread's. */
    uint8_t *buf; /* batch messages of size bytes, one after another */
    int64_t next_no;
    int64_t acked;
    int64_t t_last_ack;
    sb_vec ack;
    /* Set by the producer when it is done: messages the consumer must see. */
    atomic_llong want; /* -1 while producing */
    /* Consumer's (the thread that calls sb_take). */
    int64_t expect_no;
    sb_vec e2e;
    int64_t t_last_take; /* when the last counted message came */
    atomic_llong consumed;
    atomic_bool warm; /* the consumer has the warm-up message */
    int64_t idle_since, idle_got; /* sb_consumer_done's */
} sb_chan;

/* Whole-run state: set once a thread fails; every loop stops. */
static atomic_bool sb_abort;
static pthread_mutex_t sb_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char sb_err_msg[512];

static int64_t sb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Records the first failure (printed by sb_run) and stops the run. */
static void sb_fail(const sb_chan *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fail(const sb_chan *ch, const char *fmt, ...)
{
    pthread_mutex_lock(&sb_err_mu);
    if (!sb_err_msg[0]) {
        int k = snprintf(sb_err_msg, sizeof sb_err_msg, "%s: ", ch ? ch->name : "run");
        va_list ap;
        va_start(ap, fmt);
        if (k > 0 && (size_t)k < sizeof sb_err_msg)
            vsnprintf(sb_err_msg + k, sizeof sb_err_msg - (size_t)k, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&sb_err_mu);
    atomic_store(&sb_abort, true);
}

static bool sb_vec_push(sb_vec *v, int64_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 65536;
        int64_t *p = realloc(v->v, cap * sizeof *p);
        if (!p)
            return false;
        v->v = p, v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}

/* ---- options ------------------------------------------------------------ */

static bool sb_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void sb_defaults(sb_opts *o)
{
    *o = (sb_opts){.channels = 1, .size = 1024, .batch = 256, .seconds = 10, .name = "sbench"};
}

#define SB_USAGE                                                                                 \
    "[--channels N] [--size BYTES] [--batch N] [--seconds S] [--name PREFIX] "                  \
    "[--payload random|text] [--no-consume]"

/* One option of ours: how many arguments it took (1 for a flag, 2 with a
 * valid value), 0 if it is not ours, -1 on a bad or missing value. */
static int sb_opt(sb_opts *o, const char *a, const char *v)
{
    int64_t n;
    if (strcmp(a, "--no-consume") == 0) {
        o->no_consume = true;
        return 1;
    }
    if (strcmp(a, "--channels") == 0) {
        if (!sb_i64(v, 1, SB_CHANNELS_MAX, &n))
            return -1;
        o->channels = (int)n;
    } else if (strcmp(a, "--size") == 0) {
        if (!sb_i64(v, SB_SIZE_MIN, SB_SIZE_MAX, &o->size))
            return -1;
    } else if (strcmp(a, "--batch") == 0) {
        if (!sb_i64(v, 1, SB_BATCH_MAX, &o->batch))
            return -1;
    } else if (strcmp(a, "--seconds") == 0) {
        char *end;
        o->seconds = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end || !(o->seconds > 0 && o->seconds <= SB_SECONDS_MAX))
            return -1;
    } else if (strcmp(a, "--name") == 0) {
        if (!v || !*v || strlen(v) > SB_NAME_MAX)
            return -1;
        o->name = v;
    } else if (strcmp(a, "--payload") == 0) {
        if (!v || (strcmp(v, "random") && strcmp(v, "text")))
            return -1;
        o->text = strcmp(v, "text") == 0;
    } else {
        return 0;
    }
    return 2;
}

/* ---- payload ------------------------------------------------------------ */

/* Fills the message bodies of a channel's batch buffer (numbers later). */
static int sb_chan_init(sb_chan *ch, const sb_opts *o, int idx)
{
    memset(ch, 0, sizeof *ch);
    ch->idx = idx;
    ch->o = o;
    snprintf(ch->name, sizeof ch->name, "%s-%d", o->name, idx);
    atomic_init(&ch->want, -1);
    atomic_init(&ch->consumed, 0);
    atomic_init(&ch->warm, false);
    ch->buf = malloc((size_t)(o->size * o->batch));
    if (!ch->buf)
        return -1;
    uint64_t x = 0x9e3779b97f4a7c15ull + (uint64_t)idx;
    for (int64_t i = 0; i < o->size * o->batch; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ch->buf[i] = o->text ? (uint8_t)('a' + x % 26) : (uint8_t)x;
    }
    return 0;
}

static void sb_chan_free(sb_chan *ch)
{
    free(ch->buf);
    free(ch->ack.v);
    free(ch->e2e.v);
}

static void sb_hex16(uint8_t *p, uint64_t v)
{
    static const char d[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        p[i] = (uint8_t)d[v & 15];
}

static bool sb_unhex16(const uint8_t *p, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        int c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* Message k of the batch: where it is, after writing its header. */
static uint8_t *sb_stamp(sb_chan *ch, int64_t k, int64_t sent_ns, int64_t no)
{
    uint8_t *p = ch->buf + k * ch->o->size;
    if (ch->o->text) {
        sb_hex16(p, (uint64_t)sent_ns);
        sb_hex16(p + 16, (uint64_t)no);
    } else {
        memcpy(p, &sent_ns, 8);
        memcpy(p + 8, &no, 8);
    }
    return p;
}

/* The consumer has one message: checks its number, records its e2e
 * latency. false (after sb_fail) if it is not the one expected. */
static bool sb_take(sb_chan *ch, const void *data, size_t len, int64_t now)
{
    const uint8_t *p = data;
    int64_t sent = -1, no = -1;
    if (len != (size_t)ch->o->size) {
        sb_fail(ch, "message of %zu bytes, expected %" PRId64, len, ch->o->size);
        return false;
    }
    if (ch->o->text) {
        uint64_t a, b;
        if (!sb_unhex16(p, &a) || !sb_unhex16(p + 16, &b)) {
            sb_fail(ch, "message without its numbers");
            return false;
        }
        sent = (int64_t)a, no = (int64_t)b;
    } else {
        memcpy(&sent, p, 8);
        memcpy(&no, p + 8, 8);
    }
    if (no == SB_WARMUP) {
        atomic_store(&ch->warm, true);
        return true;
    }
    if (no != ch->expect_no) {
        sb_fail(ch, "consumer got message %" PRId64 ", expected %" PRId64, no, ch->expect_no);
        return false;
    }
    ch->expect_no++;
    ch->t_last_take = now;
    if (!sb_vec_push(&ch->e2e, now - sent)) {
        sb_fail(ch, "out of memory");
        return false;
    }
    atomic_fetch_add(&ch->consumed, 1);
    return true;
}

/* For a consumer's loop: true when it has every acked message (or the run
 * failed, or nothing came for SB_IDLE_MS after its producer finished). */
static bool sb_consumer_done(sb_chan *ch)
{
    if (atomic_load(&sb_abort))
        return true;
    int64_t want = atomic_load(&ch->want), got = atomic_load(&ch->consumed);
    if (want < 0)
        return false;
    if (got >= want)
        return true;
    int64_t now = sb_now_ns();
    if (!ch->idle_since || got != ch->idle_got) {
        ch->idle_since = now, ch->idle_got = got;
    } else if (now - ch->idle_since > SB_IDLE_MS * 1000000LL) {
        sb_fail(ch, "consumer idle after %" PRId64 " of %" PRId64 " messages", got, want);
        return true;
    }
    return false;
}

/* ---- the run ------------------------------------------------------------ */

/* What a system provides. send: hand the n messages at ch->buf (each
 * o->size bytes) to the system and return once all are acked: 0, or -1
 * after sb_fail. consume: take ch's messages (sb_take) until
 * sb_consumer_done(ch); 0, or -1 after sb_fail. */
typedef struct {
    int (*send)(sb_chan *ch, int64_t n);
    int (*consume)(sb_chan *ch);
} sb_system;

typedef struct {
    sb_chan *ch;
    const sb_system *sys;
    pthread_barrier_t *warm, *go; /* every producer warm; t0 is set */
    const int64_t *t0;
    int64_t run_ns;
} sb_thread;

static void *sb_consumer_main(void *arg)
{
    sb_thread *t = arg;
    t->sys->consume(t->ch);
    return NULL;
}

/* Warm-up: one message, then wait until the consumer has it. */
static int sb_warmup(sb_thread *t)
{
    sb_chan *ch = t->ch;
    sb_stamp(ch, 0, sb_now_ns(), SB_WARMUP);
    if (t->sys->send(ch, 1))
        return -1;
    if (ch->o->no_consume)
        return 0;
    int64_t until = sb_now_ns() + SB_WARMUP_WAIT_MS * 1000000LL;
    while (!atomic_load(&ch->warm) && !atomic_load(&sb_abort)) {
        if (sb_now_ns() > until) {
            sb_fail(ch, "the consumer did not get the warm-up message in %d ms",
                    SB_WARMUP_WAIT_MS);
            return -1;
        }
        usleep(1000);
    }
    return atomic_load(&sb_abort) ? -1 : 0;
}

static void *sb_producer_main(void *arg)
{
    sb_thread *t = arg;
    sb_chan *ch = t->ch;
    const sb_opts *o = ch->o;
    sb_warmup(t);
    pthread_barrier_wait(t->warm);
    pthread_barrier_wait(t->go);
    int64_t deadline = *t->t0 + t->run_ns;
    while (!atomic_load(&sb_abort) && sb_now_ns() < deadline) {
        int64_t sent = sb_now_ns();
        for (int64_t k = 0; k < o->batch; k++)
            sb_stamp(ch, k, sent, ch->next_no++);
        if (t->sys->send(ch, o->batch))
            break;
        int64_t now = sb_now_ns();
        ch->acked += o->batch;
        ch->t_last_ack = now;
        if (!sb_vec_push(&ch->ack, now - sent)) {
            sb_fail(ch, "out of memory");
            break;
        }
    }
    atomic_store(&ch->want, ch->acked);
    return NULL;
}

static int sb_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank, in ms; NAN if empty. */
static double sb_pct_ms(const sb_vec *v, double p)
{
    if (!v->n)
        return NAN;
    double x = p / 100.0 * (double)v->n;
    size_t rank = (size_t)x;
    if ((double)rank < x)
        rank++;
    size_t i = rank < 1 ? 0 : rank > v->n ? v->n - 1 : rank - 1;
    return (double)v->v[i] / 1e6;
}

static void sb_ms_json(const char *key, double v)
{
    if (isnan(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.4f", key, v);
}

static double sb_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Merges every channel's values into one sorted vector. */
static int sb_merge(sb_chan *chs, int n, bool e2e, sb_vec *out)
{
    *out = (sb_vec){0};
    for (int i = 0; i < n; i++) {
        const sb_vec *v = e2e ? &chs[i].e2e : &chs[i].ack;
        for (size_t k = 0; k < v->n; k++)
            if (!sb_vec_push(out, v->v[k]))
                return -1;
    }
    if (out->n)
        qsort(out->v, out->n, sizeof *out->v, sb_cmp_i64);
    return 0;
}

static void sb_report(const char *system, const sb_opts *o, sb_chan *chs, double secs,
                      double csecs, double cpu_s)
{
    int64_t acked = 0, consumed = 0;
    sb_vec ack, e2e;
    for (int i = 0; i < o->channels; i++)
        acked += chs[i].acked, consumed += atomic_load(&chs[i].consumed);
    if (sb_merge(chs, o->channels, false, &ack) || sb_merge(chs, o->channels, true, &e2e)) {
        fprintf(stderr, "%s: out of memory\n", system);
        return;
    }
    double bytes = (double)acked * (double)o->size;
    printf("{\"system\":\"%s\",\"channels\":%d,\"size\":%" PRId64 ",\"batch\":%" PRId64
           ",\"payload\":\"%s\",\"consumers\":%s,\"messages\":%" PRId64 ",\"bytes\":%.0f,\"seconds\":%.6f"
           ",\"mib_per_s\":%.3f,\"messages_per_s\":%.1f",
           system, o->channels, o->size, o->batch, o->text ? "text" : "random",
           o->no_consume ? "false" : "true", acked, bytes,
           secs, secs > 0 ? bytes / secs / 1048576.0 : 0, secs > 0 ? (double)acked / secs : 0);
    sb_ms_json("ack_p50_ms", sb_pct_ms(&ack, 50));
    sb_ms_json("ack_p99_ms", sb_pct_ms(&ack, 99));
    sb_ms_json("e2e_p50_ms", sb_pct_ms(&e2e, 50));
    sb_ms_json("e2e_p99_ms", sb_pct_ms(&e2e, 99));
    sb_ms_json("e2e_max_ms", e2e.n ? (double)e2e.v[e2e.n - 1] / 1e6 : NAN);
    double cbytes = (double)consumed * (double)o->size;
    printf(",\"consumed\":%" PRId64 ",\"consume_seconds\":%.6f,\"consume_mib_per_s\":%.3f"
           ",\"cpu_s\":%.3f}\n",
           consumed, csecs, csecs > 0 ? cbytes / csecs / 1048576.0 : 0, cpu_s);
    fflush(stdout);
    free(ack.v);
    free(e2e.v);
}

/* Runs the workload on chs[0..o->channels) (set up by the system: sys
 * fields, connections); prints the JSON line. 0, or 1 after printing why. */
static int sb_run(const char *system, const sb_opts *o, sb_chan *chs, const sb_system *sys)
{
    int n = o->channels;
    pthread_t cons[SB_CHANNELS_MAX], prod[SB_CHANNELS_MAX];
    sb_thread th[SB_CHANNELS_MAX];
    pthread_barrier_t warm, go;
    int64_t t0 = 0;
    pthread_barrier_init(&warm, NULL, (unsigned)n + 1);
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        th[i] = (sb_thread){&chs[i], sys, &warm, &go, &t0, (int64_t)(o->seconds * 1e9)};
        if ((!o->no_consume && pthread_create(&cons[i], NULL, sb_consumer_main, &th[i])) ||
            pthread_create(&prod[i], NULL, sb_producer_main, &th[i])) {
            fprintf(stderr, "%s: cannot start threads\n", system);
            exit(1);
        }
    }
    pthread_barrier_wait(&warm);
    double cpu0 = sb_cpu_s();
    t0 = sb_now_ns(); /* read by the producers after the next barrier */
    pthread_barrier_wait(&go);
    for (int i = 0; i < n; i++)
        pthread_join(prod[i], NULL);
    for (int i = 0; i < n && !o->no_consume; i++)
        pthread_join(cons[i], NULL);
    double cpu = sb_cpu_s() - cpu0;
    int64_t t_end = t0, t_cend = t0;
    for (int i = 0; i < n; i++) {
        if (chs[i].t_last_ack > t_end)
            t_end = chs[i].t_last_ack;
        if (chs[i].t_last_take > t_cend)
            t_cend = chs[i].t_last_take;
    }
    pthread_barrier_destroy(&warm);
    pthread_barrier_destroy(&go);
    if (atomic_load(&sb_abort)) {
        fprintf(stderr, "%s: %s\n", system, sb_err_msg);
        return 1;
    }
    sb_report(system, o, chs, (double)(t_end - t0) / 1e9, (double)(t_cend - t0) / 1e9, cpu);
    return 0;
}

#endif
