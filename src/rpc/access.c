/*
 * The access log interceptor (access.h). The draw of a sampled log comes
 * first, so a call that is not logged costs one atomic load and one
 * thread-local random number, and formats nothing (not even its peer).
 */
#include "access.h"

#include "log.h"

static void
access_after(nngrpc_call *call, nngrpc_status status, void *arg)
{
	(void) arg;
	if (!nngrpc_log_access_wanted()) {
		return;
	}
	nngrpc_log_access_line(nngrpc_call_method(call), (int) status,
	    nngrpc_call_queue_us(call), nngrpc_call_run_us(call),
	    nngrpc_call_request_id(call), nngrpc_call_peer(call),
	    nngrpc_call_trace_id(call));
}

const nngrpc_interceptor nngrpc_access_interceptor = {
	.name = "access log",
	.after = access_after,
};
