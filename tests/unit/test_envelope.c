/* Envelope codec: requests decode into the arena, responses encode with
 * the payload packed in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "envelope.h"
#include "nngrpc/testing/v1/testing.pb-c.h"
#include "wire.h"

static void
test_decode_request(void **state)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e
	    = NNGRPC__V1__REQUEST__METADATA_ENTRY__INIT;
	Nngrpc__V1__Request__MetadataEntry *ep = &e;
	Nngrpc__V1__Request                *got;
	nngrpc_arena                        arena;
	uint8_t                             buf[256];
	size_t                              n;

	(void) state;
	req.method = "/a.B/C";
	req.timeout_us = 1500;
	req.payload.data = (uint8_t *) "xyz";
	req.payload.len = 3;
	e.key = "k";
	e.value = "v";
	req.metadata = &ep;
	req.n_metadata = 1;
	n = nngrpc__v1__request__pack(&req, buf);

	nngrpc_arena_init(&arena);
	got = nngrpc_envelope_decode(&arena, buf, n);
	assert_non_null(got);
	assert_string_equal(got->method, "/a.B/C");
	assert_int_equal(got->timeout_us, 1500);
	assert_int_equal(got->payload.len, 3);
	assert_memory_equal(got->payload.data, "xyz", 3);
	assert_int_equal(got->n_metadata, 1);
	assert_string_equal(got->metadata[0]->key, "k");
	nngrpc_arena_fini(&arena);
}

static void
test_decode_garbage(void **state)
{
	static const uint8_t bad[][6] = {
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, /* endless varint */
		{ 0x0a, 0x50, 'a', 'b', 0, 0 },         /* length past end */
		{ 0x07, 0, 0, 0, 0, 0 },                /* wire type 7 */
	};
	nngrpc_arena arena;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		nngrpc_arena_init(&arena);
		assert_null(nngrpc_envelope_decode(&arena, bad[i], 6));
		nngrpc_arena_fini(&arena);
	}
	/* The empty message is a valid, empty envelope. */
	nngrpc_arena_init(&arena);
	Nngrpc__V1__Request *r = nngrpc_envelope_decode(&arena, bad[0], 0);
	assert_non_null(r);
	assert_string_equal(r->method, "");
	nngrpc_arena_fini(&arena);
}

static Nngrpc__V1__Response *
decode_reply(nng_msg *msg)
{
	return (nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(msg), nng_msg_body(msg)));
}

static void
test_encode_with_payload(void **state)
{
	Nngrpc__Testing__V1__EchoResponse out
	    = NNGRPC__TESTING__V1__ECHO_RESPONSE__INIT;
	nngrpc_reply          resp = { .output = &out.base };
	Nngrpc__V1__Response *got;
	nng_msg              *msg;
	size_t sizes[] = { 0, 1, 127, 128, 16383, 16384, 1024 * 1024 };

	(void) state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *data = malloc(sizes[i] + 1);
		memset(data, 'a' + (int) i, sizes[i]);
		out.payload.data = data;
		out.payload.len = sizes[i];
		resp.queue_us = 12;
		resp.run_us = 34;
		assert_int_equal(nngrpc_envelope_encode(&resp, &msg), 0);
		got = decode_reply(msg);
		assert_non_null(got);
		assert_int_equal(got->code, 0);
		assert_int_equal(got->queue_us, 12);
		assert_int_equal(got->run_us, 34);
		Nngrpc__Testing__V1__EchoResponse *echo
		    = nngrpc__testing__v1__echo_response__unpack(
		        NULL, got->payload.len, got->payload.data);
		assert_non_null(echo);
		assert_int_equal(echo->payload.len, sizes[i]);
		if (sizes[i] > 0) {
			assert_memory_equal(
			    echo->payload.data, data, sizes[i]);
		}
		nngrpc__testing__v1__echo_response__free_unpacked(echo, NULL);
		nngrpc__v1__response__free_unpacked(got, NULL);
		nng_msg_free(msg);
		free(data);
	}
}

static void
test_encode_status(void **state)
{
	Nngrpc__V1__Response *got;
	nng_msg              *msg;

	(void) state;
	assert_int_equal(
	    nngrpc_envelope_status(8, "queue full", true, &msg), 0);
	got = decode_reply(msg);
	assert_non_null(got);
	assert_int_equal(got->code, 8);
	assert_string_equal(got->message, "queue full");
	assert_int_equal(got->payload.len, 0);
	assert_int_equal(got->n_trailers, 1);
	assert_string_equal(got->trailers[0]->key, "nngrpc-not-run");
	assert_string_equal(got->trailers[0]->value, "1");
	nngrpc__v1__response__free_unpacked(got, NULL);
	nng_msg_free(msg);

	assert_int_equal(nngrpc_envelope_status(14, NULL, false, &msg), 0);
	got = decode_reply(msg);
	assert_non_null(got);
	assert_int_equal(got->code, 14);
	assert_string_equal(got->message, "");
	assert_int_equal(got->n_trailers, 0);
	nngrpc__v1__response__free_unpacked(got, NULL);
	nng_msg_free(msg);
}

