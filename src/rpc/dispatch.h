/*
 * Method registry and dispatch: from a request envelope to a response
 * envelope, through protobuf-c's service descriptors.
 *
 * Registration happens on one thread before the server starts; after
 * nngrpc_dispatch_seal() the registry is read-only and any number of
 * workers call nngrpc_dispatch_call() at once.
 */
#ifndef NNGRPC_DISPATCH_H
#define NNGRPC_DISPATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include <nngrpc/nngrpc.h>

#include "metrics.h"

typedef struct nngrpc_dispatch nngrpc_dispatch;

/* Returns new: *dp, freed with nngrpc_dispatch_free(). 0 or NNG_ENOMEM. */
int nngrpc_dispatch_alloc(nngrpc_dispatch **dp);

/* Frees the registry. NULL is a no-op. */
void nngrpc_dispatch_free(nngrpc_dispatch *d);

/* See nngrpc_server_add_service(). NNG_EBUSY once sealed. */
int nngrpc_dispatch_add_service(nngrpc_dispatch *d,
    const ProtobufCServiceDescriptor *desc, const nngrpc_file_info *file,
    const nngrpc_method_fn *fns, const void *impl, size_t impl_size,
    void *user);

/* Marks a method ("/pkg.Service/Method") as one whose handler never
 * blocks and takes microseconds: the server runs it on the receiving
 * thread instead of handing it to a worker. Before sealing. Returns 0,
 * NNG_ENOENT or NNG_EBUSY. */
int nngrpc_dispatch_set_inline(
    nngrpc_dispatch *d, const char *method, bool on);

/* True when a request envelope names an inline method, found by reading
 * only its first field. Borrows body. Any thread after sealing. */
bool nngrpc_dispatch_peek_inline(
    const nngrpc_dispatch *d, const uint8_t *body, size_t len);

/* Counts every call in metrics (borrowed; NULL: none). Before sealing,
 * which registers the methods with it. */
void nngrpc_dispatch_set_metrics(nngrpc_dispatch *d, nngrpc_metrics *metrics);

/* Marks a registered service open: its calls are let through while the
 * server is not serving, and auth interceptors let them through without
 * credentials (nngrpc_call_open()); the health service is. Before
 * sealing. Returns 0 or NNG_ENOENT. */
int nngrpc_dispatch_set_open(nngrpc_dispatch *d, const char *service);

/* See nngrpc_server_add_interceptor(). Before sealing. */
int nngrpc_dispatch_add_interceptor(
    nngrpc_dispatch *d, const nngrpc_interceptor *interceptor);

/* See nngrpc_server_set_serving(). Any thread. */
int nngrpc_dispatch_set_serving(
    nngrpc_dispatch *d, const char *service, bool serving);

/* Health of a service ("" or NULL: the whole server). Returns 0 and sets
 * *servingp, or NNG_ENOENT. A service is serving only while the whole
 * server is too. Any thread. */
int nngrpc_dispatch_serving(
    const nngrpc_dispatch *d, const char *service, bool *servingp);

/* Number of services, and the i-th one's full name (sorted by name after
 * sealing). Borrowed from the descriptor. */
size_t      nngrpc_dispatch_service_count(const nngrpc_dispatch *d);
const char *nngrpc_dispatch_service_name(const nngrpc_dispatch *d, size_t i);

/* The file that defines a full symbol name (service, "Service.Method",
 * message, enum) among registered services' files, or NULL. */
const nngrpc_file_info *nngrpc_dispatch_find_symbol(
    const nngrpc_dispatch *d, const char *symbol);

/* The server's request size limit (NNG_OPT_RECVMAXSZ; default
 * NNGRPC_DEFAULT_MAX_MESSAGE_BYTES): advertised in the capability
 * trailer nngrpc-max-message-bytes, and the most a compressed request
 * payload may decompress to. Before sealing. */
void nngrpc_dispatch_set_max_message(nngrpc_dispatch *d, size_t bytes);

