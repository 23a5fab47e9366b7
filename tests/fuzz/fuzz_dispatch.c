/*
 * fuzz_dispatch: the input is a request envelope, bytes as they arrive on
 * the wire, run through nngrpc_dispatch_call() against every service
 * hoteld serves (fuzz_rpc.c). Finds what a hostile client can do with a
 * malformed envelope, method name, metadata, deadline or payload; every
 * reply is checked by fuzz_rpc_call().
 *
 * The registry requires an auth token, as `hoteld --auth-token` does, so
 * the credential check is fuzzed too: the seeds carry the metadata
 * "authorization: Bearer fuzz-token" (tests/fuzz/make_seeds.py), and calls
 * without it only reach the open Health service.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_rpc.h"

#define FUZZ_AUTH_TOKEN "fuzz-token" /* as in make_seeds.py */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	fuzz_rpc_init(FUZZ_AUTH_TOKEN);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_rpc_call(data, size);
	return (0);
}
