/*
 * Connections: the server's own view of each connection (NNG pipe) of its
 * REP socket, and the limits libnng does not have: a cap on connections,
 * a partial-frame timeout and an idle timeout.
 *
 * DESIGN
 * ------
 * libnng (Debian 12's 1.5.2, Debian 13's 1.10.1) has no receive timeout on
 * a pipe, and tells the application nothing between a connection's SP
 * handshake and a whole message: a client that sends half a frame and
 * goes silent holds its pipe, and a descriptor, for as long as it likes.
 * What libnng does offer: pipe notifications (NNG_PIPE_EV_ADD_PRE, where
 * closing the pipe rejects it before it joins the socket, and
 * NNG_PIPE_EV_REM_POST once it is gone), the pipe of every message, a
 * pipe's local and remote addresses and its listener, and
 * nng_pipe_close(). Its own SP handshake has a fixed 10 s timeout, so a
 * connection that never finishes the handshake never reaches us and is
 * dropped by libnng.
 *
 * Built on that:
 *
 *   - The cap: a connection that would be one over --max-connections is
 *     closed in ADD_PRE, at once, and counted. (Half-handshaken
 *     connections are libnng's and not counted: its 10 s bounds them.)
 *   - Per connection the server counts the complete requests received,
 *     their bytes on the wire (the 8-byte length, the 4-byte SP request id
 *     and the body each), and the calls it has not yet answered. (REP
 *     keeps the SP header to itself; 4 bytes is what a direct REQ peer,
 *     every nngrpc client, sends. A peer behind an SP device sends 4 more
 *     per hop, so its connections look like frames never finished: run
 *     with --frame-timeout 0 behind devices.)
 *   - The partial-frame timeout, exact on tcp://: the kernel counts every
 *     byte the peer sent (TCP_INFO's tcpi_bytes_received). Bytes beyond
 *     the 8-byte SP handshake and the complete requests are a frame begun
 *     and not finished. The pipe's socket is found among the process's
 *     descriptors by its two addresses (getsockname, getpeername) and is
 *     only looked at, never read or closed (libnng owns it). A frame still
 *     unfinished --frame-timeout after the sweeper first saw it, with no
 *     complete request in between, closes the connection.
 *   - On tls+tcp:// (TLS records add bytes we cannot count) and ipc://
 *     (Unix sockets count nothing) no byte count exists; a stalled half
 *     frame there looks like an idle connection and is closed by the idle
 *     timeout instead: the closest real bound libnng allows.
 *   - The idle timeout: a connection with no call in flight that has sent
 *     no request for --idle-timeout is closed. Clients close their own
 *     idle pooled connections sooner (the Python client after 30 s,
 *     hoteld's default is 120 s), so a server-side idle close does not
 *     race a call.
 *   - While the server drains, a connection that was answered "not run"
 *     (nngrpc-not-run) is closed once none of its calls is in flight, so
 *     that clients which only dial again when a connection closes go to
 *     another server (nngrpc_conns_goaway()).
 *
 * Cancellation (docs/compatibility.md): a connection that closes marks
 * the calls in flight on it cancelled, and a request to
 * /nngrpc.v1.Control/Cancel marks those of its own connection whose
 * request id it names (nngrpc_conns_cancel()); dispatch lends the mark to
 * the call (nngrpc_call_cancelled()). Only the connection a call came on
 * can cancel it, so a client cannot cancel another's calls.
 *
 * A sweeper thread looks at every connection four times per the shorter
 * timeout (between 10 times a second and once a second); what it closes
 * it logs as one line per sweep and reason.
 *
 * Threads: the pipe callbacks run on NNG's threads; call_start and
 * call_end on NNG's and the workers'; the sweeper is ours (signals
 * blocked); the metrics are read on NNG's HTTP thread. One mutex guards
 * the table and every record; no NNG call is made under it.
 */
#ifndef NNGRPC_RPC_CONNS_H
#define NNGRPC_RPC_CONNS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "metrics.h"

typedef struct nngrpc_conns nngrpc_conns;

/* The limits; 0 turns a timeout off. */
typedef struct nngrpc_conns_limits {
	int64_t max_connections;  /* > 0 */
	int64_t frame_timeout_ms; /* a frame begun must end within this */
	int64_t idle_timeout_ms;  /* no call in flight, no request: closed */
} nngrpc_conns_limits;

/* The longest request id a call can be cancelled by: the contract's
 * (docs/compatibility.md); a call with a longer one is cancelled only by
 * its connection closing. */
#define NNGRPC_CONN_RID_MAX 128

/* One call received on a connection and not yet answered; the server
 * embeds one per receive context. */
