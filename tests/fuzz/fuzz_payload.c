/*
 * fuzz_payload: the input picks a registered method and carries its
 * payload; the harness wraps it in a valid envelope, so every method's
 * input decoding and handler see fuzzed messages (fuzz_dispatch mostly
 * fuzzes the envelope around them). Linked with tests/fuzz/arena_malloc.c
 * instead of the call arena, so ASan catches a handler that overruns an
 * array or string the call allocated.
 *
 * Input layout:
 *   byte 0   method index, modulo the number of registered methods, in
 *            registration order: 0 Health/Check, 1 Reflection/
 *            ListServices, 2 Reflection/FileContainingSymbol, 3 Testing/
 *            Echo, 4 Sleep, 5 Fail, then HotelSearch's: 6 Search,
 *            7 GetHotel, 8 Suggest, 9 Stats, 10 Reload
 *   byte 1   bit 0: send a metadata entry; bits 1-2: timeout_us
 *            0 none, 1 1000 us, 2 1 s, 3 1 us. Sleep always gets 1000 us.
 *   rest     the payload
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_rpc.h"
#include "nngrpc/v1/rpc.pb-c.h"

#define SLEEP_TIMEOUT_US 1000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	fuzz_rpc_init(NULL);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t timeouts[4] = { 0, 1000, 1000000, 1 };
	Nngrpc__V1__Request   env = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e
	    = NNGRPC__V1__REQUEST__METADATA_ENTRY__INIT;
	Nngrpc__V1__Request__MetadataEntry *ep = &e;
	const fuzz_method                  *m;
	uint8_t                            *buf;
	size_t                              len;

	if (size < 2) {
		return (0);
	}
	m = fuzz_rpc_method(data[0] % fuzz_rpc_method_count());
	env.method = (char *) m->name;
	env.timeout_us = timeouts[(data[1] >> 1) & 3];
	if (strcmp(m->desc->name, "Sleep") == 0) {
		env.timeout_us = SLEEP_TIMEOUT_US;
	}
	if ((data[1] & 1) != 0) {
		e.key = "x-fuzz";
		e.value = "1";
		env.metadata = &ep;
		env.n_metadata = 1;
	}
	env.payload.data = (uint8_t *) data + 2;
	env.payload.len = size - 2;
	if ((buf = malloc(nngrpc__v1__request__get_packed_size(&env)))
	    == NULL) {
		return (0);
	}
	len = nngrpc__v1__request__pack(&env, buf);
	fuzz_rpc_call(buf, len);
	free(buf);
	return (0);
}
