/* The generated allocation helpers (<type>__new, <type>__new_<field>) over
 * every kind of repeated field (tests/unit/proto/kinds/v1/kinds.proto):
 * what they allocate must pack and unpack as protobuf-c lays it out, in
 * call memory, through a real call context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "call.h"
#include "kinds/v1/kinds.nngrpc.h"

static void
test_new_message_is_initialised(void **state)
{
	nngrpc_call               call;
	Kinds__V1__Kinds         *k;
	Kinds__V1__Inner         *in;
	Kinds__V1__Kinds__Nested *nested;

	(void) state;
	nngrpc_call_init(&call);
	k = kinds__v1__kinds__new(&call);
	in = kinds__v1__inner__new(&call);
	nested = kinds__v1__kinds__nested__new(&call);
	assert_non_null(k);
	assert_non_null(in);
	assert_non_null(nested);
	assert_ptr_equal(k->base.descriptor, &kinds__v1__kinds__descriptor);
	assert_ptr_equal(in->base.descriptor, &kinds__v1__inner__descriptor);
	assert_ptr_equal(
	    nested->base.descriptor, &kinds__v1__kinds__nested__descriptor);
	assert_int_equal(k->n_inners, 0);
	assert_string_equal(in->label, "");
	assert_int_equal(protobuf_c_message_get_packed_size(&k->base), 0);
	nngrpc_call_fini(&call);
}

/* Fills three elements of every repeated field through the helpers. */
static void
fill(nngrpc_call *call, Kinds__V1__Kinds *k)
{
	static uint8_t blob[] = { 0, 1, 2 };

	assert_non_null(kinds__v1__kinds__new_doubles(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_floats(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_int64s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_uint64s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_int32s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_fixed64s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_fixed32s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_bools(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_strings(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_blobs(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_uint32s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_colors(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_sfixed32s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_sfixed64s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_sint32s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_sint64s(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_inners(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_counts(call, k, 3));
	assert_non_null(kinds__v1__kinds__new_class_(call, k, 3));
	assert_non_null(k->nested = kinds__v1__kinds__nested__new(call));
	assert_non_null(
	    kinds__v1__kinds__nested__new_items(call, k->nested, 3));
	/* The last element of each: a wrong element size would put it
	 * beside the array, and the round trip below would miss it. */
	k->doubles[2] = 2.5;
	k->floats[2] = -1.5f;
	k->int64s[2] = -(INT64_C(1) << 40);
	k->uint64s[2] = UINT64_MAX;
	k->int32s[2] = -7;
	k->fixed64s[2] = 1ULL << 63;
	k->fixed32s[2] = 0xdeadbeef;
	k->bools[2] = 1;
	k->strings[2] = "two";
	k->blobs[2].data = blob;
	k->blobs[2].len = sizeof(blob);
	k->uint32s[2] = 4000000000u;
	k->colors[2] = KINDS__V1__COLOR__COLOR_RED;
	k->sfixed32s[2] = -32;
	k->sfixed64s[2] = -64;
	k->sint32s[2] = -33;
	k->sint64s[2] = -65;
	k->inners[2]->label = "inner";
	k->counts[2]->key = "k";
	k->counts[2]->value = 9;
	k->class_[2] = "keyword";
	k->nested->items[2]->label = "nested";
}

static void
check(const Kinds__V1__Kinds *k)
{
	assert_int_equal(k->n_doubles, 3);
	assert_true(k->doubles[0] == 0 && k->doubles[2] == 2.5);
	assert_true(k->floats[2] == -1.5f);
	assert_true(k->int64s[2] == -(INT64_C(1) << 40));
	assert_true(k->uint64s[2] == UINT64_MAX);
	assert_int_equal(k->int32s[2], -7);
	assert_true(k->fixed64s[2] == 1ULL << 63);
	assert_int_equal(k->fixed32s[2], 0xdeadbeef);
	assert_true(k->bools[2] && !k->bools[0]);
	assert_string_equal(k->strings[0], "");
	assert_string_equal(k->strings[2], "two");
	assert_int_equal(k->blobs[0].len, 0);
	assert_memory_equal(k->blobs[2].data, "\0\1\2", 3);
	assert_int_equal(k->uint32s[2], 4000000000u);
	assert_int_equal(k->colors[2], KINDS__V1__COLOR__COLOR_RED);
	assert_int_equal(k->sfixed32s[2], -32);
	assert_true(k->sfixed64s[2] == -64);
	assert_int_equal(k->sint32s[2], -33);
	assert_true(k->sint64s[2] == -65);
	assert_int_equal(k->n_inners, 3);
	assert_string_equal(k->inners[0]->label, "");
	assert_string_equal(k->inners[2]->label, "inner");
	assert_int_equal(k->n_counts, 3);
	assert_string_equal(k->counts[2]->key, "k");
	assert_int_equal(k->counts[2]->value, 9);
	assert_string_equal(k->class_[2], "keyword");
	assert_int_equal(k->nested->n_items, 3);
	assert_string_equal(k->nested->items[2]->label, "nested");
}

static void
test_every_repeated_kind_round_trips(void **state)
{
	nngrpc_call       call;
	Kinds__V1__Kinds *k;
	Kinds__V1__Kinds *back;
	uint8_t          *buf;
	size_t            n;

	(void) state;
	nngrpc_call_init(&call);
	assert_non_null(k = kinds__v1__kinds__new(&call));
	fill(&call, k);
	check(k);
	n = kinds__v1__kinds__get_packed_size(k);
	assert_non_null(buf = malloc(n));
	assert_int_equal(kinds__v1__kinds__pack(k, buf), n);
	back = kinds__v1__kinds__unpack(NULL, n, buf);
	assert_non_null(back);
	check(back);
	kinds__v1__kinds__free_unpacked(back, NULL);
	free(buf);
	nngrpc_call_fini(&call);
}

static void
test_empty_and_refused(void **state)
{
	nngrpc_call        call;
	Kinds__V1__Kinds  *k;
	Kinds__V1__Inner **inners;

	(void) state;
	nngrpc_call_init(&call);
	k = kinds__v1__kinds__new(&call);
	/* n = 0: an empty array, never NULL, so "NULL means out of
	 * memory" holds. */
	inners = kinds__v1__kinds__new_inners(&call, k, 0);
	assert_non_null(inners);
	assert_int_equal(k->n_inners, 0);
	/* Not a repeated field, no such field, a size that overflows. */
	assert_null(nngrpc_call_new_repeated(&call, &k->base, 20, 1));
	assert_null(nngrpc_call_new_repeated(&call, &k->base, 99, 1));
	assert_null(
	    nngrpc_call_new_repeated(&call, &k->base, 1, SIZE_MAX / 2));
	assert_null(
	    nngrpc_call_new_repeated(&call, &k->base, 17, SIZE_MAX / 4));
	assert_int_equal(k->n_doubles, 0);
	assert_int_equal(k->n_inners, 0);
	nngrpc_call_fini(&call);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_message_is_initialised),
		cmocka_unit_test(test_every_repeated_kind_round_trips),
		cmocka_unit_test(test_empty_and_refused),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
