/*
 * The diagnostics service nngrpc.testing.v1.Testing (Echo, Sleep, Fail,
 * Crash),
 * served by `hoteld --testing` for tests and benchmarks.
 */
#ifndef NNGRPC_SERVICE_TESTING_SERVICE_H
#define NNGRPC_SERVICE_TESTING_SERVICE_H

#include <stdbool.h>

#include <nngrpc/nngrpc.h>

/* Request metadata key: an Echo request that has it (any value) gets a
 * trailer of the same key whose value is the server's host name (a
 * container's: its id, or what its orchestrator set). */
#define TESTING_HOSTNAME_KEY "testing-hostname"

/* Registers the Testing service on server, reading the host name once.
 * Call it before the server runs. Returns 0 or an nng error. */
int testing_service_register(nngrpc_server *server);

/* Lets Crash inject its faults (hoteld --testing does); until then Crash
 * answers FAILED_PRECONDITION, so that a fuzzer driving the service finds
 * real crashes only. Before the server runs. */
void testing_service_allow_crash(bool allow);

#endif /* NNGRPC_SERVICE_TESTING_SERVICE_H */
