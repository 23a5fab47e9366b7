/*
 * The ops endpoint: a small HTTP/1.1 server, on its own address, for
 * orchestrators and monitoring (NNG's own HTTP server, no other library).
 *
 *   GET /healthz  200 "ok\n" while hooks->serving says so, else 503
 *                 "not serving\n" (liveness: is the server taking calls)
 *   GET /readyz   the same with hooks->ready (readiness: send traffic?)
 *   GET /metrics  200, Prometheus text format (version 0.0.4)
 *
 * HEAD is answered like GET without a body; any other method gets 405
 * with "Allow: GET, HEAD"; any other path 404 (NNG's own error page).
 * Bodies are text/plain; health answers carry "Cache-Control: no-store".
 *
 * Threads: the hooks and the metrics render run on NNG's HTTP threads,
 * any number at once: serving() and ready() must be thread-safe, quick and
 * never block (read an atomic). Payloads and secrets are never exposed:
 * only the hooks' answers and the metrics are.
 */
#ifndef NNGRPC_OPS_HTTP_H
#define NNGRPC_OPS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

typedef struct nngrpc_ops nngrpc_ops;

typedef struct nngrpc_ops_hooks {
	/* true: /healthz 200, else 503. NULL: always 200. */
	bool (*serving)(void *arg);
	/* true: /readyz 200, else 503. NULL: always 200. */
	bool (*ready)(void *arg);
	/* Rendered by /metrics; NULL: /metrics is 404. Borrowed until
	 * nngrpc_ops_stop() returns. */
	nngrpc_metrics *metrics;
	/* Handed to serving() and ready(); borrowed like metrics. */
	void *arg;
} nngrpc_ops_hooks;

/*
 * Starts serving on addr: "HOST:PORT" ("127.0.0.1:8080", "0.0.0.0:8080",
 * "[::1]:8080", "localhost:8080") or ":PORT" for every interface. Port 0
 * picks a free port (see nngrpc_ops_port()). Borrows addr (copied) and
 * hooks (the struct is copied; what it points to is borrowed until stop).
 * Returns new: *opsp, stopped and freed with nngrpc_ops_stop(). On failure
 * returns an nng error (NNG_EADDRINVAL for a malformed addr, NNG_EINVAL
 * for NULL arguments, NNG_EADDRINUSE, NNG_ENOMEM, ...) and writes one line
 * into err (e.g. "ops 127.0.0.1:8080: Address in use"); nothing is left
 * listening. err may be NULL when errlen is 0.
 *
 * One ops endpoint per address per process: NNG shares one HTTP server
 * between holders of the same address.
 */
int nngrpc_ops_start(const char *addr, const nngrpc_ops_hooks *hooks,
    nngrpc_ops **opsp, char *err, size_t errlen);

/* The TCP port the endpoint listens on (the one chosen when addr asked
 * for port 0). */
int nngrpc_ops_port(const nngrpc_ops *ops);

/* Stops listening, closes every connection, waits for running handlers to
 * return and frees ops. NULL is a no-op. After it returns the hooks are no
 * longer called. */
void nngrpc_ops_stop(nngrpc_ops *ops);

#endif /* NNGRPC_OPS_HTTP_H */
