/*
 * The diagnostics service nngrpc.testing.v1.Testing (Echo, Sleep, Fail),
 * served by `hoteld --testing` for tests and benchmarks.
 */
#ifndef NNGRPC_SERVICE_TESTING_SERVICE_H
#define NNGRPC_SERVICE_TESTING_SERVICE_H

#include <nngrpc/nngrpc.h>

/* Registers the Testing service on server. Returns 0 or an nng error. */
int testing_service_register(nngrpc_server *server);

#endif /* NNGRPC_SERVICE_TESTING_SERVICE_H */
