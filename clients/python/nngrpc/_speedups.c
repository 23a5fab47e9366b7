/* nngrpc._speedups: one attempt of a sync unary call in C.
 *
 * The pure-Python client spends about 47,000 instructions on a 64-byte
 * call, more than twice the bare SP client's 22,000, and no amount of
 * trimming Python gets that to the 1.2x the client is held to (issue 10):
 * half of it is frames and objects around two system calls.  This module
 * does the part of a call that needs no Python object: it encodes the
 * request envelope's head, frames it, sends head and payload in one
 * sendmsg, waits for the reply with the GIL released, receives it into the
 * connection's reused buffer and decodes the usual OK reply.  Everything
 * else (the pool, retries, status mapping, any reply but the usual OK, a
 * reply that does not come whole) stays in Python, in the client core
 * (_core.py) and the pipe (_pipe.py), which the channel falls back to; the
 * pure-Python path is the reference this module must agree with, byte for
 * byte (tests/test_speedups.py).
 *
 * Only libc and the stable ABI (Py_LIMITED_API 3.11): one wheel per OS
 * and machine serves every CPython from 3.11 on.
 *
 * Threads: call() holds no state between calls; the caller owns the
 * connection (fd) and the receive buffer for the whole call, as a
 * ReqPipe's caller does.  The GIL is released from the send to the end of
 * the receive, and taken again only to run signal handlers (Ctrl+C).
 */
#define _GNU_SOURCE
#define Py_LIMITED_API 0x030B0000
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* What call() returns first (the channel's _fast_attempt reads it). */
enum outcome {
	OUT_OK = 0,       /* the usual OK reply: envelope, payload, timings */
	OUT_REPLY = 1,    /* a whole reply to this request: envelope region */
	OUT_PARTIAL = 2,  /* bytes received that the pipe must go on with */
	OUT_EXPIRED = 3,  /* the deadline passed before anything was sent */
	OUT_TIMEOUT = 4,  /* wait_until passed while waiting: sent, no reply */
	OUT_CLOSED = 5,   /* the peer closed the connection */
	OUT_OSERROR = 6,  /* a system call failed: errno */
	OUT_NOT_FAST = 7, /* a head too large for this path: nothing done */
};

/* The request head: frame header (13 bytes at most), method field, timeout
 * field (11), the request-id entry, payload tag (11). */
#define HEAD_MAX 1024

static double
monotonic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock */
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static size_t
put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t) v;
	return n;
}

static void
put_be64(uint8_t *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t) v;
		v >>= 8;
	}
}

static void
put_be32(uint8_t *out, uint32_t v)
{
	out[0] = (uint8_t) (v >> 24);
	out[1] = (uint8_t) (v >> 16);
	out[2] = (uint8_t) (v >> 8);
	out[3] = (uint8_t) v;
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
	    | (uint32_t) p[2] << 8 | p[3];
}

/* One call's inputs and progress.  The buffers are the caller's, held by
 * Py_buffer views for the whole call. */
struct attempt {
	int            fd;
	int            ipc;
	uint32_t       rid;
	double         wait_until; /* monotonic seconds; < 0: no limit */
	const uint8_t *payload;
	size_t         payload_len;
	uint8_t       *buf; /* the receive buffer */
	size_t         cap;
	uint64_t       max_recv;
	uint8_t        head[HEAD_MAX];
	size_t         head_len;
	size_t         got;      /* bytes received into buf */
	int            err;      /* errno of OUT_OSERROR */
	double         armed;    /* SO_RCVTIMEO set on fd (seconds; 0: none) */
	PyThreadState *released; /* the GIL, while released */
};

/* How much sooner than wait_until the receive timeout is armed, so that
 * calls with the same timeout find it armed already (_pipe.ARM_SLACK). */
#define ARM_SLACK 0.001

/* Builds the SP frame header and the envelope up to the payload's bytes
 * (the same bytes as CallState.head() and ReqPipe.call() make): method,
 * timeout_us from the deadline (deadline < 0: none), the request-id entry,
 * the payload's tag and length.  Returns OUT_EXPIRED, OUT_NOT_FAST, or -1
 * when built. */
