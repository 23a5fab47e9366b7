/*
 * The bearer-token check, as an interceptor (nngrpc_interceptor): a call
 * to a service that is not open must carry the metadata "authorization:
 * Bearer <token>" with one of the accepted tokens, else it is answered
 * UNAUTHENTICATED before anything else looks at it. The scheme name is
 * compared case-insensitively (as HTTP does), the token exactly.
 *
 * Up to NNGRPC_AUTH_MAX_TOKENS tokens are accepted at once, so a token can
 * be rotated without refusing anyone: accept the old and the new, move the
 * clients to the new one, drop the old. Any thread may replace the tokens
 * while calls run.
 */
#ifndef NNGRPC_RPC_AUTH_H
#define NNGRPC_RPC_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include <nngrpc/nngrpc.h>

#define NNGRPC_AUTH_MAX_TOKENS 2

typedef struct nngrpc_auth nngrpc_auth;

/* Returns new: *ap, with no token accepted yet (every call that is not
 * open is refused), freed with nngrpc_auth_free(). 0 or NNG_ENOMEM. */
int nngrpc_auth_alloc(nngrpc_auth **ap);

/* Frees a. NULL is a no-op. No call may still use it. */
void nngrpc_auth_free(nngrpc_auth *a);

/* Accepts exactly these n tokens from now on (copied). Any thread.
 * Returns 0, NNG_EINVAL (n is 0 or above NNGRPC_AUTH_MAX_TOKENS, or a
 * token is empty) or NNG_ENOMEM; the tokens accepted before stay then. */
int nngrpc_auth_set_tokens(
    nngrpc_auth *a, const char *const *tokens, size_t n);

/* True when authorization (an "authorization" metadata value, or NULL)
 * carries one of the accepted tokens. Takes the same time whichever
 * bytes differ. Any thread. */
bool nngrpc_auth_check(nngrpc_auth *a, const char *authorization);

/* Fills *ic with the interceptor that checks calls against a (borrowed
 * until the server is closed). */
void nngrpc_auth_interceptor(nngrpc_auth *a, nngrpc_interceptor *ic);

#endif /* NNGRPC_RPC_AUTH_H */
