/*
 * The access log as an interceptor: an `after` hook that writes one line
 * per dispatched call when the access log is on (nngrpc_log_set_access()):
 * method, status, queue and run times, request id, peer, and the W3C
 * trace id when the caller sent a traceparent. Every server adds it first,
 * so its `after` runs last and logs the status the reply carries.
 */
#ifndef NNGRPC_RPC_ACCESS_H
#define NNGRPC_RPC_ACCESS_H

#include <nngrpc/nngrpc.h>

extern const nngrpc_interceptor nngrpc_access_interceptor;

#endif /* NNGRPC_RPC_ACCESS_H */
