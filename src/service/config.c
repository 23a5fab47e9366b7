/*
 * Options of hoteld. One table lists every option once: its flag, its
 * environment variable, its kind and its help; parsing, --help and
 * --print-config all read the table, so they cannot disagree. The
 * environment is read first and flags override it; a repeated --listen
 * adds a URL, and NNGRPC_LISTEN takes a comma-separated list.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
	OPT_SECONDS,
	OPT_FRACTION,
	OPT_FORMAT,
	OPT_ACCESS,
	OPT_URLS,
	OPT_INT,
	OPT_SIZE,
	OPT_U64,
	OPT_BOOL,
	OPT_STR,
	OPT_LEVEL,
	OPT_FLAG
} opt_kind;

typedef struct option_def {
	const char *flag; /* without the leading "--" */
	const char *env;
	opt_kind    kind;
	long long   min, max; /* numeric kinds */
	size_t      offset;   /* field in hoteld_config */
	const char *help;
} option_def;

#define FIELD(f) offsetof(hoteld_config, f)

static const option_def options[] = {
	{ "listen", "NNGRPC_LISTEN", OPT_URLS, 0, 0, FIELD(server),
	    "URL to listen on, repeatable (tcp://HOST:PORT, ipc:///PATH); "
	    "default tcp://127.0.0.1:5555" },
	{ "workers", "NNGRPC_WORKERS", OPT_INT, 1, 4096, FIELD(server.workers),
	    "worker threads that run calls" },
	{ "queue", "NNGRPC_QUEUE", OPT_INT, 1, 1000000, FIELD(server.queue),
	    "calls that may wait for a worker before RESOURCE_EXHAUSTED" },
	{ "max-message-bytes", "NNGRPC_MAX_MESSAGE_BYTES", OPT_SIZE, 64,
	    1LL << 31, FIELD(server.max_message_bytes),
	    "largest request accepted, in bytes" },
	{ "testing", "NNGRPC_TESTING", OPT_BOOL, 0, 0, FIELD(testing),
	    "also serve nngrpc.testing.v1.Testing (Echo, Sleep, Fail)" },
	{ "hotels", "NNGRPC_HOTELS", OPT_U64, 0, 100000000, FIELD(hotels),
	    "hotels in the generated dataset" },
	{ "seed", "NNGRPC_SEED", OPT_U64, 0, INT64_MAX, FIELD(seed),
	    "seed of the generated dataset" },
	{ "data", "NNGRPC_DATA", OPT_STR, 0, 0, FIELD(data),
	    "load hotels from this JSON Lines file instead of generating" },
	{ "no-hotels", "NNGRPC_NO_HOTELS", OPT_BOOL, 0, 0, FIELD(no_hotels),
	    "do not serve hotel.v1.HotelSearch" },
	{ "tls-cert", "NNGRPC_TLS_CERT", OPT_STR, 0, 0, FIELD(server.tls_cert),
	    "PEM certificate chain for tls+tcp:// listeners" },
	{ "tls-key", "NNGRPC_TLS_KEY", OPT_STR, 0, 0, FIELD(server.tls_key),
	    "PEM private key for tls+tcp:// listeners" },
	{ "tls-ca", "NNGRPC_TLS_CA", OPT_STR, 0, 0, FIELD(server.tls_ca),
	    "PEM CA bundle: when set, TLS clients must present a certificate "
	    "it signed" },
	{ "auth-token-file", "NNGRPC_AUTH_TOKEN_FILE", OPT_STR, 0, 0,
	    FIELD(auth_token_file),
	    "require \"authorization: Bearer <token>\" metadata, the token "
	    "read from this file (health checks stay open)" },
	{ "drain-timeout", "NNGRPC_DRAIN_TIMEOUT", OPT_SECONDS, 0, 3600,
	    FIELD(drain_timeout),
	    "seconds SIGTERM waits for calls in flight before exiting "
	    "anyway (default 10)" },
	{ "http", "NNGRPC_HTTP", OPT_STR, 0, 0, FIELD(server.http),
	    "HOST:PORT of the ops HTTP endpoint (/healthz, /readyz, "
	    "/metrics); off unless set" },
	{ "log-format", "NNGRPC_LOG_FORMAT", OPT_FORMAT, 0, 0,
	    FIELD(log_format), "text or json (one JSON object a line)" },
	{ "access-log", "NNGRPC_ACCESS_LOG", OPT_ACCESS, 0, 0,
	    FIELD(access_log),
	    "one line per call: off (default), all, or sampled" },
	{ "access-log-sample", "NNGRPC_ACCESS_LOG_SAMPLE", OPT_FRACTION, 0, 1,
	    FIELD(access_sample),
	    "with --access-log sampled: the share of calls logged, 0..1 "
	    "(default 0.01)" },
	{ "log-level", "NNGRPC_LOG_LEVEL", OPT_LEVEL, 0, 0, FIELD(log_level),
	    "error, warn, info or debug" },
	{ "print-config", NULL, OPT_FLAG, 0, 0, FIELD(print_config),
	    "print the effective configuration and exit" },
	{ "help", NULL, OPT_FLAG, 0, 0, FIELD(help), "show this help" },
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static bool
parse_number(const char *s, long long min, long long max, long long *out)
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

static bool
add_url(
    hoteld_config *cfg, const char *url, size_t len, char *err, size_t errlen)
{
	nngrpc_server_config *sc = &cfg->server;
	static char           copies[NNGRPC_MAX_LISTEN][512];

	if (len == 0) {
		return (true);
	}
	if (sc->n_listen == NNGRPC_MAX_LISTEN || len >= sizeof(copies[0])) {
		snprintf(err, errlen, "listen: at most %d URLs of < 512 bytes",
		    NNGRPC_MAX_LISTEN);
		return (false);
	}
	memcpy(copies[sc->n_listen], url, len);
	copies[sc->n_listen][len] = '\0';
	if (strstr(copies[sc->n_listen], "://") == NULL) {
		snprintf(err, errlen,
		    "listen: '%s' is not a URL (tcp://HOST:PORT or "
		    "ipc:///PATH)",
		    copies[sc->n_listen]);
		return (false);
	}
	sc->listen[sc->n_listen] = copies[sc->n_listen];
	sc->n_listen++;
	return (true);
}

/* Applies one value to one option; from says where it came from. */
static bool
apply(hoteld_config *cfg, const option_def *o, const char *v, const char *from,
    char *err, size_t errlen)
{
	void     *field = (char *) cfg + o->offset;
	long long n;

	switch (o->kind) {
	case OPT_URLS:
		while (true) {
			const char *comma = strchr(v, ',');
			size_t len = comma ? (size_t) (comma - v) : strlen(v);
			if (!add_url(cfg, v, len, err, errlen)) {
				return (false);
			}
			if (comma == NULL) {
				return (true);
			}
			v = comma + 1;
		}
	case OPT_INT:
	case OPT_SIZE:
	case OPT_U64:
		if (!parse_number(v, o->min, o->max, &n)) {
			snprintf(err, errlen,
			    "%s: must be an integer from %lld to %lld, got "
			    "'%s'",
			    from, o->min, o->max, v);
			return (false);
		}
		if (o->kind == OPT_INT) {
			*(int *) field = (int) n;
		} else if (o->kind == OPT_SIZE) {
			*(size_t *) field = (size_t) n;
		} else {
			*(uint64_t *) field = (uint64_t) n;
		}
		return (true);
	case OPT_SECONDS:
	case OPT_FRACTION: {
		char  *end;
		double d;
		errno = 0;
		d = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !(d >= o->min)
		    || d > o->max) {
			snprintf(err, errlen,
			    "%s: must be a number%s from %lld to %lld, got "
			    "'%s'",
			    from, o->kind == OPT_SECONDS ? " of seconds" : "",
			    o->min, o->max, v);
			return (false);
		}
		*(double *) field = d;
		return (true);
	}
	case OPT_BOOL:
		if (!parse_bool(v, field)) {
			snprintf(err, errlen,
			    "%s: must be true or false, got '%s'", from, v);
			return (false);
		}
		return (true);
	case OPT_STR:
		*(const char **) field = v;
		return (true);
	case OPT_LEVEL:
		if (!nngrpc_log_parse_level(v, field)) {
			snprintf(err, errlen,
			    "%s: must be error, warn, info or debug, got '%s'",
			    from, v);
			return (false);
		}
		return (true);
	case OPT_FORMAT:
		if (!nngrpc_log_parse_format(v, field)) {
			snprintf(err, errlen,
			    "%s: must be text or json, got '%s'", from, v);
			return (false);
		}
		return (true);
	case OPT_ACCESS:
		if (!nngrpc_log_parse_access(v, field)) {
			snprintf(err, errlen,
			    "%s: must be off, all or sampled, got '%s'", from,
			    v);
			return (false);
		}
		return (true);
	case OPT_FLAG:
		*(bool *) field = true;
		return (true);
	}
	return (false);
}