typedef struct nngrpc_conn_call {
	struct nngrpc_conn_call *cc_prev, *cc_next; /* the conns' lock */
	struct conn             *cc_conn; /* NULL: on no connection's list */
	/* Its connection closed, or a cancel named its request id. */
	atomic_bool cc_cancelled;
	/* Its reply went to NNG (nngrpc_conns_call_answered()): no longer
	 * queued or running, so neither a close nor a cancel marks it. */
	atomic_bool cc_answered;
	/* Its nngrpc-request-id: cc_rid_len bytes (SIZE_MAX: too long to be
	 * cancelled by), set before nngrpc_conns_call_start(). */
	char   cc_rid[NNGRPC_CONN_RID_MAX];
	size_t cc_rid_len;
} nngrpc_conn_call;

/* Returns new: *cp, freed with nngrpc_conns_free(), with no limit set
 * (nngrpc_conns_set_limits()). Borrows metrics (NULL: none) until freed,
 * and adds its gauges and counters there (with the server's own, before
 * the service's). Returns 0, NNG_ENOMEM, or what adding a metric
 * returned. */
int nngrpc_conns_alloc(nngrpc_metrics *metrics, nngrpc_conns **cp);

/* Sets the limits; before nngrpc_conns_attach(). */
void nngrpc_conns_set_limits(nngrpc_conns *c, const nngrpc_conns_limits *lim);

/* Stops the sweeper and frees everything. NULL is a no-op. After the
 * socket is closed (no callback may still come). */
void nngrpc_conns_free(nngrpc_conns *c);

/* Watches sock's pipes (nng_pipe_notify): before its listeners start. */
int nngrpc_conns_attach(nngrpc_conns *c, nng_socket sock);

/* Says that pipes of listener l are TLS (no byte count; see above). */
void nngrpc_conns_set_tls(nngrpc_conns *c, nng_listener l);

/* Starts the sweeper thread (when a timeout is on). 0 or NNG_ENOMEM. */
int nngrpc_conns_start(nngrpc_conns *c);

/* Stops the sweeper (waits for it); idempotent. Connections stay open. */
void nngrpc_conns_stop(nngrpc_conns *c);

/* A complete request of wire_bytes arrived on pipe: counted, and cc put
 * on the connection's list of calls in flight (cc_cancelled set instead
 * when the connection is already gone). Any thread. */
void nngrpc_conns_call_start(
    nngrpc_conns *c, nngrpc_conn_call *cc, nng_pipe pipe, size_t wire_bytes);

/* Sets cc's request id (len bytes at rid; NULL: none), before
 * nngrpc_conns_call_start(). */
void nngrpc_conns_call_id(nngrpc_conn_call *cc, const char *rid, size_t len);

/* A cancel request (/nngrpc.v1.Control/Cancel) came on pipe for request
 * id rid (len bytes): marks cancelled every call in flight on pipe with
 * that id but self (the cancel request's own), and counts it. Returns how
 * many it marked. Any thread. */
size_t nngrpc_conns_cancel(nngrpc_conns *c, nng_pipe pipe, const char *rid,
    size_t len, const nngrpc_conn_call *self);

/* The call cc's reply is handed to NNG now: a connection that closes or a
 * cancel from now on does not mark (or count) it cancelled, though cc stays
 * on the list (a call in flight for the idle timeout) until
 * nngrpc_conns_call_end(). Without it, a client that closes its
 * connection as soon as it has the reply, before NNG's send callback ran
 * here, had a call it was answered counted as cancelled. Any thread. */
void nngrpc_conns_call_answered(nngrpc_conn_call *cc);

/* A reply saying that cc never ran (trailer nngrpc-not-run) goes out
 * while the server drains: cc's connection is to close as soon as it has
 * no call in flight. A client that keeps its connections and resolves a
 * name only when it dials (release 0.1.0's) leaves a draining server only
 * when its connections close; a client that knows the trailer stops using
 * the connection at that reply, so the close races no call of its.
 * Returns true when cc is the connection's only call in flight: the caller
 * closes it right after handing the reply to libnng (it is counted as
 * closed). Otherwise the last of its calls to end closes it
 * (nngrpc_conns_call_end()). Any thread; a cc on no list is fine. */
bool nngrpc_conns_goaway(nngrpc_conns *c, nngrpc_conn_call *cc);

/* The call cc was answered (or dropped): off its connection's list. Any
 * thread; a cc on no list is fine. Returns true when that connection is
 * marked by nngrpc_conns_goaway() and now has no call in flight: the
 * caller closes it once the reply is out (it is counted as closed). */
bool nngrpc_conns_call_end(nngrpc_conns *c, nngrpc_conn_call *cc);

/* The server closed pipe because its client stopped reading replies:
 * counted. */
void nngrpc_conns_send_timeout(nngrpc_conns *c);

/* Open connections (accepted, not yet gone). Any thread. */
size_t nngrpc_conns_count(nngrpc_conns *c);

/* True when no connection is open, or none has sent a request for
 * quiet_ns. Any thread. */
bool nngrpc_conns_quiet(nngrpc_conns *c, int64_t quiet_ns);

#endif /* NNGRPC_RPC_CONNS_H */
