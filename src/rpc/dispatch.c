/*
 * Dispatch: a sorted table of "/package.Service/Method" names, each with
 * its protobuf-c method descriptor, handler and service (impl copy, user
 * pointer). The table is built before the server starts, then sealed and
 * only read, so workers look methods up without a lock.
 *
 * One call: decode the envelope into the call's arena, check the deadline,
 * look the method up, run the interceptors' `before` hooks (the auth
 * token check among them), check the service is serving, decode the input
 * into the arena, initialise the output, run the handler, encode the
 * reply, count it, run the `after` hooks (the access log among them), end
 * the call. The handler's
 * output struct is allocated in the arena too; its fields are borrowed
 * (see nngrpc.h) and never freed here.
 */
#include "dispatch.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nngrpc/clock.h>

#include "call.h"
#include "encoding.h"
#include "envelope.h"
#include "log.h"
#include "wire.h"

/* Replies smaller than this go uncompressed even when the client accepts
 * compression: the bytes saved would not pay for the CPU. */
#define NNGRPC_COMPRESS_MIN_BYTES 1024

typedef struct service {
	const ProtobufCServiceDescriptor *s_desc;
	const nngrpc_file_info           *s_file; /* borrowed, or NULL */
	void                             *s_impl; /* owned copy */
	void                             *s_user; /* borrowed */
	bool                              s_open; /* no auth token needed */
	atomic_bool                       s_serving;
} service;

typedef struct method {
	char                            *m_name; /* owned */
	const ProtobufCMethodDescriptor *m_desc;
	nngrpc_method_fn                 m_fn; /* NULL: unimplemented */
	const service                   *m_svc;
	int                              m_metric; /* metrics index */
	bool                             m_inline; /* never blocks */
	bool                             m_reload; /* rebuilds loaded state */
} method;

struct nngrpc_dispatch {
	method             *d_methods;
	size_t              d_n_methods;
	service           **d_services; /* sorted by name once sealed */
	size_t              d_n_services;
	bool                d_sealed;
	nngrpc_interceptor *d_interceptors; /* in the order added */
	size_t              d_n_interceptors;
	nngrpc_metrics     *d_metrics;            /* borrowed, or NULL */
	atomic_bool         d_serving;            /* the whole server */
	size_t              d_max_message;        /* the request size limit */
	uint64_t            d_default_timeout_us; /* for calls with none; 0 */
	uint64_t            d_max_timeout_us;     /* cap; 0: none */
	char                d_max_message_text[24];
	/* Process isolation: who runs handlers instead (or NULL). */
	nngrpc_dispatch_runner d_runner;
	void                  *d_runner_arg;
};

int
nngrpc_dispatch_alloc(nngrpc_dispatch **dp)
{
	nngrpc_dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return (NNG_ENOMEM);
	}
	atomic_init(&d->d_serving, true);
	nngrpc_dispatch_set_max_message(d, NNGRPC_DEFAULT_MAX_MESSAGE_BYTES);
	*dp = d;
	return (0);
}

void
nngrpc_dispatch_set_max_message(nngrpc_dispatch *d, size_t bytes)
{
	d->d_max_message = bytes;
	snprintf(d->d_max_message_text, sizeof(d->d_max_message_text), "%zu",
	    bytes);
}

void
nngrpc_dispatch_set_deadlines(
    nngrpc_dispatch *d, uint64_t default_us, uint64_t max_us)
{
	d->d_default_timeout_us = default_us;
	d->d_max_timeout_us = max_us;
}

void
nngrpc_dispatch_free(nngrpc_dispatch *d)
{
	if (d == NULL) {
		return;
	}
	for (size_t i = 0; i < d->d_n_methods; i++) {
		free(d->d_methods[i].m_name);
	}
	for (size_t i = 0; i < d->d_n_services; i++) {
		free(d->d_services[i]->s_impl);
		free(d->d_services[i]);
	}
	free(d->d_methods);
	free(d->d_services);
	free(d->d_interceptors);
	free(d);
}

