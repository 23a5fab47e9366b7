/*
 * nngrpc_serve(): a server process in one call, with everything hoteld
 * has: the standard flags and their NNGRPC_* environment variables,
 * --help (the service's own flags included) and --print-config, logging,
 * signal handling and the graceful drain, and NOT_SERVING while the
 * service loads what it serves.
 *
 *   static int
 *   setup(nngrpc_server *server, void *arg, char *err, size_t errlen)
 *   {
 *           return (pkg__v1__echo__register(server, &impl, arg));
 *   }
 *
 *   int
 *   main(int argc, char **argv)
 *   {
 *           nngrpc_serve_spec spec = { .name = "echod", .setup = setup };
 *           return (nngrpc_serve(&spec, argc, argv));
 *   }
 *
 * The steps, in this order:
 *   1. configure: the environment, then the flags (a flag wins); --help,
 *      --print-config and a bad value end the run here;
 *   2. prepare: logging, the auth token file, SIGINT, SIGTERM and SIGHUP
 *      blocked (every thread started later inherits the mask) and SIGPIPE
 *      ignored;
 *   3. set up: the server is opened and spec->setup registers services,
 *      gauges and interceptors. Nothing up to here uses libnng's sockets
 *      or threads, so a process may still fork safely after this step (a
 *      forked child of a process that used libnng aborts). With
 *      --isolation process the zygote is forked here: it runs step 5 and
 *      forks the worker processes that run the handlers (see
 *      nngrpc_server_isolated() in nngrpc/nngrpc.h);
 *   4. start: listeners, workers and the ops endpoint; with a load step
 *      the server starts NOT_SERVING: health checks say so and calls are
 *      answered UNAVAILABLE, as gRPC servers do while they start;
 *   5. load: spec->load, then SERVING;
 *   6. serve until SIGINT or SIGTERM, reading the auth token file and the
 *      TLS files again when they change (looked at every second) or on
 *      SIGHUP: a new token is accepted at once and the old one for
 *      --auth-token-grace more, a new certificate is used for new
 *      connections; then drain, for up to --drain-timeout seconds:
 *      NOT_SERVING, new calls UNAVAILABLE with nngrpc-not-run, calls
 *      already received finish and are answered, then the connections
 *      stay open, answering so, until the clients let go of them
 *      (nngrpc_server_drain()); a second signal, or the timeout, ends
 *      the process at once (exit 1 if calls still ran, else a clean
 *      stop);
 *   7. stop: the server is closed (no handler runs any more), then
 *      spec->cleanup.
 *
 * Exit codes: 0 after a clean stop; 1 for a failure at run time (setup
 * failed, out of memory, a drain cut short); 2 for a bad configuration (a
 * flag, an environment variable, the token file, a listener that cannot
 * start: bad URL, port in use) or what load returns. Every failure writes
 * one line on stderr, "NAME: why".
 *
 * The standard options (--help lists them with their variables): listen
 * (repeatable; NNGRPC_LISTEN is comma-separated), workers, queue,
 * max-message-bytes, tls-cert, tls-key, tls-ca, auth-token-file,
 * auth-token-grace, drain-timeout, http, log-level, log-format, access-log,
 * access-log-sample, isolation, worker-memory-mb, deadline-grace,
 * crash-dir, poison-pill-crashes, poison-pill-window, worker-seccomp,
 * replay (run a request saved by --crash-dir in this process: set up,
 * load, the handler, exit with its status code), print-config, help.
 */
#ifndef NNGRPC_SERVE_H
#define NNGRPC_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nngrpc/export.h>
#include <nngrpc/nngrpc.h>

/* What a service option's value is, and the type value points to. */
typedef enum nngrpc_option_kind {
	/* const char *: borrowed from argv or the environment */
	NNGRPC_OPTION_STRING,
	/* bool: --flag alone is true; --flag=false, and 1/0, true/false,
	 * yes/no, on/off as values */
	NNGRPC_OPTION_BOOL,
	/* int, from min to max */
	NNGRPC_OPTION_INT,
	/* uint64_t, from min to max */
	NNGRPC_OPTION_UINT64,
	/* double, from min to max */
	NNGRPC_OPTION_NUMBER,
} nngrpc_option_kind;

/* One option of the service's own, beside the standard ones. */
typedef struct nngrpc_option {
	const char        *flag; /* "hotels" for --hotels */
	const char        *env;  /* "NNGRPC_HOTELS", or NULL: flag only */
	nngrpc_option_kind kind;
	void              *value; /* holds the default; receives the value */
	long long          min;   /* numeric kinds: the accepted range */
	long long          max;
	const char        *help; /* one line for --help */
} nngrpc_option;

typedef struct nngrpc_serve_spec {
	/* The program's name: "usage: NAME", and "NAME: why" on errors. */
	const char *name;
	/* One line under the usage line, or NULL. */
	const char *summary;
	/* The service's own options (borrowed; n_options of them). Their
	 * flags must differ from the standard ones. */
	const nngrpc_option *options;
	size_t               n_options;
	/* Step 3: registers the services (and gauges, interceptors, inline
	 * methods) on the server, which has not started. Returns 0, or an
	 * nng error code: the run ends with exit code 1 and err (one line;
	 * when left empty, the error code's name). Required. */
	int (*setup)(
	    nngrpc_server *server, void *arg, char *err, size_t errlen);
	/* Step 5, or NULL: loads what the services serve while the server
	 * listens and answers NOT_SERVING. Returns 0, or the exit code to
	 * end the run with (1 a failure at run time, 2 bad input such as an
	 * unreadable data file) after writing one line into err. */
	int (*load)(
	    nngrpc_server *server, void *arg, char *err, size_t errlen);
	/* Step 7, or NULL: releases what setup and load made, once the
	 * server is closed; also after a failed setup or load. */
	void (*cleanup)(void *arg);
	/* Handed to the three callbacks; borrowed. */
	void *arg;
	/* The URL to listen on when neither --listen nor NNGRPC_LISTEN is
	 * given; NULL: tcp://127.0.0.1:5555. */
	const char *default_listen;
} nngrpc_serve_spec;

/*
 * Runs the server process described by spec (borrowed) with argv and the
 * process environment (see the top of this file). Returns the exit code
 * for main() to return; when the drain is cut short it does not return
 * but ends the process with _exit(1), since handlers may still be running.
 * Call it once, from main(), before any other thread exists.
 */
NNGRPC_API int nngrpc_serve(
    const nngrpc_serve_spec *spec, int argc, char **argv);

#endif /* NNGRPC_SERVE_H */
