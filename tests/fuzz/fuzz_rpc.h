/*
 * What fuzz_dispatch and fuzz_payload share: one dispatch registry with
 * every service hoteld serves, a list of its methods, and the checks every
 * reply must pass.
 */
#ifndef TESTS_FUZZ_FUZZ_RPC_H
#define TESTS_FUZZ_FUZZ_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "dispatch.h"

typedef struct fuzz_method {
	char                             name[128]; /* "/pkg.Svc/Method" */
	const ProtobufCMethodDescriptor *desc;
} fuzz_method;

/* Builds the registry: the built-in Health and Reflection services, the
 * Testing service, and hotel.v1.HotelSearch on 2000 generated hotels when
 * the fuzzers are built with FUZZ_HOTEL_SERVICE. Sleep is capped at 2 ms
 * and Reload confined to small datasets (see fuzz_rpc.c). auth_token (may
 * be NULL) is required as hoteld --auth-token would. Once, from
 * LLVMFuzzerInitialize; aborts if it cannot. */
void fuzz_rpc_init(const char *auth_token);

/* The registry; fuzz_rpc_init(NULL) first if nothing built it. */
const nngrpc_dispatch *fuzz_rpc_registry(void);

/* Registered methods, in registration order. */
size_t             fuzz_rpc_method_count(void);
const fuzz_method *fuzz_rpc_method(size_t i);

/* The method called name, or NULL. */
const fuzz_method *fuzz_rpc_find(const char *name);

/* Runs one request envelope through nngrpc_dispatch_call() and checks the
 * reply; aborts with a message on stderr when a check fails:
 *  - the server's peek at the method (src/rpc/wire.h) reads only inside
 *    the envelope and says inline only for a registered inline method;
 *  - the call returns 0 and a reply, which decodes as nngrpc.v1.Response;
 *  - the tools' envelope scan (src/rpc/wire.h) reads the same code,
 *    message, payload and timings as protobuf-c;
 *  - its code is one of the 17 status codes;
 *  - a payload only with OK, and with OK for a method that exists, the
 *    payload decodes as the method's output type;
 *  - when every string the request carries (envelope and payload) is valid
 *    UTF-8, so are the reply's message, trailers and payload strings
 *    (proto3 parsers, Python's among them, reject anything else). */
void fuzz_rpc_call(const uint8_t *env, size_t len);

#endif /* TESTS_FUZZ_FUZZ_RPC_H */
