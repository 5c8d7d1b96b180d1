/* stream_redis.c — the publish/subscribe workload of `make bench-streaming`
 * (stream_common.h) on Redis Streams, with hiredis.
 *
 * Channel i is the stream <name>-i. Per channel:
 * - producer: its own connection; a batch is B `XADD <stream> * d <payload>`
 *   written at once (pipelined), then the B replies read: the batch is
 *   acked when the last reply is in. With `appendfsync always` Redis
 *   fdatasyncs the AOF before it sends the replies of an event-loop
 *   iteration, so a reply means the entry is on disk.
 * - consumer: its own connection, `XREAD COUNT c BLOCK 100 STREAMS <stream>
 *   <last id>` from the start of the (fresh) stream, in a loop.
 *
 * Build (bench/streaming.sh does it):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE stream_redis.c -o stream_redis -lhiredis -lpthread -lm
 *   stream_redis --port N [--host H] [workload options of stream_common.h]
 * Prints one JSON line (system "redis"). Exit 0, 1 on a failure, 2 on a bad
 * command line. */
#include <hiredis/hiredis.h>

#include "stream_common.h"

/* XREAD: at most this many payload bytes per reply (and READ_COUNT_MAX). */
#define READ_BYTES (4LL << 20)
#define READ_COUNT_MAX 1024
#define STREAM_ID_MAX 64

static const char *host = "127.0.0.1";
static int port;

typedef struct {
    redisContext *w, *r;
} rchan;

static redisContext *connect_to(sb_chan *ch)
{
    redisContext *c = redisConnect(host, port);
    if (!c || c->err) {
        sb_fail(ch, "connecting to %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

static int r_send(sb_chan *ch, int64_t n)
{
    redisContext *c = ((rchan *)ch->sys)->w;
    size_t al[5] = {4, strlen(ch->name), 1, 1, (size_t)ch->o->size};
    int done = 0, bad = 0;
    for (int64_t k = 0; k < n; k++) {
        const char *av[5] = {"XADD", ch->name, "*", "d", (const char *)ch->buf + k * ch->o->size};
        if (redisAppendCommandArgv(c, 5, av, al) != REDIS_OK)
            goto out_io;
    }
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            goto out_io;
    for (int64_t k = 0; k < n; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            goto out_io;
        if (r->type == REDIS_REPLY_ERROR && !bad++)
            sb_fail(ch, "XADD: %s", r->str);
        freeReplyObject(r);
    }
    return bad ? -1 : 0;
out_io:
    sb_fail(ch, "XADD: %s", c->errstr);
    return -1;
}

/* The entries of one XREAD reply to sb_take; last_id follows. -1 on an
 * unexpected reply (after sb_fail) or a message sb_take refuses. */
static int take_reply(sb_chan *ch, redisReply *r, char *last_id, int64_t now)
{
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    redisReply *s = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element[0] : NULL;
    if (!s || s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        goto bad;
    redisReply *es = s->element[1];
    for (size_t i = 0; i < es->elements; i++) {
        redisReply *e = es->element[i]; /* [id, [field, value]] */
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
            e->element[1]->elements != 2 || e->element[0]->len >= STREAM_ID_MAX)
            goto bad;
        memcpy(last_id, e->element[0]->str, e->element[0]->len);
        last_id[e->element[0]->len] = '\0';
        redisReply *v = e->element[1]->element[1];
        if (!sb_take(ch, v->str, v->len, now))
            return -1;
    }
    return 0;
bad:
    sb_fail(ch, "XREAD: unexpected reply");
    return -1;
}

static int r_consume(sb_chan *ch)
{
    redisContext *c = ((rchan *)ch->sys)->r;
    char last_id[STREAM_ID_MAX] = "0-0", count[32];
    int64_t batch = READ_BYTES / ch->o->size;
    batch = batch < 1 ? 1 : batch > READ_COUNT_MAX ? READ_COUNT_MAX : batch;
    snprintf(count, sizeof count, "%" PRId64, batch);
    while (!sb_consumer_done(ch)) {
        redisReply *r = redisCommand(c, "XREAD COUNT %s BLOCK %d STREAMS %s %s", count,
                                     SB_POLL_MS, ch->name, last_id);
        int64_t now = sb_now_ns();
        if (!r) {
            sb_fail(ch, "XREAD: %s", c->errstr);
            return -1;
        }
        int st = take_reply(ch, r, last_id, now);
        freeReplyObject(r);
        if (st)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const sb_system sys = {r_send, r_consume};
    sb_opts o;
    sb_chan chs[SB_CHANNELS_MAX];
    rchan rc[SB_CHANNELS_MAX] = {{0}};
    int st = 1, made = 0;
    sb_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = sb_opt(&o, a, v);
        int64_t p;
        if (k == 0 && v && strcmp(a, "--host") == 0)
            host = v, k = 2;
        else if (k == 0 && strcmp(a, "--port") == 0 && sb_i64(v, 1, 65535, &p))
            port = (int)p, k = 2;
        if (k <= 0) {
            fprintf(stderr, "stream_redis: bad option or value near '%s'\nusage: %s --port N "
                    "[--host H] " SB_USAGE "\n", a, argv[0]);
            return 2;
        }
        i += k - 1;
    }
    if (!port) {
        fprintf(stderr, "stream_redis: --port is required\n");
        return 2;
    }
    for (; made < o.channels; made++) {
        sb_chan *ch = &chs[made];
        if (sb_chan_init(ch, &o, made)) {
            fprintf(stderr, "stream_redis: out of memory\n");
            goto out;
        }
        ch->sys = &rc[made];
        if (!(rc[made].w = connect_to(ch)) || !(rc[made].r = connect_to(ch))) {
            made++;
            fprintf(stderr, "stream_redis: %s\n", sb_err_msg);
            goto out;
        }
    }
    st = sb_run("redis", &o, chs, &sys);
out:
    for (int i = 0; i < made; i++) {
        if (rc[i].w)
            redisFree(rc[i].w);
        if (rc[i].r)
            redisFree(rc[i].r);
        sb_chan_free(&chs[i]);
    }
    return st;
}
