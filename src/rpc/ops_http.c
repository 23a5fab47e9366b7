/*
 * The ops HTTP endpoint: /healthz, /readyz and /metrics on NNG's HTTP
 * server.
 *
 * DESIGN
 * ------
 * NNG already carries an HTTP/1.1 server (keep-alive, HEAD, request
 * parsing, 404), so the endpoint is three handlers on one
 * nng_http_server and no code of our own touches a socket. Each handler
 * accepts every method (nng_http_handler_set_method(h, NULL)) and answers
 * anything but GET and HEAD itself with 405 and an Allow header, which
 * NNG's own method filter would leave out; for HEAD, NNG drops the body
 * and keeps its Content-Length.
 *
 * Handlers run synchronously on NNG's threads, so they must not block:
 * they read the hooks (which read atomics) or render the metrics (CPU
 * only, plus small /proc reads), build the response, and finish the aio
 * before returning.
 *
 * Lifetime: ops owns its hold on the server and its handlers. Stop stops
 * the server, which closes every connection and waits until no handler
 * runs; only then are the handlers removed and ops freed, so a handler
 * never sees a freed ops. Nothing here is shared between threads except
 * ops itself, immutable after start.
 */
#include "ops_http.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "metrics.h"

/* Largest request body read (and discarded) before answering; a larger
 * one gets 400 from NNG. Keeps keep-alive connections in sync. */
#define OPS_MAX_BODY 65536

typedef enum { EP_HEALTHZ, EP_READYZ, EP_METRICS, EP_COUNT } endpoint;

static const char *const ep_paths[EP_COUNT] = {
	[EP_HEALTHZ] = "/healthz",
	[EP_READYZ] = "/readyz",
	[EP_METRICS] = "/metrics",
};

struct nngrpc_ops {
	nngrpc_ops_hooks  o_hooks; /* copy; immutable */
	nng_http_server  *o_server;
	nng_http_handler *o_handlers[EP_COUNT]; /* added ones, or NULL */
	bool              o_started;
	int               o_port;
};

