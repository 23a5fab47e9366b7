/* The status table: gRPC's 17 codes, names and numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <nngrpc/status.h>

static const struct {
	int         code;
	const char *name;
} grpc_codes[] = {
	{ 0, "OK" },
	{ 1, "CANCELLED" },
	{ 2, "UNKNOWN" },
	{ 3, "INVALID_ARGUMENT" },
	{ 4, "DEADLINE_EXCEEDED" },
	{ 5, "NOT_FOUND" },
	{ 6, "ALREADY_EXISTS" },
	{ 7, "PERMISSION_DENIED" },
	{ 8, "RESOURCE_EXHAUSTED" },
	{ 9, "FAILED_PRECONDITION" },
	{ 10, "ABORTED" },
	{ 11, "OUT_OF_RANGE" },
	{ 12, "UNIMPLEMENTED" },
	{ 13, "INTERNAL" },
	{ 14, "UNAVAILABLE" },
	{ 15, "DATA_LOSS" },
	{ 16, "UNAUTHENTICATED" },
};

static void
test_names_match_grpc(void **state)
{
	(void) state;
	assert_int_equal(
	    NNGRPC_STATUS_COUNT, sizeof(grpc_codes) / sizeof(grpc_codes[0]));
	for (size_t i = 0; i < NNGRPC_STATUS_COUNT; i++) {
		assert_true(nngrpc_status_valid(grpc_codes[i].code));
		assert_string_equal(nngrpc_status_name(grpc_codes[i].code),
		    grpc_codes[i].name);
		assert_string_not_equal(nngrpc_status_str(grpc_codes[i].code),
		    "unknown status code");
	}
}

static void
test_enum_values(void **state)
{
	(void) state;
	assert_int_equal(NNGRPC_OK, 0);
	assert_int_equal(NNGRPC_DEADLINE_EXCEEDED, 4);
	assert_int_equal(NNGRPC_RESOURCE_EXHAUSTED, 8);
	assert_int_equal(NNGRPC_UNIMPLEMENTED, 12);
	assert_int_equal(NNGRPC_INTERNAL, 13);
	assert_int_equal(NNGRPC_UNAUTHENTICATED, 16);
}

static void
test_out_of_range(void **state)
{
	(void) state;
	int bad[] = { -1, 17, 100, INT32_MIN, INT32_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(nngrpc_status_valid(bad[i]));
		assert_null(nngrpc_status_name(bad[i]));
		assert_string_equal(
		    nngrpc_status_str(bad[i]), "unknown status code");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_match_grpc),
		cmocka_unit_test(test_enum_values),
		cmocka_unit_test(test_out_of_range),
	};
	return (cmocka_run_group_tests_name("status", tests, NULL, NULL));
}
