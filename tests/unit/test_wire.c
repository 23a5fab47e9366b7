/* The hand-rolled wire format (src/rpc/wire.h) against protobuf-c: field
 * numbers, varints, the request peek and the response scan, on valid,
 * cut, duplicated and mutated envelopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nngrpc/v1/rpc.pb-c.h"
#include "wire.h"

static void
test_field_numbers_match_the_proto(void **state)
{
	static const struct {
		const ProtobufCMessageDescriptor *desc;
		const char                       *name;
		unsigned                          id;
	} fields[] = {
		{ &nngrpc__v1__request__descriptor, "method",
		    NNGRPC_WIRE_REQUEST_METHOD },
		{ &nngrpc__v1__request__descriptor, "timeout_us",
		    NNGRPC_WIRE_REQUEST_TIMEOUT_US },
		{ &nngrpc__v1__request__descriptor, "metadata",
		    NNGRPC_WIRE_REQUEST_METADATA },
		{ &nngrpc__v1__request__descriptor, "payload",
		    NNGRPC_WIRE_REQUEST_PAYLOAD },
		{ &nngrpc__v1__response__descriptor, "code",
		    NNGRPC_WIRE_RESPONSE_CODE },
		{ &nngrpc__v1__response__descriptor, "message",
		    NNGRPC_WIRE_RESPONSE_MESSAGE },
		{ &nngrpc__v1__response__descriptor, "payload",
		    NNGRPC_WIRE_RESPONSE_PAYLOAD },
		{ &nngrpc__v1__response__descriptor, "trailers",
		    NNGRPC_WIRE_RESPONSE_TRAILERS },
		{ &nngrpc__v1__response__descriptor, "queue_us",
		    NNGRPC_WIRE_RESPONSE_QUEUE_US },
		{ &nngrpc__v1__response__descriptor, "run_us",
		    NNGRPC_WIRE_RESPONSE_RUN_US },
	};

	(void) state;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const ProtobufCFieldDescriptor *f
		    = protobuf_c_message_descriptor_get_field_by_name(
		        fields[i].desc, fields[i].name);
		assert_non_null(f);
		assert_int_equal(f->id, fields[i].id);
	}
}

static void
test_varint_round_trip(void **state)
{
	static const uint64_t values[] = { 0, 1, 127, 128, 300, 16383, 16384,
		UINT32_MAX, (uint64_t) 1 << 63, UINT64_MAX };
	static const size_t   sizes[] = { 1, 1, 1, 2, 2, 2, 3, 5, 10, 10 };

	(void) state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint8_t        buf[NNGRPC_WIRE_VARINT_MAX];
		const uint8_t *p = buf;
		uint64_t       v = 0;
		size_t         n = nngrpc_wire_put_varint(buf, values[i]);

		assert_int_equal(n, sizes[i]);
		/* Every cut is refused, the whole is read back. */
		for (size_t cut = 0; cut < n; cut++) {
			p = buf;
			assert_false(
			    nngrpc_wire_get_varint(&p, buf + cut, &v));
		}
		p = buf;
		assert_true(nngrpc_wire_get_varint(&p, buf + n, &v));
		assert_ptr_equal(p, buf + n);
		assert_true(v == values[i]);
	}
}

static void
test_varint_longer_than_ten_bytes_is_refused(void **state)
{
	uint8_t        buf[12];
	const uint8_t *p = buf;
	uint64_t       v;

	(void) state;
	memset(buf, 0x80, sizeof(buf));
	buf[11] = 0x01;
	assert_false(nngrpc_wire_get_varint(&p, buf + sizeof(buf), &v));
}

static size_t
pack_request(const char *method, uint8_t *buf)
{
	Nngrpc__V1__Request req = NNGRPC__V1__REQUEST__INIT;

	req.method = (char *) method;
	req.timeout_us = 5000;
	req.payload.data = (uint8_t *) "payload";
	req.payload.len = 7;
	return (nngrpc__v1__request__pack(&req, buf));
}

static void
test_peek_finds_the_method(void **state)
{
	char        long_name[300];
	uint8_t     buf[512];
	const char *name;
	size_t      n, len;

	(void) state;
	len = pack_request("/a.B/C", buf);
	assert_true(nngrpc_wire_peek_method(buf, len, &name, &n));
	assert_int_equal(n, 6);
	assert_memory_equal(name, "/a.B/C", 6);

	/* A name of more than 127 bytes has a two-byte length. */
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	len = pack_request(long_name, buf);
	assert_true(nngrpc_wire_peek_method(buf, len, &name, &n));
	assert_int_equal(n, sizeof(long_name) - 1);
	assert_ptr_equal(name, (const char *) buf + 3);
}

