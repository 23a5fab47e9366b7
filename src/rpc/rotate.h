/*
 * Rotation of a running server's credentials, for nngrpc_serve(): the auth
 * token file and the TLS files are read again when they change (or when
 * asked, on SIGHUP), without a restart and without refusing a call.
 *
 * DESIGN
 * ------
 * The serve loop looks once a second (and on SIGHUP) at each file's
 * identity: device, inode, size and modification time, so both an edit in
 * place and the atomic rename of a new file (what Kubernetes does with a
 * mounted Secret) count as a change.
 *
 * A new token is accepted at once, and the one it replaces stays accepted
 * for a grace period (--auth-token-grace), so clients can move to the new
 * one at their own pace: both work meanwhile, then only the new one. A
 * file that is empty or unreadable when looked at (caught halfway through
 * a write) changes nothing; the next change is read again.
 *
 * New TLS files are swapped in for new connections only when the whole set
 * loads (nngrpc_server_reload_tls()): a certificate renewed before its key
 * fails once, keeps the old pair, and succeeds when the key follows.
 *
 * Threads: the serve loop's only (nngrpc_serve()'s main thread).
 */
#ifndef NNGRPC_RPC_ROTATE_H
#define NNGRPC_RPC_ROTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nngrpc/nngrpc.h>

/* Longest auth token (the first line of the token file). */
#define NNGRPC_TOKEN_MAX 1024

typedef struct nngrpc_rotate nngrpc_rotate;

/* Reads the first line of path, the token, into buf. Returns 0, or an
 * errno value (ENODATA: no token in it) with one line in err. */
int nngrpc_read_token(
    const char *path, char *buf, size_t len, char *err, size_t errlen);

/* Returns new: *rp, freed with nngrpc_rotate_free(), watching token_file
 * (or NULL), whose token the server accepts now (token), and, when tls,
 * the three TLS files (each may be NULL). grace_s: how long a replaced
 * token stays accepted. Borrows server; copies the rest. 0 or
 * NNG_ENOMEM. */
int nngrpc_rotate_alloc(nngrpc_server *server, const char *token_file,
    const char *token, double grace_s, bool tls, const char *tls_cert,
    const char *tls_key, const char *tls_ca, nngrpc_rotate **rp);

/* Frees r. NULL is a no-op. */
void nngrpc_rotate_free(nngrpc_rotate *r);

/* Looks now: reads again the files that changed (every one with force,
 * for SIGHUP) and hands them to the server, and ends a grace period that
 * is over. Logs what it did. */
void nngrpc_rotate_look(nngrpc_rotate *r, bool force);

#endif /* NNGRPC_RPC_ROTATE_H */