/* The server's deadlines: a call that carries no timeout gets default_us
 * (0: none), and none lasts longer than max_us (0: no cap). Before the
 * server starts (a zygote forked after setup keeps them). */
void nngrpc_dispatch_set_deadlines(
    nngrpc_dispatch *d, uint64_t default_us, uint64_t max_us);

/* Makes the registry read-only and ready for lookups. */
void nngrpc_dispatch_seal(nngrpc_dispatch *d);

/* Number of registered methods. */
size_t nngrpc_dispatch_count(const nngrpc_dispatch *d);

/*
 * Runs one call. Borrows body (a request envelope of len bytes) that
 * arrived on pipe (for the peer's address; NNG_PIPE_INITIALIZER if none).
 * recv_ns is when the server received it, start_ns when a worker took it
 * (CLOCK_MONOTONIC); a call already past its deadline is answered
 * DEADLINE_EXCEEDED without running. cancelled (borrowed for the call;
 * NULL: nothing cancels it) is the flag nngrpc_call_cancelled() reads: a
 * call already cancelled is answered CANCELLED without running (with
 * nngrpc-not-run). Every failure becomes a status in the reply. Returns
 * new: *replyp, which the caller sends or frees. Returns 0, or NNG_ENOMEM
 * when not even the reply could be built.
 */
int nngrpc_dispatch_call(const nngrpc_dispatch *d, const uint8_t *body,
    size_t len, nng_pipe pipe, const atomic_bool *cancelled, int64_t recv_ns,
    int64_t start_ns, nng_msg **replyp);

/* ---- the seam of process isolation (src/rpc/isolate.c) ----------------- */

/* No method index: nngrpc_dispatch_invoke() finds the method by name. */
#define NNGRPC_DISPATCH_ANY_METHOD UINT32_MAX

/*
 * Runs an admitted call's handler somewhere else (a worker process), in
 * place of decoding the input and running the handler here. Called on the
 * call's thread for every method that is not inline and not of an open
 * service (health, reflection), once the envelope is decoded, the
 * deadline checked and the `before` hooks passed; the `after` hooks, the
 * metrics and the reply stay here. method is the method's index for
 * nngrpc_dispatch_invoke(); reload is true for a method marked with
 * nngrpc_dispatch_set_reload(). body is the request envelope (borrowed).
 * Returns the status, with the message and trailers set on call
 * (nngrpc_call_error(), nngrpc_call_set_trailer()); on NNGRPC_OK, *payload
 * is the packed output (in call memory, or empty).
 */
typedef nngrpc_status (*nngrpc_dispatch_runner)(void *arg, nngrpc_call *call,
    uint32_t method, bool reload, const uint8_t *body, size_t len,
    ProtobufCBinaryData *payload);

/* Hands every call the runner takes (see above) to fn(arg, ...). Before
 * sealing; arg is borrowed until the registry is freed. */
void nngrpc_dispatch_set_runner(
    nngrpc_dispatch *d, nngrpc_dispatch_runner fn, void *arg);

/* Marks a method that rebuilds what the service loaded (see
 * nngrpc_server_set_reload()). Before sealing. 0, NNG_ENOENT or
 * NNG_EBUSY. */
int nngrpc_dispatch_set_reload(nngrpc_dispatch *d, const char *method);

/*
 * The runner's other end, in a worker process or for --replay: runs the
 * handler of method number `method` (NNGRPC_DISPATCH_ANY_METHOD: the one
 * the envelope names) for the request envelope body (borrowed), on this
 * thread, with no libnng call. call (initialised by the caller, who ends
 * it with nngrpc_call_fini()) receives the envelope, the deadline (from
 * recv_ns), the message and the trailers; the packed output goes to out
 * when the status is NNGRPC_OK. No interceptor runs and nothing is
 * counted: the front end did and does that.
 */
nngrpc_status nngrpc_dispatch_invoke(const nngrpc_dispatch *d,
    nngrpc_call *call, uint32_t method, const uint8_t *body, size_t len,
    int64_t recv_ns, ProtobufCBuffer *out);

#endif /* NNGRPC_DISPATCH_H */
