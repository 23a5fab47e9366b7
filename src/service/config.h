/*
 * hoteld's configuration: every option is a flag and an environment
 * variable (the flag wins), validated in one place.
 */
#ifndef NNGRPC_SERVICE_CONFIG_H
#define NNGRPC_SERVICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <nngrpc/nngrpc.h>

#include "log.h"

typedef struct hoteld_config {
	nngrpc_server_config server;
	bool                 testing; /* serve nngrpc.testing.v1.Testing */
	nngrpc_log_level     log_level;
	nngrpc_log_format    log_format;
	nngrpc_access_mode   access_log;
	double               access_sample; /* with NNGRPC_ACCESS_SAMPLED */
	bool                 print_config;
	/* File whose first line is the token every call must carry (as
	 * "authorization: Bearer <token>"), or NULL. */
	const char *auth_token_file;
	/* Seconds a SIGTERM drain waits for calls in flight. */
	double drain_timeout;
	bool   help;
	/* The hotel service's dataset. */
	uint64_t    hotels;
	uint64_t    seed;
	const char *data; /* JSON Lines file, or NULL: generate */
	bool        no_hotels;
} hoteld_config;

/*
 * Fills *cfg from the environment (envp, NULL-terminated "K=V" strings),
 * then from argv. Strings in *cfg borrow from argv and envp. On a bad
 * value writes one line into err and returns false.
 */
bool hoteld_config_parse(hoteld_config *cfg, int argc, char **argv,
    char **envp, char *err, size_t errlen);

/* Writes the usage text. */
void hoteld_config_usage(FILE *out);

/* Writes the effective configuration, one "name = value" a line. */
void hoteld_config_print(const hoteld_config *cfg, FILE *out);

#endif /* NNGRPC_SERVICE_CONFIG_H */