static const option_def *
find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (strlen(options[i].flag) == len
		    && strncmp(options[i].flag, name, len) == 0) {
			return (&options[i]);
		}
	}
	return (NULL);
}

bool
hoteld_config_parse(hoteld_config *cfg, int argc, char **argv, char **envp,
    char *err, size_t errlen)
{
	bool flag_listen = false;

	memset(cfg, 0, sizeof(*cfg));
	nngrpc_server_config_init(&cfg->server);
	cfg->log_level = NNGRPC_LOG_INFO;
	cfg->hotels = 100000;
	cfg->seed = 1;
	cfg->drain_timeout = 10;
	cfg->access_sample = 0.01;

	for (char **e = envp; e != NULL && *e != NULL; e++) {
		for (size_t i = 0; i < N_OPTIONS; i++) {
			const option_def *o = &options[i];
			size_t            n = o->env ? strlen(o->env) : 0;
			if (n > 0 && strncmp(*e, o->env, n) == 0
			    && (*e)[n] == '='
			    && !apply(
			        cfg, o, *e + n + 1, o->env, err, errlen)) {
				return (false);
			}
		}
	}
	for (int i = 1; i < argc; i++) {
		const char       *a = argv[i];
		const char       *eq;
		const char       *value;
		const option_def *o;
		char              from[64];

		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, errlen,
			    "unexpected argument '%s' (see --help)", a);
			return (false);
		}
		a += 2;
		eq = strchr(a, '=');
		o = find_flag(a, eq ? (size_t) (eq - a) : strlen(a));
		if (o == NULL) {
			snprintf(err, errlen,
			    "unknown option '%s' (see --help)", argv[i]);
			return (false);
		}
		snprintf(from, sizeof(from), "--%s", o->flag);
		if (o->kind == OPT_FLAG
		    || (o->kind == OPT_BOOL && eq == NULL)) {
			value = eq ? eq + 1
			           : (o->kind == OPT_BOOL ? "true" : "");
		} else if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, errlen, "%s: needs a value", from);
			return (false);
		}
		if (o->kind == OPT_URLS && !flag_listen) {
			/* Flags replace the environment's URLs. */
			cfg->server.n_listen = 0;
			flag_listen = true;
		}
		if (!apply(cfg, o, value, from, err, errlen)) {
			return (false);
		}
	}
	if (cfg->server.n_listen == 0) {
		cfg->server.listen[0] = "tcp://127.0.0.1:5555";
		cfg->server.n_listen = 1;
	}
	return (true);
}

