/*
 * Credential rotation (rotate.h has the design).
 */
#include "rotate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nngrpc/clock.h>
#include <nngrpc/log.h>

/* A watched file and what it was when last looked at. */
typedef struct watched {
	char       *path; /* owned, or NULL: not watched */
	struct stat st;
	bool        seen; /* st is valid */
} watched;

struct nngrpc_rotate {
	nngrpc_server *r_server;
	watched        r_token_file;
	char           r_token[NNGRPC_TOKEN_MAX]; /* accepted */
	char           r_old[NNGRPC_TOKEN_MAX];   /* also, until r_old_until */
	int64_t        r_old_until;               /* 0: no old token */
	int64_t        r_grace_ns;
	bool           r_tls;
	watched        r_tls_files[3];
};

int
nngrpc_read_token(
    const char *path, char *buf, size_t len, char *err, size_t errlen)
{
	FILE  *f = fopen(path, "r");
	size_t n;
	int    rv;

	if (f == NULL) {
		rv = errno;
		snprintf(err, errlen, "--auth-token-file: cannot read %s: %s",
		    path, strerror(rv));
		return (rv);
	}
	if (fgets(buf, (int) len, f) == NULL) {
		buf[0] = '\0';
	}
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	if (n == 0) {
		snprintf(
		    err, errlen, "--auth-token-file: %s has no token", path);
		return (ENODATA);
	}
	return (0);
}

/* Starts watching path (NULL: nothing), as it is now. */
static int
watch(watched *w, const char *path)
{
	if (path == NULL) {
		return (0);
	}
	if ((w->path = strdup(path)) == NULL) {
		return (NNG_ENOMEM);
	}
	w->seen = stat(path, &w->st) == 0;
	return (0);
}

/* True when w's file is not what it was when last looked at (then it is
 * remembered as it is now). */
static bool
changed(watched *w)
{
	struct stat st;
	bool        now = w->path != NULL && stat(w->path, &st) == 0;

	if (w->path == NULL || (!now && !w->seen)) {
		return (false);
	}
	if (now && w->seen && st.st_dev == w->st.st_dev
	    && st.st_ino == w->st.st_ino && st.st_size == w->st.st_size
	    && st.st_mtim.tv_sec == w->st.st_mtim.tv_sec
	    && st.st_mtim.tv_nsec == w->st.st_mtim.tv_nsec) {
		return (false);
	}
	w->seen = now;
	if (now) {
		w->st = st;
	}
	return (true);
}

int
nngrpc_rotate_alloc(nngrpc_server *server, const char *token_file,
    const char *token, double grace_s, bool tls, const char *tls_cert,
    const char *tls_key, const char *tls_ca, nngrpc_rotate **rp)
{
	nngrpc_rotate *r = calloc(1, sizeof(*r));
	const char    *files[3] = { tls_cert, tls_key, tls_ca };
	int            rv = 0;

	if (r == NULL) {
		return (NNG_ENOMEM);
	}
	r->r_server = server;
	r->r_grace_ns = (int64_t) (grace_s * 1e9);
	r->r_tls = tls;
	if (token != NULL) {
		snprintf(r->r_token, sizeof(r->r_token), "%s", token);
	}
	rv = watch(&r->r_token_file, token != NULL ? token_file : NULL);
	for (int i = 0; tls && rv == 0 && i < 3; i++) {
		rv = watch(&r->r_tls_files[i], files[i]);
	}
	if (rv != 0) {
		nngrpc_rotate_free(r);
		return (rv);
	}
	*rp = r;
	return (0);
}

void
nngrpc_rotate_free(nngrpc_rotate *r)
{
	if (r == NULL) {
		return;
	}
	free(r->r_token_file.path);
	for (int i = 0; i < 3; i++) {
		free(r->r_tls_files[i].path);
	}
	free(r);
}

/* The token file changed: its token is accepted now, and the one it
 * replaces for the grace period. */
static void
new_token(nngrpc_rotate *r)
{
	char        tok[NNGRPC_TOKEN_MAX], err[600];
	const char *both[2] = { tok, r->r_token };
	int         rv;

	if (nngrpc_read_token(
	        r->r_token_file.path, tok, sizeof(tok), err, sizeof(err))
	    != 0) {
		nngrpc_log(NNGRPC_LOG_WARN,
		    "%s; still accepting the token(s) "
		    "accepted before",
		    err);
		return;
	}
	if (strcmp(tok, r->r_token) == 0) {
		return; /* the same token: nothing to do */
	}
	if ((rv = nngrpc_server_set_auth_tokens(r->r_server, both, 2)) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "auth token rotation: %s",
		    nng_strerror(rv));
		return;
	}
	nngrpc_log(NNGRPC_LOG_INFO,
	    "auth token file %s changed: the new token is accepted, the "
	    "old one for %g s more%s",
	    r->r_token_file.path, (double) r->r_grace_ns / 1e9,
	    r->r_old_until != 0 ? " (the one before it no longer)" : "");
	memcpy(r->r_old, r->r_token, sizeof(r->r_old));
	memcpy(r->r_token, tok, sizeof(r->r_token));
	r->r_old_until = nngrpc_now_ns() + r->r_grace_ns;
}

/* The grace period of the old token is over: only the new one. */
static void
grace_over(nngrpc_rotate *r)
{
	const char *one[1] = { r->r_token };
	int         rv;

	if ((rv = nngrpc_server_set_auth_tokens(r->r_server, one, 1)) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "auth token rotation: %s",
		    nng_strerror(rv));
		return; /* tried again at the next look */
	}
	memset(r->r_old, 0, sizeof(r->r_old));
	r->r_old_until = 0;
	nngrpc_log(NNGRPC_LOG_INFO,
	    "auth token: the grace period is over, the old token is no "
	    "longer accepted");
}

static void
new_tls(nngrpc_rotate *r)
{
	char err[600];

	if (nngrpc_server_reload_tls(r->r_server, err, sizeof(err)) != 0) {
		nngrpc_log(NNGRPC_LOG_WARN,
		    "tls: the files changed but do not load (%s); new "
		    "connections keep the certificate they had",
		    err);
		return;
	}
	nngrpc_log(NNGRPC_LOG_INFO,
	    "tls: certificate reloaded from %s; new connections use it",
	    r->r_tls_files[0].path);
}

void
nngrpc_rotate_look(nngrpc_rotate *r, bool force)
{
	bool tls = false;

	if (r->r_token_file.path != NULL
	    && (changed(&r->r_token_file) || force)) {
		new_token(r);
	}
	if (r->r_old_until != 0 && nngrpc_now_ns() >= r->r_old_until) {
		grace_over(r);
	}
	for (int i = 0; r->r_tls && i < 3; i++) {
		tls |= changed(&r->r_tls_files[i]); /* look at every one */
	}
	if (tls || (r->r_tls && force)) {
		new_tls(r);
	}
}
