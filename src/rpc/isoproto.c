/*
 * The frames of process isolation (isoproto.h): descriptor I/O that
 * survives EINTR and short transfers, and the reply's layout.
 */
#include "isoproto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
iso_writev(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (errno);
		}
		while (n > 0 && (size_t) w >= iov->iov_len) {
			w -= (ssize_t) iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *) iov->iov_base + w;
			iov->iov_len -= (size_t) w;
		}
	}
	return (0);
}

int
iso_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = read(fd, p, len);
		if (r == 0) {
			return (ECONNRESET);
		}
		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (errno);
		}
		p += r;
		len -= (size_t) r;
	}
	return (0);
}

int
iso_send(int fd, uint32_t kind, int64_t a, int64_t b, struct iovec *iov, int n)
{
	struct iovec v[16];
	iso_frame    f = { kind, 0, a, b };
	size_t       len = 0;

	if (n > 15) {
		return (EINVAL);
	}
	for (int i = 0; i < n; i++) {
		len += iov[i].iov_len;
		v[i + 1] = iov[i];
	}
	if (len > ISO_FRAME_MAX) {
		return (EMSGSIZE);
	}
	f.f_len = (uint32_t) len;
	v[0].iov_base = &f;
	v[0].iov_len = sizeof(f);
	return (iso_writev(fd, v, n + 1));
}

