/*
 * Options of nngrpc_serve(). One table lists every standard option once:
 * its flag, its environment variable, its kind and its help; a service's
 * own options (nngrpc_option) are resolved into the same form, so parsing,
 * --help and --print-config all read one list and cannot disagree. The
 * environment is read first and flags override it; a repeated --listen
 * adds a URL, and NNGRPC_LISTEN takes a comma-separated list (flags
 * replace the environment's URLs).
 */
#include "serve_config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEFAULT_LISTEN "tcp://127.0.0.1:5555"

typedef enum {
	K_URLS,
	K_INT,
	K_SIZE,
	K_U64,
	K_SECONDS,
	K_NUMBER,
	K_BOOL,
	K_STR,
	K_LEVEL,
	K_FORMAT,
	K_ACCESS,
	K_FLAG,
	K_ISOLATION,
} kind;

/* A standard option: its value is the field at offset in the config. */
typedef struct standard_option {
	const char *flag; /* without the leading "--" */
	const char *env;
	kind        kind;
	long long   min, max; /* numeric kinds */
	size_t      offset;
	const char *help;
} standard_option;

#define FIELD(f) offsetof(nngrpc_serve_config, f)

static const standard_option standard[] = {
	{ "listen", "NNGRPC_LISTEN", K_URLS, 0, 0, FIELD(server),
	    "URL to listen on, repeatable (tcp://HOST:PORT, ipc:///PATH, "
	    "tls+tcp://HOST:PORT); default " DEFAULT_LISTEN },
	{ "workers", "NNGRPC_WORKERS", K_INT, 1, 4096, FIELD(server.workers),
	    "worker threads that run calls" },
	{ "queue", "NNGRPC_QUEUE", K_INT, 1, 1000000, FIELD(server.queue),
	    "calls that may wait for a worker before RESOURCE_EXHAUSTED" },
	{ "queue-target-ms", "NNGRPC_QUEUE_TARGET_MS", K_INT, 0, 60000,
	    FIELD(queue_target_ms),
	    "admission: once calls have waited this long in the queue for a "
	    "whole --queue-interval-ms, each call that has waited this long "
	    "is answered RESOURCE_EXHAUSTED at once, until the queue keeps "
	    "below it; 0 turns it off (default 5)" },
	{ "queue-interval-ms", "NNGRPC_QUEUE_INTERVAL_MS", K_INT, 1, 600000,
	    FIELD(queue_interval_ms),
	    "admission: how long the queue may stand above "
	    "--queue-target-ms before it sheds (default 100)" },
	{ "default-deadline", "NNGRPC_DEFAULT_DEADLINE", K_SECONDS, 0, 86400,
	    FIELD(default_deadline),
	    "seconds a call that carries no deadline gets one of; 0: none "
	    "(default)" },
	{ "max-deadline", "NNGRPC_MAX_DEADLINE", K_SECONDS, 0, 86400,
	    FIELD(max_deadline),
	    "seconds at most of any call's deadline (a longer one, or none, "
	    "is cut to it); 0: no cap (default)" },
	{ "max-connections", "NNGRPC_MAX_CONNECTIONS", K_INT, 0, 10000000,
	    FIELD(max_connections),
	    "connections open at once; one more is closed at once (after "
	    "its SP handshake) and counted; 0: the descriptor limit less an "
	    "eighth (default)" },
	{ "frame-timeout", "NNGRPC_FRAME_TIMEOUT", K_SECONDS, 0, 86400,
	    FIELD(frame_timeout),
	    "seconds a request begun may take to arrive whole before its "
	    "connection is closed (exact on tcp://; on tls+tcp:// and "
	    "ipc:// the idle timeout bounds it); 0: off (default 10)" },
	{ "idle-timeout", "NNGRPC_IDLE_TIMEOUT", K_SECONDS, 0, 86400,
	    FIELD(idle_timeout),
	    "seconds a connection with no call in flight may stay silent "
	    "before it is closed; keep it above clients' own idle close (the "
	    "Python client's: 30); 0: off (default 120)" },
	{ "max-message-bytes", "NNGRPC_MAX_MESSAGE_BYTES", K_SIZE, 64,
	    1LL << 31, FIELD(server.max_message_bytes),
	    "largest request accepted, in bytes" },
	{ "tls-cert", "NNGRPC_TLS_CERT", K_STR, 0, 0, FIELD(server.tls_cert),
	    "PEM certificate chain for tls+tcp:// listeners" },
	{ "tls-key", "NNGRPC_TLS_KEY", K_STR, 0, 0, FIELD(server.tls_key),
	    "PEM private key for tls+tcp:// listeners" },
	{ "tls-ca", "NNGRPC_TLS_CA", K_STR, 0, 0, FIELD(server.tls_ca),
	    "PEM CA bundle: when set, TLS clients must present a certificate "
	    "it signed" },
	{ "auth-token-file", "NNGRPC_AUTH_TOKEN_FILE", K_STR, 0, 0,
	    FIELD(auth_token_file),
	    "require \"authorization: Bearer <token>\" metadata, the token "
	    "read from this file (health checks stay open)" },
	{ "auth-token-grace", "NNGRPC_AUTH_TOKEN_GRACE", K_SECONDS, 0, 86400,
	    FIELD(auth_token_grace),
	    "seconds the old token stays accepted once the token file has a "
	    "new one (it is read again when it changes, and on SIGHUP); "
	    "default 300" },
	{ "drain-timeout", "NNGRPC_DRAIN_TIMEOUT", K_SECONDS, 0, 3600,
	    FIELD(drain_timeout),
	    "seconds SIGTERM waits for calls in flight before exiting "
	    "anyway (default 10)" },
	{ "http", "NNGRPC_HTTP", K_STR, 0, 0, FIELD(server.http),
	    "HOST:PORT of the ops HTTP endpoint (/healthz, /readyz, "
	    "/metrics); off unless set" },
	{ "log-level", "NNGRPC_LOG_LEVEL", K_LEVEL, 0, 0, FIELD(log_level),
	    "error, warn, info or debug" },
	{ "log-format", "NNGRPC_LOG_FORMAT", K_FORMAT, 0, 0, FIELD(log_format),
	    "text or json (one JSON object a line)" },
	{ "access-log", "NNGRPC_ACCESS_LOG", K_ACCESS, 0, 0, FIELD(access_log),
	    "one line per call: off (default), all, or sampled" },
	{ "access-log-sample", "NNGRPC_ACCESS_LOG_SAMPLE", K_NUMBER, 0, 1,
	    FIELD(access_sample),
	    "with --access-log sampled: the share of calls logged, 0..1 "
	    "(default 0.01)" },
	{ "isolation", "NNGRPC_ISOLATION", K_ISOLATION, 0, 0,
	    FIELD(isolation_process),
	    "where handlers run: thread (in this process) or process (in "
	    "worker processes forked from a zygote that loaded the data: a "
	    "crash, a hang or a runaway allocation fails one call)" },
	{ "worker-memory-mb", "NNGRPC_WORKER_MEMORY_MB", K_U64, 0, 1 << 20,
	    FIELD(worker_memory_mb),
	    "process isolation: a worker whose resident memory grows by more "
	    "than this many MiB is killed, its call RESOURCE_EXHAUSTED; 0 "
	    "for no limit (default 1024)" },
	{ "deadline-grace", "NNGRPC_DEADLINE_GRACE", K_SECONDS, 0, 3600,
	    FIELD(deadline_grace),
	    "process isolation: seconds a call may run past its deadline "
	    "before its worker is killed (default 1)" },
	{ "crash-dir", "NNGRPC_CRASH_DIR", K_STR, 0, 0, FIELD(crash_dir),
	    "process isolation: save the request of every call that lost "
	    "its worker here, for --replay" },
	{ "poison-pill-crashes", "NNGRPC_POISON_PILL_CRASHES", K_INT, 0,
	    1000000, FIELD(poison_crashes),
	    "process isolation: a request (method and payload) that crashed "
	    "workers this many times is refused without running; 0: never "
	    "(default 3)" },
	{ "poison-pill-window", "NNGRPC_POISON_PILL_WINDOW", K_SECONDS, 0,
	    86400, FIELD(poison_window),
	    "the window of --poison-pill-crashes, in seconds (default 60)" },
	{ "worker-seccomp", "NNGRPC_WORKER_SECCOMP", K_BOOL, 0, 0,
	    FIELD(worker_seccomp),
	    "process isolation: confine workers with no_new_privs and a "
	    "seccomp allow-list (default true; off in sanitizer builds)" },
	{ "replay", NULL, K_STR, 0, 0, FIELD(replay),
	    "run the request saved in FILE (by --crash-dir) in this process, "
	    "print its status and exit: for gdb or a sanitizer build" },
	{ "print-config", NULL, K_FLAG, 0, 0, FIELD(print_config),
	    "print the effective configuration and exit" },
	{ "help", NULL, K_FLAG, 0, 0, FIELD(help), "show this help" },
};
#define N_STANDARD (sizeof(standard) / sizeof(standard[0]))