/* Compares name (len bytes, not NUL-terminated, possibly holding NULs:
 * it comes from the wire) with a NUL-terminated string in strcmp()'s
 * order. Never reads past either. */
static int
name_cmp(const char *name, size_t len, const char *s)
{
	size_t n = strlen(s);
	int    c = memcmp(name, s, len < n ? len : n);

	if (c != 0) {
		return (c);
	}
	return (len < n ? -1 : len > n ? 1 : 0);
}

static const method *
find_n(const nngrpc_dispatch *d, const char *name, size_t len)
{
	size_t lo = 0, hi = d->d_n_methods;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int    c = name_cmp(name, len, d->d_methods[mid].m_name);
		if (c == 0) {
			return (&d->d_methods[mid]);
		}
		if (c < 0) {
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}
	return (NULL);
}

static const method *
find(const nngrpc_dispatch *d, const char *name)
{
	return (find_n(d, name, strlen(name)));
}

static int
method_cmp(const void *a, const void *b)
{
	return (strcmp(
	    ((const method *) a)->m_name, ((const method *) b)->m_name));
}

/* Returns new: a service record holding a copy of impl. */
static service *
service_new(const ProtobufCServiceDescriptor *desc,
    const nngrpc_file_info *file, const void *impl, size_t impl_size,
    void *user)
{
	service *svc = calloc(1, sizeof(*svc));

	if (svc == NULL) {
		return (NULL);
	}
	svc->s_desc = desc;
	svc->s_file = file;
	svc->s_user = user;
	atomic_init(&svc->s_serving, true);
	if (impl_size > 0) {
		if ((svc->s_impl = malloc(impl_size)) == NULL) {
			free(svc);
			return (NULL);
		}
		memcpy(svc->s_impl, impl, impl_size);
	}
	return (svc);
}

/* Writes svc's methods, "/Service/Method", into the n free slots at the
 * end of the table (room for them is there). Returns 0, NNG_ENOMEM or
 * NNG_EEXIST (a name already registered); on failure none is left. */
static int
fill_methods(nngrpc_dispatch *d, service *svc, const nngrpc_method_fn *fns)
{
	const ProtobufCServiceDescriptor *desc = svc->s_desc;
	method                           *ms = d->d_methods + d->d_n_methods;
	int                               rv = 0;
	size_t                            i;

	for (i = 0; i < desc->n_methods && rv == 0; i++) {
		size_t len
		    = strlen(desc->name) + strlen(desc->methods[i].name) + 3;

		ms[i] = (method) { .m_desc = &desc->methods[i],
			.m_fn = fns[i],
			.m_svc = svc,
			.m_metric = -1 };
		if ((ms[i].m_name = malloc(len)) == NULL) {
			rv = NNG_ENOMEM;
			break;
		}
		snprintf(ms[i].m_name, len, "/%s/%s", desc->name,
		    desc->methods[i].name);
		/* protoc rejects duplicates within one service; find() sees
		 * the table sorted as far as the services before. */
		if (find(d, ms[i].m_name) != NULL) {
			rv = NNG_EEXIST;
		}
	}
	if (rv != 0) {
		while (i-- > 0) {
			free(ms[i].m_name);
		}
	}
	return (rv);
}

