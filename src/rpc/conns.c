/*
 * Connections (conns.h has the design): a table of the socket's pipes by
 * id, the cap in the ADD_PRE callback, and a sweeper thread for the
 * partial-frame and idle timeouts.
 */
#include "conns.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/tcp.h>

#include <nngrpc/clock.h>

#include "log.h"

/* Bytes of the SP handshake a client sends first. */
#define SP_HANDSHAKE_BYTES 8
/* The sweeper's period: a quarter of the shorter timeout, within these. */
#define SWEEP_MIN_MS 100
#define SWEEP_MAX_MS 1000
/* TLS listeners we know of. */
#define MAX_TLS_LISTENERS 16

typedef enum { CONN_TCP, CONN_TLS, CONN_IPC, CONN_OTHER } conn_kind;

typedef enum {
	CLOSE_FRAME,
	CLOSE_IDLE,
	CLOSE_NOT_RUN,
	CLOSE_REASONS,
} close_reason;

static const char *const reason_text[CLOSE_REASONS] = {
	[CLOSE_FRAME] = "a frame begun and not finished within the frame "
	                "timeout",
	[CLOSE_IDLE] = "idle past the idle timeout",
	[CLOSE_NOT_RUN] = "answered not run while draining",
};

struct conn {
	uint32_t          id;
	conn_kind         kind;
	int               fd; /* tcp: its socket once found, else -1 */
	nng_sockaddr      loc, rem;
	int64_t           active_ns;  /* opened, last request, last answer */
	uint64_t          frames;     /* complete requests received */
	uint64_t          wire_bytes; /* theirs on the wire */
	uint64_t          partial_frames; /* frames when partial_ns was set */
	int64_t           partial_ns;     /* a frame begun seen since; 0 */
	nngrpc_conn_call *calls;          /* in flight */
	size_t            n_calls;
	bool              closing; /* the sweeper or a drain closed it */
	bool              goaway;  /* close once no call is in flight */
};

#define TOMBSTONE ((struct conn *) 1)

struct nngrpc_conns {
	nngrpc_conns_limits c_lim;
	pthread_mutex_t     c_mtx;
	struct conn       **c_slots; /* open addressing by id; c_mtx */
	size_t              c_cap;   /* a power of two */
	size_t              c_used;  /* records and tombstones */
	size_t              c_count; /* records */
	uint32_t            c_tls[MAX_TLS_LISTENERS];
	size_t              c_n_tls;

	_Atomic uint64_t c_accepted;
	_Atomic uint64_t c_rejected;
	_Atomic uint64_t c_closed[CLOSE_REASONS];
	_Atomic uint64_t c_send_timeouts;
	_Atomic uint64_t c_cancel_requests;
	_Atomic uint64_t c_cancelled_closed;  /* calls, by a closed conn */
	_Atomic uint64_t c_cancelled_request; /* calls, by a cancel */
	_Atomic int64_t  c_last_request_ns;   /* on any connection */

	pthread_cond_t c_cv; /* CLOCK_MONOTONIC; stop */
	pthread_t      c_thread;
	bool           c_running;
	bool           c_stop; /* guarded by c_mtx */
};

/* ---- the table (with c_mtx held) ---------------------------------------- */

static size_t
slot_of(uint32_t id, size_t cap)
{
	return ((size_t) (id * 2654435761u) & (cap - 1));
}

static struct conn *
table_find(nngrpc_conns *c, uint32_t id)
{
	if (c->c_cap == 0) {
		return (NULL);
	}
	for (size_t i = slot_of(id, c->c_cap);; i = (i + 1) & (c->c_cap - 1)) {
		struct conn *r = c->c_slots[i];
		if (r == NULL) {
			return (NULL);
		}
		if (r != TOMBSTONE && r->id == id) {
			return (r);
		}
	}
}

static void
table_put(struct conn **slots, size_t cap, struct conn *r)
{
	size_t i = slot_of(r->id, cap);

	while (slots[i] != NULL && slots[i] != TOMBSTONE) {
		i = (i + 1) & (cap - 1);
	}
	slots[i] = r;
}