/* An option resolved for one parse: where its value goes. */
typedef struct opt {
	const char *flag;
	const char *env;
	kind        kind;
	long long   min, max;
	void       *field;
	const char *help;
} opt;

/* The options of one run: the service's first, then the standard ones. */
typedef struct opts {
	opt   *o;
	size_t n;
	size_t n_extra;
} opts;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static const kind extra_kinds[] = {
	[NNGRPC_OPTION_STRING] = K_STR,
	[NNGRPC_OPTION_BOOL] = K_BOOL,
	[NNGRPC_OPTION_INT] = K_INT,
	[NNGRPC_OPTION_UINT64] = K_U64,
	[NNGRPC_OPTION_NUMBER] = K_NUMBER,
};

static const opt *
find_flag(const opts *os, const char *name, size_t len)
{
	for (size_t i = 0; i < os->n; i++) {
		if (strlen(os->o[i].flag) == len
		    && strncmp(os->o[i].flag, name, len) == 0) {
			return (&os->o[i]);
		}
	}
	return (NULL);
}

/* Builds the list of options: extra's, then the standard ones pointing
 * into cfg. Returns false (err written) when a service flag repeats one. */
static bool
resolve(opts *os, nngrpc_serve_config *cfg, const nngrpc_option *extra,
    size_t n_extra, char *err, size_t errlen)
{
	if ((os->o = calloc(N_STANDARD + n_extra, sizeof(*os->o))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (false);
	}
	os->n = 0;
	os->n_extra = n_extra;
	for (size_t i = 0; i < n_extra; i++) {
		const nngrpc_option *e = &extra[i];
		if ((unsigned) e->kind >= sizeof(extra_kinds) / sizeof(kind)
		    || find_flag(os, e->flag, strlen(e->flag)) != NULL) {
			snprintf(err, errlen,
			    "option --%s: defined twice or "
			    "of an unknown kind",
			    e->flag);
			return (false);
		}
		os->o[os->n++] = (opt) { e->flag, e->env, extra_kinds[e->kind],
			e->min, e->max, e->value, e->help };
	}
	for (size_t i = 0; i < N_STANDARD; i++) {
		const standard_option *s = &standard[i];
		if (find_flag(os, s->flag, strlen(s->flag)) != NULL) {
			snprintf(err, errlen,
			    "option --%s: a standard option already", s->flag);
			return (false);
		}
		os->o[os->n++] = (opt) { s->flag, s->env, s->kind, s->min,
			s->max, (char *) cfg + s->offset, s->help };
	}
	return (true);
}

static bool
parse_integer(const char *s, long long min, long long max, long long *out)
{
	char     *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		return (false);
	}
	*out = v;
	return (true);
}

