/*
 * The fuzzers' stand-in for a server: a dispatch registry with every
 * service hoteld serves, registered through the services' own register
 * functions, and the checks a reply must pass.
 *
 * DESIGN
 * ------
 * nngrpc_builtin_register() (Health, Reflection), testing_service_register()
 * and hotel_service_register() take an nngrpc_server and go through
 * nngrpc_server_add_service(). The fuzzers do not link src/rpc/server.c
 * (sockets, threads): this file defines nngrpc_server as a bare holder of
 * an nngrpc_dispatch and its own nngrpc_server_add_service() that
 * registers on it, so the handlers, the generated glue and the dispatch
 * code are exactly hoteld's. A service added to hoteld later must be
 * registered in fuzz_rpc_init() too.
 *
 * Two methods would make a fuzzer slow or stateful, so their handlers are
 * wrapped here, on the way in, and nothing else is:
 *  - Testing/Sleep sleeps at most SLEEP_MAX_MS, whatever the request asks
 *    (an envelope with no deadline could otherwise sleep 49 days);
 *  - HotelSearch/Reload builds at most RELOAD_MAX_HOTELS hotels, and a
 *    non-empty path is replaced by a small JSON Lines file written at start
 *    or by a path that does not exist (a fuzzer must not read the machine's
 *    files, /dev/zero among them). Requests the handler rejects before
 *    building (count 0, empty path, no source) pass unchanged. The handler
 *    runs against a second, one-hotel service (the call's user pointer is
 *    switched for it), so a Reload never changes the 2000 hotels the other
 *    methods see: every input runs against the same data, a crash
 *    reproduces alone, and no input pays for rebuilding them.
 *
 * Single-threaded: libFuzzer runs one input at a time.
 */
#include "fuzz_rpc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nngrpc/clock.h>
#include <nngrpc/nngrpc.h>

#include "access.h"
#include "auth.h"
#include "builtin.h"
#include "call.h"
#include "encoding.h"
#include "log.h"
#include "nngrpc/testing/v1/testing.pb-c.h"
#include "nngrpc/v1/rpc.pb-c.h"
#include "service/testing_service.h"
#include "wire.h"

#ifdef FUZZ_HOTEL_SERVICE
#include "engine/hotel.h"
#include "hotel/v1/hotel.pb-c.h"
#include "service/hotel_service.h"
#endif

#define SLEEP_MAX_MS      2
#define MAX_METHODS       64
#define FUZZ_HOTELS       2000
#define FUZZ_SEED         1
#define RELOAD_MAX_HOTELS 50
#define RELOAD_COUNT_MAX  10000000 /* hotel.proto: GeneratedDataset.count */

/* The server the services register on: only a registry here. */
struct nngrpc_server {
	nngrpc_dispatch *s_dispatch;
};

static nngrpc_dispatch *registry;
static nngrpc_auth     *auth; /* the token check, when fuzzed */
static fuzz_method      methods[MAX_METHODS];
static size_t           n_methods;

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_rpc: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- capped handlers ------------------------------------------------------
 */

static nngrpc_method_fn real_sleep;

static nngrpc_status
capped_sleep(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	Nngrpc__Testing__V1__SleepRequest req
	    = *(const Nngrpc__Testing__V1__SleepRequest *) in;

	if (req.ms > SLEEP_MAX_MS) {
		req.ms = SLEEP_MAX_MS;
	}
	return (real_sleep(call, &req.base, out));
}

#ifdef FUZZ_HOTEL_SERVICE
static nngrpc_method_fn real_reload;
static hotel_service   *hotels;          /* what every other method sees */
static hotel_service   *reload_target;   /* what Reload swaps */
static char             small_jsonl[64]; /* a 20-hotel file */

static nngrpc_status
capped_reload(
    nngrpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out)
{
	Hotel__V1__ReloadRequest req = *(const Hotel__V1__ReloadRequest *) in;
	Hotel__V1__GeneratedDataset gen;
	void                       *user = call->c_user;
	nngrpc_status               st;

	if (req.source_case == HOTEL__V1__RELOAD_REQUEST__SOURCE_GENERATE
	    && req.generate != NULL && req.generate->count >= 1
	    && req.generate->count <= RELOAD_COUNT_MAX) {
		gen = *req.generate;
		gen.count = 1 + (gen.count - 1) % RELOAD_MAX_HOTELS;
		req.generate = &gen;
	}
	if (req.source_case == HOTEL__V1__RELOAD_REQUEST__SOURCE_PATH
	    && req.path != NULL && req.path[0] != '\0') {
		req.path = (req.path[0] & 1) != 0
		    ? small_jsonl
		    : "/nonexistent/nngrpc-fuzz.jsonl";
	}
	/* The handler finds its service through nngrpc_call_user(). */
	call->c_user = reload_target;
	st = real_reload(call, &req.base, out);
	call->c_user = user;
	return (st);
}

