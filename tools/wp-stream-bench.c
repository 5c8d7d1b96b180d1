/* wp-stream-bench — the Woodpecker side of `make bench-streaming`
 * (bench/streaming.sh): the publish/subscribe workload of
 * bench/peers/stream_common.h (C channels, a producer and a consumer per
 * channel, batches of B messages, one batch in flight per channel, e2e =
 * produce call → consumer has the message) run either through the
 * streaming service or on the library directly:
 *
 *   wp-stream-bench service [-c FILE] [-o KEY=VALUE]... [workload options]
 *     Creates channels <name>-0 .. <name>-<C-1> through the nodes' API
 *     (wps_channel_create), waits until the coordinator has assigned each,
 *     then per channel one wps_producer (a batch = one wps_produce call,
 *     which returns once every message is durable) and one wps_consumer
 *     from the start of the channel (the pushed stream, in the binary
 *     encoding of docs/streaming-api.md §7, as produce is). The
 *     configuration names the metadata store the service uses.
 *   wp-stream-bench direct [-c FILE] [-o KEY=VALUE]... [workload options]
 *     The same on the library in this process: per channel a log <name>-i,
 *     its wp_writer (a batch = B wp_writer_append_async, then wait for the
 *     B callbacks, which run once the entries are durable) and a wp_reader
 *     from WP_EARLIEST tailing it. The configuration is the one the
 *     service's nodes use (same storage, same metadata store).
 *
 * Workload options: see stream_common.h (--channels, --size, --batch,
 * --seconds, --name, --payload, --no-consume). Prints one JSON line (stream_common.h's
 * fields; system "wp-service" or "wp-direct"); in service mode the owner of
 * each channel goes to stderr. Exit 0, 1 on a failure, 2 on a bad command
 * line. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "woodpecker.h"
#include "woodpecker_stream.h"

#include "../bench/peers/stream_common.h"

/* How long the coordinator may take to assign the new channels. */
#define ASSIGN_WAIT_MS 30000
#define OVERRIDES_MAX 64

static const char usage[] =
    "usage: wp-stream-bench service|direct [-c FILE] [-o KEY=VALUE]... " SB_USAGE "\n";

static void log_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level >= WP_LOG_WARN)
        fprintf(stderr, "wp-stream-bench: %s: %s\n", level >= WP_LOG_ERROR ? "error" : "warn",
                msg);
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "wp-stream-bench: %s: %s (%s)\n", what, wp_strerror(rc), wp_errmsg());
    return 1;
}

/* ---- the service ---------------------------------------------------------- */

typedef struct {
    wps_producer *p;
    wps_consumer *co;
    wp_payload *msgs; /* batch entries pointing into ch->buf */
} svc_chan;

static int svc_send(sb_chan *ch, int64_t n)
{
    svc_chan *s = ch->sys;
    for (int64_t k = 0; k < n; k++)
        s->msgs[k] = (wp_payload){.data = ch->buf + k * ch->o->size, .len = (size_t)ch->o->size};
    int rc = wps_produce(s->p, s->msgs, (size_t)n, NULL);
    if (rc) {
        sb_fail(ch, "wps_produce: %s (%s)", wp_strerror(rc), wp_errmsg());
        return -1;
    }
    return 0;
}

static int svc_consume(sb_chan *ch)
{
    svc_chan *s = ch->sys;
    while (!sb_consumer_done(ch)) {
        wps_message m;
        int rc = wps_consume(s->co, SB_POLL_MS, &m);
        if (rc == WP_ETIMEDOUT)
            continue;
        if (rc) {
            sb_fail(ch, "wps_consume: %s (%s)", wp_strerror(rc), wp_errmsg());
            return -1;
        }
        if (!sb_take(ch, m.data, m.len, sb_now_ns()))
            return -1;
    }
    return 0;
}