/* Room for one more record: grows (and drops tombstones) at half full. */
static int
table_reserve(nngrpc_conns *c)
{
	size_t        cap = c->c_cap == 0 ? 64 : c->c_cap;
	struct conn **slots;

	if ((c->c_used + 1) * 2 <= c->c_cap) {
		return (0);
	}
	while ((c->c_count + 1) * 4 > cap) {
		cap *= 2;
	}
	if ((slots = calloc(cap, sizeof(*slots))) == NULL) {
		return (NNG_ENOMEM);
	}
	for (size_t i = 0; i < c->c_cap; i++) {
		if (c->c_slots[i] != NULL && c->c_slots[i] != TOMBSTONE) {
			table_put(slots, cap, c->c_slots[i]);
		}
	}
	free(c->c_slots);
	c->c_slots = slots;
	c->c_cap = cap;
	c->c_used = c->c_count;
	return (0);
}

static void
table_remove(nngrpc_conns *c, struct conn *r)
{
	for (size_t i = slot_of(r->id, c->c_cap);;
	     i = (i + 1) & (c->c_cap - 1)) {
		if (c->c_slots[i] == r) {
			c->c_slots[i] = TOMBSTONE;
			c->c_count--;
			return;
		}
	}
}

/* ---- pipe events (NNG's threads) ---------------------------------------- */

static conn_kind
kind_of(nngrpc_conns *c, nng_pipe p, const nng_sockaddr *rem)
{
	uint32_t l = (uint32_t) nng_listener_id(nng_pipe_listener(p));

	if (rem->s_family == NNG_AF_IPC) {
		return (CONN_IPC);
	}
	if (rem->s_family != NNG_AF_INET && rem->s_family != NNG_AF_INET6) {
		return (CONN_OTHER);
	}
	for (size_t i = 0; i < c->c_n_tls; i++) {
		if (c->c_tls[i] == l) {
			return (CONN_TLS);
		}
	}
	return (CONN_TCP);
}

/* A new pipe: recorded, or closed at once when the cap is reached (or
 * there is no memory for its record). */
static void
pipe_added(nngrpc_conns *c, nng_pipe p)
{
	struct conn *r = calloc(1, sizeof(*r));
	bool         ok = false;

	if (r != NULL) {
		r->id = (uint32_t) nng_pipe_id(p);
		r->fd = -1;
		r->active_ns = nngrpc_now_ns();
		(void) nng_pipe_get_addr(p, NNG_OPT_LOCADDR, &r->loc);
		(void) nng_pipe_get_addr(p, NNG_OPT_REMADDR, &r->rem);
		pthread_mutex_lock(&c->c_mtx);
		r->kind = kind_of(c, p, &r->rem);
		if ((int64_t) c->c_count < c->c_lim.max_connections
		    && table_reserve(c) == 0) {
			table_put(c->c_slots, c->c_cap, r);
			c->c_used++;
			c->c_count++;
			ok = true;
		}
		pthread_mutex_unlock(&c->c_mtx);
	}
	if (ok) {
		atomic_fetch_add(&c->c_accepted, 1);
		return;
	}
	free(r);
	atomic_fetch_add(&c->c_rejected, 1);
	nng_pipe_close(p); /* rejected: it never joins the socket */
}

/* A pipe is gone: its record goes, and its calls in flight that are not
 * answered yet are marked cancelled. */
static void
pipe_removed(nngrpc_conns *c, nng_pipe p)
{
	struct conn *r;
	uint64_t     n = 0;

	pthread_mutex_lock(&c->c_mtx);
	if ((r = table_find(c, (uint32_t) nng_pipe_id(p))) != NULL) {
		table_remove(c, r);
		for (nngrpc_conn_call *cc = r->calls; cc != NULL;
		     cc = cc->cc_next) {
			cc->cc_conn = NULL;
			if (!atomic_load(&cc->cc_answered)
			    && !atomic_exchange(&cc->cc_cancelled, true)) {
				n++;
			}
		}
	}
	/* Counted before the connection leaves the count (under the lock):
	 * whoever sees it gone from nngrpc_connections sees its calls. */
	atomic_fetch_add(&c->c_cancelled_closed, n);
	pthread_mutex_unlock(&c->c_mtx);
	free(r);
}

static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	if (ev == NNG_PIPE_EV_ADD_PRE) {
		pipe_added(arg, p);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		pipe_removed(arg, p);
	}
}