int
nngrpc_dispatch_add_service(nngrpc_dispatch *d,
    const ProtobufCServiceDescriptor *desc, const nngrpc_file_info *file,
    const nngrpc_method_fn *fns, const void *impl, size_t impl_size,
    void *user)
{
	service  *svc;
	service **svcs;
	method   *ms;
	int       rv = NNG_ENOMEM;

	if (d->d_sealed) {
		return (NNG_EBUSY);
	}
	if ((svc = service_new(desc, file, impl, impl_size, user)) == NULL) {
		return (NNG_ENOMEM);
	}
	svcs = realloc(d->d_services, (d->d_n_services + 1) * sizeof(*svcs));
	if (svcs != NULL) {
		d->d_services = svcs;
		ms = realloc(d->d_methods,
		    (d->d_n_methods + desc->n_methods) * sizeof(*ms));
		if (ms != NULL) {
			d->d_methods = ms;
			rv = fill_methods(d, svc, fns);
		}
	}
	if (rv != 0) {
		free(svc->s_impl);
		free(svc);
		return (rv);
	}
	d->d_n_methods += desc->n_methods;
	d->d_services[d->d_n_services++] = svc;
	/* Sorted after each service, so find() works in fill_methods(). */
	qsort(d->d_methods, d->d_n_methods, sizeof(method), method_cmp);
	return (0);
}

static int
service_cmp(const void *a, const void *b)
{
	return (strcmp((*(service *const *) a)->s_desc->name,
	    (*(service *const *) b)->s_desc->name));
}

void
nngrpc_dispatch_seal(nngrpc_dispatch *d)
{
	qsort(d->d_services, d->d_n_services, sizeof(service *), service_cmp);
	for (size_t i = 0; i < d->d_n_methods; i++) {
		/* -1 when the registry is full: counted as "unknown". */
		d->d_methods[i].m_metric = d->d_metrics == NULL
		    ? -1
		    : nngrpc_metrics_add_method(
		        d->d_metrics, d->d_methods[i].m_name);
	}
	d->d_sealed = true;
}

static service *
find_service(const nngrpc_dispatch *d, const char *name)
{
	for (size_t i = 0; i < d->d_n_services; i++) {
		if (strcmp(d->d_services[i]->s_desc->name, name) == 0) {
			return (d->d_services[i]);
		}
	}
	return (NULL);
}

void
nngrpc_dispatch_set_metrics(nngrpc_dispatch *d, nngrpc_metrics *metrics)
{
	d->d_metrics = metrics;
}

int
nngrpc_dispatch_set_inline(nngrpc_dispatch *d, const char *name, bool on)
{
	method *m = (method *) find(d, name);
	if (d->d_sealed) {
		return (NNG_EBUSY);
	}
	if (m == NULL) {
		return (NNG_ENOENT);
	}
	m->m_inline = on;
	return (0);
}

int
nngrpc_dispatch_set_reload(nngrpc_dispatch *d, const char *name)
{
	method *m = (method *) find(d, name);
	if (d->d_sealed) {
		return (NNG_EBUSY);
	}
	if (m == NULL) {
		return (NNG_ENOENT);
	}
	m->m_reload = true;
	return (0);
}

void
nngrpc_dispatch_set_runner(
    nngrpc_dispatch *d, nngrpc_dispatch_runner fn, void *arg)
{
	d->d_runner = fn;
	d->d_runner_arg = arg;
}

bool
nngrpc_dispatch_peek_inline(
    const nngrpc_dispatch *d, const uint8_t *body, size_t len)
{
	const method *m;
	const char   *name;
	size_t        n;

	/* An envelope whose method is not its first field just takes the
	 * queue. */
	if (!nngrpc_wire_peek_method(body, len, &name, &n)) {
		return (false);
	}
	m = find_n(d, name, n);
	return (m != NULL && m->m_inline);
}

int
nngrpc_dispatch_set_open(nngrpc_dispatch *d, const char *name)
{
	service *svc = find_service(d, name);
	if (svc == NULL) {
		return (NNG_ENOENT);
	}
	svc->s_open = true;
	return (0);
}

int
nngrpc_dispatch_add_interceptor(
    nngrpc_dispatch *d, const nngrpc_interceptor *ic)
{
	nngrpc_interceptor *v;

	if (d->d_sealed) {
		return (NNG_EBUSY);
	}
	if (ic->before == NULL && ic->after == NULL) {
		return (NNG_EINVAL);
	}
	v = realloc(d->d_interceptors, (d->d_n_interceptors + 1) * sizeof(*v));
	if (v == NULL) {
		return (NNG_ENOMEM);
	}
	v[d->d_n_interceptors++] = *ic;
	d->d_interceptors = v;
	return (0);
}