static bool
parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off", "" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return (true);
		}
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return (true);
		}
	}
	return (false);
}

/* Adds the len bytes at url as a listen URL. */
static bool
add_url(nngrpc_serve_config *cfg, const char *url, size_t len, char *err,
    size_t errlen)
{
	nngrpc_server_config *sc = &cfg->server;
	char                 *copy = cfg->urls[sc->n_listen];

	if (len == 0) {
		return (true);
	}
	if (sc->n_listen == NNGRPC_MAX_LISTEN || len >= NNGRPC_SERVE_URL_MAX) {
		snprintf(err, errlen, "listen: at most %d URLs of < %d bytes",
		    NNGRPC_MAX_LISTEN, NNGRPC_SERVE_URL_MAX);
		return (false);
	}
	memcpy(copy, url, len);
	copy[len] = '\0';
	if (strstr(copy, "://") == NULL) {
		snprintf(err, errlen,
		    "listen: '%s' is not a URL (tcp://HOST:PORT or "
		    "ipc:///PATH)",
		    copy);
		return (false);
	}
	sc->listen[sc->n_listen++] = copy;
	return (true);
}

/* A comma-separated list of URLs. */
static bool
apply_urls(nngrpc_serve_config *cfg, const char *v, char *err, size_t errlen)
{
	for (;;) {
		const char *comma = strchr(v, ',');
		size_t      len = comma ? (size_t) (comma - v) : strlen(v);

		if (!add_url(cfg, v, len, err, errlen)) {
			return (false);
		}
		if (comma == NULL) {
			return (true);
		}
		v = comma + 1;
	}
}

