/*
 * libnngrpc: serve protobuf-c services over NNG REQ/REP.
 *
 * A server owns one REP socket listening on one or more URLs, a bounded
 * queue and a pool of worker threads. Services are registered before
 * nngrpc_server_start(), usually through the typed glue that the protoc
 * plugin protoc-gen-nngrpc-c generates for a .proto file (pkg/echo.proto
 * gives pkg/echo.nngrpc.h, beside protoc-c's pkg/echo.pb-c.h):
 *
 *   static nngrpc_status
 *   echo(nngrpc_call *call, const Pkg__EchoRequest *req,
 *       Pkg__EchoResponse *resp)
 *   {
 *           resp->payload = req->payload;   // borrowed, see below
 *           return (NNGRPC_OK);
 *   }
 *   static const Pkg__Echoer_Impl impl = { .echo = echo };
 *   pkg__echoer__register(server, &impl, NULL);
 *
 * (or, for a whole program, nngrpc_serve() in serve.h, which the generated
 * pkg__echoer__serve() calls). docs/adopting.md walks through a service.
 *
 * Handlers run on worker threads, any number at once: they must be
 * thread-safe, and they may block (that is what the workers are for).
 *
 * Ownership in a handler: the input message and everything in it belong to
 * the runtime and live until the call ends. The output message struct is
 * the runtime's too, initialised before the handler runs; the handler fills
 * its fields with pointers that must stay valid until the call ends: into
 * the input, into call memory (freed with the call: nngrpc_call_alloc(),
 * and the generated <type>__new() and <type>__new_<field>() helpers), or
 * into data the handler keeps alive and releases in an
 * nngrpc_call_defer() function. The runtime never frees an output field.
 *
 * Functions that can fail return 0 or one of nng's error codes (NNG_ENOMEM,
 * NNG_EBUSY, ...; nng_strerror() names them), so this header includes
 * <nng/nng.h>; link with -lnng too (pkg-config nngrpc says so).
 */
#ifndef NNGRPC_NNGRPC_H
#define NNGRPC_NNGRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>

#include <nngrpc/clock.h>
#include <nngrpc/export.h>
#include <nngrpc/metrics.h>
#include <nngrpc/status.h>

typedef struct nngrpc_server nngrpc_server;
typedef struct nngrpc_call   nngrpc_call;

/* ---- server --------------------------------------------------------- */

/* Defaults of nngrpc_server_config. */
#define NNGRPC_DEFAULT_WORKERS           32
#define NNGRPC_DEFAULT_QUEUE             256
#define NNGRPC_DEFAULT_MAX_MESSAGE_BYTES (4 * 1024 * 1024)
#define NNGRPC_MAX_LISTEN                16

typedef struct nngrpc_server_config {
	/* URLs to listen on (tcp://, ipc://, tls+tcp://); borrowed until
	 * start returns. */
	const char *listen[NNGRPC_MAX_LISTEN];
	size_t      n_listen;
	/* Worker threads that run handlers. */
	int workers;
	/* Calls that may wait for a worker; one more gets
	 * RESOURCE_EXHAUSTED at once. */
	int queue;
	/* Largest request accepted (NNG_OPT_RECVMAXSZ): NNG drops a larger
	 * one without an answer, so clients check the size themselves. */
	size_t max_message_bytes;
	/* When not NULL, every call but health checks must carry metadata
	 * "authorization: Bearer <token>", else UNAUTHENTICATED. Copied. */
	const char *auth_token;
	/* Register nngrpc.health.v1.Health and nngrpc.reflection.v1
	 * (default true). */
	bool builtin_services;
	/* PEM files for tls+tcp:// listeners: the server's certificate
	 * chain and private key (both required for TLS), and optionally a
	 * CA bundle: when set, clients must present a certificate it signed.
	 * Copied (nngrpc_server_reload_tls() reads them again). */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
	/* "HOST:PORT" of the ops HTTP endpoint (/healthz, /readyz,
	 * /metrics), or NULL for none. Copied. */
	const char *http;
} nngrpc_server_config;

/* Fills *cfg with the defaults and no listen URL. */
NNGRPC_API void nngrpc_server_config_init(nngrpc_server_config *cfg);

/* Opens a server that is not yet listening. Returns new: *serverp, freed
 * with nngrpc_server_close(). Returns 0 or an nng error code. */
NNGRPC_API int nngrpc_server_open(
    const nngrpc_server_config *cfg, nngrpc_server **serverp);

