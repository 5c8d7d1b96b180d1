/* conn.h — a client's pipelined connection to one LogStore server
 * (docs/protocol.md §2): many requests in flight, answers matched by
 * request id and handed to each request's callback, in whatever order the
 * server answers. One reader thread per connection (a client talks to few
 * servers; the server side has no thread per connection).
 *
 * When the connection fails (the server closed it, a send failed, a
 * protocol error, or pconn_close), every request in flight gets
 * WP_EUNAVAILABLE: its outcome is unknown (§2), never "refused". A failed
 * connection stays failed; the caller opens a new one (with backoff). */
#ifndef WP_NET_CONN_H
#define WP_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "net/proto.h"

typedef struct pconn pconn;

/* Connects to host:port, says HELLO and waits for the answer, at most
 * timeout_ms for all of it. client_id names this end in the server's logs. */
int pconn_open(const char *addr, const char *client_id, int timeout_ms, pconn **out);

/* The answer to one request: rc 0 and the answer frame in *f (header,
 * body, decoded message; an ERROR answer gives rc < 0 with its code, the
 * server's message in wp_errmsg() of the thread running the callback, and
 * f still set), or WP_EUNAVAILABLE and f NULL if the connection failed
 * first. Runs on the connection's reader thread (or in pconn_close); f and
 * what it points to live until it returns: copy what you keep. Must not
 * call pconn_close on this connection. */
typedef void (*pconn_cb)(void *arg, int rc, const proto_frame *f);

/* Sends m; cb runs exactly once, later. Blocks while PROTO_INFLIGHT_MAX
 * requests are in flight, and while the server's socket buffer is full
 * (at most 10 s: then the connection fails). An error return (the
 * connection is failed or the message is invalid) means cb will not run.
 * Thread-safe. */
int pconn_send(pconn *c, const proto_msg *m, pconn_cb cb, void *arg);
/* The same, but WP_EAGAIN at once (cb will not run) instead of waiting
 * when PROTO_INFLIGHT_MAX requests are in flight or the server's socket
 * buffer is full (it stopped reading): a server that stopped answering
 * must not hold up the requests that go to the others. A frame begun is
 * finished within 500 ms, or the connection fails. */
int pconn_send_nowait(pconn *c, const proto_msg *m, pconn_cb cb, void *arg);

/* Sends m and waits up to timeout_ms for its answer: its type in
 * ans->type and a copy of the answer frame's body in *body (free it: ans
 * points into it), or a WP_E* code (WP_ETIMEDOUT: still in flight, its
 * outcome unknown; the connection is failed then, as the protocol has no
 * way to cancel). */
int pconn_call(pconn *c, const proto_msg *m, int timeout_ms, proto_msg *ans, uint8_t **body);

/* The same in two steps, for a caller that sends a request and takes its
 * answer later (or never): pconn_call_start sends m (nowait: as
 * pconn_send_nowait, else as pconn_send); pconn_call_wait waits up to
 * timeout_ms for the answer, as pconn_call, and ends the request, except
 * on WP_ETIMEDOUT, which leaves it pending (wait again, or drop it; the
 * connection stays up); pconn_call_drop ends a pending request unanswered
 * (its answer is freed when it comes). */
typedef struct pconn_pending pconn_pending;
int pconn_call_start(pconn *c, const proto_msg *m, bool nowait, pconn_pending **out);
int pconn_call_wait(pconn_pending *p, int timeout_ms, proto_msg *ans, uint8_t **body);
void pconn_call_drop(pconn_pending *p);

/* True until the connection failed. */
bool pconn_alive(pconn *c);
/* "id (host:port)": the server as named in messages. */
const char *pconn_peer(const pconn *c);
/* The server's node id from its HELLO answer (unchecked text). */
const char *pconn_node_id(const pconn *c);
/* Fails what is in flight (WP_EUNAVAILABLE), closes, joins, frees. */
void pconn_close(pconn *c);

#endif