static bool
apply_integer(
    const opt *o, const char *v, const char *from, char *err, size_t errlen)
{
	long long n;

	if (!parse_integer(v, o->min, o->max, &n)) {
		snprintf(err, errlen,
		    "%s: must be an integer from %lld to %lld, got '%s'", from,
		    o->min, o->max, v);
		return (false);
	}
	if (o->kind == K_INT) {
		*(int *) o->field = (int) n;
	} else if (o->kind == K_SIZE) {
		*(size_t *) o->field = (size_t) n;
	} else {
		*(uint64_t *) o->field = (uint64_t) n;
	}
	return (true);
}

static bool
apply_real(
    const opt *o, const char *v, const char *from, char *err, size_t errlen)
{
	char  *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(d >= o->min)
	    || d > o->max) {
		snprintf(err, errlen,
		    "%s: must be a number%s from %lld to %lld, got '%s'", from,
		    o->kind == K_SECONDS ? " of seconds" : "", o->min, o->max,
		    v);
		return (false);
	}
	*(double *) o->field = d;
	return (true);
}

/* The kinds whose values are names: bool, level, format, access mode. */
static bool
apply_name(
    const opt *o, const char *v, const char *from, char *err, size_t errlen)
{
	const char *want;
	bool        ok;

	switch (o->kind) {
	case K_BOOL:
		ok = parse_bool(v, o->field);
		want = "true or false";
		break;
	case K_LEVEL:
		ok = nngrpc_log_parse_level(v, o->field);
		want = "error, warn, info or debug";
		break;
	case K_FORMAT:
		ok = nngrpc_log_parse_format(v, o->field);
		want = "text or json";
		break;
	case K_ISOLATION:
		ok = strcmp(v, "thread") == 0 || strcmp(v, "process") == 0;
		if (ok) {
			*(bool *) o->field = strcmp(v, "process") == 0;
		}
		want = "thread or process";
		break;
	default:
		ok = nngrpc_log_parse_access(v, o->field);
		want = "off, all or sampled";
		break;
	}
	if (!ok) {
		snprintf(
		    err, errlen, "%s: must be %s, got '%s'", from, want, v);
	}
	return (ok);
}

/* Applies one value to one option; from says where it came from. */
static bool
apply(nngrpc_serve_config *cfg, const opt *o, const char *v, const char *from,
    char *err, size_t errlen)
{
	switch (o->kind) {
	case K_URLS:
		return (apply_urls(cfg, v, err, errlen));
	case K_INT:
	case K_SIZE:
	case K_U64:
		return (apply_integer(o, v, from, err, errlen));
	case K_SECONDS:
	case K_NUMBER:
		return (apply_real(o, v, from, err, errlen));
	case K_STR:
		*(const char **) o->field = v;
		return (true);
	case K_FLAG:
		*(bool *) o->field = true;
		return (true);
	default:
		return (apply_name(o, v, from, err, errlen));
	}
}

static bool
from_environment(nngrpc_serve_config *cfg, const opts *os, char **envp,
    char *err, size_t errlen)
{
	for (char **e = envp; e != NULL && *e != NULL; e++) {
		for (size_t i = 0; i < os->n; i++) {
			const opt *o = &os->o[i];
			size_t     n = o->env ? strlen(o->env) : 0;

			if (n > 0 && strncmp(*e, o->env, n) == 0
			    && (*e)[n] == '='
			    && !apply(
			        cfg, o, *e + n + 1, o->env, err, errlen)) {
				return (false);
			}
		}
	}
	return (true);
}

