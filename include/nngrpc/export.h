/*
 * NNGRPC_API marks the functions libnngrpc exports. The library is built
 * with -fvisibility=hidden, so nothing else leaves it: the internal
 * modules (dispatch, envelope, arena, ...) link into the library and into
 * this project's own binaries, never into an application's namespace.
 * tests/lib checks the exported names against src/rpc/libnngrpc.symbols.
 */
#ifndef NNGRPC_EXPORT_H
#define NNGRPC_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define NNGRPC_API __attribute__((visibility("default")))
#else
#define NNGRPC_API
#endif

#endif /* NNGRPC_EXPORT_H */
