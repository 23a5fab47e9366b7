/*
 * The configuration of nngrpc_serve() (include/nngrpc/serve.h): the
 * standard options and a service's own, from the environment and argv,
 * validated in one place; --help and --print-config are written from the
 * same tables, so the three cannot disagree.
 */
#ifndef NNGRPC_RPC_SERVE_CONFIG_H
#define NNGRPC_RPC_SERVE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <nngrpc/log.h>
#include <nngrpc/nngrpc.h>
#include <nngrpc/serve.h>

/* Longest listen URL. */
#define NNGRPC_SERVE_URL_MAX 512

typedef struct nngrpc_serve_config {
	nngrpc_server_config server;
	nngrpc_log_level     log_level;
	nngrpc_log_format    log_format;
	nngrpc_access_mode   access_log;
	double               access_sample; /* with NNGRPC_ACCESS_SAMPLED */
	/* File whose first line is the token every call must carry (as
	 * "authorization: Bearer <token>"), or NULL. */
	const char *auth_token_file;
	/* Seconds a replaced token stays accepted after the file changed. */
	double auth_token_grace;
	/* Seconds a SIGTERM drain waits for calls in flight. */
	double drain_timeout;
	/* Server options set with nngrpc_server_set_int() (nngrpc.h). */
	int    queue_target_ms;
	int    queue_interval_ms;
	double default_deadline; /* seconds; 0: none */
	double max_deadline;     /* seconds; 0: none */
	int    max_connections;  /* 0: from the descriptor limit */
	double frame_timeout;    /* seconds; 0: off */
	double idle_timeout;     /* seconds; 0: off */
	bool   print_config;
	bool   help;
	/* Process isolation (--isolation process): handlers run in worker
	 * processes (see nngrpc_server_isolated()). */
	bool        isolation_process;
	uint64_t    worker_memory_mb; /* 0: no limit */
	double      deadline_grace;   /* seconds past a deadline: killed */
	const char *crash_dir;        /* or NULL */
	int         poison_crashes;   /* 0: no guard */
	double      poison_window;    /* seconds */
	bool        worker_seccomp;
	/* --replay FILE: run a saved request in this process, then exit. */
	const char *replay;
	/* The listen URLs server.listen points to. */
	char urls[NNGRPC_MAX_LISTEN][NNGRPC_SERVE_URL_MAX];
} nngrpc_serve_config;

/*
 * Fills *cfg with the defaults, then from the environment (envp,
 * NULL-terminated "K=V" strings), then from argv; the service's options
 * (extra, n_extra; borrowed) are parsed into what they point to, in the
 * same pass. Strings borrow from argv and envp. default_listen (NULL: the
 * standard one) is used when no URL is given. On a bad value (or a
 * service flag that repeats a standard one) writes one line into err and
 * returns false.
 */
bool nngrpc_serve_config_parse(nngrpc_serve_config *cfg,
    const nngrpc_option *extra, size_t n_extra, const char *default_listen,
    int argc, char **argv, char **envp, char *err, size_t errlen);

/* Writes --help: the usage line, spec's summary, spec's options, then the
 * standard ones. */
void nngrpc_serve_config_usage(const nngrpc_serve_spec *spec, FILE *out);

/* Writes the effective configuration, one "name = value" a line: the
 * standard options, then the service's. */
void nngrpc_serve_config_print(const nngrpc_serve_config *cfg,
    const nngrpc_option *extra, size_t n_extra, FILE *out);

#endif /* NNGRPC_RPC_SERVE_CONFIG_H */
