/* nngrpc_serve()'s configuration (src/rpc/serve_config.c): defaults, the
 * environment under the flags, a service's own options beside the
 * standard ones, every kind of bad value, and --help and --print-config
 * written from the same tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve_config.h"

typedef struct svc {
	const char *name;
	bool        verbose;
	int         level;
	uint64_t    size;
	double      ratio;
} svc;

static svc service;

static const nngrpc_option options[] = {
	{ "name", "SVC_NAME", NNGRPC_OPTION_STRING, &service.name, 0, 0,
	    "a name" },
	{ "verbose", "SVC_VERBOSE", NNGRPC_OPTION_BOOL, &service.verbose, 0, 0,
	    "say more" },
	{ "level", NULL, NNGRPC_OPTION_INT, &service.level, 1, 9, "a level" },
	{ "size", "SVC_SIZE", NNGRPC_OPTION_UINT64, &service.size, 0,
	    INT64_MAX, "a size" },
	{ "ratio", "SVC_RATIO", NNGRPC_OPTION_NUMBER, &service.ratio, 0, 2,
	    "a ratio" },
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static nngrpc_serve_config cfg;
static char                err[512];

/* Parses argv (NULL-terminated, without argv[0]) under envp. */
static bool
parse(char **envp, ...)
{
	char   *argv[32] = { "prog" };
	int     argc = 1;
	va_list ap;

	va_start(ap, envp);
	while ((argv[argc] = va_arg(ap, char *)) != NULL) {
		argc++;
	}
	va_end(ap);
	memset(&service, 0, sizeof(service));
	service.level = 5;
	service.size = 7;
	err[0] = '\0';
	return (nngrpc_serve_config_parse(&cfg, options, N_OPTIONS, NULL, argc,
	    argv, envp, err, sizeof(err)));
}

static void
test_defaults(void **state)
{
	(void) state;
	assert_true(parse(NULL, NULL));
	assert_int_equal(cfg.server.n_listen, 1);
	assert_string_equal(cfg.server.listen[0], "tcp://127.0.0.1:5555");
	assert_int_equal(cfg.server.workers, NNGRPC_DEFAULT_WORKERS);
	assert_int_equal(cfg.server.queue, NNGRPC_DEFAULT_QUEUE);
	assert_int_equal(cfg.log_level, NNGRPC_LOG_INFO);
	assert_true(cfg.drain_timeout == 10);
	assert_int_equal(cfg.queue_target_ms, NNGRPC_DEFAULT_QUEUE_TARGET_MS);
	assert_int_equal(
	    cfg.queue_interval_ms, NNGRPC_DEFAULT_QUEUE_INTERVAL_MS);
	assert_int_equal(cfg.max_connections, 0);
	assert_true(cfg.default_deadline == 0 && cfg.max_deadline == 0);
	assert_true(
	    cfg.frame_timeout * 1000 == NNGRPC_DEFAULT_FRAME_TIMEOUT_MS);
	assert_true(cfg.idle_timeout * 1000 == NNGRPC_DEFAULT_IDLE_TIMEOUT_MS);
	assert_true(cfg.access_sample == 0.01);
	assert_null(cfg.auth_token_file);
	/* The service's defaults stay what it set. */
	assert_int_equal(service.level, 5);
	assert_int_equal(service.size, 7);
	assert_null(service.name);
}

static void
test_flags_win_over_the_environment(void **state)
{
	char *env[] = { "NNGRPC_WORKERS=3", "NNGRPC_QUEUE=99",
		"NNGRPC_LISTEN=tcp://127.0.0.1:1,,ipc:///tmp/x.sock",
		"SVC_NAME=from-env", "SVC_VERBOSE=yes", "SVC_RATIO=1.5",
		"UNRELATED=1", NULL };

	(void) state;
	assert_true(parse(env, "--workers", "7", "--name=flag", NULL));
	assert_int_equal(cfg.server.workers, 7);
	assert_int_equal(cfg.server.queue, 99);
	assert_int_equal(cfg.server.n_listen, 2);
	assert_string_equal(cfg.server.listen[1], "ipc:///tmp/x.sock");
	assert_string_equal(service.name, "flag");
	assert_true(service.verbose);
	assert_true(service.ratio == 1.5);

	/* --listen replaces the environment's URLs, then adds. */
	assert_true(parse(env, "--listen", "tcp://127.0.0.1:2", "--listen",
	    "tcp://127.0.0.1:3", NULL));
	assert_int_equal(cfg.server.n_listen, 2);
	assert_string_equal(cfg.server.listen[0], "tcp://127.0.0.1:2");
	assert_string_equal(cfg.server.listen[1], "tcp://127.0.0.1:3");
}