static void
remove_small_jsonl(void)
{
	unlink(small_jsonl);
}

static void
open_hotels(struct nngrpc_server *srv)
{
	hotel_service_options opts
	    = { .data = NULL, .hotels = FUZZ_HOTELS, .seed = FUZZ_SEED };
	hotel_service_options tiny = { .data = NULL, .hotels = 1, .seed = 1 };
	hotel_dataset        *small;
	char                  err[256];
	FILE                 *f;
	int                   fd;
	int                   rv;

	if ((rv = hotel_service_open(&opts, &hotels, err, sizeof(err))) != 0
	    || (rv = hotel_service_open(
	            &tiny, &reload_target, err, sizeof(err)))
	        != 0) {
		die("hotel_service_open: %s", err);
	}
	if ((rv = hotel_service_register(hotels, srv)) != 0) {
		die("hotel_service_register: %d", rv);
	}

	/* The file a Reload with a path loads. */
	snprintf(small_jsonl, sizeof(small_jsonl), "/tmp/nngrpc-fuzz-XXXXXX");
	if ((fd = mkstemp(small_jsonl)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		die("cannot create %s", small_jsonl);
	}
	atexit(remove_small_jsonl);
	if (hotel_dataset_generate(20, 7, NULL, &small) != HOTEL_OK
	    || hotel_dataset_write_jsonl(small, f) != HOTEL_OK
	    || fclose(f) != 0) {
		die("cannot write %s", small_jsonl);
	}
	hotel_dataset_release(small);
}
#endif /* FUZZ_HOTEL_SERVICE */

/* ---- the stand-in server ------------------------------------------------ */

int
nngrpc_server_add_service(nngrpc_server *srv,
    const ProtobufCServiceDescriptor *desc, const nngrpc_file_info *file,
    const nngrpc_method_fn *fns, const void *impl, size_t impl_size,
    void *user)
{
	nngrpc_method_fn wrapped[MAX_METHODS];

	if (desc->n_methods > MAX_METHODS - n_methods) {
		die("too many methods");
	}
	for (size_t i = 0; i < desc->n_methods; i++) {
		const char *svc = desc->name;
		const char *m = desc->methods[i].name;

		wrapped[i] = fns[i];
		if (fns[i] != NULL
		    && strcmp(svc, "nngrpc.testing.v1.Testing") == 0
		    && strcmp(m, "Sleep") == 0) {
			real_sleep = fns[i];
			wrapped[i] = capped_sleep;
		}
#ifdef FUZZ_HOTEL_SERVICE
		if (fns[i] != NULL && strcmp(svc, "hotel.v1.HotelSearch") == 0
		    && strcmp(m, "Reload") == 0) {
			real_reload = fns[i];
			wrapped[i] = capped_reload;
		}
#endif
		fuzz_method *fm = &methods[n_methods + i];
		snprintf(fm->name, sizeof(fm->name), "/%s/%s", svc, m);
		fm->desc = &desc->methods[i];
	}
	int rv = nngrpc_dispatch_add_service(
	    srv->s_dispatch, desc, file, wrapped, impl, impl_size, user);
	if (rv == 0) {
		n_methods += desc->n_methods;
	}
	return (rv);
}

void
fuzz_rpc_init(const char *auth_token)
{
	struct nngrpc_server srv;
	int                  rv;

	if (registry != NULL) {
		die("fuzz_rpc_init called twice");
	}
	nngrpc_log_set_level(NNGRPC_LOG_ERROR);
	if (nngrpc_dispatch_alloc(&srv.s_dispatch) != 0) {
		die("nngrpc_dispatch_alloc");
	}
	if (auth_token != NULL) {
		nngrpc_interceptor ic;
		if ((rv = nngrpc_auth_alloc(&auth)) != 0
		    || (rv = nngrpc_auth_set_tokens(auth, &auth_token, 1))
		        != 0) {
			die("nngrpc_auth: %d", rv);
		}
		nngrpc_auth_interceptor(auth, &ic);
		if ((rv = nngrpc_dispatch_add_interceptor(srv.s_dispatch, &ic))
		    != 0) {
			die("nngrpc_dispatch_add_interceptor: %d", rv);
		}
	}
	/* As a server does: the access log (off, but its hook runs). */
	if ((rv = nngrpc_dispatch_add_interceptor(
	         srv.s_dispatch, &nngrpc_access_interceptor))
	    != 0) {
		die("nngrpc_dispatch_add_interceptor: %d", rv);
	}
	if ((rv = nngrpc_builtin_register(&srv, srv.s_dispatch)) != 0) {
		die("nngrpc_builtin_register: %d", rv);
	}
	if ((rv = testing_service_register(&srv)) != 0) {
		die("testing_service_register: %d", rv);
	}
#ifdef FUZZ_HOTEL_SERVICE
	open_hotels(&srv);
#endif
	nngrpc_dispatch_seal(srv.s_dispatch);
	registry = srv.s_dispatch;
}

const nngrpc_dispatch *
fuzz_rpc_registry(void)
{
	if (registry == NULL) {
		fuzz_rpc_init(NULL);
	}
	return (registry);
}

size_t
fuzz_rpc_method_count(void)
{
	fuzz_rpc_registry();
	return (n_methods);
}

const fuzz_method *
fuzz_rpc_method(size_t i)
{
	fuzz_rpc_registry();
	return (i < n_methods ? &methods[i] : NULL);
}

const fuzz_method *
fuzz_rpc_find(const char *name)
{
	fuzz_rpc_registry();
	for (size_t i = 0; i < n_methods; i++) {
		if (strcmp(methods[i].name, name) == 0) {
			return (&methods[i]);
		}
	}
	return (NULL);
}

/* ---- checks ---------------------------------------------------------------
 */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, at most
 * U+10FFFF. */
static bool
utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *) str;

	while (*s != '\0') {
		uint32_t cp;
		int      n;

		if (s[0] < 0x80) {
			s++;
			continue;
		} else if ((s[0] & 0xE0) == 0xC0) {
			cp = s[0] & 0x1F;
			n = 1;
		} else if ((s[0] & 0xF0) == 0xE0) {
			cp = s[0] & 0x0F;
			n = 2;
		} else if ((s[0] & 0xF8) == 0xF0) {
			cp = s[0] & 0x07;
			n = 3;
		} else {
			return (false);
		}
		for (int i = 1; i <= n; i++) {
			if ((s[i] & 0xC0) != 0x80) {
				return (false);
			}
			cp = (cp << 6) | (s[i] & 0x3F);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800)
		    || (n == 3 && cp < 0x10000) || cp > 0x10FFFF
		    || (cp >= 0xD800 && cp <= 0xDFFF)) {
			return (false);
		}
		s += n + 1;
	}
	return (true);
}