/* Until every channel of chs has an owner; prints who owns what. */
static int wait_assigned(wps_client *c, const sb_opts *o, sb_chan *chs)
{
    int64_t until = sb_now_ns() + ASSIGN_WAIT_MS * 1000000LL;
    for (;;) {
        wps_channel_info *v = NULL;
        size_t n = 0;
        int rc = wps_channel_list(c, &v, &n), assigned = 0;
        if (rc)
            return die("wps_channel_list", rc);
        for (int i = 0; i < o->channels; i++)
            for (size_t k = 0; k < n; k++)
                if (strcmp(v[k].name, chs[i].name) == 0 && v[k].owner[0])
                    assigned++;
        if (assigned == o->channels) {
            fprintf(stderr, "wp-stream-bench: owners:");
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, " %s=%s", v[k].name, v[k].owner);
            fprintf(stderr, "\n");
        }
        free(v);
        if (assigned == o->channels)
            return 0;
        if (sb_now_ns() > until) {
            fprintf(stderr, "wp-stream-bench: %d of %d channels assigned after %d ms\n",
                    assigned, o->channels, ASSIGN_WAIT_MS);
            return 1;
        }
        usleep(20000);
    }
}

static int run_service(const wp_config *cfg, const sb_opts *o, sb_chan *chs)
{
    static const sb_system sys = {svc_send, svc_consume};
    svc_chan sc[SB_CHANNELS_MAX] = {{0}};
    wps_client *c = NULL;
    int rc = wps_client_open(cfg, &c), st = 1;
    if (rc)
        return die("wps_client_open", rc);
    for (int i = 0; i < o->channels; i++)
        if ((rc = wps_channel_create(c, chs[i].name))) {
            st = die(chs[i].name, rc); /* WP_EEXIST: use a new --name */
            goto out;
        }
    if (wait_assigned(c, o, chs))
        goto out;
    for (int i = 0; i < o->channels; i++) {
        chs[i].sys = &sc[i];
        sc[i].msgs = calloc((size_t)o->batch, sizeof *sc[i].msgs);
        if (!sc[i].msgs) {
            fprintf(stderr, "wp-stream-bench: out of memory\n");
            goto out;
        }
        if ((!o->no_consume &&
             (rc = wps_consumer_open(c, chs[i].name, WPS_FROM_ALL, (wp_msg_id){0, 0}, &sc[i].co))) ||
            (rc = wps_producer_open(c, chs[i].name, NULL, &sc[i].p))) {
            st = die(chs[i].name, rc);
            goto out;
        }
    }
    st = sb_run("wp-service", o, chs, &sys);
out:
    for (int i = 0; i < o->channels; i++) {
        if (sc[i].p)
            wps_producer_close(sc[i].p);
        if (sc[i].co)
            wps_consumer_close(sc[i].co);
        free(sc[i].msgs);
    }
    wps_client_close(c);
    return st;
}

/* ---- the library directly ------------------------------------------------- */

typedef struct {
    wp_log *log;
    wp_writer *w;
    wp_reader *r;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t pending;
    int rc;
} dir_chan;

