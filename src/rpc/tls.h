/*
 * The server's TLS credentials for its tls+tcp:// listeners: built from the
 * PEM files the configuration names, and built again from the same files
 * on request, so that a certificate can be rotated without a restart.
 *
 * DESIGN
 * ------
 * libnng's TLS listener takes a new nng_tls_config at any time
 * (NNG_OPT_TLS_CONFIG): connections accepted after the swap use it, those
 * already open keep theirs.A reload builds a whole new configuration
 * (certificate chain, key and, with a CA, required client certificates)
 * and swaps it in on every listener only when it is complete: a file that
 * cannot be read, or a key that does not match its certificate, leaves the
 * listeners as they were. libnng loads a certificate and a key that do not
 * belong together without a word (every handshake then fails), so before
 * the swap the pair must serve one real handshake: a listener on a
 * loopback port with the new certificate, a client with no verification,
 * one byte across.
 *
 * The listener drops its hold on the old configuration at the swap, but
 * its accept path reads the configuration pointer without its lock, and
 * may be holding it right then: the old configuration is therefore kept
 * alive here until the next reload (or the end), never freed at the swap.
 *
 * Threads: any; a mutex serialises reloads and listener setup.
 */
#ifndef NNGRPC_RPC_TLS_H
#define NNGRPC_RPC_TLS_H

#include <stddef.h>

#include <nng/nng.h>

typedef struct nngrpc_tls nngrpc_tls;

/* Returns new: *tp, for these files (copied paths; cert and key may be
 * NULL, then a TLS listener fails to start; ca NULL: no client
 * certificates). Nothing is read yet. 0 or NNG_ENOMEM. */
int nngrpc_tls_alloc(
    const char *cert, const char *key, const char *ca, nngrpc_tls **tp);

/* Frees t and the configurations it holds. NULL is a no-op. After the
 * listeners are closed. */
void nngrpc_tls_free(nngrpc_tls *t);

/* Gives listener l (not started) the configuration, read from the files
 * on first use. On failure writes one line into err. Returns 0 or an nng
 * error code. At most 16 listeners. */
int nngrpc_tls_add_listener(
    nngrpc_tls *t, nng_listener l, char *err, size_t errlen);

/* Reads the files again and swaps the new configuration in on every
 * listener added. On failure writes one line into err, and the listeners
 * keep the configuration they had. Returns 0, NNG_ENOTSUP (no listener),
 * or an nng error code. */
int nngrpc_tls_reload(nngrpc_tls *t, char *err, size_t errlen);

#endif /* NNGRPC_RPC_TLS_H */