static void
test_every_kind_of_value(void **state)
{
	(void) state;
	assert_true(parse(NULL, "--verbose", "--level", "9", "--size",
	    "18446744073", "--ratio=0", "--log-level", "debug",
	    "--log-format=json", "--access-log", "sampled",
	    "--access-log-sample", "0.5", "--drain-timeout", "2.5",
	    "--max-message-bytes", "1024", "--http", ":0", "--queue-target-ms",
	    "0", "--queue-interval-ms=250", "--max-connections", "900",
	    "--frame-timeout", "2.5", "--idle-timeout=0", "--default-deadline",
	    "0.25", "--max-deadline=30", NULL));
	assert_int_equal(cfg.max_connections, 900);
	assert_true(cfg.frame_timeout == 2.5 && cfg.idle_timeout == 0);
	assert_true(cfg.default_deadline == 0.25 && cfg.max_deadline == 30);
	assert_int_equal(cfg.queue_target_ms, 0);
	assert_int_equal(cfg.queue_interval_ms, 250);
	assert_true(service.verbose);
	assert_int_equal(service.level, 9);
	assert_true(service.size == 18446744073ULL);
	assert_true(service.ratio == 0);
	assert_int_equal(cfg.log_level, NNGRPC_LOG_DEBUG);
	assert_int_equal(cfg.log_format, NNGRPC_LOG_JSON);
	assert_int_equal(cfg.access_log, NNGRPC_ACCESS_SAMPLED);
	assert_true(cfg.access_sample == 0.5);
	assert_true(cfg.drain_timeout == 2.5);
	assert_int_equal(cfg.server.max_message_bytes, 1024);
	assert_string_equal(cfg.server.http, ":0");

	assert_true(parse(NULL, "--verbose=false", NULL));
	assert_false(service.verbose);
	assert_true(parse(NULL, "--help", "--print-config", NULL));
	assert_true(cfg.help && cfg.print_config);
}

static void
test_bad_values_say_which_and_why(void **state)
{
	static const struct {
		const char *args[3];
		const char *env;
		const char *message;
	} cases[] = {
		{ { "--workers", "0" }, NULL,
		    "--workers: must be an integer from 1 to 4096, got '0'" },
		{ { "--level", "10" }, NULL,
		    "--level: must be an integer from 1 to 9, got '10'" },
		{ { "--queue", "x" }, NULL, "--queue: must be an integer" },
		{ { "--bogus" }, NULL,
		    "unknown option '--bogus' (see --help)" },
		{ { "bare" }, NULL,
		    "unexpected argument 'bare' (see --help)" },
		{ { "" }, NULL, "unexpected argument '' (see --help)" },
		{ { "--listen", "nope" }, NULL,
		    "listen: 'nope' is not a URL" },
		{ { "--name" }, NULL, "--name: needs a value" },
		{ { "--verbose=maybe" }, NULL,
		    "--verbose: must be true or false, got 'maybe'" },
		{ { "--drain-timeout", "soon" }, NULL,
		    "--drain-timeout: must be a number of seconds from 0 to "
		    "3600, got 'soon'" },
		{ { "--ratio", "3" }, NULL,
		    "--ratio: must be a number from 0 to 2, got '3'" },
		{ { "--access-log", "some" }, NULL,
		    "--access-log: must be off, all or sampled" },
		{ { NULL }, "NNGRPC_WORKERS=-3",
		    "NNGRPC_WORKERS: must be an "
		    "integer" },
		{ { NULL }, "NNGRPC_LOG_FORMAT=xml",
		    "NNGRPC_LOG_FORMAT: must be text or json, got 'xml'" },
		{ { NULL }, "NNGRPC_LOG_LEVEL=loud",
		    "NNGRPC_LOG_LEVEL: must be error, warn, info or debug" },
		{ { NULL }, "SVC_SIZE=-1", "SVC_SIZE: must be an integer" },
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *env[] = { (char *) cases[i].env, NULL };
		bool  ok = parse(
		     env, cases[i].args[0], cases[i].args[1], cases[i].args[2]);
		assert_false(ok);
		if (strstr(err, cases[i].message) == NULL) {
			fail_msg("case %zu: '%s' not in '%s'", i,
			    cases[i].message, err);
		}
		assert_null(strchr(err, '\n'));
	}
}