/* ---- calls -----------------------------------------------------------------
 */

void
nngrpc_conns_call_start(
    nngrpc_conns *c, nngrpc_conn_call *cc, nng_pipe pipe, size_t wire_bytes)
{
	struct conn *r;

	atomic_store(&cc->cc_cancelled, false);
	atomic_store(&cc->cc_answered, false);
	cc->cc_prev = NULL;
	pthread_mutex_lock(&c->c_mtx);
	if ((r = table_find(c, (uint32_t) nng_pipe_id(pipe))) == NULL) {
		cc->cc_conn = NULL;
		atomic_store(&cc->cc_cancelled, true);
	} else {
		r->frames++;
		r->wire_bytes += wire_bytes;
		r->active_ns = nngrpc_now_ns();
		atomic_store_explicit(
		    &c->c_last_request_ns, r->active_ns, memory_order_relaxed);
		cc->cc_conn = r;
		cc->cc_next = r->calls;
		if (r->calls != NULL) {
			r->calls->cc_prev = cc;
		}
		r->calls = cc;
		r->n_calls++;
	}
	pthread_mutex_unlock(&c->c_mtx);
}

void
nngrpc_conns_call_id(nngrpc_conn_call *cc, const char *rid, size_t len)
{
	if (rid == NULL || len > sizeof(cc->cc_rid)) {
		cc->cc_rid_len = rid == NULL ? 0 : SIZE_MAX;
		return;
	}
	memcpy(cc->cc_rid, rid, len);
	cc->cc_rid_len = len;
}

size_t
nngrpc_conns_cancel(nngrpc_conns *c, nng_pipe pipe, const char *rid,
    size_t len, const nngrpc_conn_call *self)
{
	struct conn *r;
	size_t       n = 0;

	atomic_fetch_add(&c->c_cancel_requests, 1);
	pthread_mutex_lock(&c->c_mtx);
	if ((r = table_find(c, (uint32_t) nng_pipe_id(pipe))) != NULL) {
		for (nngrpc_conn_call *cc = r->calls; cc != NULL;
		     cc = cc->cc_next) {
			if (cc != self && cc->cc_rid_len == len
			    && memcmp(cc->cc_rid, rid, len) == 0
			    && !atomic_load(&cc->cc_answered)
			    && !atomic_exchange(&cc->cc_cancelled, true)) {
				n++;
			}
		}
	}
	pthread_mutex_unlock(&c->c_mtx);
	atomic_fetch_add(&c->c_cancelled_request, n);
	return (n);
}

void
nngrpc_conns_call_answered(nngrpc_conn_call *cc)
{
	atomic_store(&cc->cc_answered, true);
}

/* With c_mtx held: when ready, r is to close after a not-run answer
 * (conns.h), unless it already is; the caller then closes it. Counted
 * here, once per connection. */
static bool
claim_not_run_close(nngrpc_conns *c, struct conn *r, bool ready)
{
	if (!ready || r->closing) {
		return (false);
	}
	r->closing = true;
	atomic_fetch_add(&c->c_closed[CLOSE_NOT_RUN], 1);
	return (true);
}

bool
nngrpc_conns_goaway(nngrpc_conns *c, nngrpc_conn_call *cc)
{
	struct conn *r;
	bool         close = false;

	pthread_mutex_lock(&c->c_mtx);
	if ((r = cc->cc_conn) != NULL) {
		r->goaway = true;
		close = claim_not_run_close(c, r, r->n_calls == 1);
	}
	pthread_mutex_unlock(&c->c_mtx);
	return (close);
}

bool
nngrpc_conns_call_end(nngrpc_conns *c, nngrpc_conn_call *cc)
{
	struct conn *r;
	bool         close = false;

	pthread_mutex_lock(&c->c_mtx);
	if ((r = cc->cc_conn) != NULL) {
		if (cc->cc_prev != NULL) {
			cc->cc_prev->cc_next = cc->cc_next;
		} else {
			r->calls = cc->cc_next;
		}
		if (cc->cc_next != NULL) {
			cc->cc_next->cc_prev = cc->cc_prev;
		}
		r->n_calls--;
		r->active_ns = nngrpc_now_ns();
		cc->cc_conn = NULL;
		close
		    = claim_not_run_close(c, r, r->goaway && r->n_calls == 0);
	}
	pthread_mutex_unlock(&c->c_mtx);
	return (close);
}