/* True when every string field in m (recursively) is valid UTF-8. On
 * false, *fieldp names the first bad field. */
static bool
strings_valid(const ProtobufCMessage *m, const char **fieldp)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char                       *base = (const char *) m;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void                     *p = base + f->offset;
		size_t                          n = 1;

		if (f->type != PROTOBUF_C_TYPE_STRING
		    && f->type != PROTOBUF_C_TYPE_MESSAGE) {
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0
		    && *(const uint32_t *) (base + f->quantifier_offset)
		        != f->id) {
			continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *) (base + f->quantifier_offset);
			p = *(void *const *) p;
		}
		for (size_t j = 0; j < n; j++) {
			const void *v = f->label == PROTOBUF_C_LABEL_REPEATED
			    ? ((void *const *) p)[j]
			    : *(void *const *) p;
			if (v == NULL) {
				continue;
			}
			if (f->type == PROTOBUF_C_TYPE_STRING
			    && !utf8_valid(v)) {
				*fieldp = f->name;
				return (false);
			}
			if (f->type == PROTOBUF_C_TYPE_MESSAGE
			    && !strings_valid(v, fieldp)) {
				return (false);
			}
		}
	}
	return (true);
}

/* The server's peek at the method on NNG's receive thread: it reads only
 * inside the envelope (ASan), and calls a method inline only when that
 * method is registered and marked inline. */
static void
check_peek(const nngrpc_dispatch *d, const uint8_t *env, size_t len)
{
	const char *name;
	size_t      n;
	char        buf[sizeof(methods[0].name)];

	if (!nngrpc_dispatch_peek_inline(d, env, len)) {
		return;
	}
	if (!nngrpc_wire_peek_method(env, len, &name, &n)
	    || n >= sizeof(buf)) {
		die("inline verdict without a method in the first field");
	}
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (fuzz_rpc_find(buf) == NULL) {
		die("inline verdict for a method not registered");
	}
}

/* The envelope scan the tools read replies with agrees with protobuf-c's
 * decode of the same reply. */
static void
check_scan(const nng_msg *reply, const Nngrpc__V1__Response *resp)
{
	nngrpc_wire_response r;

	if (!nngrpc_wire_scan_response(nng_msg_body((nng_msg *) reply),
	        nng_msg_len((nng_msg *) reply), &r)) {
		die("the wire scan refuses a reply protobuf-c decodes");
	}
	if (r.code != resp->code || r.payload_len != resp->payload.len
	    || r.queue_us != resp->queue_us || r.run_us != resp->run_us
	    || strnlen(r.message, r.message_len) != strlen(resp->message)
	    || (r.payload_len > 0
	        && memcmp(r.payload, resp->payload.data, r.payload_len)
	            != 0)) {
		die("the wire scan and protobuf-c disagree on a reply");
	}
}