static int
build_head(struct attempt *a, const uint8_t *method, size_t method_len,
    double deadline, const uint8_t *rid_entry, size_t rid_len)
{
	size_t frame = a->ipc ? 13 : 12;
	if (frame + method_len + 11 + rid_len + 11 > HEAD_MAX)
		return OUT_NOT_FAST;
	uint8_t *p = a->head + frame;
	memcpy(p, method, method_len);
	p += method_len;
	if (deadline >= 0) {
		double left = deadline - monotonic_now();
		if (left <= 0)
			return OUT_EXPIRED;
		uint64_t us = (uint64_t) (left * 1e6);
		*p++ = 0x10;
		p += put_varint(p, us ? us : 1);
	}
	memcpy(p, rid_entry, rid_len);
	p += rid_len;
	*p++ = 0x22;
	p += put_varint(p, a->payload_len);
	a->head_len = (size_t) (p - a->head);
	uint64_t size = a->head_len - frame + a->payload_len + 4;
	if (a->ipc) {
		a->head[0] = 1;
		put_be64(a->head + 1, size);
	} else {
		put_be64(a->head, size);
	}
	put_be32(a->head + frame - 4, a->rid);
	return -1;
}

/* Runs the pending signal handlers with the GIL; returns -1 if one raised
 * (the exception is set, the GIL held), else 0 with the GIL released
 * again. */
static int
run_signal_handlers(struct attempt *a)
{
	PyEval_RestoreThread(a->released);
	if (PyErr_CheckSignals() < 0)
		return -1;
	a->released = PyEval_SaveThread();
	return 0;
}

/* Waits until fd is ready for events or wait_until passes.  Returns 0
 * when ready, OUT_TIMEOUT, OUT_OSERROR, or -1 for a signal handler's
 * exception (GIL held). */
static int
wait_for(struct attempt *a, short events)
{
	for (;;) {
		int ms = -1;
		if (a->wait_until >= 0) {
			double left = a->wait_until - monotonic_now();
			if (left <= 0)
				return OUT_TIMEOUT;
			ms = (int) (left * 1000);
			if (ms < left * 1000)
				ms++; /* ceil, without libm */
		}
		struct pollfd pfd = { .fd = a->fd, .events = events };
		int           n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno == EINTR) {
			if (run_signal_handlers(a) < 0)
				return -1;
		} else if (n < 0) {
			a->err = errno;
			return OUT_OSERROR;
		}
	}
}

/* Sends head and payload, all of it, without blocking (MSG_DONTWAIT; a
 * full socket buffer is waited for until wait_until).  Returns 0 when
 * sent, else as wait_for. */
static int
send_request(struct attempt *a)
{
	struct iovec iov[2] = {
		{ .iov_base = a->head, .iov_len = a->head_len },
		{ .iov_base = (void *) a->payload, .iov_len = a->payload_len },
	};
	struct msghdr msg
	    = { .msg_iov = iov, .msg_iovlen = a->payload_len ? 2 : 1 };
	for (;;) {
		ssize_t n = sendmsg(a->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			int rc = 0;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				rc = wait_for(a, POLLOUT);
			else if (errno == EINTR)
				rc = run_signal_handlers(a);
			else {
				a->err = errno;
				rc = OUT_OSERROR;
			}
			if (rc != 0)
				return rc;
			continue;
		}
		while (
		    msg.msg_iovlen && (size_t) n >= msg.msg_iov[0].iov_len) {
			n -= (ssize_t) msg.msg_iov[0].iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (!msg.msg_iovlen)
			return 0;
		msg.msg_iov[0].iov_base
		    = (uint8_t *) msg.msg_iov[0].iov_base + n;
		msg.msg_iov[0].iov_len -= (size_t) n;
	}
}

/* Where the reply in buf[0:got] stands: 0 while it is incomplete, else
 * OUT_REPLY (exactly one whole reply to this request, nothing after it)
 * or OUT_PARTIAL (anything else: a stale reply, an oversize or broken
 * frame, more than one message, a reply larger than buf: the pipe's own
 * parser deals with those). */
static int
reply_state(const struct attempt *a)
{
	size_t hdr = a->ipc ? 9 : 8;
	if (a->got < hdr + 4)
		return 0;
	if (a->ipc && a->buf[0] != 1)
		return OUT_PARTIAL;
	uint64_t size = get_be64(a->buf + (a->ipc ? 1 : 0));
	if (size < 4 || size > a->max_recv || size > a->cap - hdr
	    || get_be32(a->buf + hdr) != a->rid)
		return OUT_PARTIAL;
	if (a->got < hdr + size)
		return 0;
	return a->got == hdr + size ? OUT_REPLY : OUT_PARTIAL;
}

/* Sets SO_RCVTIMEO: a blocking recv returns EAGAIN after seconds (0:
 * never), as _pipe.ReqPipe._arm() does.  Returns 0, or OUT_OSERROR. */
static int
arm(struct attempt *a, double seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t) seconds;
	tv.tv_usec = (suseconds_t) ((seconds - (double) tv.tv_sec) * 1e6);
	if (seconds > 0 && tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 1;
	if (setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
		a->err = errno;
		return OUT_OSERROR;
	}
	a->armed = seconds;
	return 0;
}

/* Arms the receive timeout for what is left until wait_until, when the
 * one armed would wait longer (or for ever); none without a limit.
 * Returns 0, OUT_TIMEOUT when nothing is left, or OUT_OSERROR. */
static int
arm_for_wait(struct attempt *a)
{
	if (a->wait_until < 0)
		return a->armed ? arm(a, 0) : 0;
	double left = a->wait_until - monotonic_now();
	if (left <= 0)
		return OUT_TIMEOUT;
	if (left < a->armed || !a->armed)
		return arm(a, left > 2 * ARM_SLACK ? left - ARM_SLACK : left);
	return 0;
}

/* Receives until reply_state() says what the bytes are: blocking recvs
 * on the connection's blocking socket, bounded by SO_RCVTIMEO (one system
 * call a wait, as the Python pipe's).  Returns OUT_REPLY or OUT_PARTIAL,
 * else OUT_TIMEOUT, OUT_CLOSED, OUT_OSERROR, or -1 for a signal handler's
 * exception (GIL held). */
static int
receive_reply(struct attempt *a)
{
	for (;;) {
		int rc = arm_for_wait(a);
		if (rc != 0)
			return rc;
		ssize_t n = recv(a->fd, a->buf + a->got, a->cap - a->got, 0);
		if (n == 0)
			return OUT_CLOSED;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				continue; /* the timeout ran out: time left? */
			if (errno == EINTR) {
				if (run_signal_handlers(a) < 0)
					return -1;
				continue;
			}
			a->err = errno;
			return OUT_OSERROR;
		}
		a->got += (size_t) n;
		rc = reply_state(a);
		if (rc != 0)
			return rc;
	}
}