bool
nngrpc_conns_quiet(nngrpc_conns *c, int64_t quiet_ns)
{
	int64_t last = atomic_load_explicit(
	    &c->c_last_request_ns, memory_order_relaxed);

	return (
	    nngrpc_conns_count(c) == 0 || nngrpc_now_ns() - last >= quiet_ns);
}

void
nngrpc_conns_send_timeout(nngrpc_conns *c)
{
	atomic_fetch_add(&c->c_send_timeouts, 1);
}

size_t
nngrpc_conns_count(nngrpc_conns *c)
{
	size_t n;

	pthread_mutex_lock(&c->c_mtx);
	n = c->c_count;
	pthread_mutex_unlock(&c->c_mtx);
	return (n);
}

/* ---- the sweeper: finding sockets -------------------------------------- */

/* What the sweeper copies out of a record to look at without the lock. */
typedef struct look {
	uint32_t     id;
	int          fd;
	nng_sockaddr loc, rem;
	uint64_t     frames, wire_bytes; /* when copied */
	bool         has_bytes;          /* bytes_received read */
	uint64_t     bytes_received;
} look;

static bool
same_addr(const nng_sockaddr *a, const struct sockaddr_storage *ss)
{
	if (a->s_family == NNG_AF_INET && ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *) ss;
		return (a->s_in.sa_port == in->sin_port
		    && a->s_in.sa_addr == in->sin_addr.s_addr);
	}
	if (a->s_family == NNG_AF_INET6 && ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *) ss;
		return (a->s_in6.sa_port == in6->sin6_port
		    && memcmp(a->s_in6.sa_addr, &in6->sin6_addr, 16) == 0);
	}
	return (false);
}

/* Finds the socket of each look with fd < 0 among the process's open
 * descriptors, by its local and remote addresses. */
static void
find_sockets(look *v, size_t n)
{
	DIR           *d;
	struct dirent *e;
	size_t         missing = 0;

	for (size_t i = 0; i < n; i++) {
		missing += v[i].fd < 0;
	}
	if (missing == 0 || (d = opendir("/proc/self/fd")) == NULL) {
		return;
	}
	while (missing > 0 && (e = readdir(d)) != NULL) {
		struct sockaddr_storage loc, rem;
		socklen_t               ll = sizeof(loc), rl = sizeof(rem);
		int                     fd = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d)
		    || getsockname(fd, (struct sockaddr *) &loc, &ll) != 0
		    || getpeername(fd, (struct sockaddr *) &rem, &rl) != 0) {
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			if (v[i].fd < 0 && same_addr(&v[i].loc, &loc)
			    && same_addr(&v[i].rem, &rem)) {
				v[i].fd = fd;
				missing--;
				break;
			}
		}
	}
	closedir(d);
}

/* Reads the bytes the peer of each found socket has sent. */
static void
read_bytes(look *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct tcp_info ti;
		socklen_t       len = sizeof(ti);

		memset(&ti, 0, sizeof(ti));
		if (v[i].fd >= 0
		    && getsockopt(v[i].fd, IPPROTO_TCP, TCP_INFO, &ti, &len)
		        == 0
		    && len >= offsetof(struct tcp_info, tcpi_bytes_received)
		            + sizeof(ti.tcpi_bytes_received)) {
			v[i].has_bytes = true;
			v[i].bytes_received = ti.tcpi_bytes_received;
		}
	}
}

/* ---- the sweeper: deciding ------------------------------------------------
 */

/* Copies every TCP record (to find its socket and read its byte count)
 * into a new array, *vp (free()). With c_mtx held. */
static size_t
copy_tcp_locked(nngrpc_conns *c, look **vp)
{
	size_t n = 0;

	*vp = NULL;
	if (c->c_count == 0
	    || (*vp = calloc(c->c_count, sizeof(**vp))) == NULL) {
		return (0);
	}
	for (size_t i = 0; i < c->c_cap; i++) {
		struct conn *r = c->c_slots[i];
		if (r != NULL && r != TOMBSTONE && r->kind == CONN_TCP
		    && !r->closing) {
			(*vp)[n++] = (look) { .id = r->id,
				.fd = r->fd,
				.loc = r->loc,
				.rem = r->rem,
				.frames = r->frames,
				.wire_bytes = r->wire_bytes };
		}
	}
	return (n);
}