static void dir_acked(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    dir_chan *d = arg;
    pthread_mutex_lock(&d->mu);
    if (rc && !d->rc)
        d->rc = rc;
    if (--d->pending == 0)
        pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

static int dir_send(sb_chan *ch, int64_t n)
{
    dir_chan *d = ch->sys;
    int rc = WP_OK;
    int64_t k = 0;
    pthread_mutex_lock(&d->mu);
    d->pending = n;
    pthread_mutex_unlock(&d->mu);
    for (; k < n && rc == WP_OK; k++)
        rc = wp_writer_append_async(d->w, ch->buf + k * ch->o->size, (size_t)ch->o->size,
                                    dir_acked, d);
    pthread_mutex_lock(&d->mu);
    if (rc) { /* the failed one and those after it were not appended */
        d->pending -= n - k + 1;
        if (!d->rc)
            d->rc = rc;
    }
    while (d->pending > 0)
        pthread_cond_wait(&d->cond, &d->mu);
    rc = d->rc;
    pthread_mutex_unlock(&d->mu);
    if (rc) {
        sb_fail(ch, "append: %s (%s)", wp_strerror(rc), wp_errmsg());
        return -1;
    }
    return 0;
}

static int dir_consume(sb_chan *ch)
{
    dir_chan *d = ch->sys;
    while (!sb_consumer_done(ch)) {
        wp_entry e;
        int rc = wp_reader_next(d->r, SB_POLL_MS, &e);
        if (rc == WP_ETIMEDOUT)
            continue;
        if (rc) {
            sb_fail(ch, "wp_reader_next: %s (%s)", wp_strerror(rc), wp_errmsg());
            return -1;
        }
        if (!sb_take(ch, e.data, e.len, sb_now_ns()))
            return -1;
    }
    return 0;
}

static int run_direct(const wp_config *cfg, const sb_opts *o, sb_chan *chs)
{
    static const sb_system sys = {dir_send, dir_consume};
    dir_chan dc[SB_CHANNELS_MAX];
    wp_client *c = NULL;
    int rc = wp_client_open(cfg, &c), st = 1;
    if (rc)
        return die("wp_client_open", rc);
    memset(dc, 0, sizeof dc);
    for (int i = 0; i < o->channels; i++) {
        dir_chan *d = &dc[i];
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cond, NULL);
        chs[i].sys = d;
        if ((rc = wp_log_create(c, chs[i].name)) || (rc = wp_log_open(c, chs[i].name, &d->log)) ||
            (rc = wp_writer_open(d->log, &d->w)) ||
            (!o->no_consume && (rc = wp_reader_open(d->log, WP_EARLIEST, &d->r)))) {
            st = die(chs[i].name, rc);
            goto out;
        }
    }
    st = sb_run("wp-direct", o, chs, &sys);
out:
    for (int i = 0; i < o->channels; i++) {
        if (dc[i].r)
            wp_reader_close(dc[i].r);
        if (dc[i].w && (rc = wp_writer_close(dc[i].w)) && !st)
            st = die("wp_writer_close", rc);
        if (dc[i].log)
            wp_log_close(dc[i].log);
        pthread_mutex_destroy(&dc[i].mu);
        pthread_cond_destroy(&dc[i].cond);
    }
    wp_client_close(c);
    return st;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    sb_opts o;
    sb_chan chs[SB_CHANNELS_MAX];
    const char *cfg_path = NULL, *overrides[OVERRIDES_MAX];
    int n_over = 0, st = 2;
    sb_defaults(&o);
    if (argc < 2 || (strcmp(argv[1], "service") && strcmp(argv[1], "direct"))) {
        fputs(usage, stderr);
        return 2;
    }
    bool service = strcmp(argv[1], "service") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = sb_opt(&o, a, v);
        if (k == 0 && v && !strcmp(a, "-c"))
            cfg_path = v, k = 2;
        else if (k == 0 && v && !strcmp(a, "-o") && n_over < OVERRIDES_MAX)
            overrides[n_over++] = v, k = 2;
        if (k <= 0) {
            fprintf(stderr, "wp-stream-bench: bad option or value near '%s'\n%s", a, usage);
            return 2;
        }
        i += k - 1;
    }
    wp_config *cfg = NULL;
    int rc = cfg_path ? wp_config_load(cfg_path, &cfg) : wp_config_default(&cfg);
    if (rc)
        return die(cfg_path ? cfg_path : "config", rc);
    for (int i = 0; i < n_over; i++) {
        char key[128];
        const char *eq = strchr(overrides[i], '=');
        if (!eq || eq == overrides[i] || (size_t)(eq - overrides[i]) >= sizeof key) {
            fprintf(stderr, "wp-stream-bench: -o wants KEY=VALUE, got '%s'\n", overrides[i]);
            goto out_cfg;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        if ((rc = wp_config_set(cfg, key, eq + 1))) {
            st = die(overrides[i], rc);
            goto out_cfg;
        }
    }
    wp_config_set_log(cfg, log_stderr, NULL);
    int made = 0;
    for (; made < o.channels; made++)
        if (sb_chan_init(&chs[made], &o, made)) {
            fprintf(stderr, "wp-stream-bench: out of memory\n");
            st = 1;
            goto out_chans;
        }
    st = service ? run_service(cfg, &o, chs) : run_direct(cfg, &o, chs);
out_chans:
    for (int i = 0; i < made; i++)
        sb_chan_free(&chs[i]);
out_cfg:
    wp_config_free(cfg);
    return st;
}