int
nngrpc_dispatch_set_serving(nngrpc_dispatch *d, const char *name, bool serving)
{
	service *svc;

	if (name == NULL || name[0] == '\0') {
		atomic_store(&d->d_serving, serving);
		return (0);
	}
	if ((svc = find_service(d, name)) == NULL) {
		return (NNG_ENOENT);
	}
	atomic_store(&svc->s_serving, serving);
	return (0);
}

int
nngrpc_dispatch_serving(
    const nngrpc_dispatch *d, const char *name, bool *servingp)
{
	bool     all = atomic_load(&d->d_serving);
	service *svc;

	if (name == NULL || name[0] == '\0') {
		*servingp = all;
		return (0);
	}
	if ((svc = find_service(d, name)) == NULL) {
		return (NNG_ENOENT);
	}
	*servingp = all && atomic_load(&svc->s_serving);
	return (0);
}

size_t
nngrpc_dispatch_service_count(const nngrpc_dispatch *d)
{
	return (d->d_n_services);
}

const char *
nngrpc_dispatch_service_name(const nngrpc_dispatch *d, size_t i)
{
	return (i < d->d_n_services ? d->d_services[i]->s_desc->name : NULL);
}

const nngrpc_file_info *
nngrpc_dispatch_find_symbol(const nngrpc_dispatch *d, const char *symbol)
{
	for (size_t i = 0; i < d->d_n_services; i++) {
		const nngrpc_file_info *f = d->d_services[i]->s_file;
		if (f == NULL) {
			continue;
		}
		for (const char *const *sym = f->symbols; *sym != NULL;
		     sym++) {
			if (strcmp(*sym, symbol) == 0) {
				return (f);
			}
		}
	}
	return (NULL);
}

size_t
nngrpc_dispatch_count(const nngrpc_dispatch *d)
{
	return (d->d_n_methods);
}

/* Copies a client-supplied name for a status message: printable ASCII
 * only, at most 120 characters. */