/* Sends one response through the handler's aio. Borrows body. */
static void
respond(nng_aio *aio, uint16_t status, const char *ctype, const char *body,
    size_t len, bool no_store, bool allow)
{
	nng_http_res *res;
	int           rv;

	if ((rv = nng_http_res_alloc(&res)) != 0) {
		nng_aio_finish(aio, rv);
		return;
	}
	if (((rv = nng_http_res_set_status(res, status)) != 0)
	    || ((rv = nng_http_res_set_header(res, "Content-Type", ctype))
	        != 0)
	    || (no_store
	        && ((rv = nng_http_res_set_header(
	                 res, "Cache-Control", "no-store"))
	            != 0))
	    || (allow
	        && ((rv = nng_http_res_set_header(res, "Allow", "GET, HEAD"))
	            != 0))
	    || ((rv = nng_http_res_copy_data(res, body, len)) != 0)) {
		nng_http_res_free(res);
		nng_aio_finish(aio, rv);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
respond_text(nng_aio *aio, uint16_t status, const char *text, bool no_store)
{
	respond(aio, status, "text/plain; charset=utf-8", text, strlen(text),
	    no_store, false);
}

/* Common prologue: the ops and whether the method may proceed (GET or
 * HEAD); answers 405 otherwise. */
static nngrpc_ops *
begin(nng_aio *aio)
{
	nng_http_req     *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	const char       *method;

	method = nng_http_req_get_method(req);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char text[] = "method not allowed\n";
		respond(aio, NNG_HTTP_STATUS_METHOD_NOT_ALLOWED,
		    "text/plain; charset=utf-8", text, sizeof(text) - 1, false,
		    true);
		return (NULL);
	}
	return (nng_http_handler_get_data(h));
}

static void
healthz_cb(nng_aio *aio)
{
	nngrpc_ops *ops = begin(aio);

	if (ops == NULL) {
		return;
	}
	if (ops->o_hooks.serving == NULL
	    || ops->o_hooks.serving(ops->o_hooks.arg)) {
		respond_text(aio, NNG_HTTP_STATUS_OK, "ok\n", true);
	} else {
		respond_text(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE,
		    "not serving\n", true);
	}
}

static void
readyz_cb(nng_aio *aio)
{
	nngrpc_ops *ops = begin(aio);

	if (ops == NULL) {
		return;
	}
	if (ops->o_hooks.ready == NULL
	    || ops->o_hooks.ready(ops->o_hooks.arg)) {
		respond_text(aio, NNG_HTTP_STATUS_OK, "ready\n", true);
	} else {
		respond_text(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE,
		    "not ready\n", true);
	}
}

static void
metrics_cb(nng_aio *aio)
{
	nngrpc_ops *ops = begin(aio);
	char       *text;
	size_t      len;

	if (ops == NULL) {
		return;
	}
	if (nngrpc_metrics_render(ops->o_hooks.metrics, &text, &len) != 0) {
		respond_text(aio, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR,
		    "out of memory\n", true);
		return;
	}
	respond(aio, NNG_HTTP_STATUS_OK, NNGRPC_METRICS_CONTENT_TYPE, text,
	    len, true, false);
	free(text);
}

static void (*const ep_cbs[EP_COUNT])(nng_aio *) = {
	[EP_HEALTHZ] = healthz_cb,
	[EP_READYZ] = readyz_cb,
	[EP_METRICS] = metrics_cb,
};

/*
 * Turns "HOST:PORT", "[V6]:PORT" or ":PORT" into "http://HOST:PORT/" in
 * url (urllen bytes). Returns false when addr is not one of those forms
 * or the port is not a number 0..65535.
 */
static bool
addr_to_url(const char *addr, char *url, size_t urllen)
{
	const char *colon;
	const char *host_end;
	const char *port;
	long        pn = 0;

	if (addr[0] == '[') {
		if ((host_end = strchr(addr, ']')) == NULL
		    || host_end == addr + 1 || host_end[1] != ':') {
			return (false);
		}
		colon = host_end + 1;
		host_end++; /* keep the brackets: NNG's URL parser wants them
		             */
	} else {
		if ((colon = strrchr(addr, ':')) == NULL
		    || memchr(addr, ':', (size_t) (colon - addr)) != NULL) {
			return (false); /* none, or a bare IPv6 address */
		}
		host_end = colon;
	}
	for (const char *p = addr; p < host_end; p++) {
		if (*p <= ' ' || *p == '/' || *p == '?' || *p == '#'
		    || *p == '@' || *p == '%' || *p == 0x7f) {
			return (false);
		}
	}
	port = colon + 1;
	if (*port == '\0' || strlen(port) > 5) {
		return (false);
	}
	for (const char *p = port; *p != '\0'; p++) {
		if (*p < '0' || *p > '9') {
			return (false);
		}
		pn = pn * 10 + (*p - '0');
	}
	if (pn > 65535) {
		return (false);
	}
	return (snprintf(url, urllen, "http://%.*s:%ld/",
	            (int) (host_end - addr), addr, pn)
	    < (int) urllen);
}

static void
ops_free(nngrpc_ops *ops)
{
	if (ops->o_server != NULL) {
		if (ops->o_started) {
			/* Closes every connection and waits until no
			 * handler runs. */
			nng_http_server_stop(ops->o_server);
		}
		for (int i = 0; i < EP_COUNT; i++) {
			if (ops->o_handlers[i] != NULL) {
				nng_http_server_del_handler(
				    ops->o_server, ops->o_handlers[i]);
				nng_http_handler_free(ops->o_handlers[i]);
			}
		}
		nng_http_server_release(ops->o_server);
	}
	free(ops);
}

static int
add_endpoint(nngrpc_ops *ops, endpoint ep)
{
	nng_http_handler *h;
	int               rv;

	if ((rv = nng_http_handler_alloc(&h, ep_paths[ep], ep_cbs[ep])) != 0) {
		return (rv);
	}
	if (((rv = nng_http_handler_set_method(h, NULL)) != 0)
	    || ((rv = nng_http_handler_collect_body(h, true, OPS_MAX_BODY))
	        != 0)
	    || ((rv = nng_http_handler_set_data(h, ops, NULL)) != 0)
	    || ((rv = nng_http_server_add_handler(ops->o_server, h)) != 0)) {
		nng_http_handler_free(h);
		return (rv);
	}
	ops->o_handlers[ep] = h;
	return (0);
}

static int
bound_port(nng_http_server *server, int fallback)
{
	nng_sockaddr sa;

	if (nng_http_server_get_addr(server, &sa) != 0) {
		return (fallback);
	}
	switch (sa.s_family) {
	case NNG_AF_INET:
		return (ntohs(sa.s_in.sa_port));
	case NNG_AF_INET6:
		return (ntohs(sa.s_in6.sa_port));
	default:
		return (fallback);
	}
}

int
nngrpc_ops_start(const char *addr, const nngrpc_ops_hooks *hooks,
    nngrpc_ops **opsp, char *err, size_t errlen)
{
	nngrpc_ops *ops;
	nng_url    *url;
	char        urlstr[512];
	int         rv;

	if (addr == NULL || hooks == NULL || opsp == NULL) {
		if (errlen > 0) {
			snprintf(err, errlen, "ops: no address or hooks");
		}
		return (NNG_EINVAL);
	}
	if (!addr_to_url(addr, urlstr, sizeof(urlstr))
	    || nng_url_parse(&url, urlstr) != 0) {
		if (errlen > 0) {
			snprintf(err, errlen,
			    "ops address \"%.200s\": expected HOST:PORT",
			    addr);
		}
		return (NNG_EADDRINVAL);
	}
	if ((ops = calloc(1, sizeof(*ops))) == NULL) {
		nng_url_free(url);
		if (errlen > 0) {
			snprintf(err, errlen, "ops %.200s: %s", addr,
			    nng_strerror(NNG_ENOMEM));
		}
		return (NNG_ENOMEM);
	}
	ops->o_hooks = *hooks;
	ops->o_port = atoi(url->u_port);
	rv = nng_http_server_hold(&ops->o_server, url);
	nng_url_free(url);
	if (rv != 0) {
		ops->o_server = NULL;
		goto fail;
	}
	for (int i = 0; i < EP_COUNT; i++) {
		if (i == EP_METRICS && hooks->metrics == NULL) {
			continue;
		}
		if ((rv = add_endpoint(ops, (endpoint) i)) != 0) {
			goto fail;
		}
	}
	if ((rv = nng_http_server_start(ops->o_server)) != 0) {
		goto fail;
	}
	ops->o_started = true;
	ops->o_port = bound_port(ops->o_server, ops->o_port);
	*opsp = ops;
	return (0);

fail:
	if (errlen > 0) {
		snprintf(
		    err, errlen, "ops %.200s: %s", addr, nng_strerror(rv));
	}
	ops_free(ops);
	return (rv);
}

int
nngrpc_ops_port(const nngrpc_ops *ops)
{
	return (ops->o_port);
}

void
nngrpc_ops_stop(nngrpc_ops *ops)
{
	if (ops != NULL) {
		ops_free(ops);
	}
}