/* Reads a varint at *p (before end); returns 0 past end or when too long. */
static int
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t) (b & 0x7F) << shift;
		if (b < 0x80)
			return 1;
	}
	return 0;
}

/* The usual OK Response as hoteld writes it (decode_response's fast path):
 * queue_us, run_us when set, then the payload, which ends the envelope
 * (or no payload at all).  Returns 1 and the payload's region and the
 * timings, or 0 for any other envelope (the client core decodes those). */
static int
decode_ok(const uint8_t *env, const uint8_t *end, size_t out[2],
    uint64_t *queue_us, uint64_t *run_us)
{
	const uint8_t *p = env;
	uint64_t       n = 0;
	*queue_us = *run_us = 0;
	if (p < end && *p == 0x28 && (p++, !get_varint(&p, end, queue_us)))
		return 0;
	if (p < end && *p == 0x30 && (p++, !get_varint(&p, end, run_us)))
		return 0;
	if (p == end) {
		out[0] = out[1] = 0;
		return 1;
	}
	if (*p++ != 0x1A || !get_varint(&p, end, &n)
	    || n != (uint64_t) (end - p))
		return 0;
	out[0] = (size_t) (p - env);
	out[1] = (size_t) (end - env);
	return 1;
}

/* Returns a new tuple of the n numbers in v and then armed, the receive
 * timeout the connection is left with (GIL held). */
static PyObject *
numbers(const uint64_t *v, Py_ssize_t n, double armed)
{
	PyObject *t = PyTuple_New(n + 1);
	PyObject *o = PyFloat_FromDouble(armed);
	if (!t || !o) {
		Py_XDECREF(t);
		Py_XDECREF(o);
		return NULL;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *x = PyLong_FromUnsignedLongLong(v[i]);
		if (!x || PyTuple_SetItem(t, i, x) < 0) { /* steals x */
			Py_DECREF(t);
			Py_DECREF(o);
			return NULL;
		}
	}
	if (PyTuple_SetItem(t, n, o) < 0) { /* steals o */
		Py_DECREF(t);
		return NULL;
	}
	return t;
}

/* The Python result of a finished attempt (GIL held). */
static PyObject *
result(struct attempt *a, int rc)
{
	size_t   env = a->ipc ? 13 : 12;
	size_t   pay[2];
	uint64_t queue_us, run_us;
	switch (rc) {
	case OUT_REPLY:
		if (decode_ok(a->buf + env, a->buf + a->got, pay, &queue_us,
		        &run_us)) {
			uint64_t v[] = { OUT_OK, env, a->got,
				pay[1] ? env + pay[0] : a->got, a->got,
				queue_us, run_us };
			return numbers(v, 7, a->armed);
		}
		return numbers(
		    (uint64_t[]) { OUT_REPLY, env, a->got }, 3, a->armed);
	case OUT_PARTIAL:
		return numbers(
		    (uint64_t[]) { OUT_PARTIAL, a->got }, 2, a->armed);
	case OUT_OSERROR:
		return numbers((uint64_t[]) { OUT_OSERROR, (uint64_t) a->err },
		    2, a->armed);
	default:
		return numbers((uint64_t[]) { (uint64_t) rc }, 1, a->armed);
	}
}

