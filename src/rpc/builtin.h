/*
 * Built-in services every server can answer: nngrpc.health.v1.Health
 * (open even when an auth token is required) and
 * nngrpc.reflection.v1.Reflection. Both only read the dispatch registry.
 */
#ifndef NNGRPC_BUILTIN_H
#define NNGRPC_BUILTIN_H

#include <nngrpc/nngrpc.h>

#include "dispatch.h"

/* Registers Health and Reflection on server, whose registry is d (the
 * handlers read it through their user pointer). Returns 0 or an nng
 * error code. */
int nngrpc_builtin_register(nngrpc_server *server, nngrpc_dispatch *d);

#endif /* NNGRPC_BUILTIN_H */
