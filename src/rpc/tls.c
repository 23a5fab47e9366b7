/*
 * TLS credentials of the server's listeners (tls.h has the design).
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/supplemental/tls/tls.h>

#define MAX_TLS_LISTENERS 16
/* How long the loopback handshake of a new certificate may take. */
#define PROBE_MS 3000

struct nngrpc_tls {
	char           *t_cert, *t_key, *t_ca; /* owned paths; may be NULL */
	pthread_mutex_t t_mtx;
	nng_tls_config *t_cfg;  /* what the listeners use; t_mtx */
	nng_tls_config *t_prev; /* the one before, kept alive; t_mtx */
	nng_listener    t_listeners[MAX_TLS_LISTENERS];
	size_t          t_n; /* t_mtx */
};

static char *
dup_or_null(const char *s, bool *failed)
{
	char *d = s != NULL ? strdup(s) : NULL;

	if (s != NULL && d == NULL) {
		*failed = true;
	}
	return (d);
}

int
nngrpc_tls_alloc(
    const char *cert, const char *key, const char *ca, nngrpc_tls **tp)
{
	nngrpc_tls *t = calloc(1, sizeof(*t));
	bool        failed = false;

	if (t == NULL) {
		return (NNG_ENOMEM);
	}
	pthread_mutex_init(&t->t_mtx, NULL);
	t->t_cert = dup_or_null(cert, &failed);
	t->t_key = dup_or_null(key, &failed);
	t->t_ca = dup_or_null(ca, &failed);
	if (failed) {
		nngrpc_tls_free(t);
		return (NNG_ENOMEM);
	}
	*tp = t;
	return (0);
}

void
nngrpc_tls_free(nngrpc_tls *t)
{
	if (t == NULL) {
		return;
	}
	if (t->t_cfg != NULL) {
		nng_tls_config_free(t->t_cfg);
	}
	if (t->t_prev != NULL) {
		nng_tls_config_free(t->t_prev);
	}
	pthread_mutex_destroy(&t->t_mtx);
	free(t->t_cert);
	free(t->t_key);
	free(t->t_ca);
	free(t);
}

/* Reads a whole PEM file. Returns new: a NUL-terminated string to free(),
 * or NULL with errno set. */
static char *
read_pem(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long  n;

	if (f == NULL) {
		return (NULL);
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
	    || fseek(f, 0, SEEK_SET) != 0
	    || (buf = malloc((size_t) n + 1)) == NULL) {
		fclose(f);
		return (NULL);
	}
	if (fread(buf, 1, (size_t) n, f) != (size_t) n) {
		free(buf);
		fclose(f);
		errno = EIO;
		return (NULL);
	}
	buf[n] = '\0';
	fclose(f);
	return (buf);
}

/* Reads the three files. Returns 0, or NNG_EINVAL with err written (and
 * nothing to free). */
static int
read_files(const nngrpc_tls *t, char **cert, char **key, char **ca, char *err,
    size_t errlen)
{
	*cert = *key = *ca = NULL;
	if (t->t_cert == NULL || t->t_key == NULL) {
		snprintf(err, errlen,
		    "tls+tcp:// listeners need a certificate and a key "
		    "(--tls-cert, --tls-key)");
		return (NNG_EINVAL);
	}
	if ((*cert = read_pem(t->t_cert)) == NULL) {
		snprintf(err, errlen, "tls certificate %s: %s", t->t_cert,
		    strerror(errno));
	} else if ((*key = read_pem(t->t_key)) == NULL) {
		snprintf(
		    err, errlen, "tls key %s: %s", t->t_key, strerror(errno));
	} else if (t->t_ca != NULL && (*ca = read_pem(t->t_ca)) == NULL) {
		snprintf(
		    err, errlen, "tls CA %s: %s", t->t_ca, strerror(errno));
	} else {
		return (0);
	}
	free(*cert);
	free(*key);
	*cert = *key = NULL;
	return (NNG_EINVAL);
}

