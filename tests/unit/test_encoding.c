/* Payload encodings: the accept list, round trips through gzip and zstd,
 * the decompression limit (exact, one byte over, lying size hints),
 * broken streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <nng/nng.h>
#include <zlib.h>
#include <zstd.h>

#include "arena.h"
#include "encoding.h"

static void
test_pick(void **state)
{
	static const struct {
		const char     *accept;
		nngrpc_encoding want;
	} cases[] = {
		{ "zstd,gzip", NNGRPC_ENCODING_ZSTD },
		{ "gzip,zstd", NNGRPC_ENCODING_GZIP },
		{ " br , gzip ", NNGRPC_ENCODING_GZIP },
		{ "identity", NNGRPC_ENCODING_IDENTITY },
		{ "identity,zstd", NNGRPC_ENCODING_ZSTD },
		{ "", NNGRPC_ENCODING_IDENTITY },
		{ ",,", NNGRPC_ENCODING_IDENTITY },
		{ "GZIP",
		    NNGRPC_ENCODING_IDENTITY }, /* names are lower case */
		{ "gzipx", NNGRPC_ENCODING_IDENTITY },
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
		    nngrpc_encoding_pick(cases[i].accept), cases[i].want);
	}
	assert_int_equal(
	    nngrpc_encoding_find("zstd", 4), NNGRPC_ENCODING_ZSTD);
	assert_int_equal(
	    nngrpc_encoding_find("zst", 3), NNGRPC_ENCODING_UNKNOWN);
	assert_string_equal(
	    nngrpc_encoding_name(NNGRPC_ENCODING_GZIP), "gzip");
}

/* Text that compresses: n bytes of a repeated sentence. */
static uint8_t *
text(size_t n)
{
	static const char s[] = "the quick brown fox jumps over the lazy dog ";
	uint8_t          *b = malloc(n + 1);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++) {
		b[i] = (uint8_t) s[i % (sizeof(s) - 1)];
	}
	return (b);
}

static void
test_round_trips_and_the_limit(void **state)
{
	static const nngrpc_encoding encs[]
	    = { NNGRPC_ENCODING_GZIP, NNGRPC_ENCODING_ZSTD };
	static const size_t sizes[] = { 0, 1, 4095, 4096, 100000 };

	(void) state;
	for (size_t e = 0; e < 2; e++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			nngrpc_arena a;
			uint8_t     *in = text(sizes[i]), *z, *out;
			size_t       zlen, len;

			nngrpc_arena_init(&a);
			assert_int_equal(nngrpc_encoding_compress(encs[e], in,
			                     sizes[i], &a, &z, &zlen),
			    0);
			assert_int_equal(nngrpc_encoding_decompress(encs[e], z,
			                     zlen, sizes[i], &a, &out, &len),
			    0); /* exactly at the limit */
			assert_int_equal(len, sizes[i]);
			if (len > 0) {
				assert_memory_equal(out, in, len);
			}
			if (sizes[i] > 0) { /* one byte over */
				assert_int_equal(
				    nngrpc_encoding_decompress(encs[e], z,
				        zlen, sizes[i] - 1, &a, &out, &len),
				    NNG_EMSGSIZE);
			}
			nngrpc_arena_fini(&a);
			free(in);
		}
	}
	nngrpc_arena a;
	uint8_t     *out;
	size_t       len;
	nngrpc_arena_init(&a);
	assert_int_equal(nngrpc_encoding_compress(NNGRPC_ENCODING_IDENTITY,
	                     (const uint8_t *) "x", 1, &a, &out, &len),
	    NNG_EINVAL);
	nngrpc_arena_fini(&a);
}

/* A gzip stream whose ISIZE says 10 bytes while it holds 100000, and two
 * members back to back; zstd frames without a content size, and two. */
