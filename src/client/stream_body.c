/* stream_body.c — a produce request's body (docs/streaming-api.md §7),
 * written into curl's send buffer as curl asks for it (sc_body in
 * stream_client.h): the request's header with the term of the attempt,
 * then each message's head (seq, length, properties) and its payload from
 * where the caller has it, so a payload is copied once on its way to the
 * socket, not twice. */
#include <stdlib.h>
#include <string.h>

#include "client/stream_client.h"
#include "codec/wpm.h"

int sc_body_init(sc_body *s, const char *producer, const wp_payload *msgs, size_t cnt,
                 int64_t seq0, size_t total, size_t head_max)
{
    *s = (sc_body){.id = producer, .idl = strlen(producer), .term = -1, .msgs = msgs,
                   .cnt = cnt, .seq0 = seq0, .total = total, .head = malloc(head_max)};
    if (!s->head)
        return wp__err(WP_ENOMEM, "produce request of %zu messages", cnt);
    sc_body_rewind(s);
    return WP_OK;
}

void sc_body_free(sc_body *s)
{
    free(s->head);
    s->head = NULL;
}

/* head <- the current part's head. */
static void put_head(sc_body *s)
{
    uint8_t *e = s->part < 0 ? wpm_put_req_hdr(s->head, s->term, s->id, s->idl)
                             : wpm_put_req_msg_head(s->head, s->seq0 + s->part, &s->msgs[s->part]);
    s->head_len = (size_t)(e - s->head);
    s->payload = false;
    s->off = 0;
}

void sc_body_rewind(void *arg)
{
    sc_body *s = arg;
    s->part = -1;
    put_head(s);
}

size_t sc_body_read(void *arg, char *buf, size_t max)
{
    sc_body *s = arg;
    size_t w = 0;
    while (s->part < (long)s->cnt) {
        const uint8_t *from = s->payload ? s->msgs[s->part].data : s->head;
        size_t len = s->payload ? s->msgs[s->part].len : s->head_len;
        size_t k = len - s->off < max - w ? len - s->off : max - w;
        if (k)
            memcpy(buf + w, from + s->off, k);
        w += k;
        s->off += k;
        if (s->off < len)
            break; /* buf is full */
        if (s->part >= 0 && !s->payload) {
            s->payload = true;
            s->off = 0;
        } else if (++s->part < (long)s->cnt) {
            put_head(s);
        }
    }
    return w;
}
