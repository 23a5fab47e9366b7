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

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "nngrpc.h"

typedef struct nngrpc_dispatch nngrpc_dispatch;

/* Returns new: *dp, freed with nngrpc_dispatch_free(). 0 or NNG_ENOMEM. */
int nngrpc_dispatch_alloc(nngrpc_dispatch **dp);

/* Frees the registry. NULL is a no-op. */
void nngrpc_dispatch_free(nngrpc_dispatch *d);

/* See nngrpc_server_add_service(). NNG_EBUSY once sealed. */
int nngrpc_dispatch_add_service(nngrpc_dispatch *d,
    const ProtobufCServiceDescriptor *desc, const nngrpc_method_fn *fns,
    const void *impl, size_t impl_size, void *user);

/* Makes the registry read-only and ready for lookups. */
void nngrpc_dispatch_seal(nngrpc_dispatch *d);

/* Number of registered methods. */
size_t nngrpc_dispatch_count(const nngrpc_dispatch *d);

/*
 * Runs one call. Borrows body (a request envelope of len bytes).
 * recv_ns is when the server received it, start_ns when a worker took it
 * (CLOCK_MONOTONIC); a call already past its deadline is answered
 * DEADLINE_EXCEEDED without running. Every failure becomes a status in the
 * reply. Returns new: *replyp, which the caller sends or frees. Returns 0,
 * or NNG_ENOMEM when not even the reply could be built.
 */
int nngrpc_dispatch_call(const nngrpc_dispatch *d, const uint8_t *body,
    size_t len, int64_t recv_ns, int64_t start_ns, nng_msg **replyp);

#endif /* NNGRPC_DISPATCH_H */