static void
printable(char *out, size_t outlen, const char *in)
{
	size_t n = 0;
	for (; *in != '\0' && n + 4 < outlen && n < 120; in++) {
		unsigned char ch = (unsigned char) *in;
		out[n++] = isprint(ch) ? (char) ch : '?';
	}
	if (*in != '\0' && n + 4 < outlen) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Runs the interceptors' `before` hooks in order; the first status other
 * than OK refuses the call. */
static nngrpc_status
run_before(const nngrpc_dispatch *d, nngrpc_call *call)
{
	for (size_t i = 0; i < d->d_n_interceptors; i++) {
		const nngrpc_interceptor *ic = &d->d_interceptors[i];
		nngrpc_status             st;

		if (ic->before == NULL
		    || (st = ic->before(call, ic->arg)) == NNGRPC_OK) {
			continue;
		}
		if (!nngrpc_status_valid((int) st)) {
			return (nngrpc_call_error(call, NNGRPC_UNKNOWN,
			    "interceptor %s returned status %d, which is not "
			    "a status code",
			    ic->name != NULL ? ic->name : "?", (int) st));
		}
		return (st);
	}
	return (NNGRPC_OK);
}

/* Runs the `after` hooks, last added first. */
static void
run_after(const nngrpc_dispatch *d, nngrpc_call *call, nngrpc_status st)
{
	for (size_t i = d->d_n_interceptors; i-- > 0;) {
		const nngrpc_interceptor *ic = &d->d_interceptors[i];
		if (ic->after != NULL) {
			ic->after(call, st, ic->arg);
		}
	}
}

/* A call's deadline: its own timeout, or the server's default when it has
 * none, at most the server's maximum. */
static int64_t
deadline_of(const nngrpc_dispatch *d, int64_t recv_ns, uint64_t timeout_us)
{
	if (timeout_us == 0) {
		timeout_us = d->d_default_timeout_us;
	}
	if (d->d_max_timeout_us != 0
	    && (timeout_us == 0 || timeout_us > d->d_max_timeout_us)) {
		timeout_us = d->d_max_timeout_us;
	}
	if (timeout_us == 0
	    || timeout_us > (uint64_t) (NNGRPC_NO_DEADLINE - recv_ns) / 1000) {
		return (NNGRPC_NO_DEADLINE);
	}
	return (recv_ns + (int64_t) timeout_us * 1000);
}

/* Reads the reserved metadata keys (docs/compatibility.md) in one pass:
 * the request id, nngrpc-accept-encoding, nngrpc-encoding. The first of a
 * key given twice counts, as for nngrpc_call_metadata(). */
static void
read_reserved(nngrpc_call *call)
{
	const Nngrpc__V1__Request *req = call->c_req;

	for (size_t i = 0; i < req->n_metadata; i++) {
		const char  *key = req->metadata[i]->key;
		const char  *value = req->metadata[i]->value;
		const char **slot = NULL;

		if (key == NULL || value == NULL
		    || strncmp(key, "nngrpc-", 7) != 0) {
			continue;
		}
		if (strcmp(key + 7, "request-id") == 0) {
			slot = &call->c_request_id;
		} else if (strcmp(key + 7, "accept-encoding") == 0) {
			slot = &call->c_accept;
		} else if (strcmp(key + 7, "encoding") == 0) {
			slot = &call->c_encoding;
		}
		if (slot != NULL && *slot == NULL) {
			*slot = value;
		}
	}
}

/* A request payload's encoding this server does not decode: the handler
 * does not run, and the client learns what the server decodes. */
static nngrpc_status
unknown_encoding(nngrpc_call *call)
{
	char name[64];

	printable(name, sizeof(name), call->c_encoding);
	call->c_offer_caps = true;
	(void) nngrpc_call_set_trailer(call, "nngrpc-not-run", "1");
	return (nngrpc_call_error(call, NNGRPC_UNIMPLEMENTED,
	    "request payload encoding \"%s\" is not supported (this server "
	    "decodes " NNGRPC_ENCODINGS ")",
	    name));
}

/* Decodes the envelope into the call: method, metadata, request id (set
 * as the thread's for every line it logs), deadline, and whether the
 * payload's encoding is one the server decodes. */
static nngrpc_status
open_envelope(const nngrpc_dispatch *d, nngrpc_call *call, const uint8_t *body,
    size_t len, int64_t recv_ns, int64_t start_ns)
{
	const Nngrpc__V1__Request *req
	    = nngrpc_envelope_decode(&call->c_arena, body, len);

	if (req == NULL) {
		return (nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "cannot decode the request envelope (%zu bytes): not a "
		    "nngrpc.v1.Request",
		    len));
	}
	call->c_req = req;
	call->c_method = req->method;
	read_reserved(call);
	if (call->c_request_id == NULL) {
		call->c_request_id = "";
	} else {
		nngrpc_log_set_request_id(call->c_request_id);
	}
	call->c_deadline = deadline_of(d, recv_ns, req->timeout_us);
	if (call->c_deadline <= start_ns) {
		return (nngrpc_call_error(call, NNGRPC_DEADLINE_EXCEEDED,
		    "deadline exceeded after %lld us in the server queue",
		    (long long) ((start_ns - recv_ns) / 1000)));
	}
	if (call->c_encoding != NULL
	    && nngrpc_encoding_find(call->c_encoding, strlen(call->c_encoding))
	        == NNGRPC_ENCODING_UNKNOWN) {
		return (unknown_encoding(call));
	}
	return (NNGRPC_OK);
}

/* Whether the method may run now: registered, let through by the
 * interceptors, its service serving, a handler there. */