/* The value of the flag at argv[*i] (advancing *i past a separate value),
 * or NULL after writing err. */
static const char *
flag_value(const opt *o, const char *eq, int argc, char **argv, int *i,
    const char *from, char *err, size_t errlen)
{
	if (o->kind == K_FLAG || (o->kind == K_BOOL && eq == NULL)) {
		return (eq ? eq + 1 : (o->kind == K_BOOL ? "true" : ""));
	}
	if (eq != NULL) {
		return (eq + 1);
	}
	if (*i + 1 < argc) {
		return (argv[++*i]);
	}
	snprintf(err, errlen, "%s: needs a value", from);
	return (NULL);
}

static bool
from_flags(nngrpc_serve_config *cfg, const opts *os, int argc, char **argv,
    char *err, size_t errlen)
{
	bool flag_listen = false;

	for (int i = 1; i < argc; i++) {
		const char *a, *eq, *value;
		const opt  *o;
		char        from[80];

		if (strncmp(argv[i], "--", 2) != 0) {
			snprintf(err, errlen,
			    "unexpected argument '%s' (see --help)", argv[i]);
			return (false);
		}
		a = argv[i] + 2;
		eq = strchr(a, '=');
		if ((o = find_flag(os, a, eq ? (size_t) (eq - a) : strlen(a)))
		    == NULL) {
			snprintf(err, errlen,
			    "unknown option '%s' (see --help)", argv[i]);
			return (false);
		}
		snprintf(from, sizeof(from), "--%s", o->flag);
		value = flag_value(o, eq, argc, argv, &i, from, err, errlen);
		if (value == NULL) {
			return (false);
		}
		if (o->kind == K_URLS && !flag_listen) {
			/* Flags replace the environment's URLs. */
			cfg->server.n_listen = 0;
			flag_listen = true;
		}
		if (!apply(cfg, o, value, from, err, errlen)) {
			return (false);
		}
	}
	return (true);
}

static void
defaults(nngrpc_serve_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	nngrpc_server_config_init(&cfg->server);
	cfg->log_level = NNGRPC_LOG_INFO;
	cfg->log_format = NNGRPC_LOG_TEXT;
	cfg->access_log = NNGRPC_ACCESS_OFF;
	cfg->access_sample = 0.01;
	cfg->drain_timeout = 10;
	cfg->auth_token_grace = 300;
	cfg->worker_memory_mb = 1024;
	cfg->deadline_grace = 1;
	cfg->poison_crashes = 3;
	cfg->poison_window = 60;
	cfg->worker_seccomp = true;
	cfg->queue_target_ms = NNGRPC_DEFAULT_QUEUE_TARGET_MS;
	cfg->queue_interval_ms = NNGRPC_DEFAULT_QUEUE_INTERVAL_MS;
	cfg->frame_timeout = NNGRPC_DEFAULT_FRAME_TIMEOUT_MS / 1000.0;
	cfg->idle_timeout = NNGRPC_DEFAULT_IDLE_TIMEOUT_MS / 1000.0;
}

bool
nngrpc_serve_config_parse(nngrpc_serve_config *cfg, const nngrpc_option *extra,
    size_t n_extra, const char *default_listen, int argc, char **argv,
    char **envp, char *err, size_t errlen)
{
	opts os = { NULL, 0, 0 };
	bool ok;

	defaults(cfg);
	ok = resolve(&os, cfg, extra, n_extra, err, errlen)
	    && from_environment(cfg, &os, envp, err, errlen)
	    && from_flags(cfg, &os, argc, argv, err, errlen);
	free(os.o);
	if (ok && cfg->server.n_listen == 0) {
		ok = add_url(cfg,
		    default_listen ? default_listen : DEFAULT_LISTEN,
		    strlen(default_listen ? default_listen : DEFAULT_LISTEN),
		    err, errlen);
	}
	return (ok);
}