/* Applies what was read of one TCP connection: its socket, and whether a
 * frame begun has been waiting too long. With c_mtx held. */
static bool
frame_stalled_locked(nngrpc_conns *c, const look *v, int64_t now)
{
	struct conn *r = table_find(c, v->id);

	if (r == NULL || r->closing) {
		return (false);
	}
	if (r->fd < 0) {
		r->fd = v->fd;
	}
	if (!v->has_bytes || r->frames != v->frames
	    || v->bytes_received <= SP_HANDSHAKE_BYTES + v->wire_bytes) {
		/* Nothing begun, or a request completed meanwhile. */
		r->partial_ns = 0;
		return (false);
	}
	if (r->partial_ns == 0 || r->partial_frames != r->frames) {
		r->partial_ns = now;
		r->partial_frames = r->frames;
		return (false);
	}
	return (c->c_lim.frame_timeout_ms > 0
	    && now - r->partial_ns >= c->c_lim.frame_timeout_ms * 1000000);
}

/* One id to close and why. */
typedef struct to_close {
	uint32_t     id;
	close_reason why;
} to_close;

/* Marks r closing and adds it to the list. With c_mtx held. */
static void
close_later(struct conn *r, close_reason why, to_close *out, size_t *n)
{
	r->closing = true;
	out[(*n)++] = (to_close) { r->id, why };
}

/* The connections to close now: stalled frames (v, n: what was read of
 * the TCP ones) and idle ones. Returns how many went into out, which has
 * room for every record. With c_mtx held. */
static size_t
decide_locked(
    nngrpc_conns *c, const look *v, size_t n, int64_t now, to_close *out)
{
	size_t  k = 0;
	int64_t idle_ns = c->c_lim.idle_timeout_ms * 1000000;

	for (size_t i = 0; i < n; i++) {
		if (frame_stalled_locked(c, &v[i], now)) {
			close_later(
			    table_find(c, v[i].id), CLOSE_FRAME, out, &k);
		}
	}
	for (size_t i = 0; idle_ns > 0 && i < c->c_cap; i++) {
		struct conn *r = c->c_slots[i];
		if (r != NULL && r != TOMBSTONE && !r->closing
		    && r->n_calls == 0 && now - r->active_ns >= idle_ns) {
			close_later(r, CLOSE_IDLE, out, &k);
		}
	}
	return (k);
}

/* Closes what decide_locked() chose, counts and logs it (one line per
 * reason). */
static void
close_all(nngrpc_conns *c, const to_close *v, size_t n)
{
	size_t count[CLOSE_REASONS] = { 0 };

	for (size_t i = 0; i < n; i++) {
		nng_pipe p = { .id = v[i].id };
		nng_pipe_close(p);
		count[v[i].why]++;
	}
	for (int why = 0; why < CLOSE_REASONS; why++) {
		if (count[why] == 0) {
			continue;
		}
		atomic_fetch_add(&c->c_closed[why], count[why]);
		nngrpc_log(NNGRPC_LOG_INFO, "closed %zu connection%s: %s",
		    count[why], count[why] == 1 ? "" : "s", reason_text[why]);
	}
}

/* One sweep: read the TCP connections' byte counts without the lock,
 * decide under it, close after it. */
static void
sweep(nngrpc_conns *c)
{
	look     *v;
	to_close *out;
	size_t    n, k = 0;

	v = NULL;
	n = 0;
	if (c->c_lim.frame_timeout_ms > 0) {
		pthread_mutex_lock(&c->c_mtx);
		n = copy_tcp_locked(c, &v);
		pthread_mutex_unlock(&c->c_mtx);
		find_sockets(v, n);
		read_bytes(v, n);
	}
	pthread_mutex_lock(&c->c_mtx);
	if ((out = calloc(c->c_count + 1, sizeof(*out))) != NULL) {
		k = decide_locked(c, v, n, nngrpc_now_ns(), out);
	}
	pthread_mutex_unlock(&c->c_mtx);
	close_all(c, out, k);
	free(out);
	free(v);
}