/* Starts listening on every URL and starts the workers. On failure returns
 * an nng error code and writes one line saying what failed into err (for
 * example "tcp://127.0.0.1:5555: Address in use"); nothing is left
 * listening. */
NNGRPC_API int nngrpc_server_start(
    nngrpc_server *server, char *err, size_t errlen);

/* Stops listening, answers every queued call with UNAVAILABLE, waits for
 * running handlers to finish and their replies to be sent, and stops the
 * workers. Idempotent. */
NNGRPC_API void nngrpc_server_stop(nngrpc_server *server);

/* Stops the server if needed and frees it. NULL is a no-op. */
NNGRPC_API void nngrpc_server_close(nngrpc_server *server);

/* ---- server options ----------------------------------------------------
 *
 * Settings that nngrpc_server_config does not hold. They are set by name,
 * as NNG's socket options are, so that a new one never changes the size
 * of that caller-allocated struct (which would break the ABI;
 * docs/compatibility.md). Every value is an int64_t; durations are in
 * milliseconds. Set them between nngrpc_server_open() and
 * nngrpc_server_start().
 */

/*
 * Admission (CoDel, as fbthrift's servers do): when calls have waited in
 * the queue at least NNGRPC_OPT_QUEUE_TARGET_MS for a whole
 * NNGRPC_OPT_QUEUE_INTERVAL_MS, each call that has waited the target when
 * the server looks at it (a call arriving, a worker taking one) is
 * answered RESOURCE_EXHAUSTED at once, with "nngrpc-not-run: 1", and not
 * run. It looks only while every worker is busy, and keeps shedding until
 * no call has reached the target for an interval; then it admits again.
 * Served calls thus wait about the target at most, however many callers
 * there are, and a burst shorter than the interval is queued as before. A
 * target of 0 turns it off: only a full queue refuses calls. /metrics:
 * nngrpc_queue_shed_total, nngrpc_queue_shedding.
 */
#define NNGRPC_OPT_QUEUE_TARGET_MS       "queue-target-ms"   /* 0..60000 */
#define NNGRPC_OPT_QUEUE_INTERVAL_MS     "queue-interval-ms" /* 1..600000 */
#define NNGRPC_DEFAULT_QUEUE_TARGET_MS   5
#define NNGRPC_DEFAULT_QUEUE_INTERVAL_MS 100

/*
 * Deadlines the server imposes (0, the default: none): a call that carries
 * no deadline gets NNGRPC_OPT_DEFAULT_DEADLINE_MS from its receipt, and no
 * call's deadline is later than NNGRPC_OPT_MAX_DEADLINE_MS after its
 * receipt. Such calls end DEADLINE_EXCEEDED as any other; handlers see the
 * deadline in nngrpc_call_deadline().
 */
#define NNGRPC_OPT_DEFAULT_DEADLINE_MS                                        \
	"default-deadline-ms"                        /* 0..86400000           \
	                                              */
#define NNGRPC_OPT_MAX_DEADLINE_MS "max-deadline-ms" /* 0..86400000 */

/*
 * Connections. libnng has no receive timeout on a connection; the server
 * adds these (src/rpc/conns.h says how, and where libnng sets the limit):
 * - NNGRPC_OPT_MAX_CONNECTIONS: a connection over it is closed at once
 *   (after its SP handshake) and counted; 0: the descriptor limit
 *   (RLIMIT_NOFILE) less an eighth of it, at least 64.
 * - NNGRPC_OPT_FRAME_TIMEOUT_MS: a frame (request) begun and not finished
 *   within this closes its connection; exact on tcp://, where the kernel
 *   counts the bytes; on tls+tcp:// and ipc:// the idle timeout bounds a
 *   stalled frame instead. 0: off.
 * - NNGRPC_OPT_IDLE_TIMEOUT_MS: a connection with no call in flight that
 *   has sent no request for this long is closed. Keep it above your
 *   clients' own idle close (the Python client: 30 s), so that it never
 *   races a call. 0: off.
 * /metrics: nngrpc_connections, nngrpc_connections_max and the
 * nngrpc_connections_*_total counters.
 */
#define NNGRPC_OPT_MAX_CONNECTIONS      "max-connections"  /* 0..10000000 */
#define NNGRPC_OPT_FRAME_TIMEOUT_MS     "frame-timeout-ms" /* 0..86400000 */
#define NNGRPC_OPT_IDLE_TIMEOUT_MS      "idle-timeout-ms"  /* 0..86400000 */
#define NNGRPC_DEFAULT_FRAME_TIMEOUT_MS 10000
#define NNGRPC_DEFAULT_IDLE_TIMEOUT_MS  120000