static nngrpc_status
admit(const nngrpc_dispatch *d, nngrpc_call *call, const method **mp)
{
	const method *m = find(d, call->c_method);
	char          name[128];
	nngrpc_status st;

	if (m == NULL) {
		printable(name, sizeof(name), call->c_method);
		return (nngrpc_call_error(call, NNGRPC_UNIMPLEMENTED,
		    "unknown method \"%s\"", name));
	}
	call->c_open = m->m_svc->s_open;
	if ((st = run_before(d, call)) != NNGRPC_OK) {
		return (st);
	}
	if (!m->m_svc->s_open
	    && (!atomic_load(&d->d_serving)
	        || !atomic_load(&m->m_svc->s_serving))) {
		/* Tells clients the handler never ran, so even a call that
		 * is not idempotent may safely go to another server. */
		(void) nngrpc_call_set_trailer(call, NNGRPC_NOT_RUN_KEY, "1");
		return (nngrpc_call_error(call, NNGRPC_UNAVAILABLE,
		    "%s is not serving (starting or draining)",
		    m->m_svc->s_desc->name));
	}
	if (m->m_fn == NULL) {
		return (nngrpc_call_error(call, NNGRPC_UNIMPLEMENTED,
		    "method %s is not implemented by this server", m->m_name));
	}
	*mp = m;
	return (NNGRPC_OK);
}

/* The request payload as the input message's bytes: decompressed when
 * the client compressed it, into at most max bytes. */
static nngrpc_status
request_payload(nngrpc_call *call, size_t max, ProtobufCBinaryData *in)
{
	nngrpc_encoding e = NNGRPC_ENCODING_IDENTITY;
	size_t          zlen = call->c_req->payload.len;
	int             rv;

	*in = call->c_req->payload;
	if (call->c_encoding != NULL) {
		e = nngrpc_encoding_find(
		    call->c_encoding, strlen(call->c_encoding));
	}
	if (e == NNGRPC_ENCODING_IDENTITY) {
		return (NNGRPC_OK);
	}
	rv = nngrpc_encoding_decompress(e, call->c_req->payload.data, zlen,
	    max, &call->c_arena, &in->data, &in->len);
	if (rv == NNG_EMSGSIZE) {
		return (nngrpc_call_error(call, NNGRPC_RESOURCE_EXHAUSTED,
		    "request payload (%zu bytes of %s) decompresses to more "
		    "than the server's limit of %zu bytes",
		    zlen, nngrpc_encoding_name(e), max));
	}
	if (rv == NNG_ENOMEM) {
		return (nngrpc_call_error(
		    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory"));
	}
	if (rv != 0) {
		return (nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "cannot decompress the request payload (%zu bytes): not "
		    "a whole %s stream",
		    zlen, nngrpc_encoding_name(e)));
	}
	return (NNGRPC_OK);
}

/* Decodes the input (max: the most a compressed payload decompresses
 * to), initialises the output and runs the handler; the output to encode
 * goes to *outputp when it succeeds. */
static nngrpc_status
invoke(
    const method *m, nngrpc_call *call, size_t max, ProtobufCMessage **outputp)
{
	ProtobufCMessage   *input, *output;
	ProtobufCBinaryData in;
	nngrpc_status       st;

	call->c_metric = m->m_metric;
	if (nngrpc_log_enabled(NNGRPC_LOG_DEBUG)) {
		nngrpc_log(NNGRPC_LOG_DEBUG, "call %s", m->m_name);
	}
	call->c_impl = m->m_svc->s_impl;
	call->c_user = m->m_svc->s_user;
	if ((st = request_payload(call, max, &in)) != NNGRPC_OK) {
		return (st);
	}
	input = protobuf_c_message_unpack(
	    m->m_desc->input, &call->c_arena.a_pb, in.len, in.data);
	if (input == NULL) {
		return (nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "cannot decode the request payload (%zu bytes) as %s",
		    in.len, m->m_desc->input->name));
	}
	if ((output = nngrpc_call_new_message(call, m->m_desc->output))
	    == NULL) {
		return (nngrpc_call_error(
		    call, NNGRPC_RESOURCE_EXHAUSTED, "out of memory"));
	}
	st = m->m_fn(call, input, output);
	if (!nngrpc_status_valid((int) st)) {
		return (nngrpc_call_error(call, NNGRPC_UNKNOWN,
		    "handler of %s returned status %d, which is not a status "
		    "code",
		    m->m_name, (int) st));
	}
	if (st == NNGRPC_OK) {
		*outputp = output;
	}
	return (st);
}

