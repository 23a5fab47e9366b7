/*
 * The bearer-token check (auth.h). The accepted credentials are kept as
 * whole "Bearer <token>" strings, and a caller's value is compared with
 * every one of them, without stopping at the first that matches or
 * differs: the answer's timing depends on the accepted tokens' lengths
 * only, never on how many leading bytes a caller got right.
 *
 * Threads: a read-write lock guards the list; checks take it shared, a
 * rotation exclusively, and nothing else runs under it.
 */
#include "auth.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEME "Bearer "

struct nngrpc_auth {
	pthread_rwlock_t a_lock;
	char            *a_creds[NNGRPC_AUTH_MAX_TOKENS]; /* a_lock */
	size_t           a_n;                             /* a_lock */
};

int
nngrpc_auth_alloc(nngrpc_auth **ap)
{
	nngrpc_auth *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		return (NNG_ENOMEM);
	}
	pthread_rwlock_init(&a->a_lock, NULL);
	*ap = a;
	return (0);
}

void
nngrpc_auth_free(nngrpc_auth *a)
{
	if (a == NULL) {
		return;
	}
	for (size_t i = 0; i < a->a_n; i++) {
		free(a->a_creds[i]);
	}
	pthread_rwlock_destroy(&a->a_lock);
	free(a);
}

int
nngrpc_auth_set_tokens(nngrpc_auth *a, const char *const *tokens, size_t n)
{
	/* Slots past n stay NULL here and in a->a_creds. */
	char *creds[NNGRPC_AUTH_MAX_TOKENS] = { NULL };
	int   rv = 0;

	if (n == 0 || n > NNGRPC_AUTH_MAX_TOKENS) {
		return (NNG_EINVAL);
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		size_t len = sizeof(SCHEME) + strlen(tokens[i]);

		if (tokens[i][0] == '\0') {
			rv = NNG_EINVAL;
		} else if ((creds[i] = malloc(len)) == NULL) {
			rv = NNG_ENOMEM;
		} else {
			snprintf(creds[i], len, SCHEME "%s", tokens[i]);
		}
	}
	if (rv == 0) {
		/* Swap the new list in; the old one is freed below. */
		pthread_rwlock_wrlock(&a->a_lock);
		for (size_t i = 0; i < NNGRPC_AUTH_MAX_TOKENS; i++) {
			char *old = a->a_creds[i];
			a->a_creds[i] = creds[i];
			creds[i] = old;
		}
		a->a_n = n;
		pthread_rwlock_unlock(&a->a_lock);
	}
	for (size_t i = 0; i < NNGRPC_AUTH_MAX_TOKENS; i++) {
		free(creds[i]);
	}
	return (rv);
}

/* Compares a caller's value with one credential in time that depends only
 * on the credential's length: the scheme name case-insensitively, the
 * token exactly. */
static bool
credential_equal(const char *expected, const char *given, size_t m)
{
	const size_t  ns = sizeof(SCHEME) - 1;
	size_t        n = strlen(expected);
	unsigned char diff = (unsigned char) (n != m);

	for (size_t i = 0; i < n; i++) {
		unsigned char g = i < m ? (unsigned char) given[i] : 0;
		unsigned char e = (unsigned char) expected[i];
		if (i < ns) {
			g = (unsigned char) tolower(g);
			e = (unsigned char) tolower(e);
		}
		diff |= e ^ g;
	}
	return (diff == 0);
}

bool
nngrpc_auth_check(nngrpc_auth *a, const char *authorization)
{
	const char *given = authorization != NULL ? authorization : "";
	size_t      m = strlen(given);
	bool        ok = false;

	pthread_rwlock_rdlock(&a->a_lock);
	for (size_t i = 0; i < a->a_n; i++) {
		ok |= credential_equal(a->a_creds[i], given, m);
	}
	pthread_rwlock_unlock(&a->a_lock);
	return (ok);
}

static nngrpc_status
auth_before(nngrpc_call *call, void *arg)
{
	if (nngrpc_call_open(call)
	    || nngrpc_auth_check(
	        arg, nngrpc_call_metadata(call, "authorization"))) {
		return (NNGRPC_OK);
	}
	return (nngrpc_call_error(call, NNGRPC_UNAUTHENTICATED,
	    "missing or wrong \"authorization: Bearer <token>\" metadata"));
}

void
nngrpc_auth_interceptor(nngrpc_auth *a, nngrpc_interceptor *ic)
{
	memset(ic, 0, sizeof(*ic));
	ic->name = "auth";
	ic->before = auth_before;
	ic->arg = a;
}
