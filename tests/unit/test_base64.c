/* Base64 of "-bin" metadata: round trips of every length's tail, the
 * encodings RFC 4648 lists, padded and unpadded input, and what is not
 * base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

/* RFC 4648 section 10, without the padding. */
static const char *const vectors[][2] = {
	{ "", "" },
	{ "f", "Zg" },
	{ "fo", "Zm8" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg" },
	{ "fooba", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy" },
};

static void
test_vectors(void **state)
{
	char    text[16];
	uint8_t out[16];
	size_t  n;

	(void) state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		size_t len = strlen(vectors[i][0]);
		assert_int_equal(
		    nngrpc_base64_encoded_len(len), strlen(vectors[i][1]));
		assert_int_equal(
		    nngrpc_base64_encode(
		        (const uint8_t *) vectors[i][0], len, text),
		    strlen(vectors[i][1]));
		assert_string_equal(text, vectors[i][1]);
		assert_true(nngrpc_base64_decode(
		    vectors[i][1], strlen(vectors[i][1]), out, &n));
		assert_int_equal(n, len);
		assert_memory_equal(out, vectors[i][0], len);
	}
	/* Padded, as other encoders write it. */
	assert_true(nngrpc_base64_decode("Zm8=", 4, out, &n));
	assert_int_equal(n, 2);
	assert_true(nngrpc_base64_decode("Zg==", 4, out, &n));
	assert_int_equal(n, 1);
}

static void
test_round_trip_all_bytes(void **state)
{
	uint8_t in[256], out[256 + 2];
	char    text[400];
	size_t  n;

	(void) state;
	for (int i = 0; i < 256; i++) {
		in[i] = (uint8_t) (255 - i);
	}
	for (size_t len = 0; len <= sizeof(in); len += len < 8 ? 1 : 37) {
		size_t t = nngrpc_base64_encode(in, len, text);
		assert_true(nngrpc_base64_decoded_max(t) <= sizeof(out));
		assert_true(nngrpc_base64_decode(text, t, out, &n));
		assert_int_equal(n, len);
		assert_memory_equal(out, in, len);
	}
}

static void
test_not_base64(void **state)
{
	static const char *const bad[] = {
		"Z",      /* a lone character */
		"Zm9vY",  /* five: one left over */
		"Zm9v!",  /* outside the alphabet */
		"Zm-v",   /* the URL-safe alphabet */
		"Zm 9v",  /* a space */
		"Zg===",  /* three '=' */
		"Zm8=Zm", /* padding inside */
		"Zm9vY=", /* padding that does not fill a quantum */
		"=",
		"==",
	};
	uint8_t out[16];
	size_t  n;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(
		    nngrpc_base64_decode(bad[i], strlen(bad[i]), out, &n));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_round_trip_all_bytes),
		cmocka_unit_test(test_not_base64),
	};
	return (cmocka_run_group_tests_name("base64", tests, NULL, NULL));
}