static void
usage_lines(const opt *o, size_t n, FILE *out)
{
	for (size_t i = 0; i < n; i++) {
		const char *arg = (o[i].kind == K_FLAG || o[i].kind == K_BOOL)
		    ? ""
		    : " VALUE";
		fprintf(out, "  --%s%s\n      %s", o[i].flag, arg, o[i].help);
		if (o[i].env != NULL) {
			fprintf(out, " [env %s]", o[i].env);
		}
		fputc('\n', out);
	}
}

void
nngrpc_serve_config_usage(const nngrpc_serve_spec *spec, FILE *out)
{
	nngrpc_serve_config cfg;
	opts                os = { NULL, 0, 0 };
	char                err[256];

	defaults(&cfg);
	fprintf(out, "usage: %s [options]\n", spec->name);
	if (spec->summary != NULL) {
		fprintf(out, "%s\n", spec->summary);
	}
	if (!resolve(
	        &os, &cfg, spec->options, spec->n_options, err, sizeof(err))) {
		fprintf(out, "(%s)\n", err);
		free(os.o);
		return;
	}
	if (os.n_extra > 0) {
		fprintf(out, "\n%s options:\n", spec->name);
		usage_lines(os.o, os.n_extra, out);
	}
	fprintf(out,
	    "\nServer options (every nngrpc server has them; each "
	    "is also an environment\nvariable, and a flag wins):\n");
	usage_lines(os.o + os.n_extra, os.n - os.n_extra, out);
	free(os.o);
}

/* One option's "name = value" line(s); nothing for --help and such. */
static void
print_option(const opt *o, const nngrpc_serve_config *cfg, FILE *out)
{
	const nngrpc_server_config *sc = &cfg->server;
	const void                 *v = o->field;

	switch (o->kind) {
	case K_URLS:
		for (size_t i = 0; i < sc->n_listen; i++) {
			fprintf(out, "listen = %s\n", sc->listen[i]);
		}
		return;
	case K_INT:
		fprintf(out, "%s = %d\n", o->flag, *(const int *) v);
		return;
	case K_SIZE:
		fprintf(out, "%s = %zu\n", o->flag, *(const size_t *) v);
		return;
	case K_U64:
		fprintf(
		    out, "%s = %" PRIu64 "\n", o->flag, *(const uint64_t *) v);
		return;
	case K_SECONDS:
	case K_NUMBER:
		fprintf(out, "%s = %g\n", o->flag, *(const double *) v);
		return;
	case K_BOOL:
		fprintf(out, "%s = %s\n", o->flag,
		    *(const bool *) v ? "true" : "false");
		return;
	case K_STR:
		fprintf(out, "%s = %s\n", o->flag,
		    *(const char *const *) v ? *(const char *const *) v : "");
		return;
	case K_LEVEL:
		fprintf(out, "%s = %s\n", o->flag,
		    level_names[*(const nngrpc_log_level *) v]);
		return;
	case K_FORMAT:
		fprintf(out, "%s = %s\n", o->flag,
		    *(const nngrpc_log_format *) v == NNGRPC_LOG_JSON
		        ? "json"
		        : "text");
		return;
	case K_ACCESS:
		fprintf(out, "%s = %s\n", o->flag,
		    *(const nngrpc_access_mode *) v == NNGRPC_ACCESS_ALL
		        ? "all"
		        : *(const nngrpc_access_mode *) v
		            == NNGRPC_ACCESS_SAMPLED
		        ? "sampled"
		        : "off");
		return;
	case K_ISOLATION:
		fprintf(out, "%s = %s\n", o->flag,
		    *(const bool *) v ? "process" : "thread");
		return;
	case K_FLAG:
		return;
	}
}

void
nngrpc_serve_config_print(const nngrpc_serve_config *cfg,
    const nngrpc_option *extra, size_t n_extra, FILE *out)
{
	nngrpc_serve_config copy = *cfg;
	opts                os = { NULL, 0, 0 };
	char                err[256];

	/* Resolved against a copy: the standard fields are read, not set. */
	if (!resolve(&os, &copy, extra, n_extra, err, sizeof(err))) {
		fprintf(out, "# %s\n", err);
		free(os.o);
		return;
	}
	for (size_t i = os.n_extra; i < os.n; i++) {
		print_option(&os.o[i], &copy, out);
	}
	for (size_t i = 0; i < os.n_extra; i++) {
		print_option(&os.o[i], &copy, out);
	}
	free(os.o);
}