/* The streams and aios of one loopback handshake. */
typedef struct probe {
	nng_stream_listener *p_l;
	nng_stream_dialer   *p_d;
	nng_aio             *p_acc, *p_dial, *p_tx, *p_rx;
	nng_tls_config      *p_client;
} probe;

static void
probe_free(probe *p)
{
	nng_aio *aios[4] = { p->p_acc, p->p_dial, p->p_tx, p->p_rx };

	for (int i = 0; i < 2; i++) {
		nng_aio *a = i == 0 ? p->p_acc : p->p_dial;
		if (a != NULL && nng_aio_result(a) == 0) {
			nng_stream_free(nng_aio_get_output(a, 0));
		}
	}
	for (int i = 0; i < 4; i++) {
		nng_aio_free(aios[i]);
	}
	nng_stream_dialer_free(p->p_d);
	nng_stream_listener_free(p->p_l);
	if (p->p_client != NULL) {
		nng_tls_config_free(p->p_client);
	}
}

/* Waits for aio, PROBE_MS at most; its result. */
static int
probe_wait(nng_aio *aio)
{
	nng_aio_wait(aio);
	return (nng_aio_result(aio));
}

/* One handshake against cfg on a loopback port, one byte sent across.
 * Returns 0 when it worked. */
static int
handshake_once(nng_tls_config *cfg)
{
	probe   p = { 0 };
	char    url[64];
	int     port, rv;
	uint8_t out = 1, in = 0;
	nng_iov iov_out = { &out, 1 }, iov_in = { &in, 1 };

	if ((rv = nng_stream_listener_alloc(&p.p_l, "tls+tcp://127.0.0.1:0"))
	        != 0
	    || (rv = nng_stream_listener_set_ptr(
	            p.p_l, NNG_OPT_TLS_CONFIG, cfg))
	        != 0
	    || (rv = nng_stream_listener_listen(p.p_l)) != 0
	    || (rv = nng_stream_listener_get_int(
	            p.p_l, NNG_OPT_TCP_BOUND_PORT, &port))
	        != 0
	    || (rv = nng_tls_config_alloc(&p.p_client, NNG_TLS_MODE_CLIENT))
	        != 0
	    || (rv = nng_tls_config_auth_mode(
	            p.p_client, NNG_TLS_AUTH_MODE_NONE))
	        != 0) {
		probe_free(&p);
		return (rv);
	}
	snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", port);
	if ((rv = nng_stream_dialer_alloc(&p.p_d, url)) != 0
	    || (rv = nng_stream_dialer_set_ptr(
	            p.p_d, NNG_OPT_TLS_CONFIG, p.p_client))
	        != 0
	    || (rv = nng_aio_alloc(&p.p_acc, NULL, NULL)) != 0
	    || (rv = nng_aio_alloc(&p.p_dial, NULL, NULL)) != 0
	    || (rv = nng_aio_alloc(&p.p_tx, NULL, NULL)) != 0
	    || (rv = nng_aio_alloc(&p.p_rx, NULL, NULL)) != 0) {
		probe_free(&p);
		return (rv);
	}
	nng_aio_set_timeout(p.p_acc, PROBE_MS);
	nng_aio_set_timeout(p.p_dial, PROBE_MS);
	nng_aio_set_timeout(p.p_tx, PROBE_MS);
	nng_aio_set_timeout(p.p_rx, PROBE_MS);
	nng_stream_listener_accept(p.p_l, p.p_acc);
	nng_stream_dialer_dial(p.p_d, p.p_dial);
	if ((rv = probe_wait(p.p_dial)) == 0
	    && (rv = probe_wait(p.p_acc)) == 0) {
		/* The handshake runs on the first bytes. */
		nng_aio_set_iov(p.p_tx, 1, &iov_out);
		nng_aio_set_iov(p.p_rx, 1, &iov_in);
		nng_stream_send(nng_aio_get_output(p.p_dial, 0), p.p_tx);
		nng_stream_recv(nng_aio_get_output(p.p_acc, 0), p.p_rx);
		rv = probe_wait(p.p_rx);
		if (probe_wait(p.p_tx) != 0 && rv == 0) {
			rv = NNG_ECRYPTO;
		}
	}
	probe_free(&p);
	return (rv);
}