/* Sets option (one of the NNGRPC_OPT_* names above) to value. Before
 * start. Returns 0, NNG_ENOTSUP (no such option), NNG_EINVAL (value out of
 * the option's range) or NNG_EBUSY (started). */
NNGRPC_API int nngrpc_server_set_int(
    nngrpc_server *server, const char *option, int64_t value);

/* Reads an option's value into *valuep. Any time. Returns 0 or
 * NNG_ENOTSUP. */
NNGRPC_API int nngrpc_server_get_int(
    const nngrpc_server *server, const char *option, int64_t *valuep);

/* ---- services --------------------------------------------------------- */

/* A .proto file as reflection serves it; the C glue generator emits one
 * per file (<file>__file_info), static, so the server only borrows it. */
typedef struct nngrpc_file_info {
	const char *name; /* "hotel/v1/hotel.proto" */
	/* Serialized google.protobuf.FileDescriptorSet: the file and its
	 * imports, imports first. */
	const uint8_t *descriptor_set;
	size_t         descriptor_set_len;
	/* Full names the file defines (messages, enums, services, and
	 * methods as "pkg.Service.Method"), NULL-terminated. */
	const char *const *symbols;
} nngrpc_file_info;

/* A method handler in its generic form. The typed glue calls these;
 * write typed handlers instead (see the top of this file). */
typedef nngrpc_status (*nngrpc_method_fn)(nngrpc_call *call,
    const ProtobufCMessage *input, ProtobufCMessage *output);

/*
 * Registers every method of a protobuf-c service. file (borrowed, may be
 * NULL) is what reflection answers for the service's symbols. fns has
 * desc->n_methods entries in desc's order; a NULL entry is answered
 * UNIMPLEMENTED. impl (impl_size bytes, may be NULL/0) is copied and handed
 * back to the handlers by nngrpc_call_impl(); user is borrowed and handed
 * back by nngrpc_call_user(). A new service is SERVING. Only before
 * nngrpc_server_start(). Returns 0, NNG_EBUSY when started, NNG_EEXIST
 * when a method name is already registered, NNG_ENOMEM.
 */
NNGRPC_API int nngrpc_server_add_service(nngrpc_server *server,
    const ProtobufCServiceDescriptor *desc, const nngrpc_file_info *file,
    const nngrpc_method_fn *fns, const void *impl, size_t impl_size,
    void *user);

/*
 * Marks a method ("/pkg.Service/Method") whose handler never blocks and
 * takes microseconds: the server then runs it on the thread that received
 * it (one of NNG's), skipping the hand-off to a worker. Wrong for anything
 * that can block or run long: NNG's threads are few and shared. Health
 * checks and reflection are inline. Before start. Returns 0, NNG_ENOENT
 * (not registered) or NNG_EBUSY.
 */
NNGRPC_API int nngrpc_server_set_inline(
    nngrpc_server *server, const char *method, bool on);

/*
 * Process isolation (nngrpc_serve()'s --isolation process): handlers run
 * in worker processes forked from a "zygote" that ran the service's load
 * step, while this process (the front end) keeps the sockets, the queue,
 * the interceptors, health, reflection and the inline methods. True when
 * this server runs that way; known from the setup step on. An inline
 * method runs in the front end, which holds what setup made but never
 * what load made: a method that reads loaded state must not be inline
 * when this is true.
 */
NNGRPC_API bool nngrpc_server_isolated(const nngrpc_server *server);

/*
 * Marks a method that rebuilds what the load step built (a dataset
 * reload). Under process isolation it runs in the zygote, which keeps the
 * new state; workers forked from then on serve it, and the older ones
 * finish their calls and exit, so no call fails. In thread mode it
 * changes nothing. Before start. Returns 0, NNG_ENOENT (not registered)
 * or NNG_EBUSY.
 */
NNGRPC_API int nngrpc_server_set_reload(
    nngrpc_server *server, const char *method);

/*
 * Sets the health of one service (full name, "hotel.v1.HotelSearch") or,
 * with NULL or "", of the whole server. Calls to a NOT_SERVING service, or
 * to any service while the server is NOT_SERVING, are answered
 * UNAVAILABLE; nngrpc.health.v1.Health/Check reports the state. Any thread,
 * any time. Returns 0 or NNG_ENOENT for an unknown service.
 */
NNGRPC_API int nngrpc_server_set_serving(
    nngrpc_server *server, const char *service, bool serving);