static void
test_streams_that_lie_or_come_in_parts(void **state)
{
	uint8_t     *in = text(100000), *z, *z2, *out;
	size_t       zlen, z2len, len;
	nngrpc_arena a;

	(void) state;
	nngrpc_arena_init(&a);
	assert_int_equal(nngrpc_encoding_compress(
	                     NNGRPC_ENCODING_GZIP, in, 100000, &a, &z, &zlen),
	    0);
	z[zlen - 4] = 10;
	z[zlen - 3] = z[zlen - 2] = z[zlen - 1] = 0;
	/* zlib checks ISIZE: a lie is a broken stream, never an overflow. */
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_GZIP, z,
	                     zlen, 200000, &a, &out, &len),
	    NNG_EINVAL);
	assert_int_equal(nngrpc_encoding_compress(
	                     NNGRPC_ENCODING_GZIP, in, 50000, &a, &z, &zlen),
	    0);
	z2 = nngrpc_arena_alloc(&a, 2 * zlen);
	memcpy(z2, z, zlen);
	memcpy(z2 + zlen, z, zlen);
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_GZIP, z2,
	                     2 * zlen, 100000, &a, &out, &len),
	    0);
	assert_int_equal(len, 100000);
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_GZIP, z2,
	                     2 * zlen, 99999, &a, &out, &len),
	    NNG_EMSGSIZE);

	ZSTD_CCtx *c = ZSTD_createCCtx();
	assert_int_equal(
	    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0), 0);
	z2len = ZSTD_compressBound(100000);
	z2 = nngrpc_arena_alloc(&a, 2 * z2len);
	zlen = ZSTD_compress2(c, z2, z2len, in, 50000);
	assert_false(ZSTD_isError(zlen));
	ZSTD_freeCCtx(c);
	memcpy(z2 + zlen, z2, zlen);
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_ZSTD, z2,
	                     2 * zlen, 100000, &a, &out, &len),
	    0);
	assert_int_equal(len, 100000);
	assert_memory_equal(out + 50000, in, 50000);
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_ZSTD, z2,
	                     2 * zlen, 70000, &a, &out, &len),
	    NNG_EMSGSIZE);
	nngrpc_arena_fini(&a);
	free(in);
}

static void
test_broken_streams(void **state)
{
	uint8_t     *in = text(20000), *z, *out, *bad;
	size_t       zlen, len;
	nngrpc_arena a;

	(void) state;
	nngrpc_arena_init(&a);
	for (int e = NNGRPC_ENCODING_GZIP; e <= NNGRPC_ENCODING_ZSTD; e++) {
		assert_int_equal(nngrpc_encoding_compress((nngrpc_encoding) e,
		                     in, 20000, &a, &z, &zlen),
		    0);
		/* cut short, at several places */
		for (size_t cut = 1; cut < zlen; cut += zlen / 7 + 1) {
			assert_int_equal(
			    nngrpc_encoding_decompress((nngrpc_encoding) e, z,
			        zlen - cut, 20000, &a, &out, &len),
			    NNG_EINVAL);
		}
		/* garbage after the stream */
		bad = nngrpc_arena_alloc(&a, zlen + 3);
		memcpy(bad, z, zlen);
		memcpy(bad + zlen, "abc", 3);
		assert_int_equal(
		    nngrpc_encoding_decompress((nngrpc_encoding) e, bad,
		        zlen + 3, 20000, &a, &out, &len),
		    NNG_EINVAL);
		/* nothing, and not a stream at all */
		assert_int_equal(
		    nngrpc_encoding_decompress((nngrpc_encoding) e,
		        (const uint8_t *) "", 0, 20000, &a, &out, &len),
		    NNG_EINVAL);
		assert_int_equal(
		    nngrpc_encoding_decompress((nngrpc_encoding) e,
		        (const uint8_t *) "not compressed", 14, 20000, &a,
		        &out, &len),
		    NNG_EINVAL);
	}
	assert_int_equal(nngrpc_encoding_decompress(NNGRPC_ENCODING_IDENTITY,
	                     in, 10, 20000, &a, &out, &len),
	    NNG_EINVAL);
	nngrpc_arena_fini(&a);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_round_trips_and_the_limit),
		cmocka_unit_test(test_streams_that_lie_or_come_in_parts),
		cmocka_unit_test(test_broken_streams),
	};
	return (cmocka_run_group_tests_name("encoding", tests, NULL, NULL));
}