static int64_t
sweep_period_ns(const nngrpc_conns_limits *lim)
{
	int64_t t = 0;

	if (lim->frame_timeout_ms > 0) {
		t = lim->frame_timeout_ms;
	}
	if (lim->idle_timeout_ms > 0 && (t == 0 || lim->idle_timeout_ms < t)) {
		t = lim->idle_timeout_ms;
	}
	t /= 4;
	t = t < SWEEP_MIN_MS   ? SWEEP_MIN_MS
	    : t > SWEEP_MAX_MS ? SWEEP_MAX_MS
	                       : t;
	return (t * 1000000);
}

static void *
sweeper_main(void *arg)
{
	nngrpc_conns   *c = arg;
	int64_t         period = sweep_period_ns(&c->c_lim);
	int64_t         next = nngrpc_now_ns() + period;
	struct timespec ts;

	pthread_mutex_lock(&c->c_mtx);
	while (!c->c_stop) {
		if (nngrpc_now_ns() < next) {
			ts.tv_sec = (time_t) (next / 1000000000);
			ts.tv_nsec = (long) (next % 1000000000);
			pthread_cond_timedwait(&c->c_cv, &c->c_mtx, &ts);
			continue;
		}
		pthread_mutex_unlock(&c->c_mtx);
		sweep(c);
		next = nngrpc_now_ns() + period;
		pthread_mutex_lock(&c->c_mtx);
	}
	pthread_mutex_unlock(&c->c_mtx);
	return (NULL);
}

/* ---- metrics
 * ---------------------------------------------------------------- */

static double
gauge_open(void *arg)
{
	return ((double) nngrpc_conns_count(arg));
}

static double
gauge_max(void *arg)
{
	return ((double) ((nngrpc_conns *) arg)->c_lim.max_connections);
}

static double
counter_accepted(void *arg)
{
	return ((double) atomic_load(&((nngrpc_conns *) arg)->c_accepted));
}

static double
counter_rejected(void *arg)
{
	return ((double) atomic_load(&((nngrpc_conns *) arg)->c_rejected));
}

static double
counter_frame(void *arg)
{
	return ((double) atomic_load(
	    &((nngrpc_conns *) arg)->c_closed[CLOSE_FRAME]));
}

static double
counter_idle(void *arg)
{
	return ((double) atomic_load(
	    &((nngrpc_conns *) arg)->c_closed[CLOSE_IDLE]));
}

static double
counter_not_run(void *arg)
{
	return ((double) atomic_load(
	    &((nngrpc_conns *) arg)->c_closed[CLOSE_NOT_RUN]));
}

static double
counter_send(void *arg)
{
	return (
	    (double) atomic_load(&((nngrpc_conns *) arg)->c_send_timeouts));
}

static double
counter_cancel_requests(void *arg)
{
	return (
	    (double) atomic_load(&((nngrpc_conns *) arg)->c_cancel_requests));
}

static double
counter_cancelled_closed(void *arg)
{
	return (
	    (double) atomic_load(&((nngrpc_conns *) arg)->c_cancelled_closed));
}

static double
counter_cancelled_request(void *arg)
{
	return ((double) atomic_load(
	    &((nngrpc_conns *) arg)->c_cancelled_request));
}