/* Runs the call up to the handler's status; the output to encode, if any,
 * goes to *outputp. */
static nngrpc_status
run(const nngrpc_dispatch *d, nngrpc_call *call, const uint8_t *body,
    size_t len, int64_t recv_ns, int64_t start_ns, ProtobufCMessage **outputp)
{
	const method *m = NULL;
	nngrpc_status st;

	if ((st = open_envelope(d, call, body, len, recv_ns, start_ns))
	        != NNGRPC_OK
	    || (st = admit(d, call, &m)) != NNGRPC_OK) {
		return (st);
	}
	call->c_metric = m->m_metric;
	if (call->c_cancel != NULL && nngrpc_call_cancelled(call)) {
		(void) nngrpc_call_set_trailer(call, NNGRPC_NOT_RUN_KEY, "1");
		return (nngrpc_call_error(call, NNGRPC_CANCELLED,
		    "cancelled by the client after %lld us in the server "
		    "queue: not run",
		    (long long) ((start_ns - recv_ns) / 1000)));
	}
	if (d->d_runner != NULL && !m->m_inline && !m->m_svc->s_open) {
		return (d->d_runner(d->d_runner_arg, call,
		    (uint32_t) (m - d->d_methods), m->m_reload, body, len,
		    &call->c_payload));
	}
	return (invoke(m, call, d->d_max_message, outputp));
}

/* Compresses an OK reply's payload with the first encoding the request
 * accepts, when it is NNGRPC_COMPRESS_MIN_BYTES or more and compression
 * makes it smaller; says so in the nngrpc-encoding trailer. Anything
 * that fails leaves the reply as it was. */
static void
compress_reply(nngrpc_call *call, nngrpc_reply *r)
{
	nngrpc_encoding e;
	const uint8_t  *plain = r->payload;
	size_t          len = r->payload_len, zlen;
	uint8_t        *packed, *z;

	if (call->c_accept == NULL
	    || (e = nngrpc_encoding_pick(call->c_accept))
	        == NNGRPC_ENCODING_IDENTITY) {
		return;
	}
	if (r->output != NULL) {
		len = protobuf_c_message_get_packed_size(r->output);
		if (len < NNGRPC_COMPRESS_MIN_BYTES
		    || (packed = nngrpc_arena_alloc(&call->c_arena, len))
		        == NULL) {
			return;
		}
		protobuf_c_message_pack(r->output, packed);
		r->output = NULL; /* packed once: sent from here either way */
		r->payload = plain = packed;
		r->payload_len = len;
	}
	if (len < NNGRPC_COMPRESS_MIN_BYTES
	    || nngrpc_encoding_compress(
	           e, plain, len, &call->c_arena, &z, &zlen)
	        != 0
	    || zlen >= len
	    || nngrpc_call_set_trailer(
	           call, "nngrpc-encoding", nngrpc_encoding_name(e))
	        != 0) {
		return;
	}
	r->payload = z;
	r->payload_len = zlen;
}

/* The capability trailers, on every reply to a request that asked for
 * them (nngrpc-accept-encoding) once it is decoded. */
static void
add_capabilities(const nngrpc_dispatch *d, nngrpc_call *call)
{
	if (call->c_accept == NULL && !call->c_offer_caps) {
		return;
	}
	/* Out of memory: the client reads the reply as "not learned yet". */
	if (nngrpc_call_set_trailer(
	        call, "nngrpc-accept-encoding", NNGRPC_ENCODINGS)
	    == 0) {
		(void) nngrpc_call_set_trailer(
		    call, "nngrpc-max-message-bytes", d->d_max_message_text);
	}
}