void
hoteld_config_usage(FILE *out)
{
	fprintf(out,
	    "usage: hoteld [options]\n"
	    "Serves hotel.v1.HotelSearch (and more) over NNG REQ/REP.\n\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const option_def *o = &options[i];
		const char *arg = (o->kind == OPT_FLAG || o->kind == OPT_BOOL)
		    ? ""
		    : " VALUE";
		fprintf(out, "  --%s%s\n      %s", o->flag, arg, o->help);
		if (o->env != NULL) {
			fprintf(out, " [env %s]", o->env);
		}
		fputc('\n', out);
	}
}

void
hoteld_config_print(const hoteld_config *cfg, FILE *out)
{
	static const char *const levels[]
	    = { "error", "warn", "info", "debug" };
	const nngrpc_server_config *sc = &cfg->server;

	for (size_t i = 0; i < sc->n_listen; i++) {
		fprintf(out, "listen = %s\n", sc->listen[i]);
	}
	fprintf(out, "workers = %d\n", sc->workers);
	fprintf(out, "queue = %d\n", sc->queue);
	fprintf(out, "max-message-bytes = %zu\n", sc->max_message_bytes);
	fprintf(out, "testing = %s\n", cfg->testing ? "true" : "false");
	fprintf(out, "hotels = %" PRIu64 "\n", cfg->hotels);
	fprintf(out, "seed = %" PRIu64 "\n", cfg->seed);
	fprintf(out, "data = %s\n", cfg->data ? cfg->data : "");
	fprintf(out, "no-hotels = %s\n", cfg->no_hotels ? "true" : "false");
	fprintf(out, "tls-cert = %s\n", sc->tls_cert ? sc->tls_cert : "");
	fprintf(out, "tls-key = %s\n", sc->tls_key ? sc->tls_key : "");
	fprintf(out, "tls-ca = %s\n", sc->tls_ca ? sc->tls_ca : "");
	fprintf(out, "auth-token-file = %s\n",
	    cfg->auth_token_file ? cfg->auth_token_file : "");
	fprintf(out, "drain-timeout = %g\n", cfg->drain_timeout);
	fprintf(out, "http = %s\n", sc->http ? sc->http : "");
	fprintf(out, "log-level = %s\n", levels[cfg->log_level]);
	fprintf(out, "log-format = %s\n",
	    cfg->log_format == NNGRPC_LOG_JSON ? "json" : "text");
	fprintf(out, "access-log = %s\n",
	    cfg->access_log == NNGRPC_ACCESS_ALL           ? "all"
	        : cfg->access_log == NNGRPC_ACCESS_SAMPLED ? "sampled"
	                                                   : "off");
	fprintf(out, "access-log-sample = %g\n", cfg->access_sample);
}