/* The message by length: NUL bytes and all, next to trailers, timings
 * and a payload given as bytes. */
static void
test_encode_message_bytes(void **state)
{
	static const char                   msg[] = "before\0after";
	Nngrpc__V1__Response__TrailersEntry t
	    = NNGRPC__V1__RESPONSE__TRAILERS_ENTRY__INIT;
	Nngrpc__V1__Response__TrailersEntry *tp = &t;
	nngrpc_reply                         r = { .code = 9,
		                        .message = msg,
		                        .message_len = sizeof(msg) - 1,
		                        .trailers = &tp,
		                        .n_trailers = 1,
		                        .queue_us = 300,
		                        .run_us = 70000,
		                        .payload = (const uint8_t *) "xyz",
		                        .payload_len = 3 };
	nngrpc_wire_response                 w;
	Nngrpc__V1__Response                *got;
	nng_msg                             *m;

	(void) state;
	t.key = "k";
	t.value = "v";
	assert_int_equal(nngrpc_envelope_encode(&r, &m), 0);
	assert_true(
	    nngrpc_wire_scan_response(nng_msg_body(m), nng_msg_len(m), &w));
	assert_int_equal(w.code, 9);
	assert_int_equal(w.message_len, sizeof(msg) - 1);
	assert_memory_equal(w.message, msg, sizeof(msg) - 1);
	assert_int_equal(w.payload_len, 3);
	assert_memory_equal(w.payload, "xyz", 3);
	assert_int_equal(w.queue_us, 300);
	assert_int_equal(w.run_us, 70000);
	got = decode_reply(m); /* protobuf-c reads it too */
	assert_non_null(got);
	assert_int_equal(got->n_trailers, 1);
	assert_string_equal(got->trailers[0]->value, "v");
	nngrpc__v1__response__free_unpacked(got, NULL);
	nng_msg_free(m);
}

typedef struct {
	uint8_t buf[64];
	size_t  asked;
	bool    fail;
} fixed_buf;

static uint8_t *
fixed_alloc(void *arg, size_t len)
{
	fixed_buf *b = arg;

	b->asked = len;
	return (b->fail || len > sizeof(b->buf) ? NULL : b->buf);
}

/* Into a caller's buffer: exactly the size asked for; an allocation that
 * fails is NNG_ENOMEM; an empty OK reply is 0 bytes. */
static void
test_pack_into_buffer(void **state)
{
	nngrpc_reply r = { .code = 5, .message = "gone", .message_len = 4 };
	fixed_buf    b = { .fail = false };
	size_t       len = 99;

	(void) state;
	assert_int_equal(nngrpc_envelope_pack(&r, fixed_alloc, &b, &len), 0);
	assert_int_equal(len, b.asked);
	assert_int_equal(len, 2 + 6); /* code 5, message "gone" */
	assert_memory_equal(b.buf, "\x08\x05\x12\x04gone", 8);
	b.fail = true;
	assert_int_equal(
	    nngrpc_envelope_pack(&r, fixed_alloc, &b, &len), NNG_ENOMEM);
	r = (nngrpc_reply) { .code = 0 };
	assert_int_equal(nngrpc_envelope_pack(&r, fixed_alloc, &b, &len), 0);
	assert_int_equal(len, 0);
}

static void
test_arena(void **state)
{
	nngrpc_arena arena;
	(void) state;
	nngrpc_arena_init(&arena);
	char *small = nngrpc_arena_alloc(&arena, 10);
	char *big = nngrpc_arena_alloc(&arena, 100000);
	char *after = nngrpc_arena_alloc(&arena, 0);
	assert_non_null(small);
	assert_non_null(big);
	assert_non_null(after);
	assert_int_equal((uintptr_t) small % _Alignof(max_align_t), 0);
	assert_int_equal((uintptr_t) after % _Alignof(max_align_t), 0);
	memset(small, 1, 10);
	memset(big, 2, 100000);
	assert_null(nngrpc_arena_alloc(&arena, SIZE_MAX - 8));
	nngrpc_arena_fini(&arena);
	nngrpc_arena_fini(&arena); /* twice is harmless */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_request),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_encode_with_payload),
		cmocka_unit_test(test_encode_status),
		cmocka_unit_test(test_encode_message_bytes),
		cmocka_unit_test(test_pack_into_buffer),
		cmocka_unit_test(test_arena),
	};
	return (cmocka_run_group_tests_name("envelope", tests, NULL, NULL));
}