int
iso_send_fd(int fd, uint32_t kind, int64_t a, int64_t b, int pass_fd)
{
	iso_frame    f = { kind, 0, a, b };
	struct iovec v = { &f, sizeof(f) };
	union {
		char           buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr   mh = { 0 };
	struct cmsghdr *c;
	ssize_t         w;

	memset(&u, 0, sizeof(u));
	mh.msg_iov = &v;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	do {
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
	} while (w < 0 && errno == EINTR);
	if (w < 0) {
		return (errno);
	}
	/* The rest of a header cut short goes without the descriptor. */
	if ((size_t) w < sizeof(f)) {
		v.iov_base = (char *) &f + w;
		v.iov_len = sizeof(f) - (size_t) w;
		return (iso_writev(fd, &v, 1));
	}
	return (0);
}

int
iso_recv_header(int fd, iso_frame *f, int *fdp)
{
	union {
		char           buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec    v = { f, sizeof(*f) };
	struct msghdr   mh = { 0 };
	struct cmsghdr *c;
	ssize_t         r;

	if (fdp != NULL) {
		*fdp = -1;
	}
	mh.msg_iov = &v;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	do {
		r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		return (errno);
	}
	if (r == 0) {
		return (ECONNRESET);
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET
		    && c->cmsg_type == SCM_RIGHTS) {
			int passed;
			memcpy(&passed, CMSG_DATA(c), sizeof(int));
			if (fdp != NULL) {
				*fdp = passed;
			} else {
				close(passed);
			}
		}
	}
	if ((size_t) r < sizeof(*f)) {
		int rv = iso_read(fd, (char *) f + r, sizeof(*f) - (size_t) r);
		if (rv != 0) {
			return (rv);
		}
	}
	if (f->f_kind < ISO_CALL || f->f_kind > ISO_CANCEL) {
		return (EPROTO);
	}
	return (0);
}

uint8_t *
iso_recv_body(int fd, uint32_t len, int *rvp)
{
	uint8_t *buf = malloc(len > 0 ? len : 1);

	if (buf == NULL) {
		*rvp = ENOMEM;
		return (NULL);
	}
	if ((*rvp = iso_read(fd, buf, len)) != 0) {
		free(buf);
		return (NULL);
	}
	return (buf);
}

int
iso_send_reply(int fd, uint32_t kind, int64_t b, int32_t status,
    const nngrpc_call *call, const uint8_t *out, size_t out_len)
{
	const char *msg = call->c_message != NULL ? call->c_message
	    : (status != 0 && call->c_oom)        ? "out of memory"
	                                          : "";
	/* By length: a message may hold NUL bytes (nngrpc_call_error_len). */
	uint32_t msg_len
	    = (uint32_t) (call->c_message != NULL ? call->c_message_len
	                                          : strlen(msg));
	uint32_t     n_tr = (uint32_t) call->c_n_trailers;
	size_t       tr_len = 0;
	uint8_t     *tr, *p;
	struct iovec v[5];
	int          rv;

	for (size_t i = 0; i < call->c_n_trailers; i++) {
		tr_len += 8 + strlen(call->c_trailers[i]->key)
		    + strlen(call->c_trailers[i]->value);
	}
	if ((tr = p = malloc(tr_len + 1)) == NULL) {
		return (ENOMEM);
	}
	for (size_t i = 0; i < call->c_n_trailers; i++) {
		const char *kv[2]
		    = { call->c_trailers[i]->key, call->c_trailers[i]->value };
		for (int j = 0; j < 2; j++) {
			uint32_t n = (uint32_t) strlen(kv[j]);
			memcpy(p, &n, 4);
			memcpy(p + 4, kv[j], n);
			p += 4 + n;
		}
	}
	v[0] = (struct iovec) { &msg_len, 4 };
	v[1] = (struct iovec) { (void *) msg, msg_len };
	v[2] = (struct iovec) { &n_tr, 4 };
	v[3] = (struct iovec) { tr, tr_len };
	v[4] = (struct iovec) { (void *) out, status == 0 ? out_len : 0 };
	rv = iso_send(fd, kind, status, b, v, 5);
	free(tr);
	return (rv);
}

/* Reads a u32 length and that many bytes at *p (before end) as a
 * NUL-terminated copy in call memory; the length goes to *lenp when
 * lenp is not NULL. */
static char *
take_string(
    nngrpc_call *call, const uint8_t **p, const uint8_t *end, size_t *lenp)
{
	uint32_t n;
	char    *s;

	if (end - *p < 4) {
		return (NULL);
	}
	memcpy(&n, *p, 4);
	if ((size_t) (end - *p - 4) < n
	    || (s = nngrpc_call_alloc(call, (size_t) n + 1)) == NULL) {
		return (NULL);
	}
	memcpy(s, *p + 4, n);
	s[n] = '\0';
	*p += 4 + n;
	if (lenp != NULL) {
		*lenp = n;
	}
	return (s);
}

bool
iso_parse_reply(nngrpc_call *call, int32_t status, const uint8_t *buf,
    size_t len, ProtobufCBinaryData *payload)
{
	const uint8_t *p = buf, *end = buf + len;
	size_t         msg_len = 0;
	const char    *msg = take_string(call, &p, end, &msg_len);
	uint32_t       n_tr;

	if (msg == NULL || end - p < 4) {
		return (false);
	}
	memcpy(&n_tr, p, 4);
	p += 4;
	for (uint32_t i = 0; i < n_tr; i++) {
		const char *k = take_string(call, &p, end, NULL);
		const char *v
		    = k != NULL ? take_string(call, &p, end, NULL) : NULL;
		if (v == NULL || nngrpc_call_set_trailer(call, k, v) != 0) {
			return (false);
		}
	}
	if (status != 0 && msg_len > 0) {
		nngrpc_call_error_len(
		    call, (nngrpc_status) status, msg, msg_len);
	}
	payload->len = (size_t) (end - p);
	payload->data = NULL;
	if (payload->len > 0) {
		if ((payload->data = nngrpc_call_alloc(call, payload->len))
		    == NULL) {
			return (false);
		}
		memcpy(payload->data, p, payload->len);
	}
	return (true);
}

bool
iso_parse_call(const uint8_t *buf, size_t len, const char **peerp,
    size_t *peer_lenp, const uint8_t **bodyp, size_t *body_lenp)
{
	uint32_t n;

	if (len < 4) {
		return (false);
	}
	memcpy(&n, buf, 4);
	if (len - 4 < n) {
		return (false);
	}
	*peerp = (const char *) buf + 4;
	*peer_lenp = n;
	*bodyp = buf + 4 + n;
	*body_lenp = len - 4 - n;
	return (true);
}