/* Sends the request and receives its reply with the GIL released.
 * Returns an outcome, or -1 with an exception set (GIL held either way). */
static int
run(struct attempt *a)
{
	a->released = PyEval_SaveThread();
	int rc = send_request(a);
	if (rc == 0)
		rc = receive_reply(a);
	if (rc != -1)
		PyEval_RestoreThread(a->released);
	return rc;
}

static int
get_time(PyObject *o, double *out)
{
	if (o == Py_None) {
		*out = -1;
		return 0;
	}
	*out = PyFloat_AsDouble(o);
	return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(call_doc,
    "call(fd, ipc, rid, method, rid_entry, payload, deadline, wait_until,\n"
    "     buf, max_recv, armed)\n--\n\n"
    "Sends one request on the connected SP REQ socket fd (blocking; ipc:\n"
    "the ipc framing) with SP request id rid: the envelope is method\n"
    "(Request.method encoded), timeout_us from deadline (time.monotonic()\n"
    "seconds, None: none), rid_entry (the request-id metadata entry\n"
    "encoded), then payload.  Waits for the reply until wait_until (None:\n"
    "for ever) in blocking recvs bounded by SO_RCVTIMEO, which armed says\n"
    "is set now (seconds, 0: none), receiving into buf from its start.\n"
    "Returns a tuple whose first item says what happened and whose last\n"
    "is the SO_RCVTIMEO the socket is left with: (0, env_start, env_end,\n"
    "payload_start, payload_end, queue_us, run_us, armed) for the usual OK\n"
    "reply; (1, env_start, env_end, armed) for another whole reply; (2,\n"
    "received, armed) for bytes the pipe must go on with; (3, armed)\n"
    "deadline passed, nothing sent; (4, armed) no reply by wait_until; (5,\n"
    "armed) the peer closed; (6, errno, armed); (7, armed) a head too\n"
    "large: nothing done.");

static PyObject *
speedups_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	(void) self;
	if (nargs != 11) {
		PyErr_SetString(PyExc_TypeError, "call() takes 11 arguments");
		return NULL;
	}
	struct attempt a = { .fd = PyLong_AsLong(args[0]),
		.ipc = PyObject_IsTrue(args[1]) };
	a.rid = (uint32_t) PyLong_AsUnsignedLongMask(args[2]);
	a.max_recv = PyLong_AsUnsignedLongLong(args[9]);
	a.armed = PyFloat_AsDouble(args[10]);
	double deadline;
	if (PyErr_Occurred() || get_time(args[6], &deadline) < 0
	    || get_time(args[7], &a.wait_until) < 0)
		return NULL;
	Py_buffer method, rid_entry, payload, buf;
	if (PyObject_GetBuffer(args[3], &method, PyBUF_SIMPLE) < 0)
		return NULL;
	PyObject *out = NULL;
	if (PyObject_GetBuffer(args[4], &rid_entry, PyBUF_SIMPLE) < 0)
		goto no_rid;
	if (PyObject_GetBuffer(args[5], &payload, PyBUF_SIMPLE) < 0)
		goto no_payload;
	if (PyObject_GetBuffer(args[8], &buf, PyBUF_WRITABLE) < 0)
		goto no_buf;
	a.payload = payload.buf;
	a.payload_len = (size_t) payload.len;
	a.buf = buf.buf;
	a.cap = (size_t) buf.len;
	int rc = build_head(&a, method.buf, (size_t) method.len, deadline,
	    rid_entry.buf, (size_t) rid_entry.len);
	if (rc == -1)
		rc = run(&a);
	if (rc != -1)
		out = result(&a, rc);
	PyBuffer_Release(&buf);
no_buf:
	PyBuffer_Release(&payload);
no_payload:
	PyBuffer_Release(&rid_entry);
no_rid:
	PyBuffer_Release(&method);
	return out;
}

static PyMethodDef speedups_methods[] = {
	{ "call", (PyCFunction) (void (*)(void)) speedups_call, METH_FASTCALL,
	    call_doc },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef speedups_module = {
	PyModuleDef_HEAD_INIT,
	"nngrpc._speedups",
	"One attempt of a sync unary call in C (see _channel.py); optional.",
	0,
	speedups_methods,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
	return PyModule_Create(&speedups_module);
}
