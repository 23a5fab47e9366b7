/*
 * nngrpc_serve(): the life of a server process as a sequence of steps
 * (include/nngrpc/serve.h has the contract). Each step is a function that
 * returns 0 to go on or the exit code to stop with, after one line on
 * stderr; finish() undoes whatever was done, in reverse.
 *
 * DESIGN
 * ------
 * Signals: SIGINT and SIGTERM are blocked before the service's setup and
 * before any thread starts (the server's workers and NNG's threads inherit
 * the mask), and this thread waits for them in sigwait(); so a signal
 * never interrupts a handler and never runs code in signal context.
 *
 * libnng: nothing before start() opens a socket or starts NNG's threads
 * (nngrpc_server_open() only allocates), so the process may still fork
 * between setup and start: a forked child of a process that used libnng
 * aborts. Process isolation (worker processes forked from a "zygote")
 * hooks in exactly there; keep it so.
 *
 * The drain waits in slices so that a second signal, or the drain timeout,
 * ends the process at once; handlers may then still run, so it leaves with
 * _exit(1) rather than closing the server under them.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nngrpc/log.h>
#include <nngrpc/nngrpc.h>
#include <nngrpc/serve.h>

#include "serve_config.h"

extern char **environ;

/* Longest auth token (the first line of --auth-token-file). */
#define TOKEN_MAX 1024
/* The drain checks for a second signal this often. */
#define DRAIN_SLICE_MS 50

typedef struct run {
	const nngrpc_serve_spec *spec;
	nngrpc_serve_config      cfg;
	nngrpc_server           *server; /* opened by set_up() */
	bool                     set_up; /* setup was called: cleanup runs */
	sigset_t                 stop_sigs; /* SIGINT, SIGTERM */
	char                     token[TOKEN_MAX];
} run;

static int
fail(const run *r, int code, const char *why)
{
	fprintf(stderr, "%s: %s\n", r->spec->name, why);
	return (code);
}

/* Step 1. Returns -1 to go on, or the exit code (0 after --help or
 * --print-config). */
static int
configure(run *r, int argc, char **argv, char **envp)
{
	const nngrpc_serve_spec *spec = r->spec;
	char                     err[512];

	if (!nngrpc_serve_config_parse(&r->cfg, spec->options, spec->n_options,
	        spec->default_listen, argc, argv, envp, err, sizeof(err))) {
		return (fail(r, 2, err));
	}
	if (r->cfg.help) {
		nngrpc_serve_config_usage(spec, stdout);
		return (0);
	}
	if (r->cfg.print_config) {
		nngrpc_serve_config_print(
		    &r->cfg, spec->options, spec->n_options, stdout);
		return (0);
	}
	return (-1);
}

/* Reads the first line of path as the auth token into r->token. */
static int
read_token(run *r, const char *path)
{
	FILE  *f = fopen(path, "r");
	char   err[600];
	size_t n;

	if (f == NULL) {
		snprintf(err, sizeof(err),
		    "--auth-token-file: cannot read %s: %s", path,
		    strerror(errno));
		return (fail(r, 2, err));
	}
	if (fgets(r->token, (int) sizeof(r->token), f) == NULL) {
		r->token[0] = '\0';
	}
	fclose(f);
	n = strcspn(r->token, "\r\n");
	r->token[n] = '\0';
	if (n == 0) {
		snprintf(err, sizeof(err),
		    "--auth-token-file: %s has no token", path);
		return (fail(r, 2, err));
	}
	r->cfg.server.auth_token = r->token;
	return (0);
}