/* ---- rotating credentials --------------------------------------------- */

/*
 * Replaces the bearer tokens the server accepts: from now on exactly
 * these n (1 or 2; copied). Two let a token be rotated without refusing
 * anyone: accept the old and the new, move the clients to the new one,
 * then accept the new one alone. Any thread, any time. Only for a server
 * opened with an auth_token (the check is an interceptor added at open).
 * Returns 0, NNG_ENOTSUP (opened without a token), NNG_EINVAL (n is 0 or
 * more than 2, or a token is empty) or NNG_ENOMEM; on failure the tokens
 * accepted before stay.
 */
NNGRPC_API int nngrpc_server_set_auth_tokens(
    nngrpc_server *server, const char *const *tokens, size_t n);

/*
 * Reads the TLS files of the configuration (tls_cert, tls_key, tls_ca)
 * again and uses them for the connections every tls+tcp:// listener
 * accepts from now on; connections already open keep theirs. After start,
 * any thread. On failure (a file unreadable, a key that does not match
 * its certificate) writes one line into err, and the listeners keep what
 * they had. Returns 0, NNG_ENOTSUP (no tls+tcp:// listener), NNG_ESTATE
 * (not started) or an nng error code.
 */
NNGRPC_API int nngrpc_server_reload_tls(
    nngrpc_server *server, char *err, size_t errlen);

/* ---- interceptors ------------------------------------------------------ */

/*
 * Hooks around every call the server dispatches, for concerns that are
 * not one method's: authentication, quotas, logs, tracing. An interceptor
 * sees the call through the accessors below (method, metadata, peer,
 * deadline, request and trace ids, and in `after` the status, message and
 * timings).
 *
 * before (or NULL) runs on the call's thread once the method is known and
 * the deadline has not passed, before the serving check, the input's
 * decoding and the handler; interceptors' `before` run in the order they
 * were added. It returns NNGRPC_OK to let the call go on, or refuses it
 * with another status (its message set with nngrpc_call_error()): the
 * call is answered with that status, and neither later `before` hooks nor
 * the handler run.
 *
 * after (or NULL) runs for every call the server dispatched, whatever
 * happened to it (refused, unknown method, undecodable envelope, deadline
 * passed in the queue, handler failed), once its reply is built and
 * before it is sent, in the reverse order of adding; status is the code
 * the reply carries. Calls the server refuses at the door without
 * dispatching them (queue full, draining) reach no interceptor; /metrics
 * counts them.
 *
 * Both run on worker threads (or NNG's, for inline methods), any number
 * at once: they must be thread-safe and should be quick. arg is theirs.
 */
typedef struct nngrpc_interceptor {
	const char *name; /* for error messages: "auth", "quota" */
	nngrpc_status (*before)(nngrpc_call *call, void *arg);
	void (*after)(nngrpc_call *call, nngrpc_status status, void *arg);
	void *arg;
} nngrpc_interceptor;

/*
 * Adds an interceptor (copied; what arg points to is borrowed until the
 * server is closed) after those already added. The server adds its own
 * first: the access log (an `after` hook, so it sees the final status)
 * and, with an auth token, the token check (a `before` hook, so a later
 * interceptor such as a quota only sees authenticated calls). Before
 * start. Returns 0, NNG_EINVAL (no hook), NNG_EBUSY or NNG_ENOMEM.
 */
NNGRPC_API int nngrpc_server_add_interceptor(
    nngrpc_server *server, const nngrpc_interceptor *interceptor);

/* The server's metrics registry, for services to add their own gauges
 * and counters (nngrpc_metrics_add_gauge() in nngrpc/metrics.h) before
 * start. Borrowed from the server. */
NNGRPC_API nngrpc_metrics *nngrpc_server_metrics(nngrpc_server *server);

/* True while the whole server is SERVING. Any thread. */
NNGRPC_API bool nngrpc_server_serving(const nngrpc_server *server);