static void
test_peek_refuses_what_is_not_a_whole_first_method(void **state)
{
	/* No method (it is "", so not written): timeout first. */
	static const uint8_t timeout_first[] = { 0x10, 0x05, 0x0a, 0x01, 'x' };
	static const uint8_t wrong_type[] = { 0x08, 0x05 };
	static const uint8_t endless_len[] = { 0x0a, 0xff, 0xff };
	uint8_t              buf[64];
	const char          *name;
	size_t               n, len;

	(void) state;
	assert_false(nngrpc_wire_peek_method(
	    timeout_first, sizeof(timeout_first), &name, &n));
	assert_false(nngrpc_wire_peek_method(
	    wrong_type, sizeof(wrong_type), &name, &n));
	assert_false(nngrpc_wire_peek_method(
	    endless_len, sizeof(endless_len), &name, &n));
	assert_false(nngrpc_wire_peek_method(buf, 0, &name, &n));
	len = pack_request("/a.B/C", buf);
	/* Cut inside the method: never a partial name. */
	for (size_t cut = 0; cut < 8; cut++) {
		assert_false(nngrpc_wire_peek_method(buf, cut, &name, &n));
	}
	assert_true(nngrpc_wire_peek_method(buf, 8, &name, &n));
	assert_true(len > 8);
}

/* A full response, trailers included. */
static size_t
pack_response(uint8_t *buf, int32_t code, const char *message)
{
	Nngrpc__V1__Response                resp = NNGRPC__V1__RESPONSE__INIT;
	Nngrpc__V1__Response__TrailersEntry e
	    = NNGRPC__V1__RESPONSE__TRAILERS_ENTRY__INIT;
	Nngrpc__V1__Response__TrailersEntry *ep = &e;

	e.key = "k";
	e.value = "v";
	resp.code = code;
	resp.message = (char *) message;
	resp.payload.data = (uint8_t *) "\x01\x02\x03";
	resp.payload.len = 3;
	resp.trailers = &ep;
	resp.n_trailers = 1;
	resp.queue_us = 123456;
	resp.run_us = 7;
	return (nngrpc__v1__response__pack(&resp, buf));
}

/* Checks that the scan of buf agrees with protobuf-c's decode wherever
 * the decode succeeds. */
static void
assert_scan_agrees(const uint8_t *buf, size_t len)
{
	Nngrpc__V1__Response *full
	    = nngrpc__v1__response__unpack(NULL, len, buf);
	nngrpc_wire_response r;
	bool                 ok = nngrpc_wire_scan_response(buf, len, &r);

	if (full == NULL) {
		return;
	}
	assert_true(ok);
	assert_int_equal(r.code, full->code);
	/* protobuf-c's C string ends at a NUL the bytes may carry. */
	assert_int_equal(
	    strnlen(r.message, r.message_len), strlen(full->message));
	assert_memory_equal(r.message, full->message, strlen(full->message));
	assert_int_equal(r.payload_len, full->payload.len);
	if (r.payload_len > 0) {
		assert_memory_equal(
		    r.payload, full->payload.data, r.payload_len);
	}
	assert_true(r.queue_us == full->queue_us);
	assert_true(r.run_us == full->run_us);
	nngrpc__v1__response__free_unpacked(full, NULL);
}

static void
test_scan_reads_every_field(void **state)
{
	uint8_t              buf[256];
	nngrpc_wire_response r;
	size_t               len = pack_response(buf, 5, "not here");

	(void) state;
	assert_true(nngrpc_wire_scan_response(buf, len, &r));
	assert_int_equal(r.code, 5);
	assert_int_equal(r.message_len, 8);
	assert_memory_equal(r.message, "not here", 8);
	assert_int_equal(r.payload_len, 3);
	assert_memory_equal(r.payload, "\x01\x02\x03", 3);
	assert_int_equal(r.queue_us, 123456);
	assert_int_equal(r.run_us, 7);

	/* A negative int32 (sign-extended to ten bytes on the wire). */
	len = pack_response(buf, -1, "");
	assert_true(nngrpc_wire_scan_response(buf, len, &r));
	assert_int_equal(r.code, -1);
	assert_int_equal(r.message_len, 0);
	assert_string_equal(r.message, "");

	/* Nothing at all is a valid, empty, OK response. */
	assert_true(nngrpc_wire_scan_response(buf, 0, &r));
	assert_int_equal(r.code, 0);
	assert_null(r.payload);
}

static void
test_scan_keeps_the_last_of_a_repeated_field(void **state)
{
	uint8_t              buf[512];
	nngrpc_wire_response r;
	size_t               len = pack_response(buf, 3, "first");

	(void) state;
	/* Two envelopes back to back decode as their merge. */
	len += pack_response(buf + len, 9, "second");
	assert_true(nngrpc_wire_scan_response(buf, len, &r));
	assert_int_equal(r.code, 9);
	assert_memory_equal(r.message, "second", 6);
	assert_scan_agrees(buf, len);
}

