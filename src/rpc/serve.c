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
 * _exit(1) rather than closing the server under them (but with exit 0
 * when every call was answered and only clients still sent calls here).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nngrpc/log.h>
#include <nngrpc/nngrpc.h>
#include <nngrpc/serve.h>

#include "call.h"
#include "isolate.h"
#include "rotate.h"
#include "sandbox.h"
#include "serve_config.h"
#include "server.h"

extern char **environ;

/* The drain checks for a second signal this often. */
#define DRAIN_SLICE_MS 50

typedef struct run {
	const nngrpc_serve_spec *spec;
	nngrpc_serve_config      cfg;
	nngrpc_server           *server; /* opened by set_up() */
	nngrpc_isolate          *iso;    /* --isolation process, or NULL */
	bool                     set_up; /* setup was called: cleanup runs */
	sigset_t                 stop_sigs; /* SIGINT, SIGTERM */
	sigset_t                 wait_sigs; /* and SIGHUP */
	nngrpc_rotate           *rotate;    /* the credential files, watched */
	char                     token[NNGRPC_TOKEN_MAX];
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
	char err[600];

	if (nngrpc_read_token(
	        path, r->token, sizeof(r->token), err, sizeof(err))
	    != 0) {
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
	r->wait_sigs = r->stop_sigs;
	sigaddset(&r->wait_sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &r->wait_sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	return (0);
}

/* Process isolation: the pool, and the server's calls handed to it. */
static int
isolate(run *r)
{
	nngrpc_isolate_config ic = {
		.workers = r->cfg.server.workers,
		.grace_ns = (int64_t) (r->cfg.deadline_grace * 1e9),
		.memory_limit = r->cfg.worker_memory_mb << 20,
		.crash_dir = r->cfg.crash_dir,
		.program = r->spec->name,
		.poison_crashes = r->cfg.poison_crashes,
		.poison_window_ns = (int64_t) (r->cfg.poison_window * 1e9),
		.sandbox = r->cfg.worker_seccomp && sandbox_available(),
	};

	if (nngrpc_isolate_alloc(&ic, &r->iso) != 0) {
		return (fail(r, 1, "out of memory"));
	}
	nngrpc_server_isolate(r->server, nngrpc_isolate_runner, r->iso);
	return (0);
}

/* The server options of the configuration, on r->server. */
static int
set_options(run *r)
{
	const struct {
		const char *name;
		int64_t     value;
	} opts[] = {
		{ NNGRPC_OPT_QUEUE_TARGET_MS, r->cfg.queue_target_ms },
		{ NNGRPC_OPT_QUEUE_INTERVAL_MS, r->cfg.queue_interval_ms },
		{ NNGRPC_OPT_DEFAULT_DEADLINE_MS,
		    (int64_t) (r->cfg.default_deadline * 1000) },
		{ NNGRPC_OPT_MAX_DEADLINE_MS,
		    (int64_t) (r->cfg.max_deadline * 1000) },
		{ NNGRPC_OPT_MAX_CONNECTIONS, r->cfg.max_connections },
		{ NNGRPC_OPT_FRAME_TIMEOUT_MS,
		    (int64_t) (r->cfg.frame_timeout * 1000) },
		{ NNGRPC_OPT_IDLE_TIMEOUT_MS,
		    (int64_t) (r->cfg.idle_timeout * 1000) },
	};
	char line[160];
	int  rv;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if ((rv = nngrpc_server_set_int(
		         r->server, opts[i].name, opts[i].value))
		    != 0) {
			snprintf(line, sizeof(line), "--%s: %s", opts[i].name,
			    nng_strerror(rv));
			return (fail(r, 2, line));
		}
	}
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
	if ((rv = set_options(r)) != 0) {
		return (rv);
	}
	if (r->cfg.isolation_process && r->cfg.replay == NULL
	    && (rv = isolate(r)) != 0) {
		return (rv);
	}
	if ((rv = r->spec->setup(r->server, r->spec->arg, err, sizeof(err)))
	    != 0) {
		snprintf(line, sizeof(line), "%s",
		    err[0] != '\0' ? err : nng_strerror(rv));
		return (fail(r, 1, line));
	}
	return (0);
}

/* The load step as the zygote runs it (process isolation). */
static int
zygote_load(void *arg, char *err, size_t errlen)
{
	run *r = arg;

	if (r->spec->load == NULL) {
		return (0);
	}
	return (r->spec->load(r->server, r->spec->arg, err, errlen));
}

/* Forks the zygote, once setup has registered everything and before
 * anything touched libnng: it keeps the services as they are now. */
static int
fork_zygote(run *r)
{
	char line[600];
	int  rv;

	if (r->iso == NULL) {
		return (0);
	}
	if ((rv = nngrpc_isolate_add_metrics(
	         r->iso, nngrpc_server_metrics(r->server)))
	        != 0
	    || (rv = nngrpc_isolate_fork(r->iso,
	            nngrpc_server_dispatch(r->server),
	            nngrpc_server_metrics(r->server), zygote_load, r))
	        != 0) {
		snprintf(line, sizeof(line), "isolation: cannot fork: %s",
		    strerror(rv));
		return (fail(r, 1, line));
	}
	nngrpc_log(NNGRPC_LOG_INFO,
	    "isolation: process (%d workers, memory limit %llu MiB, "
	    "grace %g s, seccomp %s)",
	    r->cfg.server.workers,
	    (unsigned long long) r->cfg.worker_memory_mb,
	    r->cfg.deadline_grace,
	    !r->cfg.worker_seccomp    ? "off"
	        : sandbox_available() ? "on"
	                              : "off (sanitizer build)");
	return (0);
}

/* Step 4: listening. NOT_SERVING until the load step is done. */
static int
start(run *r)
{
	char err[512];

	if (r->spec->load != NULL || r->iso != NULL) {
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

	if (r->iso != NULL) {
		/* The zygote loads, then forks the workers. */
		rv = nngrpc_isolate_load(r->iso, err, sizeof(err));
	} else if (r->spec->load == NULL) {
		return (0);
	} else {
		rv = r->spec->load(r->server, r->spec->arg, err, sizeof(err));
	}
	if (rv != 0) {
		return (fail(r, rv, err[0] != '\0' ? err : "load failed"));
	}
	nngrpc_server_set_serving(r->server, NULL, true);
	return (0);
}

/* A second signal during the drain: true (and logged) when one came. */
static bool
second_signal(run *r)
{
	const struct timespec no_wait = { 0, 0 };

	if (sigtimedwait(&r->stop_sigs, NULL, &no_wait) <= 0) {
		return (false);
	}
	nngrpc_log(NNGRPC_LOG_WARN, "second signal: exiting without waiting");
	return (true);
}

/* Waits in slices for the drain (nngrpc_server_drain()) within
 * --drain-timeout; true when every call was answered. Past the timeout,
 * or on a second signal, with every call answered but clients still
 * sending here, the stop closes their connections: still a clean stop. */
static bool
drain(run *r)
{
	int64_t until = nngrpc_now_ns()
	    + (int64_t) (r->cfg.drain_timeout * 1000) * 1000000;
	int rv;

	for (;;) {
		int64_t left_ms = (until - nngrpc_now_ns()) / 1000000;
		int64_t slice
		    = left_ms < DRAIN_SLICE_MS ? left_ms : DRAIN_SLICE_MS;

		if ((rv = nngrpc_server_drain(
		         r->server, slice > 0 ? slice : 0))
		    == 0) {
			return (true);
		}
		if (second_signal(r)) {
			return (rv == NNG_EBUSY);
		}
		if (nngrpc_now_ns() >= until) {
			break;
		}
	}
	if (rv == NNG_EBUSY) {
		nngrpc_log(NNGRPC_LOG_INFO,
		    "drain timeout (%g s): every call answered; closing the "
		    "connections clients still send on",
		    r->cfg.drain_timeout);
		return (true);
	}
	nngrpc_log(NNGRPC_LOG_WARN,
	    "drain timeout (%g s): exiting with calls still running",
	    r->cfg.drain_timeout);
	return (false);
}

/* Watches the credential files (rotate.h), once the server listens. */
static int
watch_credentials(run *r)
{
	const nngrpc_server_config *sc = &r->cfg.server;
	bool                        tls = false;

	for (size_t i = 0; i < sc->n_listen; i++) {
		tls |= strncmp(sc->listen[i], "tls+", 4) == 0;
	}
	if (nngrpc_rotate_alloc(r->server, r->cfg.auth_token_file,
	        sc->auth_token, r->cfg.auth_token_grace, tls, sc->tls_cert,
	        sc->tls_key, sc->tls_ca, &r->rotate)
	    != 0) {
		return (fail(r, 1, "out of memory"));
	}
	return (0);
}

/* Step 6: serve until SIGINT or SIGTERM, looking at the credential files
 * every second and on SIGHUP; then drain. Returns the exit code: 1 when
 * the drain came from a lost zygote (process isolation). */
static int
serve_until_signal(run *r)
{
	const struct timespec second = { 1, 0 };
	int                   sig;

	nngrpc_log(NNGRPC_LOG_INFO, "%s ready: %d workers, queue %d",
	    r->spec->name, r->cfg.server.workers, r->cfg.server.queue);
	while ((sig = sigtimedwait(&r->wait_sigs, NULL, &second)) != SIGINT
	    && sig != SIGTERM) {
		if (sig == SIGHUP) {
			nngrpc_log(NNGRPC_LOG_INFO,
			    "SIGHUP: reading the credential files again");
		}
		nngrpc_rotate_look(r->rotate, sig == SIGHUP);
	}
	nngrpc_log(NNGRPC_LOG_INFO, "%s: draining (up to %g s)",
	    sig == SIGINT ? "SIGINT" : "SIGTERM", r->cfg.drain_timeout);
	if (!drain(r)) {
		/* Handlers may still run: leave without joining them. */
		_exit(1);
	}
	return (nngrpc_isolate_lost(r->iso) ? 1 : 0);
}

/* How long closing the server may take once the drain is over. */
#define CLOSE_GUARD_S 5

/* A watchdog over nngrpc_server_close(): with libnng < 1.6 a connection
 * closed by either side while a request is arriving can wedge libnng's
 * single pipe reaper (nanomsg/nng#1636, fixed in 1.6.0), and nng_close()
 * then waits for it forever. Every call was answered by then, so rather
 * than hang until the orchestrator's SIGKILL, the process says so and
 * leaves with the exit code it was going to return. */
typedef struct close_guard {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	bool            done;
	int             code;
} close_guard;

static void *
close_guard_wait(void *arg)
{
	close_guard    *g = arg;
	struct timespec until;
	int             rv = 0;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += CLOSE_GUARD_S;
	pthread_mutex_lock(&g->mtx);
	while (!g->done && rv != ETIMEDOUT) {
		rv = pthread_cond_timedwait(&g->cv, &g->mtx, &until);
	}
	if (!g->done) {
		nngrpc_log(NNGRPC_LOG_ERROR,
		    "libnng did not close the socket within %d s (its pipe "
		    "reaper is stuck: nanomsg/nng#1636, fixed in libnng "
		    "1.6.0); every call was answered: exiting without it",
		    CLOSE_GUARD_S);
		_exit(g->code);
	}
	pthread_mutex_unlock(&g->mtx);
	return (NULL);
}

/* nngrpc_server_close(), bounded by CLOSE_GUARD_S (above). */
static void
close_server(run *r, int code)
{
	close_guard        g = { .done = false, .code = code };
	pthread_condattr_t attr;
	pthread_t          thr;
	bool               guarded;

	pthread_mutex_init(&g.mtx, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&g.cv, &attr);
	pthread_condattr_destroy(&attr);
	/* Without the watchdog thread, close unguarded: no worse than
	 * before. */
	guarded = pthread_create(&thr, NULL, close_guard_wait, &g) == 0;
	nngrpc_server_close(r->server);
	if (guarded) {
		pthread_mutex_lock(&g.mtx);
		g.done = true;
		pthread_cond_signal(&g.cv);
		pthread_mutex_unlock(&g.mtx);
		pthread_join(thr, NULL);
	}
	pthread_cond_destroy(&g.cv);
	pthread_mutex_destroy(&g.mtx);
}

/* Step 7, and the way out of every failed step: undoes what was done. */
static int
finish(run *r, int code)
{
	/* No handler runs once the server is closed: the service's state
	 * can go. */
	close_server(r, code);
	nngrpc_isolate_free(r->iso); /* ends the zygote and the workers */
	nngrpc_rotate_free(r->rotate);
	if (r->set_up && r->spec->cleanup != NULL) {
		r->spec->cleanup(r->spec->arg);
	}
	if (code == 0) {
		nngrpc_log(NNGRPC_LOG_INFO, "stopped");
	}
	return (code);
}

/* Reads a whole file. Returns new: a buffer to free(), or NULL with errno
 * set. */
static uint8_t *
read_file(const char *path, size_t *lenp)
{
	FILE    *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long     n;

	if (f == NULL) {
		return (NULL);
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0
	    && fseek(f, 0, SEEK_SET) == 0
	    && (buf = malloc((size_t) n + 1)) != NULL
	    && fread(buf, 1, (size_t) n, f) != (size_t) n) {
		free(buf);
		buf = NULL;
		errno = EIO;
	}
	*lenp = buf != NULL ? (size_t) n : 0;
	fclose(f);
	return (buf);
}

/* --replay FILE: the load step, then the saved request through the
 * handler, here and now, as its worker process ran it. Exit code: the
 * status code (0 for OK). */
static int
replay(run *r)
{
	uint8_t               tmp[256];
	ProtobufCBufferSimple out = PROTOBUF_C_BUFFER_SIMPLE_INIT(tmp);
	char                  err[512] = "";
	nngrpc_call           call;
	nngrpc_status         st;
	uint8_t              *buf;
	size_t                len;
	int                   rv;

	if ((buf = read_file(r->cfg.replay, &len)) == NULL) {
		snprintf(err, sizeof(err), "--replay: cannot read %s: %s",
		    r->cfg.replay, strerror(errno));
		return (fail(r, 2, err));
	}
	if (r->spec->load != NULL
	    && (rv = r->spec->load(r->server, r->spec->arg, err, sizeof(err)))
	        != 0) {
		free(buf);
		return (fail(r, rv, err[0] != '\0' ? err : "load failed"));
	}
	nngrpc_call_init(&call);
	nngrpc_log(NNGRPC_LOG_INFO, "replay: %s", r->cfg.replay);
	st = nngrpc_dispatch_invoke(nngrpc_server_dispatch(r->server), &call,
	    NNGRPC_DISPATCH_ANY_METHOD, buf, len, nngrpc_now_ns(), &out.base);
	printf("%s: %s%s%s (%zu bytes of output)\n", nngrpc_call_method(&call),
	    nngrpc_status_name(st), call.c_message != NULL ? ": " : "",
	    call.c_message != NULL ? call.c_message : "", out.len);
	fflush(stdout);
	PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&out);
	nngrpc_call_fini(&call);
	free(buf);
	return ((int) st);
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
		if ((rc = prepare(r)) == 0 && (rc = set_up(r)) == 0
		    && r->cfg.replay != NULL) {
			rc = replay(r);
		} else if (rc == 0 && (rc = fork_zygote(r)) == 0
		    && (rc = start(r)) == 0 && (rc = load(r)) == 0
		    && (rc = watch_credentials(r)) == 0) {
			rc = serve_until_signal(r);
		}
		rc = finish(r, rc);
	}
	free(r);
	return (rc);
}