static void
test_listen_limits(void **state)
{
	char  many[17 * 24 + 1] = "NNGRPC_LISTEN=";
	char  long_url[NNGRPC_SERVE_URL_MAX + 16];
	char *env[] = { many, NULL };

	(void) state;
	for (int i = 0; i < 17; i++) {
		char one[24];
		snprintf(one, sizeof(one), "%stcp://h:%d", i ? "," : "", i);
		strcat(many, one);
	}
	assert_false(parse(env, NULL));
	assert_non_null(strstr(err, "at most 16 URLs"));
	memset(long_url, 'a', sizeof(long_url) - 1);
	memcpy(long_url, "tcp://", 6);
	long_url[sizeof(long_url) - 1] = '\0';
	assert_false(parse(NULL, "--listen", long_url, NULL));
	assert_non_null(strstr(err, "at most 16 URLs of < 512 bytes"));
}

static void
test_a_service_flag_may_not_repeat_a_standard_one(void **state)
{
	int                 workers = 0;
	const nngrpc_option bad[] = {
		{ "workers", NULL, NNGRPC_OPTION_INT, &workers, 0, 9, "mine" },
	};
	char *argv[] = { "prog", NULL };

	(void) state;
	assert_false(nngrpc_serve_config_parse(
	    &cfg, bad, 1, NULL, 1, argv, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "--workers"));
	assert_true(nngrpc_serve_config_parse(
	    &cfg, NULL, 0, "ipc:///tmp/d", 1, argv, NULL, err, sizeof(err)));
	assert_string_equal(cfg.server.listen[0], "ipc:///tmp/d");
}

/* What f wrote; the caller frees it. */
static char *
captured(void (*write)(FILE *))
{
	char  *buf = NULL;
	size_t len = 0;
	FILE  *f = open_memstream(&buf, &len);

	assert_non_null(f);
	write(f);
	fclose(f);
	return (buf);
}

static void
write_usage(FILE *f)
{
	const nngrpc_serve_spec spec = { .name = "svcd",
		.summary = "Serves a test.",
		.options = options,
		.n_options = N_OPTIONS };
	nngrpc_serve_config_usage(&spec, f);
}

static void
write_config(FILE *f)
{
	nngrpc_serve_config_print(&cfg, options, N_OPTIONS, f);
}

static void
test_help_lists_the_service_options_first(void **state)
{
	char *text = captured(write_usage);

	(void) state;
	assert_true(
	    strncmp(text, "usage: svcd [options]\nServes a test.\n", 37) == 0);
	assert_non_null(strstr(text, "svcd options:\n  --name VALUE\n"));
	assert_non_null(strstr(text, "a name [env SVC_NAME]"));
	assert_non_null(strstr(text, "  --verbose\n      say more"));
	assert_non_null(strstr(text, "  --level VALUE\n      a level\n"));
	assert_true(strstr(text, "--ratio") < strstr(text, "Server options"));
	assert_non_null(strstr(text, "[env NNGRPC_DRAIN_TIMEOUT]"));
	assert_non_null(strstr(text, "  --help\n"));
	free(text);
}

static void
test_print_config_shows_every_value(void **state)
{
	char *env[] = { "NNGRPC_QUEUE=99", NULL };
	char *text;

	(void) state;
	assert_true(
	    parse(env, "--workers", "7", "--listen", "ipc:///a", "--listen",
	        "ipc:///b", "--name", "x", "--access-log", "all", NULL));
	text = captured(write_config);
	assert_non_null(strstr(text,
	    "listen = ipc:///a\nlisten = ipc:///b\nworkers = 7\nqueue = "
	    "99\n"));
	assert_non_null(strstr(text,
	    "log-level = info\nlog-format = text\n"
	    "access-log = all\n"));
	assert_non_null(strstr(text,
	    "\nname = x\nverbose = false\nlevel = 5\n"
	    "size = 7\nratio = 0\n"));
	assert_null(strstr(text, "help"));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_flags_win_over_the_environment),
		cmocka_unit_test(test_every_kind_of_value),
		cmocka_unit_test(test_bad_values_say_which_and_why),
		cmocka_unit_test(test_listen_limits),
		cmocka_unit_test(
		    test_a_service_flag_may_not_repeat_a_standard_one),
		cmocka_unit_test(test_help_lists_the_service_options_first),
		cmocka_unit_test(test_print_config_shows_every_value),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