static void
test_scan_refuses_broken_envelopes(void **state)
{
	static const uint8_t bad[][4] = {
		{ 0xff, 0xff, 0xff, 0xff }, /* endless varint key */
		{ 0x12, 0x50, 'a', 'b' },   /* message longer than the rest */
		{ 0x0f, 0, 0, 0 },          /* wire type 7 */
		{ 0x0a, 0x01, 'x', 0x08 },  /* code as bytes; cut key */
		{ 0x00, 0x01, 0x08, 0x00 }, /* field 0 */
		{ 0x3b, 0x00, 0x00, 0x00 }, /* a group (field 7) */
	};
	uint8_t              buf[256];
	nngrpc_wire_response r;
	size_t               len;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(nngrpc_wire_scan_response(bad[i], 4, &r));
		assert_null(nngrpc__v1__response__unpack(NULL, 4, bad[i]));
	}
	/* Every cut of a valid envelope: the scan agrees with the decode. */
	len = pack_response(buf, 14, "draining");
	for (size_t cut = 0; cut <= len; cut++) {
		assert_scan_agrees(buf, cut);
	}
}

static void
test_scan_agrees_with_protobuf_c_on_mutations(void **state)
{
	uint8_t  orig[256];
	uint8_t  buf[256];
	size_t   len = pack_response(orig, 13, "internal");
	uint32_t seed = 1;

	(void) state;
	/* Bounded: 20000 single- and double-byte mutations, fixed seed. */
	for (int i = 0; i < 20000; i++) {
		memcpy(buf, orig, len);
		for (int k = 0; k < 1 + (i & 1); k++) {
			seed = seed * 1103515245u + 12345u;
			buf[(seed >> 8) % len] = (uint8_t) (seed >> 20);
		}
		assert_scan_agrees(buf, len);
	}
}

/* The metadata peek finds the first entry of a key among the fields of a
 * packed Request (any order of keys and values, the payload after), finds
 * nothing for an absent key, and stops at an envelope cut short. */
static void
test_peek_metadata(void **state)
{
	Nngrpc__V1__Request                req = NNGRPC__V1__REQUEST__INIT;
	Nngrpc__V1__Request__MetadataEntry e[3], *ep[3];
	const char *keys[3] = { "nngrpc-request-id", "nngrpc-cancel", "x" };
	const char *values[3] = { "r1", "abc", "" };
	uint8_t     buf[256];
	const char *v;
	size_t      n, len;

	(void) state;
	for (int i = 0; i < 3; i++) {
		nngrpc__v1__request__metadata_entry__init(&e[i]);
		e[i].key = (char *) keys[i];
		e[i].value = (char *) values[i];
		ep[i] = &e[i];
	}
	req.method = "/nngrpc.v1.Control/Cancel";
	req.timeout_us = 5;
	req.metadata = ep;
	req.n_metadata = 3;
	req.payload.data = (uint8_t *) "nngrpc-cancel";
	req.payload.len = 13;
	len = nngrpc__v1__request__pack(&req, buf);
	assert_true(
	    nngrpc_wire_peek_metadata(buf, len, "nngrpc-cancel", &v, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(v, "abc", 3);
	assert_true(nngrpc_wire_peek_metadata(buf, len, "x", &v, &n));
	assert_int_equal(n, 0);
	assert_false(nngrpc_wire_peek_metadata(buf, len, "absent", &v, &n));
	assert_false(nngrpc_wire_peek_metadata(buf, len, "nngrpc", &v, &n));
	/* Cut anywhere before the entry ends: not found, never past the end.
	 */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut + 1);
		memcpy(copy, buf, cut);
		if (nngrpc_wire_peek_metadata(
		        copy, cut, "nngrpc-cancel", &v, &n)) {
			assert_true(v + n <= (const char *) copy + cut);
		}
		free(copy);
	}
	/* A value before its key in the entry. */
	const uint8_t swapped[]
	    = { 0x1a, 0x08, 0x12, 0x01, 'v', 0x0a, 0x03, 'k', 'e', 'y' };
	assert_true(nngrpc_wire_peek_metadata(
	    swapped, sizeof(swapped), "key", &v, &n));
	assert_int_equal(n, 1);
	assert_memory_equal(v, "v", 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_numbers_match_the_proto),
		cmocka_unit_test(test_varint_round_trip),
		cmocka_unit_test(test_peek_metadata),
		cmocka_unit_test(test_varint_longer_than_ten_bytes_is_refused),
		cmocka_unit_test(test_peek_finds_the_method),
		cmocka_unit_test(
		    test_peek_refuses_what_is_not_a_whole_first_method),
		cmocka_unit_test(test_scan_reads_every_field),
		cmocka_unit_test(test_scan_keeps_the_last_of_a_repeated_field),
		cmocka_unit_test(test_scan_refuses_broken_envelopes),
		cmocka_unit_test(
		    test_scan_agrees_with_protobuf_c_on_mutations),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