/*
 * Graceful drain, in two steps within timeout_ms:
 *   1. the server turns NOT_SERVING; new calls are answered UNAVAILABLE
 *      with "nngrpc-not-run: 1" at once (clients send them elsewhere,
 *      idempotent or not); calls already received (queued or running)
 *      finish and are answered;
 *   2. the connections stay open, answering so, until the clients have
 *      let go of them: every one closed, or none has sent a request for
 *      0.5 s. Closing a connection a client still sends on would lose the
 *      call on its way, and a call that is not idempotent cannot be sent
 *      again. With libnng 1.6.0 or later a connection answered not run is
 *      also closed right after that reply, once none of its calls is in
 *      flight, so a client that dials again only when a connection closes
 *      (release 0.1.0's) goes elsewhere; with an older libnng no
 *      connection is closed before nngrpc_server_stop() (closing one a
 *      request arrives on can hang that libnng: nanomsg/nng#1636).
 * Returns 0 when both are done; NNG_ETIMEDOUT when timeout_ms passes with
 * calls still queued, running or being sent, and they are not all
 * answered in the 50 ms after it either (calls that arrive meanwhile are
 * answered within microseconds: no instant with all answered means a
 * handler still runs; the caller decides whether
 * to wait in nngrpc_server_stop() or exit); NNG_EBUSY when every call was
 * answered but clients still send here (nngrpc_server_stop() then closes
 * their connections; the calls they send meanwhile are answered not run
 * until then). Calling it again goes on with the same drain, so a caller
 * may wait in slices (as nngrpc_serve() does, to see a second signal).
 */
NNGRPC_API int nngrpc_server_drain(nngrpc_server *server, int64_t timeout_ms);

/* ---- inside a handler ------------------------------------------------- */

/* Full method name, "/package.Service/Method", or "" when the envelope
 * could not be decoded. Borrowed from the call. */
NNGRPC_API const char *nngrpc_call_method(const nngrpc_call *call);

/* The copy of impl made at registration, for the typed glue. */
NNGRPC_API const void *nngrpc_call_impl(const nngrpc_call *call);

/* The user pointer given at registration. */
NNGRPC_API void *nngrpc_call_user(const nngrpc_call *call);

/* Absolute deadline on CLOCK_MONOTONIC in ns (nngrpc_now_ns() in
 * nngrpc/clock.h), or NNGRPC_NO_DEADLINE. */
NNGRPC_API int64_t nngrpc_call_deadline(const nngrpc_call *call);

/* True when the deadline has passed: long handlers check it and stop. */
NNGRPC_API bool nngrpc_call_expired(const nngrpc_call *call);

/*
 * True once the caller gave up on the call: its connection closed, or the
 * client cancelled it by request id (docs/compatibility.md,
 * "Cancellation"). Long handlers check it beside nngrpc_call_expired() and
 * stop, answering NNGRPC_CANCELLED; nobody reads that answer, but the
 * worker is free for the next call. Once true it stays true.
 *
 * Cheap: an atomic load (with --isolation process, in a worker process, a
 * poll() of its socket to the front end, about a microsecond): look every
 * millisecond or so of work, as at the deadline. Any thread, and several
 * at once, while the call runs (a handler's helper threads may look too).
 * A call cancelled before a worker took it never runs; a handler that
 * never looks runs to its end (or its deadline) as before.
 */
NNGRPC_API bool nngrpc_call_cancelled(const nngrpc_call *call);

/* The caller's request id (metadata "nngrpc-request-id"), or "" when
 * it gave none. Borrowed from the call. */
NNGRPC_API const char *nngrpc_call_request_id(const nngrpc_call *call);

/* The peer's address ("127.0.0.1:53122", "ipc"), formatted on first use
 * into call memory; "unknown" when NNG cannot tell. */
NNGRPC_API const char *nngrpc_call_peer(nngrpc_call *call);

/* The W3C trace id of the call: the 32 lower-case hex digits of its
 * "traceparent" metadata (www.w3.org/TR/trace-context), or NULL when it
 * has none or it is malformed. Parsed on first use into call memory. */
NNGRPC_API const char *nngrpc_call_trace_id(nngrpc_call *call);

/* True for a method of an open service: one that needs no credentials and
 * answers even while the server is not serving (the built-in health
 * service). An auth interceptor lets these through. */
NNGRPC_API bool nngrpc_call_open(const nngrpc_call *call);

/* Microseconds the call waited in the server's queue. */
NNGRPC_API int64_t nngrpc_call_queue_us(const nngrpc_call *call);

/* Microseconds the call ran (from a worker taking it to its reply being
 * built), or -1 while it runs: known in interceptors' `after`. */
NNGRPC_API int64_t nngrpc_call_run_us(const nngrpc_call *call);

/* The status message set so far, or "". Borrowed from the call; a
 * message set with nngrpc_call_error_len() may hold NUL bytes, and reads
 * here up to the first. */
NNGRPC_API const char *nngrpc_call_message(const nngrpc_call *call);