static int
add_metrics(nngrpc_conns *c, nngrpc_metrics *m)
{
	static const struct {
		const char *name;
		const char *help;
		double (*fn)(void *);
		bool counter;
	} fns[] = {
		{ "nngrpc_connections", "Open client connections.", gauge_open,
		    false },
		{ "nngrpc_connections_max",
		    "Most open connections (--max-connections).", gauge_max,
		    false },
		{ "nngrpc_connections_accepted_total",
		    "Connections accepted (after the SP handshake).",
		    counter_accepted, true },
		{ "nngrpc_connections_rejected_total",
		    "Connections closed at once: over --max-connections.",
		    counter_rejected, true },
		{ "nngrpc_connections_frame_timeouts_total",
		    "Connections closed: a frame begun and not finished "
		    "within "
		    "--frame-timeout.",
		    counter_frame, true },
		{ "nngrpc_connections_idle_timeouts_total",
		    "Connections closed: no call for --idle-timeout.",
		    counter_idle, true },
		{ "nngrpc_connections_drain_closes_total",
		    "Connections closed while draining, once answered not "
		    "run (nngrpc-not-run) and with no call in flight.",
		    counter_not_run, true },
		{ "nngrpc_connections_send_timeouts_total",
		    "Connections closed: the client stopped reading replies.",
		    counter_send, true },
		{ "nngrpc_cancel_requests_total",
		    "Requests to /nngrpc.v1.Control/Cancel.",
		    counter_cancel_requests, true },
		{ "nngrpc_calls_cancelled_closed_total",
		    "Calls queued or running when their connection closed "
		    "(marked cancelled).",
		    counter_cancelled_closed, true },
		{ "nngrpc_calls_cancelled_request_total",
		    "Calls queued or running that a cancel request named "
		    "(marked cancelled).",
		    counter_cancelled_request, true },
	};
	int rv = 0;

	for (size_t i = 0;
	     m != NULL && rv == 0 && i < sizeof(fns) / sizeof(fns[0]); i++) {
		rv = fns[i].counter ? nngrpc_metrics_add_counter_fn(
		         m, fns[i].name, fns[i].help, fns[i].fn, c)
		                    : nngrpc_metrics_add_gauge(m, fns[i].name,
		                        fns[i].help, fns[i].fn, c);
	}
	return (rv);
}

/* ---- life
 * -------------------------------------------------------------------- */

int
nngrpc_conns_alloc(nngrpc_metrics *metrics, nngrpc_conns **cp)
{
	nngrpc_conns      *c = calloc(1, sizeof(*c));
	pthread_condattr_t attr;
	int                rv;

	if (c == NULL) {
		return (NNG_ENOMEM);
	}
	c->c_lim.max_connections = INT64_MAX;
	pthread_mutex_init(&c->c_mtx, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->c_cv, &attr);
	pthread_condattr_destroy(&attr);
	if ((rv = add_metrics(c, metrics)) != 0) {
		nngrpc_conns_free(c);
		return (rv);
	}
	*cp = c;
	return (0);
}

void
nngrpc_conns_set_limits(nngrpc_conns *c, const nngrpc_conns_limits *lim)
{
	pthread_mutex_lock(&c->c_mtx);
	c->c_lim = *lim;
	pthread_mutex_unlock(&c->c_mtx);
}

int
nngrpc_conns_attach(nngrpc_conns *c, nng_socket sock)
{
	int rv;

	if ((rv = nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, pipe_cb, c))
	    != 0) {
		return (rv);
	}
	return (nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_cb, c));
}

void
nngrpc_conns_set_tls(nngrpc_conns *c, nng_listener l)
{
	pthread_mutex_lock(&c->c_mtx);
	if (c->c_n_tls < MAX_TLS_LISTENERS) {
		c->c_tls[c->c_n_tls++] = (uint32_t) nng_listener_id(l);
	}
	pthread_mutex_unlock(&c->c_mtx);
}

int
nngrpc_conns_start(nngrpc_conns *c)
{
	sigset_t all, old;
	int      rv;

	if (c->c_lim.frame_timeout_ms <= 0 && c->c_lim.idle_timeout_ms <= 0) {
		return (0);
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&c->c_thread, NULL, sweeper_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		return (NNG_ENOMEM);
	}
	pthread_setname_np(c->c_thread, "nngrpc-conns");
	c->c_running = true;
	return (0);
}

void
nngrpc_conns_stop(nngrpc_conns *c)
{
	if (c == NULL || !c->c_running) {
		return;
	}
	pthread_mutex_lock(&c->c_mtx);
	c->c_stop = true;
	pthread_cond_broadcast(&c->c_cv);
	pthread_mutex_unlock(&c->c_mtx);
	pthread_join(c->c_thread, NULL);
	c->c_running = false;
}

void
nngrpc_conns_free(nngrpc_conns *c)
{
	if (c == NULL) {
		return;
	}
	nngrpc_conns_stop(c);
	for (size_t i = 0; i < c->c_cap; i++) {
		if (c->c_slots[i] != NULL && c->c_slots[i] != TOMBSTONE) {
			free(c->c_slots[i]);
		}
	}
	free(c->c_slots);
	pthread_mutex_destroy(&c->c_mtx);
	pthread_cond_destroy(&c->c_cv);
	free(c);
}