/* The value of a string map entry of key (metadata or trailers: the
 * entries' layouts are the same), or NULL. */
static const char *
map_value(void *const *entries, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		const Nngrpc__V1__Request__MetadataEntry *e = entries[i];
		if (e->key != NULL && strcmp(e->key, key) == 0) {
			return (e->value);
		}
	}
	return (NULL);
}

/* A payload as its message's bytes, as a client reads it: decompressed
 * (into arena, at most 4 MiB) when enc names an encoding. Returns false
 * when it does not decompress. */
static bool
plain_payload(const char *enc, ProtobufCBinaryData in, nngrpc_arena *arena,
    ProtobufCBinaryData *out)
{
	nngrpc_encoding e = enc == NULL
	    ? NNGRPC_ENCODING_IDENTITY
	    : nngrpc_encoding_find(enc, strlen(enc));

	*out = in;
	if (e == NNGRPC_ENCODING_IDENTITY) {
		return (true);
	}
	return (e != NNGRPC_ENCODING_UNKNOWN
	    && nngrpc_encoding_decompress(
	           e, in.data, in.len, 4 << 20, arena, &out->data, &out->len)
	        == 0);
}

void
fuzz_rpc_call(const uint8_t *env, size_t len)
{
	const nngrpc_dispatch *d = fuzz_rpc_registry();
	Nngrpc__V1__Request   *req;
	Nngrpc__V1__Response  *resp;
	ProtobufCMessage      *in = NULL;
	ProtobufCMessage      *out = NULL;
	const fuzz_method     *m = NULL;
	const char            *field = NULL;
	bool                   in_utf8 = true;
	nng_msg               *reply = NULL;
	int64_t                now = nngrpc_now_ns();
	ProtobufCBinaryData    plain;
	nngrpc_arena           arena;
	int                    rv;

	/* What the request is, as a client library would see it. */
	nngrpc_arena_init(&arena);
	req = nngrpc__v1__request__unpack(NULL, len, env);
	if (req != NULL) {
		in_utf8 = strings_valid(&req->base, &field);
		m = fuzz_rpc_find(req->method);
		if (m != NULL
		    && plain_payload(map_value((void *const *) req->metadata,
		                         req->n_metadata, "nngrpc-encoding"),
		        req->payload, &arena, &plain)) {
			in = protobuf_c_message_unpack(
			    m->desc->input, NULL, plain.len, plain.data);
			if (in != NULL && in_utf8) {
				in_utf8 = strings_valid(in, &field);
			}
		}
	}

	check_peek(d, env, len);
	rv = nngrpc_dispatch_call(d, env, len, (nng_pipe) NNG_PIPE_INITIALIZER,
	    NULL, now, now, &reply);
	if (rv != 0 || reply == NULL) {
		die("nngrpc_dispatch_call returned %d", rv);
	}
	resp = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	if (resp == NULL) {
		die("the reply (%zu bytes) is not a nngrpc.v1.Response",
		    nng_msg_len(reply));
	}
	check_scan(reply, resp);
	if (!nngrpc_status_valid(resp->code)) {
		die("reply code %d is not a status code", (int) resp->code);
	}
	if (resp->code != NNGRPC_OK && resp->payload.len != 0) {
		die("code %d with a %zu-byte payload", (int) resp->code,
		    resp->payload.len);
	}
	if (resp->code == NNGRPC_OK) {
		if (m == NULL) {
			die("OK for a request that is not a call of a "
			    "registered method");
		}
		if (!plain_payload(map_value((void *const *) resp->trailers,
		                       resp->n_trailers, "nngrpc-encoding"),
		        resp->payload, &arena, &plain)) {
			die("%s: OK, but the payload does not decompress",
			    m->name);
		}
		out = protobuf_c_message_unpack(
		    m->desc->output, NULL, plain.len, plain.data);
		if (out == NULL) {
			die("%s: OK, but the payload (%zu bytes) is not a %s",
			    m->name, resp->payload.len, m->desc->output->name);
		}
	}
	if (in_utf8) {
		if (!strings_valid(&resp->base, &field)) {
			die("valid UTF-8 in, invalid UTF-8 out: Response.%s "
			    "(code %d, method %s)",
			    field, (int) resp->code, m ? m->name : "?");
		}
		if (out != NULL && !strings_valid(out, &field)) {
			die("valid UTF-8 in, invalid UTF-8 out: %s.%s",
			    m->desc->output->name, field);
		}
	}

	protobuf_c_message_free_unpacked(out, NULL);
	nngrpc__v1__response__free_unpacked(resp, NULL);
	protobuf_c_message_free_unpacked(in, NULL);
	nngrpc__v1__request__free_unpacked(req, NULL);
	nng_msg_free(reply);
	nngrpc_arena_fini(&arena);
}