/* Request metadata value for key, or NULL. Borrowed from the call. */
NNGRPC_API const char *nngrpc_call_metadata(
    const nngrpc_call *call, const char *key);

/*
 * Binary metadata: keys ending in "-bin" carry bytes, as in gRPC. On the
 * wire their values are base64 text (standard alphabet, unpadded; padded
 * ones are read too), so nngrpc_call_metadata() gives that text and these
 * give the bytes.
 *
 * The bytes of the request metadata value for key, decoded into new call
 * memory (freed with the call) at each use, with their length in *lenp;
 * NULL when key does not end in "-bin", is absent, or its value is not
 * base64.
 */
NNGRPC_API const uint8_t *nngrpc_call_metadata_bin(
    nngrpc_call *call, const char *key, size_t *lenp);

/* Adds a trailing metadata entry to the response; both strings are
 * copied. A "-bin" key's value is sent as given (base64 text). Returns 0
 * or NNG_ENOMEM. */
NNGRPC_API int nngrpc_call_set_trailer(
    nngrpc_call *call, const char *key, const char *value);

/* Adds a binary trailer: key ends in "-bin", and the len bytes at value
 * (copied; NULL when len is 0) go out base64-encoded, which clients give
 * the application as bytes. Returns 0, NNG_EINVAL (a key without "-bin")
 * or NNG_ENOMEM. */
NNGRPC_API int nngrpc_call_set_trailer_bin(
    nngrpc_call *call, const char *key, const void *value, size_t len);

/* Returns new memory owned by the call, freed when the call ends, aligned
 * for any type; NULL when out of memory. For output fields. A call that
 * fails after an allocation failed, with no message of its own, is
 * answered with the message "out of memory". */
NNGRPC_API void *nngrpc_call_alloc(nngrpc_call *call, size_t size);

/* Returns new: a message of type desc in call memory (freed with the
 * call), initialised as desc's __init does; NULL when out of memory. The
 * glue generator wraps it per message type, typed:
 *   Pkg__Point *p = pkg__point__new(call); */
NNGRPC_API ProtobufCMessage *nngrpc_call_new_message(
    nngrpc_call *call, const ProtobufCMessageDescriptor *desc);

/*
 * Fills the repeated field number `field` of msg with n new elements in
 * call memory: messages allocated and initialised, strings "", everything
 * else 0; sets the field's array and its count (n_<field>) to n. Returns
 * the array (new, owned by the call), or NULL when out of memory or when
 * msg has no repeated field of that number; msg is then unchanged. n = 0
 * gives an empty, non-NULL array. The glue generator wraps it per
 * repeated field, typed:
 *   Pkg__Place **places = pkg__reply__new_places(call, resp, n);
 */
NNGRPC_API void *nngrpc_call_new_repeated(
    nngrpc_call *call, ProtobufCMessage *msg, unsigned field, size_t n);

/* Copies s into call-owned memory (see nngrpc_call_alloc). */
NNGRPC_API char *nngrpc_call_strdup(nngrpc_call *call, const char *s);

/* Runs fn(arg) when the call ends, after the reply is encoded, in the
 * reverse order of registration: release here what output fields borrow.
 * Returns 0, or NNG_ENOMEM, in which case fn(arg) has already run. */
NNGRPC_API int nngrpc_call_defer(
    nngrpc_call *call, void (*fn)(void *), void *arg);

/* The longest status message a reply carries, in bytes. A longer one is
 * cut to the longest prefix of at most this many bytes that ends on a
 * UTF-8 character boundary. */
#define NNGRPC_MAX_STATUS_MESSAGE 4096

/* Sets the status message (printf-style) and returns code, so a handler
 * writes: return (nngrpc_call_error(call, NNGRPC_NOT_FOUND, "id %d", id));
 * The message is UTF-8: bytes that are not become '?' (the reply's
 * message is a proto3 string, which clients refuse when it is not valid
 * UTF-8). Up to NNGRPC_MAX_STATUS_MESSAGE bytes go out byte for byte;
 * see there for longer ones. Like every C string, it ends at its first
 * NUL: to send one, use nngrpc_call_error_len(). */
NNGRPC_API nngrpc_status nngrpc_call_error(
    nngrpc_call *call, nngrpc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As nngrpc_call_error(), with the message given as len bytes (copied),
 * which may hold NUL bytes: they reach the client. */
NNGRPC_API nngrpc_status nngrpc_call_error_len(
    nngrpc_call *call, nngrpc_status code, const char *message, size_t len);

#endif /* NNGRPC_NNGRPC_H */
