/*
 * The call context a handler sees (nngrpc_call), internal side: dispatch
 * fills it, handlers use the accessors in nngrpc.h, dispatch encodes the
 * reply from it and ends it.
 */
#ifndef NNGRPC_CALL_H
#define NNGRPC_CALL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include <nngrpc/nngrpc.h>

#include "arena.h"
#include "nngrpc/v1/rpc.pb-c.h"

typedef struct call_defer call_defer;

struct nngrpc_call {
	nngrpc_arena c_arena;
	const char  *c_method;
	const char  *c_request_id; /* never NULL once decoded */
	/* Reserved request metadata (docs/compatibility.md), or NULL:
	 * nngrpc-accept-encoding (the client asks for the capability
	 * trailers, and what it decodes) and nngrpc-encoding (the payload's
	 * compression). */
	const char *c_accept;
	const char *c_encoding;
	bool        c_offer_caps; /* send the capability trailers anyway */
	const char *c_peer;       /* formatted lazily */
	nng_pipe    c_pipe;
	int         c_metric; /* method's metrics index, or -1 */
	bool        c_open;   /* the method's service is open */
	int64_t     c_deadline;
	/* Cancellation (nngrpc_call_cancelled()): a flag that another
	 * thread sets, NULL when nothing can cancel the call (the front
	 * end: the call's record on its connection, conns.h); and, in a
	 * worker process, its socket to the front end (-1: none), where a
	 * cancel frame (ISO_CANCEL, isoproto.h) is the only thing that can
	 * arrive while the call runs, and stays until the call has ended. */
	const atomic_bool *c_cancel;
	int                c_cancel_fd;
	int64_t            c_queue_us;
	int64_t            c_run_us;   /* -1 until the reply is built */
	const char        *c_trace_id; /* parsed lazily; NULL: none */
	bool               c_trace_parsed;
	bool               c_oom; /* an allocation from call memory failed */
	const void        *c_impl;
	void              *c_user;
	const Nngrpc__V1__Request *c_req; /* in c_arena */
	/* The status message: c_message_len bytes (NUL-terminated after
	 * them, and may hold NUL bytes) in c_arena, or NULL. */
	const char                           *c_message;
	size_t                                c_message_len;
	Nngrpc__V1__Response__TrailersEntry **c_trailers; /* in c_arena */
	size_t                                c_n_trailers;
	size_t                                c_cap_trailers;
	call_defer                           *c_defers; /* newest first */
	/* The output packed elsewhere (a worker process), in c_arena. */
	ProtobufCBinaryData c_payload;
};

/* Starts a call: an empty arena, no deadline, nothing to cancel it. */
void nngrpc_call_init(nngrpc_call *call);

/* Runs the deferred functions and frees everything the call owns. */
void nngrpc_call_fini(nngrpc_call *call);

#endif /* NNGRPC_CALL_H */