/* Step 2: logging, the token, signals. */
static int
prepare(run *r)
{
	int rv;

	nngrpc_log_set_level(r->cfg.log_level);
	nngrpc_log_set_format(r->cfg.log_format);
	nngrpc_log_set_access(r->cfg.access_log, r->cfg.access_sample);
	if (r->cfg.auth_token_file != NULL
	    && (rv = read_token(r, r->cfg.auth_token_file)) != 0) {
		return (rv);
	}
	/* Before any thread starts: they all inherit the mask. */
	sigemptyset(&r->stop_sigs);
	sigaddset(&r->stop_sigs, SIGINT);
	sigaddset(&r->stop_sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &r->stop_sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	return (0);
}

/* Step 3: the server, not started, and the service's setup. */
static int
set_up(run *r)
{
	char err[512] = "";
	char line[600];
	int  rv;

	if ((rv = nngrpc_server_open(&r->cfg.server, &r->server)) != 0) {
		snprintf(line, sizeof(line), "cannot create the server: %s",
		    nng_strerror(rv));
		return (fail(r, 1, line));
	}
	r->set_up = true;
	if ((rv = r->spec->setup(r->server, r->spec->arg, err, sizeof(err)))
	    != 0) {
		snprintf(line, sizeof(line), "%s",
		    err[0] != '\0' ? err : nng_strerror(rv));
		return (fail(r, 1, line));
	}
	return (0);
}

/* Step 4: listening. NOT_SERVING until the load step is done. */
static int
start(run *r)
{
	char err[512];

	if (r->spec->load != NULL) {
		nngrpc_server_set_serving(r->server, NULL, false);
	}
	if (nngrpc_server_start(r->server, err, sizeof(err)) != 0) {
		return (fail(r, 2, err));
	}
	return (0);
}

/* Step 5. */
static int
load(run *r)
{
	char err[512] = "";
	int  rv;

	if (r->spec->load == NULL) {
		return (0);
	}
	if ((rv = r->spec->load(r->server, r->spec->arg, err, sizeof(err)))
	    != 0) {
		return (fail(r, rv, err[0] != '\0' ? err : "load failed"));
	}
	nngrpc_server_set_serving(r->server, NULL, true);
	return (0);
}

/* Waits in slices for the drain; true when every call was answered. */
static bool
drain(run *r)
{
	const struct timespec no_wait = { 0, 0 };
	double                timeout_s = r->cfg.drain_timeout;
	int64_t               left_ms = (int64_t) (timeout_s * 1000);

	for (;;) {
		int64_t slice
		    = left_ms < DRAIN_SLICE_MS ? left_ms : DRAIN_SLICE_MS;
		if (nngrpc_server_drain(r->server, slice) == 0) {
			return (true);
		}
		left_ms -= slice;
		if (sigtimedwait(&r->stop_sigs, NULL, &no_wait) > 0) {
			nngrpc_log(NNGRPC_LOG_WARN,
			    "second signal: exiting without waiting for "
			    "calls");
			return (false);
		}
		if (left_ms <= 0) {
			nngrpc_log(NNGRPC_LOG_WARN,
			    "drain timeout (%g s): exiting with calls still "
			    "running",
			    timeout_s);
			return (false);
		}
	}
}

/* Step 6: serve until SIGINT or SIGTERM, then drain. */
static void
serve_until_signal(run *r)
{
	int sig;

	nngrpc_log(NNGRPC_LOG_INFO, "%s ready: %d workers, queue %d",
	    r->spec->name, r->cfg.server.workers, r->cfg.server.queue);
	sigwait(&r->stop_sigs, &sig);
	nngrpc_log(NNGRPC_LOG_INFO, "%s: draining (up to %g s)",
	    sig == SIGINT ? "SIGINT" : "SIGTERM", r->cfg.drain_timeout);
	if (!drain(r)) {
		/* Handlers may still run: leave without joining them. */
		_exit(1);
	}
}

/* Step 7, and the way out of every failed step: undoes what was done. */
static int
finish(run *r, int code)
{
	/* No handler runs once the server is closed: the service's state
	 * can go. */
	nngrpc_server_close(r->server);
	if (r->set_up && r->spec->cleanup != NULL) {
		r->spec->cleanup(r->spec->arg);
	}
	if (code == 0) {
		nngrpc_log(NNGRPC_LOG_INFO, "stopped");
	}
	return (code);
}

int
nngrpc_serve(const nngrpc_serve_spec *spec, int argc, char **argv)
{
	run *r = calloc(1, sizeof(*r));
	int  rc;

	if (r == NULL) {
		fprintf(stderr, "%s: out of memory\n", spec->name);
		return (1);
	}
	r->spec = spec;
	if ((rc = configure(r, argc, argv, environ)) < 0) {
		if ((rc = prepare(r)) == 0
		    && (rc = set_up(r)) == 0
		    /* (a zygote for worker processes forks here) */
		    && (rc = start(r)) == 0 && (rc = load(r)) == 0) {
			serve_until_signal(r);
		}
		rc = finish(r, rc);
	}
	free(r);
	return (rc);
}