/* Fills the reply from what the call left: status, message, payload (the
 * output, or bytes a runner packed; compressed if the client accepts
 * it), trailers (the capability trailers added). */
static void
build_reply(const nngrpc_dispatch *d, nngrpc_call *call, nngrpc_status st,
    const ProtobufCMessage *output, nngrpc_reply *r)
{
	r->code = (int32_t) st;
	if (call->c_message != NULL) {
		r->message = call->c_message;
		r->message_len = call->c_message_len;
	} else if (st != NNGRPC_OK && call->c_oom) {
		r->message = "out of memory";
		r->message_len = strlen(r->message);
	}
	if (st == NNGRPC_OK) {
		r->output = output;
		if (output == NULL) { /* packed by a runner */
			r->payload = call->c_payload.data;
			r->payload_len = call->c_payload.len;
		}
		compress_reply(call, r);
	}
	add_capabilities(d, call);
	r->trailers = call->c_trailers;
	r->n_trailers = call->c_n_trailers;
}

int
nngrpc_dispatch_call(const nngrpc_dispatch *d, const uint8_t *body, size_t len,
    nng_pipe pipe, const atomic_bool *cancelled, int64_t recv_ns,
    int64_t start_ns, nng_msg **replyp)
{
	nngrpc_reply      reply = { 0 };
	ProtobufCMessage *output = NULL;
	nngrpc_call       call;
	nngrpc_status     st;
	int64_t           end_ns;
	int               rv;

	nngrpc_call_init(&call);
	call.c_pipe = pipe;
	call.c_cancel = cancelled;
	call.c_queue_us = (start_ns - recv_ns) / 1000;
	st = run(d, &call, body, len, recv_ns, start_ns, &output);
	build_reply(d, &call, st, output, &reply);
	end_ns = nngrpc_now_ns();
	call.c_run_us = (end_ns - start_ns) / 1000;
	reply.queue_us = (uint64_t) call.c_queue_us;
	reply.run_us = (uint64_t) call.c_run_us;
	rv = nngrpc_envelope_encode(&reply, replyp);
	nngrpc_metrics_call_done(d->d_metrics, call.c_metric, (int) st,
	    start_ns - recv_ns, end_ns - start_ns, len,
	    rv == 0 ? nng_msg_len(*replyp) : 0);
	run_after(d, &call, st);
	if (call.c_request_id != NULL && call.c_request_id[0] != '\0') {
		nngrpc_log_set_request_id(NULL);
	}
	nngrpc_call_fini(&call);
	return (rv);
}

nngrpc_status
nngrpc_dispatch_invoke(const nngrpc_dispatch *d, nngrpc_call *call,
    uint32_t index, const uint8_t *body, size_t len, int64_t recv_ns,
    ProtobufCBuffer *out)
{
	ProtobufCMessage *output = NULL;
	const method     *m;
	nngrpc_status     st;

	/* start_ns = recv_ns: the front end checked the deadline. */
	if ((st = open_envelope(d, call, body, len, recv_ns, recv_ns))
	    != NNGRPC_OK) {
		return (st);
	}
	m = index == NNGRPC_DISPATCH_ANY_METHOD ? find(d, call->c_method)
	    : index < d->d_n_methods            ? &d->d_methods[index]
	                                        : NULL;
	if (m == NULL || strcmp(m->m_name, call->c_method) != 0
	    || m->m_fn == NULL) {
		char name[128];
		printable(name, sizeof(name), call->c_method);
		return (nngrpc_call_error(call, NNGRPC_UNIMPLEMENTED,
		    "method \"%s\" is not served here", name));
	}
	if ((st = invoke(m, call, d->d_max_message, &output)) == NNGRPC_OK
	    && output != NULL) {
		protobuf_c_message_pack_to_buffer(output, out);
	}
	return (st);
}
