/*
 * What the rest of the library sees of a server beyond the public API
 * (include/nngrpc/nngrpc.h): its dispatch registry, and the switch to
 * process isolation that nngrpc_serve() throws (src/rpc/isolate.c).
 */
#ifndef NNGRPC_RPC_SERVER_H
#define NNGRPC_RPC_SERVER_H

#include <nngrpc/nngrpc.h>

#include "dispatch.h"

/* The server's method registry; borrowed from the server. */
nngrpc_dispatch *nngrpc_server_dispatch(nngrpc_server *server);

/* Runs every call the runner takes (see nngrpc_dispatch_runner) through
 * fn(arg): nngrpc_server_isolated() is true from now on. Right after
 * nngrpc_server_open(), before services are registered, so that their
 * setup can ask. arg is borrowed until the server is closed. */
void nngrpc_server_isolate(
    nngrpc_server *server, nngrpc_dispatch_runner fn, void *arg);

#endif /* NNGRPC_RPC_SERVER_H */
