/* tcpproxy.h — a real TCP proxy inside the test process, for network
 * faults between a client and one server (issue 10): it listens on
 * 127.0.0.1 (a free port), and forwards every connection it accepts to a
 * target host:port, from one thread with a poll loop.
 *
 * At run time a test can make it
 *   - pass everything through (the start state, and tcpproxy_resume);
 *   - delay every chunk it forwards by N ms (tcpproxy_delay);
 *   - blackhole a direction: read and discard, so the peer sees silence,
 *     never a close (tcpproxy_blackhole);
 *   - freeze a direction: neither read nor forward, so the sender's TCP
 *     window closes once the kernel buffers are full (tcpproxy_freeze) —
 *     what a hung server looks like; nothing is lost;
 *   - cut: close every connection (FIN, or RST), and optionally refuse
 *     new ones (connect then fails with ECONNREFUSED) (tcpproxy_cut).
 *
 * Every control is thread-safe and returns once the proxy thread has
 * applied it: after tcpproxy_cut returns, the connections are closed;
 * after tcpproxy_delay returns, what is read from then on is delayed.
 *
 * Bounds: at most TCPPROXY_CONNS_MAX connections at once (more are
 * accepted and closed at once), at most TCPPROXY_QUEUE_BYTES queued per
 * direction of a connection (then the proxy stops reading that side: TCP
 * backpressure), read in chunks of at most TCPPROXY_CHUNK_BYTES. With a
 * delay of d ms a direction carries at most TCPPROXY_QUEUE_BYTES per d ms. */
#ifndef WP_TESTS_TCPPROXY_H
#define WP_TESTS_TCPPROXY_H

#include <stdbool.h>
#include <stdint.h>

#define TCPPROXY_CONNS_MAX 64
#define TCPPROXY_QUEUE_BYTES (1024 * 1024)
#define TCPPROXY_CHUNK_BYTES (64 * 1024)

/* Directions, as bits: UP is client -> target, DOWN is target -> client. */
enum { TCPPROXY_UP = 1, TCPPROXY_DOWN = 2, TCPPROXY_BOTH = 3 };

typedef struct tcpproxy tcpproxy;

typedef struct {
    uint64_t accepted;        /* connections accepted and forwarded */
    uint64_t open;            /* connections open now */
    uint64_t fwd_bytes[2];    /* forwarded, [0] up, [1] down */
    uint64_t dropped_bytes[2]; /* discarded by a blackhole, [0] up, [1] down */
    uint64_t cut;             /* connections closed by tcpproxy_cut or tcpproxy_resume */
} tcpproxy_stats;

/* Starts a proxy to target ("host:port"), passing through. 0, or -1 with
 * the reason on stderr. Free with tcpproxy_stop. */
int tcpproxy_start(const char *target, tcpproxy **out);

/* "127.0.0.1:PORT" the proxy listens on; valid until tcpproxy_stop (the
 * port stays the same across cut-and-refuse and resume). */
const char *tcpproxy_addr(const tcpproxy *p);

/* Connections accepted from now on go to target (e.g. a server restarted
 * on another port); open ones keep theirs. 0, or -1 (bad address). */
int tcpproxy_set_target(tcpproxy *p, const char *target);

/* Every chunk read from now on is forwarded no earlier than delay_ms after
 * it was read (order kept); 0 for none. */
void tcpproxy_delay(tcpproxy *p, int delay_ms);

/* Directions (TCPPROXY_* bits; 0: none) whose bytes are read and dropped,
 * queued ones included, and whose end of stream is not passed on either.
 * Connections accepted meanwhile are connected to the target as usual. A
 * connection that lost bytes has a hole in its stream: tcpproxy_resume
 * closes it (with RST), as its peers could never make sense of it again. */
void tcpproxy_blackhole(tcpproxy *p, int dirs);

/* Directions (TCPPROXY_* bits; 0: none) the proxy neither reads nor
 * writes: the bytes wait in the kernel buffers, then the sender blocks.
 * Nothing is lost; undone by tcpproxy_freeze(p, 0) or tcpproxy_resume. */
void tcpproxy_freeze(tcpproxy *p, int dirs);

/* Closes every open connection, both sockets (with RST when rst, else
 * FIN — the kernel sends RST anyway where unread bytes are pending),
 * dropping what is queued. With refuse, closes the listening socket
 * too, so connects are refused until tcpproxy_resume. */
void tcpproxy_cut(tcpproxy *p, bool rst, bool refuse);

/* Back to passing through: no delay, blackhole or freeze, listening again
 * (on the same port) if refused; closes the connections that lost bytes.
 * 0, or -1 if the port cannot be listened on again (reason on stderr). */
int tcpproxy_resume(tcpproxy *p);

void tcpproxy_get_stats(tcpproxy *p, tcpproxy_stats *out);

/* Stops the thread, closes every socket, frees p (NULL is fine). */
void tcpproxy_stop(tcpproxy *p);

#endif