/* Whether cert and key (PEM) serve a handshake together, without client
 * certificates. */
static int
pair_works(const char *cert, const char *key)
{
	nng_tls_config *cfg;
	int             rv;

	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0) {
		return (rv);
	}
	if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) == 0) {
		rv = handshake_once(cfg);
	}
	nng_tls_config_free(cfg);
	return (rv);
}

/* Builds a new server configuration from the files. Returns new: *cfgp
 * (nng_tls_config_free()), or an error with err written. */
static int
build(const nngrpc_tls *t, nng_tls_config **cfgp, char *err, size_t errlen)
{
	nng_tls_config *cfg = NULL;
	char           *cert, *key, *ca;
	int             rv;

	if ((rv = read_files(t, &cert, &key, &ca, err, errlen)) != 0) {
		return (rv);
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0) {
		snprintf(err, errlen, "tls: %s", nng_strerror(rv));
	} else if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
		snprintf(err, errlen, "tls certificate %s or key %s: %s",
		    t->t_cert, t->t_key, nng_strerror(rv));
	} else if (ca != NULL
	    && ((rv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0
	        || (rv = nng_tls_config_auth_mode(
	                cfg, NNG_TLS_AUTH_MODE_REQUIRED))
	            != 0)) {
		snprintf(
		    err, errlen, "tls CA %s: %s", t->t_ca, nng_strerror(rv));
	}
	if (rv == 0 && (rv = pair_works(cert, key)) != 0) {
		snprintf(err, errlen,
		    "tls certificate %s and key %s: a handshake with them "
		    "fails (%s): not a pair?",
		    t->t_cert, t->t_key, nng_strerror(rv));
	}
	free(cert);
	free(key);
	free(ca);
	if (rv != 0) {
		if (cfg != NULL) {
			nng_tls_config_free(cfg);
		}
		return (rv);
	}
	*cfgp = cfg;
	return (0);
}

int
nngrpc_tls_add_listener(
    nngrpc_tls *t, nng_listener l, char *err, size_t errlen)
{
	int rv = 0;

	pthread_mutex_lock(&t->t_mtx);
	if (t->t_n == MAX_TLS_LISTENERS) {
		snprintf(err, errlen, "tls: at most %d tls+tcp:// listeners",
		    MAX_TLS_LISTENERS);
		rv = NNG_EINVAL;
	} else if (t->t_cfg == NULL) {
		rv = build(t, &t->t_cfg, err, errlen);
	}
	if (rv == 0
	    && (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, t->t_cfg))
	        != 0) {
		snprintf(err, errlen, "tls: %s", nng_strerror(rv));
	}
	if (rv == 0) {
		t->t_listeners[t->t_n++] = l;
	}
	pthread_mutex_unlock(&t->t_mtx);
	return (rv);
}

int
nngrpc_tls_reload(nngrpc_tls *t, char *err, size_t errlen)
{
	nng_tls_config *cfg;
	int             rv;

	pthread_mutex_lock(&t->t_mtx);
	if (t->t_n == 0) {
		snprintf(err, errlen, "tls: no tls+tcp:// listener");
		pthread_mutex_unlock(&t->t_mtx);
		return (NNG_ENOTSUP);
	}
	if ((rv = build(t, &cfg, err, errlen)) != 0) {
		pthread_mutex_unlock(&t->t_mtx);
		return (rv);
	}
	for (size_t i = 0; i < t->t_n; i++) {
		/* Only fails for a closed listener (the server stopping):
		 * the others still get the new one. */
		(void) nng_listener_set_ptr(
		    t->t_listeners[i], NNG_OPT_TLS_CONFIG, cfg);
	}
	if (t->t_prev != NULL) {
		nng_tls_config_free(t->t_prev);
	}
	t->t_prev = t->t_cfg; /* kept alive: see tls.h */
	t->t_cfg = cfg;
	pthread_mutex_unlock(&t->t_mtx);
	return (0);
}
