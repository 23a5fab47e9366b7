/*
 * Server: one REP socket, receive contexts, a bounded queue, workers.
 *
 * DESIGN
 * ------
 * NNG runs aio callbacks on its own small thread pool and they must never
 * block (nng#856), while handlers are slow. So each receive context (an
 * nng_ctx with its own nng_aio) only takes a message and puts it on the
 * queue; our worker threads run the calls. A context stays with its call
 * until the reply is sent on it (REP replies go out on the context that
 * received), then receives again:
 *
 *   RECV --message--> queued --worker--> SEND --sent--> RECV
 *     \--queue full or stopping--> SEND (status reply at once)
 *
 * There are workers + queue + SPARE_CONTEXTS contexts, so when every
 * worker is busy and the queue is full, spare contexts still receive and
 * answer RESOURCE_EXHAUSTED at once instead of leaving calls unread in a
 * silent backlog.
 *
 * Threads: ctx_cb runs on NNG's threads; workers are our pthreads, with
 * every signal blocked (main owns signals). s_mtx guards the queue, the
 * stopping flag and the send counter; it is never held across an NNG call
 * that may call back.
 *
 * Drain and stop: new calls are answered UNAVAILABLE, marked not run, at
 * once while the workers finish what is queued and running (answered
 * normally). Then the drain waits for the clients to let go of their
 * connections: until every connection is closed or none has sent a
 * request for DRAIN_QUIET_NS (answering each UNAVAILABLE, not run, in the
 * meantime), because closing a connection a client still sends on loses
 * the call on its way. With libnng 1.6.0 or later, a connection answered
 * not run is closed right after that reply, once none of its calls is in
 * flight (conns.h): a client of release 0.1.0 keeps its connections and
 * resolves names only when it dials, so only a closed connection sends
 * its next call to another server (later clients drop the connection at
 * that reply themselves). Not before 1.6.0: closing a connection while a
 * request arrives on it can wedge that libnng's pipe reaper, and then
 * nng_close() hangs (nanomsg/nng#1636); there the connections close with
 * the socket, once quiet. Listeners stay open until the socket closes,
 * because closing a listener closes its pipes and the replies on them.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include <nngrpc/clock.h>
#include <nngrpc/nngrpc.h>

#include "access.h"
#include "admission.h"
#include "auth.h"
#include "builtin.h"
#include "conns.h"
#include "dispatch.h"
#include "envelope.h"
#include "log.h"
#include "metrics.h"
#include "ops_http.h"
#include "server.h"
#include "tls.h"
#include "wire.h"

#define SPARE_CONTEXTS 16
/* How long a reply may wait for its client to read before the connection
 * is closed. */
#define SEND_TIMEOUT_MS 1000
/* How long stop waits for replies already handed to NNG to go out. */
#define STOP_SEND_WAIT_NS (2 * 1000000000LL)
/* The runtime's cancel method and its metadata (docs/compatibility.md). */
#define CANCEL_METHOD "/nngrpc.v1.Control/Cancel"
#define CANCEL_KEY    "nngrpc-cancel"
/* A drain ends once no request has come for this long (or no connection
 * is open): clients still sending here have been answered not run and
 * have gone elsewhere, so closing the connections loses no call. */
#define DRAIN_QUIET_NS (500 * 1000000LL)
/* How long past its timeout a drain waits for an instant with every call
 * answered: clients still sending keep calls in flight, each answered not
 * run within microseconds, and that is no handler still running. */
#define DRAIN_GRACE_NS (50 * 1000000LL)

typedef enum { CTX_IDLE, CTX_RECV, CTX_QUEUED, CTX_SEND } ctx_state;

typedef struct work {
	nngrpc_server   *w_server;
	nng_ctx          w_ctx;
	nng_aio         *w_aio;
	ctx_state        w_state;
	nng_msg         *w_msg;     /* received request, while queued */
	int64_t          w_recv_ns; /* when it was received */
	nng_pipe         w_pipe;    /* the connection it came on */
	struct work     *w_next;    /* in a list of calls to shed */
	nngrpc_conn_call w_cc;      /* on its connection's list of calls */
} work;

/* The options of nngrpc_server_set_int(), in the server's units. */
typedef struct server_opts {
	int64_t queue_target_ms;
	int64_t queue_interval_ms;
	int64_t default_deadline_ms; /* for calls with none; 0: none */
	int64_t max_deadline_ms;     /* 0: no cap */
	int64_t max_connections;     /* 0: from the descriptor limit */
	int64_t frame_timeout_ms;
	int64_t idle_timeout_ms;
} server_opts;

struct nngrpc_server {
	nngrpc_server_config s_cfg;
	char                *s_urls[NNGRPC_MAX_LISTEN]; /* owned copies */
	nngrpc_dispatch     *s_dispatch;
	nngrpc_auth         *s_auth; /* the token check, or NULL */
	nngrpc_metrics      *s_metrics;
	nngrpc_ops          *s_ops; /* the --http endpoint, or NULL */
	nngrpc_conns        *s_conns;
	char                *s_http; /* its address, owned, or NULL */
	nng_socket           s_sock;
	bool                 s_sock_open;
	nng_listener         s_listeners[NNGRPC_MAX_LISTEN];
	nngrpc_tls          *s_tls; /* tls+tcp:// listeners' credentials */
	size_t               s_n_listeners;
	work                *s_works;
	size_t               s_n_works;
	pthread_t           *s_workers;
	size_t               s_n_workers; /* started */
	bool                 s_started;
	bool                 s_isolated; /* handlers run in worker processes */
	bool                 s_drain_closes; /* close pipes while draining */
	server_opts          s_opts;

	pthread_mutex_t  s_mtx;
	pthread_cond_t   s_cv;       /* queue not empty, or stopping */
	pthread_cond_t   s_idle_cv;  /* s_running or s_sending dropped */
	work           **s_queue;    /* ring, guarded by s_mtx */
	size_t           s_q_head;   /* guarded by s_mtx */
	size_t           s_q_len;    /* guarded by s_mtx */
	bool             s_stopping; /* workers exit when idle; s_mtx */
	atomic_bool      s_draining; /* drain or stop began */
	size_t           s_running;  /* calls in handlers, guarded by s_mtx */
	size_t           s_working;  /* of those, on workers; s_mtx */
	size_t           s_sending;  /* replies in NNG, guarded by s_mtx */
	nngrpc_admission s_adm;      /* CoDel state, guarded by s_mtx */
	pthread_cond_t   s_adm_cv;   /* CLOCK_MONOTONIC: the admission
	                               thread's next look may be sooner */
	pthread_t s_adm_thread;
	bool      s_adm_started;
};

/* Whether this libnng closes a pipe that a request is arriving on without
 * wedging its reaper: nng 1.6.0 and later (nanomsg/nng#1636). */
static bool
nng_closes_pipes_safely(void)
{
	int major = 0, minor = 0;

	return (sscanf(nng_version(), "%d.%d", &major, &minor) == 2
	    && (major > 1 || (major == 1 && minor >= 6)));
}

void
nngrpc_server_config_init(nngrpc_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = NNGRPC_DEFAULT_WORKERS;
	cfg->queue = NNGRPC_DEFAULT_QUEUE;
	cfg->max_message_bytes = NNGRPC_DEFAULT_MAX_MESSAGE_BYTES;
	cfg->builtin_services = true;
}

/* ---- options (nngrpc_server_set_int) ------------------------------------ */

typedef struct option_def {
	const char *name;
	size_t      offset; /* of its int64_t in server_opts */
	int64_t     min, max;
} option_def;

#define OPT(f) offsetof(server_opts, f)

static const option_def option_defs[] = {
	{ NNGRPC_OPT_QUEUE_TARGET_MS, OPT(queue_target_ms), 0, 60000 },
	{ NNGRPC_OPT_QUEUE_INTERVAL_MS, OPT(queue_interval_ms), 1, 600000 },
	{ NNGRPC_OPT_DEFAULT_DEADLINE_MS, OPT(default_deadline_ms), 0,
	    86400000 },
	{ NNGRPC_OPT_MAX_DEADLINE_MS, OPT(max_deadline_ms), 0, 86400000 },
	{ NNGRPC_OPT_MAX_CONNECTIONS, OPT(max_connections), 0, 10000000 },
	{ NNGRPC_OPT_FRAME_TIMEOUT_MS, OPT(frame_timeout_ms), 0, 86400000 },
	{ NNGRPC_OPT_IDLE_TIMEOUT_MS, OPT(idle_timeout_ms), 0, 86400000 },
};

static void
options_init(server_opts *o)
{
	o->queue_target_ms = NNGRPC_DEFAULT_QUEUE_TARGET_MS;
	o->queue_interval_ms = NNGRPC_DEFAULT_QUEUE_INTERVAL_MS;
	o->max_connections = 0;
	o->frame_timeout_ms = NNGRPC_DEFAULT_FRAME_TIMEOUT_MS;
	o->idle_timeout_ms = NNGRPC_DEFAULT_IDLE_TIMEOUT_MS;
}

static const option_def *
option_find(const char *name)
{
	for (size_t i = 0; i < sizeof(option_defs) / sizeof(option_defs[0]);
	     i++) {
		if (strcmp(option_defs[i].name, name) == 0) {
			return (&option_defs[i]);
		}
	}
	return (NULL);
}

int
nngrpc_server_set_int(nngrpc_server *s, const char *option, int64_t value)
{
	const option_def *d = option_find(option);

	if (d == NULL) {
		return (NNG_ENOTSUP);
	}
	if (value < d->min || value > d->max) {
		return (NNG_EINVAL);
	}
	if (s->s_started) {
		return (NNG_EBUSY);
	}
	*(int64_t *) ((char *) &s->s_opts + d->offset) = value;
	/* The deadlines go to dispatch now: a zygote forked before start
	 * runs calls with them too. */
	nngrpc_dispatch_set_deadlines(s->s_dispatch,
	    (uint64_t) s->s_opts.default_deadline_ms * 1000,
	    (uint64_t) s->s_opts.max_deadline_ms * 1000);
	return (0);
}

int
nngrpc_server_get_int(
    const nngrpc_server *s, const char *option, int64_t *valuep)
{
	const option_def *d = option_find(option);

	if (d == NULL) {
		return (NNG_ENOTSUP);
	}
	*valuep = *(const int64_t *) ((const char *) &s->s_opts + d->offset);
	return (0);
}

/* ---- metrics gauges (read at /metrics time, from NNG's HTTP thread) --- */

static double
gauge_locked(nngrpc_server *s, int which)
{
	double v;
	pthread_mutex_lock(&s->s_mtx);
	switch (which) {
	case 0:
		v = (double) s->s_q_len;
		break;
	case 1:
		v = (double) s->s_running;
		break;
	case 3:
		v = (double) s->s_adm.a_shed;
		break;
	case 4:
		v = s->s_adm.a_shedding ? 1 : 0;
		break;
	default:
		v = (double) (s->s_q_len + s->s_running + s->s_sending);
		break;
	}
	pthread_mutex_unlock(&s->s_mtx);
	return (v);
}

static double
gauge_queue(void *arg)
{
	return (gauge_locked(arg, 0));
}

static double
gauge_busy(void *arg)
{
	return (gauge_locked(arg, 1));
}

static double
gauge_in_flight(void *arg)
{
	return (gauge_locked(arg, 2));
}

static double
counter_shed(void *arg)
{
	return (gauge_locked(arg, 3));
}

static double
gauge_shedding(void *arg)
{
	return (gauge_locked(arg, 4));
}

static double
gauge_workers(void *arg)
{
	return ((double) ((nngrpc_server *) arg)->s_cfg.workers);
}

static double
gauge_serving(void *arg)
{
	return (nngrpc_server_serving(arg) ? 1 : 0);
}

static int
add_gauges(nngrpc_server *s)
{
	static const struct {
		const char *name;
		const char *help;
		double (*fn)(void *);
		bool counter;
	} gauges[] = {
		{ "nngrpc_queue_depth", "Calls waiting for a worker.",
		    gauge_queue, false },
		{ "nngrpc_busy_workers", "Workers running a call.", gauge_busy,
		    false },
		{ "nngrpc_in_flight_calls",
		    "Calls received and not yet answered (queued, running or "
		    "replying).",
		    gauge_in_flight, false },
		{ "nngrpc_workers", "Worker threads.", gauge_workers, false },
		{ "nngrpc_serving", "1 while the server is SERVING.",
		    gauge_serving, false },
		{ "nngrpc_queue_shed_total",
		    "Calls shed from the queue (waited past the target while "
		    "it stood above it): RESOURCE_EXHAUSTED, not run.",
		    counter_shed, true },
		{ "nngrpc_queue_shedding",
		    "1 while the queue sheds calls that wait past the target.",
		    gauge_shedding, false },
	};
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		int rv = gauges[i].counter
		    ? nngrpc_metrics_add_counter_fn(s->s_metrics,
		        gauges[i].name, gauges[i].help, gauges[i].fn, s)
		    : nngrpc_metrics_add_gauge(s->s_metrics, gauges[i].name,
		        gauges[i].help, gauges[i].fn, s);
		if (rv != 0) {
			return (rv);
		}
	}
	return (0);
}

struct nngrpc_metrics *
nngrpc_server_metrics(nngrpc_server *s)
{
	return (s->s_metrics);
}

static bool
ops_serving(void *arg)
{
	return (nngrpc_server_serving(arg));
}

/* The server's own interceptors: the access log first (its `after` runs
 * last, on the final status), then, with a token, the token check (its
 * `before` runs first). */
static int
add_own_interceptors(nngrpc_server *s, const char *token)
{
	nngrpc_interceptor auth;
	int                rv;

	if ((rv = nngrpc_dispatch_add_interceptor(
	         s->s_dispatch, &nngrpc_access_interceptor))
	        != 0
	    || token == NULL) {
		return (rv);
	}
	if ((rv = nngrpc_auth_alloc(&s->s_auth)) != 0
	    || (rv = nngrpc_auth_set_tokens(s->s_auth, &token, 1)) != 0) {
		return (rv);
	}
	nngrpc_auth_interceptor(s->s_auth, &auth);
	return (nngrpc_dispatch_add_interceptor(s->s_dispatch, &auth));
}

/* Copies what the configuration borrows: URLs and the ops address. */
static int
copy_config(nngrpc_server *s, const nngrpc_server_config *cfg)
{
	s->s_cfg = *cfg;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		if ((s->s_urls[i] = strdup(cfg->listen[i])) == NULL) {
			return (NNG_ENOMEM);
		}
		s->s_cfg.listen[i] = s->s_urls[i];
	}
	if (cfg->http != NULL && (s->s_http = strdup(cfg->http)) == NULL) {
		return (NNG_ENOMEM);
	}
	s->s_cfg.http = s->s_http;
	s->s_cfg.auth_token = NULL; /* the auth check keeps its own copy */
	/* The TLS files are read again on nngrpc_server_reload_tls(). */
	return (nngrpc_tls_alloc(
	    cfg->tls_cert, cfg->tls_key, cfg->tls_ca, &s->s_tls));
}

/* A condition variable whose timed waits are on CLOCK_MONOTONIC, the
 * clock of call times. */
static void
monotonic_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

int
nngrpc_server_open(const nngrpc_server_config *cfg, nngrpc_server **serverp)
{
	nngrpc_server *s;
	int            rv;

	if (cfg->workers < 1 || cfg->queue < 1 || cfg->n_listen == 0
	    || cfg->n_listen > NNGRPC_MAX_LISTEN
	    || cfg->max_message_bytes == 0) {
		return (NNG_EINVAL);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return (NNG_ENOMEM);
	}
	pthread_mutex_init(&s->s_mtx, NULL);
	pthread_cond_init(&s->s_cv, NULL);
	pthread_cond_init(&s->s_idle_cv, NULL);
	monotonic_cond_init(&s->s_adm_cv);
	atomic_init(&s->s_draining, false);
	s->s_drain_closes = nng_closes_pipes_safely();
	options_init(&s->s_opts);
	s->s_queue = calloc((size_t) cfg->queue, sizeof(*s->s_queue));
	rv = s->s_queue == NULL ? NNG_ENOMEM : copy_config(s, cfg);
	if (rv != 0 || (rv = nngrpc_metrics_alloc(&s->s_metrics)) != 0
	    || (rv = add_gauges(s)) != 0
	    || (rv = nngrpc_conns_alloc(s->s_metrics, &s->s_conns)) != 0
	    || (rv = nngrpc_dispatch_alloc(&s->s_dispatch)) != 0
	    || (rv = add_own_interceptors(s, cfg->auth_token)) != 0
	    || (cfg->builtin_services
	        && (rv = nngrpc_builtin_register(s, s->s_dispatch)) != 0)) {
		nngrpc_server_close(s);
		return (rv);
	}
	nngrpc_dispatch_set_metrics(s->s_dispatch, s->s_metrics);
	nngrpc_dispatch_set_max_message(s->s_dispatch, cfg->max_message_bytes);
	/* Gauges added from now on are the service's (for the relay of
	 * process isolation). */
	nngrpc_metrics_mark_service_fns(s->s_metrics);
	*serverp = s;
	return (0);
}

int
nngrpc_server_add_service(nngrpc_server *s,
    const ProtobufCServiceDescriptor *desc, const nngrpc_file_info *file,
    const nngrpc_method_fn *fns, const void *impl, size_t impl_size,
    void *user)
{
	if (s->s_started) {
		return (NNG_EBUSY);
	}
	return (nngrpc_dispatch_add_service(
	    s->s_dispatch, desc, file, fns, impl, impl_size, user));
}

int
nngrpc_server_add_interceptor(
    nngrpc_server *s, const nngrpc_interceptor *interceptor)
{
	if (s->s_started) {
		return (NNG_EBUSY);
	}
	return (nngrpc_dispatch_add_interceptor(s->s_dispatch, interceptor));
}

int
nngrpc_server_set_inline(nngrpc_server *s, const char *method, bool on)
{
	if (s->s_started) {
		return (NNG_EBUSY);
	}
	return (nngrpc_dispatch_set_inline(s->s_dispatch, method, on));
}

int
nngrpc_server_set_reload(nngrpc_server *s, const char *method)
{
	if (s->s_started) {
		return (NNG_EBUSY);
	}
	return (nngrpc_dispatch_set_reload(s->s_dispatch, method));
}

bool
nngrpc_server_isolated(const nngrpc_server *s)
{
	return (s->s_isolated);
}

void
nngrpc_server_isolate(nngrpc_server *s, nngrpc_dispatch_runner fn, void *arg)
{
	s->s_isolated = true;
	nngrpc_dispatch_set_runner(s->s_dispatch, fn, arg);
}

nngrpc_dispatch *
nngrpc_server_dispatch(nngrpc_server *s)
{
	return (s->s_dispatch);
}

int
nngrpc_server_set_auth_tokens(
    nngrpc_server *s, const char *const *tokens, size_t n)
{
	if (s->s_auth == NULL) {
		return (NNG_ENOTSUP);
	}
	return (nngrpc_auth_set_tokens(s->s_auth, tokens, n));
}

int
nngrpc_server_reload_tls(nngrpc_server *s, char *err, size_t errlen)
{
	if (!s->s_started) {
		snprintf(err, errlen, "tls: the server has not started");
		return (NNG_ESTATE);
	}
	return (nngrpc_tls_reload(s->s_tls, err, errlen));
}

int
nngrpc_server_set_serving(nngrpc_server *s, const char *service, bool serving)
{
	return (nngrpc_dispatch_set_serving(s->s_dispatch, service, serving));
}

bool
nngrpc_server_serving(const nngrpc_server *s)
{
	bool serving = false;
	nngrpc_dispatch_serving(s->s_dispatch, NULL, &serving);
	return (serving);
}

/* ---- contexts (NNG's threads) ----------------------------------------- */

static void
ctx_recv(work *w)
{
	w->w_state = CTX_RECV;
	nng_aio_set_timeout(w->w_aio, NNG_DURATION_INFINITE);
	nng_ctx_recv(w->w_ctx, w->w_aio);
}

/* Whether reply says its call never ran (the not-run trailer). Decodes
 * it, so only while draining. */
static bool
reply_not_run(nng_msg *reply)
{
	Nngrpc__V1__Response *r = nngrpc__v1__response__unpack(
	    NULL, nng_msg_len(reply), nng_msg_body(reply));
	bool not_run = false;

	if (r == NULL) {
		return (false);
	}
	for (size_t i = 0; i < r->n_trailers && !not_run; i++) {
		not_run = r->trailers[i]->key != NULL
		    && strcmp(r->trailers[i]->key, NNGRPC_NOT_RUN_KEY) == 0;
	}
	nngrpc__v1__response__free_unpacked(r, NULL);
	return (not_run);
}

/* Hands a reply to NNG. Takes msg. */
static void
ctx_send(work *w, nng_msg *msg)
{
	nngrpc_server *s = w->w_server;
	nng_pipe       pipe = w->w_pipe; /* w is reused once the send ends */
	bool           close_now = false;

	if (s->s_drain_closes && atomic_load(&s->s_draining)
	    && reply_not_run(msg)) {
		/* The connection closes (conns.h). */
		close_now = nngrpc_conns_goaway(s->s_conns, &w->w_cc);
	}
	pthread_mutex_lock(&s->s_mtx);
	s->s_sending++;
	pthread_mutex_unlock(&s->s_mtx);
	/* Answered: the client may have the reply (and close) before on_sent
	 * takes the call off its connection's list. */
	nngrpc_conns_call_answered(&w->w_cc);
	/* A client that stops reading must not hold this context (and, once
	 * every context is stuck behind it, every other client). */
	nng_aio_set_timeout(w->w_aio, SEND_TIMEOUT_MS);
	w->w_state = CTX_SEND;
	nng_aio_set_msg(w->w_aio, msg);
	nng_ctx_send(w->w_ctx, w->w_aio);
	if (close_now) {
		/* Its only call: libnng wrote the reply to the socket inside
		 * nng_ctx_send (a connection with nothing else in flight is
		 * not busy sending), so the FIN follows it at once, before
		 * the client can take the connection for its next call. */
		nng_pipe_close(pipe);
	}
}

/* Answers a call with a status alone, or drops it if even that fails.
 * not_run: no handler ran for it (the reply says so, and a client may send
 * even a call that is not idempotent elsewhere). */
static void
ctx_send_status(work *w, int code, const char *message, bool not_run)
{
	nng_msg *reply;

	if (nngrpc_envelope_status(code, message, not_run, &reply) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "out of memory answering a call");
		(void) nngrpc_conns_call_end(w->w_server->s_conns, &w->w_cc);
		ctx_recv(w); /* the client's deadline ends its wait */
		return;
	}
	ctx_send(w, reply);
}

/* Takes the oldest queued call off the queue. With s_mtx held. */
static work *
queue_take_locked(nngrpc_server *s)
{
	work *w = s->s_queue[s->s_q_head];

	s->s_q_head = (s->s_q_head + 1) % (size_t) s->s_cfg.queue;
	s->s_q_len--;
	return (w);
}

/* Takes off the queue, oldest first, every call that admission sheds at
 * now (admission.h), onto *shedp (linked through w_next). Each counts in
 * s_running until answer_shed() has answered it, so a drain never sees
 * it gone before its reply. With s_mtx held.
 *
 * Only while every worker is busy (but the one taking a call, popping): a
 * queue that waits while workers are free waits for the scheduler (a
 * machine short of CPU), not because the server has more calls than it
 * can run, and shedding would not help it. Such a moment is not looked
 * at. */
static void
shed_locked(nngrpc_server *s, int64_t now, bool popping, work **shedp)
{
	if (s->s_working + (popping ? 1 : 0) < (size_t) s->s_cfg.workers) {
		return;
	}
	while (s->s_q_len > 0) {
		work *w = s->s_queue[s->s_q_head];
		bool  was = s->s_adm.a_shedding;

		if (!nngrpc_admission_shed(
		        &s->s_adm, now - w->w_recv_ns, now)) {
			return;
		}
		if (!was) {
			/* The admission thread's next look is sooner now. */
			pthread_cond_signal(&s->s_adm_cv);
		}
		(void) queue_take_locked(s);
		s->s_running++;
		w->w_next = *shedp;
		*shedp = w;
	}
}

/* Queues a received call, first shedding what admission sheds (onto
 * *shedp). Returns false when the queue is full or the workers are
 * stopping; *drainingp says which. While draining, calls are still queued:
 * dispatch answers them UNAVAILABLE, except health checks, which say
 * NOT_SERVING. */
static bool
queue_push(nngrpc_server *s, work *w, bool *drainingp, work **shedp)
{
	bool ok = false;

	pthread_mutex_lock(&s->s_mtx);
	*drainingp = s->s_stopping;
	if (!s->s_stopping) {
		if (s->s_q_len == 0) {
			nngrpc_admission_drained(&s->s_adm, w->w_recv_ns);
		}
		shed_locked(s, w->w_recv_ns, false, shedp);
	}
	if (!s->s_stopping && s->s_q_len < (size_t) s->s_cfg.queue) {
		size_t tail
		    = (s->s_q_head + s->s_q_len) % (size_t) s->s_cfg.queue;
		s->s_queue[tail] = w;
		if (s->s_q_len++ == 0) {
			/* A new oldest call: a new time for the admission
			 * thread's next look. */
			pthread_cond_signal(&s->s_adm_cv);
		}
		w->w_state = CTX_QUEUED;
		ok = true;
		pthread_cond_signal(&s->s_cv);
	}
	pthread_mutex_unlock(&s->s_mtx);
	return (ok);
}

/* Runs a call on the worker's behalf and hands its reply to NNG; consumes
 * w->w_msg. Called by workers, and by ctx_cb for inline methods. */
static void
run_call(work *w, int64_t start_ns)
{
	nngrpc_server *s = w->w_server;
	nng_msg       *reply;

	if (nngrpc_dispatch_call(s->s_dispatch, nng_msg_body(w->w_msg),
	        nng_msg_len(w->w_msg), nng_msg_get_pipe(w->w_msg),
	        &w->w_cc.cc_cancelled, w->w_recv_ns, start_ns, &reply)
	    != 0) {
		nng_msg_free(w->w_msg);
		w->w_msg = NULL;
		/* The handler may have run: no not-run mark. */
		ctx_send_status(
		    w, NNGRPC_RESOURCE_EXHAUSTED, "out of memory", false);
		return;
	}
	nng_msg_free(w->w_msg);
	w->w_msg = NULL;
	ctx_send(w, reply);
}

/* Ends a call that was counted in s_running (and s_working: worker).
 * Counted in s_sending before leaving s_running, so a drain never sees it
 * gone before its reply. */
static void
call_ended(nngrpc_server *s, bool worker)
{
	pthread_mutex_lock(&s->s_mtx);
	if (worker) {
		s->s_working--;
	}
	if (--s->s_running == 0) {
		pthread_cond_broadcast(&s->s_idle_cv);
	}
	pthread_mutex_unlock(&s->s_mtx);
}

/* Answers the calls shed from the queue (a list through w_next, each
 * counted in s_running): RESOURCE_EXHAUSTED, not run. */
static void
answer_shed(nngrpc_server *s, work *list)
{
	char msg[160];

	while (list != NULL) {
		work   *w = list;
		int64_t waited = nngrpc_now_ns() - w->w_recv_ns;
		size_t  len = nng_msg_len(w->w_msg);

		list = w->w_next;
		w->w_next = NULL;
		nng_msg_free(w->w_msg);
		w->w_msg = NULL;
		nngrpc_metrics_call_done(s->s_metrics, -1,
		    NNGRPC_RESOURCE_EXHAUSTED, waited, -1, len, 0);
		snprintf(msg, sizeof(msg),
		    "server overloaded: its queue has stood above %lld ms; "
		    "this call waited %lld ms and was shed, not run",
		    (long long) s->s_opts.queue_target_ms,
		    (long long) (waited / 1000000));
		ctx_send_status(w, NNGRPC_RESOURCE_EXHAUSTED, msg, true);
		call_ended(s, false);
	}
}

/* An inline method (never blocks, microseconds): run it right here on
 * NNG's thread, saving the hand-off to a worker and its wake-up. */
static void
run_inline(work *w)
{
	nngrpc_server *s = w->w_server;

	pthread_mutex_lock(&s->s_mtx);
	s->s_running++;
	pthread_mutex_unlock(&s->s_mtx);
	run_call(w, w->w_recv_ns);
	call_ended(s, false);
}

/* Notes the request id of the call on w, for a cancel that names it. */
static void
request_id(work *w)
{
	const char *rid = NULL;
	size_t      n = 0;

	(void) nngrpc_wire_peek_metadata(nng_msg_body(w->w_msg),
	    nng_msg_len(w->w_msg), "nngrpc-request-id", &rid, &n);
	nngrpc_conns_call_id(&w->w_cc, rid, n);
}

/* True when a request envelope calls CANCEL_METHOD (read from its first
 * field, as clients write it). */
static bool
is_cancel(const uint8_t *body, size_t len)
{
	const char *name;
	size_t      n;

	return (nngrpc_wire_peek_method(body, len, &name, &n)
	    && n == strlen(CANCEL_METHOD)
	    && memcmp(name, CANCEL_METHOD, n) == 0);
}

/* A cancel request (docs/compatibility.md): marks the calls of its own
 * connection that it names cancelled, and answers OK at once, found or
 * not (INVALID_ARGUMENT when it names none). Here on NNG's thread, never
 * queued: it must not wait behind the calls it cancels, and needs no
 * token (it reaches only its own connection's calls). */
static void
answer_cancel(work *w)
{
	nngrpc_server *s = w->w_server;
	const char    *rid;
	size_t         n;
	bool           named;

	named = nngrpc_wire_peek_metadata(nng_msg_body(w->w_msg),
	    nng_msg_len(w->w_msg), CANCEL_KEY, &rid, &n);
	if (named) {
		(void) nngrpc_conns_cancel(
		    s->s_conns, w->w_pipe, rid, n, &w->w_cc);
	}
	nng_msg_free(w->w_msg);
	w->w_msg = NULL;
	if (named) {
		ctx_send_status(w, NNGRPC_OK, NULL, false);
	} else {
		ctx_send_status(w, NNGRPC_INVALID_ARGUMENT,
		    CANCEL_METHOD ": no " CANCEL_KEY " metadata names the "
		                  "request id to cancel",
		    true);
	}
}

/* A call arrived on w: answer a cancel, run it inline, queue it, or answer
 * at once that the queue is full or the server is draining. */
static void
on_received(work *w)
{
	nngrpc_server *s = w->w_server;
	work          *shed = NULL;
	bool           stopping, queued;
	size_t         len;

	w->w_msg = nng_aio_get_msg(w->w_aio);
	w->w_recv_ns = nngrpc_now_ns();
	w->w_pipe = nng_msg_get_pipe(w->w_msg);
	nng_aio_set_msg(w->w_aio, NULL);
	request_id(w);
	/* On the wire: the 8-byte length, the SP header (REP keeps it to
	 * itself: 4 bytes from a direct peer) and the body. */
	nngrpc_conns_call_start(
	    s->s_conns, &w->w_cc, w->w_pipe, 8 + 4 + nng_msg_len(w->w_msg));
	if (is_cancel(nng_msg_body(w->w_msg), nng_msg_len(w->w_msg))) {
		answer_cancel(w);
		return;
	}
	if (nngrpc_dispatch_peek_inline(s->s_dispatch, nng_msg_body(w->w_msg),
	        nng_msg_len(w->w_msg))) {
		run_inline(w);
		return;
	}
	queued = queue_push(s, w, &stopping, &shed);
	answer_shed(s, shed);
	if (queued) {
		return;
	}
	len = nng_msg_len(w->w_msg);
	nng_msg_free(w->w_msg);
	w->w_msg = NULL;
	nngrpc_metrics_call_done(s->s_metrics, -1,
	    stopping ? NNGRPC_UNAVAILABLE : NNGRPC_RESOURCE_EXHAUSTED, -1, -1,
	    len, 0);
	if (stopping) {
		ctx_send_status(w, NNGRPC_UNAVAILABLE,
		    "server is draining: send calls elsewhere", true);
	} else {
		ctx_send_status(w, NNGRPC_RESOURCE_EXHAUSTED,
		    "server queue is full: every worker is busy", true);
	}
}

/* A reply on w was sent, or not (rv): count it out and receive again. */
static void
on_sent(work *w, int rv)
{
	nngrpc_server *s = w->w_server;

	if (nngrpc_conns_call_end(s->s_conns, &w->w_cc) && rv == 0) {
		/* Answered not run while draining, and its last call in
		 * flight just ended: the reply is written, so the client
		 * reads it, then EOF, and dials again. */
		nng_pipe_close(w->w_pipe);
	}
	if (rv != 0) {
		/* Not sent (peer gone, socket closing): still ours. */
		nng_msg_free(nng_aio_get_msg(w->w_aio));
		nng_aio_set_msg(w->w_aio, NULL);
		if (rv == NNG_ETIMEDOUT) {
			nngrpc_log(NNGRPC_LOG_WARN,
			    "a client stopped reading its replies for %d ms: "
			    "closing its connection",
			    SEND_TIMEOUT_MS);
			/* Frees the contexts queued behind it. */
			nng_pipe_close(w->w_pipe);
			nngrpc_conns_send_timeout(s->s_conns);
		}
	}
	pthread_mutex_lock(&s->s_mtx);
	if (--s->s_sending == 0) {
		pthread_cond_broadcast(&s->s_idle_cv);
	}
	pthread_mutex_unlock(&s->s_mtx);
	if (rv == NNG_ECLOSED) {
		w->w_state = CTX_IDLE;
		return;
	}
	/* Receive again even when stopping: what arrives before the socket
	 * closes is answered UNAVAILABLE, not dropped. */
	ctx_recv(w);
}

static void
ctx_cb(void *arg)
{
	work *w = arg;
	int   rv = nng_aio_result(w->w_aio);

	switch (w->w_state) {
	case CTX_RECV:
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			w->w_state = CTX_IDLE;
		} else if (rv != 0) {
			ctx_recv(w); /* a broken pipe mid-receive */
		} else {
			on_received(w);
		}
		return;
	case CTX_SEND:
		on_sent(w, rv);
		return;
	default:
		nngrpc_log(NNGRPC_LOG_ERROR, "context callback in state %d",
		    (int) w->w_state);
		abort(); /* a broken invariant, never input */
	}
}

/* ---- the admission thread ---------------------------------------------- */

/* Waits on cv with s_mtx held until CLOCK_MONOTONIC's until_ns (INT64_MAX:
 * until signalled). */
static void
wait_until_ns(nngrpc_server *s, pthread_cond_t *cv, int64_t until_ns)
{
	struct timespec ts;

	if (until_ns == INT64_MAX) {
		pthread_cond_wait(cv, &s->s_mtx);
		return;
	}
	ts.tv_sec = (time_t) (until_ns / 1000000000);
	ts.tv_nsec = (long) (until_ns % 1000000000);
	pthread_cond_timedwait(cv, &s->s_mtx, &ts);
}

/* Sheds queued calls when they reach the target even when no call arrives
 * and no worker comes free to look (admission.h). */
static void *
admission_main(void *arg)
{
	nngrpc_server *s = arg;

	pthread_mutex_lock(&s->s_mtx);
	while (!s->s_stopping) {
		work   *shed = NULL;
		int64_t next = INT64_MAX;

		shed_locked(s, nngrpc_now_ns(), false, &shed);
		if (shed != NULL) {
			pthread_mutex_unlock(&s->s_mtx);
			answer_shed(s, shed);
			pthread_mutex_lock(&s->s_mtx);
			continue;
		}
		if (s->s_q_len > 0) {
			next = nngrpc_admission_next_ns(
			    &s->s_adm, s->s_queue[s->s_q_head]->w_recv_ns);
		}
		wait_until_ns(s, &s->s_adm_cv, next);
	}
	pthread_mutex_unlock(&s->s_mtx);
	return (NULL);
}

/* ---- workers (our threads) ------------------------------------------- */

static void *
worker_main(void *arg)
{
	nngrpc_server *s = arg;

	for (;;) {
		work   *w, *shed = NULL;
		int64_t now;
		bool    stopping;

		pthread_mutex_lock(&s->s_mtx);
		if (s->s_q_len == 0 && !s->s_stopping) {
			nngrpc_admission_drained(&s->s_adm, nngrpc_now_ns());
		}
		while (s->s_q_len == 0 && !s->s_stopping) {
			pthread_cond_wait(&s->s_cv, &s->s_mtx);
		}
		now = nngrpc_now_ns();
		shed_locked(s, now, true, &shed);
		w = s->s_q_len > 0 ? queue_take_locked(s) : NULL;
		if (w != NULL) {
			s->s_running++;
			s->s_working++;
		}
		stopping = s->s_stopping;
		pthread_mutex_unlock(&s->s_mtx);

		answer_shed(s, shed);
		if (w != NULL) {
			run_call(w, now);
			call_ended(s, true);
		} else if (stopping) {
			return (NULL);
		}
	}
}

/* ---- start and stop ---------------------------------------------------- */

static int
start_fail(nngrpc_server *s, int rv, char *err, size_t errlen,
    const char *what, const char *detail)
{
	snprintf(err, errlen, "%s: %s", what, detail);
	nngrpc_server_stop(s);
	return (rv);
}

static const char *
listen_error(int rv)
{
	switch (rv) {
	case NNG_EADDRINUSE:
		return ("address already in use");
	case NNG_EADDRINVAL:
		return ("invalid address");
	case NNG_ENOTSUP:
		return ("unsupported transport (use tcp:// or ipc://)");
	case NNG_EPERM:
		return ("permission denied");
	default:
		return (nng_strerror(rv));
	}
}

/* --max-connections 0: the descriptor limit less an eighth of it (at
 * least 64) for everything else the process opens. */
static int64_t
auto_max_connections(void)
{
	struct rlimit rl;
	int64_t       n = 1 << 20;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
	    && rl.rlim_cur < (rlim_t) n) {
		n = (int64_t) rl.rlim_cur;
	}
	n -= n / 8 > 64 ? n / 8 : 64;
	return (n > 1 ? n : 1);
}

/* The connection table (conns.h) gets its limits and watches the
 * socket's pipes. */
static int
open_conns(nngrpc_server *s)
{
	nngrpc_conns_limits lim = {
		.max_connections = s->s_opts.max_connections > 0
		    ? s->s_opts.max_connections
		    : auto_max_connections(),
		.frame_timeout_ms = s->s_opts.frame_timeout_ms,
		.idle_timeout_ms = s->s_opts.idle_timeout_ms,
	};

	nngrpc_conns_set_limits(s->s_conns, &lim);
	return (nngrpc_conns_attach(s->s_conns, s->s_sock));
}

/* The REP socket and its receive limit. */
static int
open_socket(nngrpc_server *s, char *err, size_t errlen)
{
	int rv;

	if ((rv = nng_rep0_open(&s->s_sock)) != 0) {
		return (start_fail(s, rv, err, errlen,
		    "cannot open a REP socket", nng_strerror(rv)));
	}
	s->s_sock_open = true;
	rv = nng_socket_set_size(
	    s->s_sock, NNG_OPT_RECVMAXSZ, s->s_cfg.max_message_bytes);
	if (rv != 0) {
		return (start_fail(s, rv, err, errlen, "max message bytes",
		    nng_strerror(rv)));
	}
	if ((rv = open_conns(s)) != 0) {
		return (start_fail(
		    s, rv, err, errlen, "connections", nng_strerror(rv)));
	}
	return (0);
}

/* workers + queue + SPARE_CONTEXTS receive contexts, each with its aio
 * (see the top of this file); none receives yet. */
static int
open_contexts(nngrpc_server *s, char *err, size_t errlen)
{
	size_t n_works = (size_t) s->s_cfg.workers + (size_t) s->s_cfg.queue
	    + SPARE_CONTEXTS;
	int rv;

	if ((s->s_works = calloc(n_works, sizeof(*s->s_works))) == NULL) {
		return (start_fail(
		    s, NNG_ENOMEM, err, errlen, "contexts", "out of memory"));
	}
	for (size_t i = 0; i < n_works; i++) {
		work *w = &s->s_works[i];
		w->w_server = s;
		if ((rv = nng_ctx_open(&w->w_ctx, s->s_sock)) != 0
		    || (rv = nng_aio_alloc(&w->w_aio, ctx_cb, w)) != 0) {
			/* An opened ctx goes with the socket. */
			return (start_fail(
			    s, rv, err, errlen, "contexts", nng_strerror(rv)));
		}
		s->s_n_works = i + 1;
	}
	return (0);
}

/* The worker threads, started with every signal blocked: main owns them. */
static int
start_workers(nngrpc_server *s, char *err, size_t errlen)
{
	sigset_t all, old;

	if ((s->s_workers
	        = calloc((size_t) s->s_cfg.workers, sizeof(*s->s_workers)))
	    == NULL) {
		return (start_fail(
		    s, NNG_ENOMEM, err, errlen, "workers", "out of memory"));
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < s->s_cfg.workers; i++) {
		if (pthread_create(&s->s_workers[i], NULL, worker_main, s)
		    != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			return (start_fail(s, NNG_ENOMEM, err, errlen,
			    "workers", "cannot start a thread"));
		}
		pthread_setname_np(s->s_workers[i], "nngrpc-worker");
		s->s_n_workers++;
	}
	if (s->s_opts.queue_target_ms > 0) {
		if (pthread_create(&s->s_adm_thread, NULL, admission_main, s)
		    != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			return (start_fail(s, NNG_ENOMEM, err, errlen,
			    "workers", "cannot start a thread"));
		}
		pthread_setname_np(s->s_adm_thread, "nngrpc-admit");
		s->s_adm_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (0);
}

/* One listener per URL, TLS ones configured first. */
static int
start_listeners(nngrpc_server *s, char *err, size_t errlen)
{
	int rv;

	for (size_t i = 0; i < s->s_cfg.n_listen; i++) {
		const char   *url = s->s_cfg.listen[i];
		nng_listener *l = &s->s_listeners[i];
		if ((rv = nng_listener_create(l, s->s_sock, url)) != 0) {
			return (start_fail(
			    s, rv, err, errlen, url, listen_error(rv)));
		}
		if (strncmp(url, "tls+", 4) == 0
		    && (rv = nngrpc_tls_add_listener(
		            s->s_tls, *l, err, errlen))
		        != 0) {
			nng_listener_close(*l);
			nngrpc_server_stop(s);
			return (rv);
		}
		if (strncmp(url, "tls+", 4) == 0) {
			nngrpc_conns_set_tls(s->s_conns, *l);
		}
		if ((rv = nng_listener_start(*l, 0)) != 0) {
			nng_listener_close(*l);
			return (start_fail(
			    s, rv, err, errlen, url, listen_error(rv)));
		}
		s->s_n_listeners++;
		nngrpc_log(NNGRPC_LOG_INFO, "listening on %s", url);
	}
	return (0);
}

/* The ops HTTP endpoint, when an address is configured. */
static int
start_ops(nngrpc_server *s, char *err, size_t errlen)
{
	nngrpc_ops_hooks hooks = {
		.serving = ops_serving,
		.ready = ops_serving,
		.metrics = s->s_metrics,
		.arg = s,
	};
	int rv;

	if (s->s_http == NULL) {
		return (0);
	}
	if ((rv = nngrpc_ops_start(s->s_http, &hooks, &s->s_ops, err, errlen))
	    != 0) {
		nngrpc_server_stop(s);
		return (rv);
	}
	nngrpc_log(NNGRPC_LOG_INFO, "ops endpoint on http://%s (port %d)",
	    s->s_http, nngrpc_ops_port(s->s_ops));
	return (0);
}

int
nngrpc_server_start(nngrpc_server *s, char *err, size_t errlen)
{
	int rv;

	if (s->s_started) {
		snprintf(err, errlen, "server already started");
		return (NNG_EBUSY);
	}
	s->s_started = true;
	nngrpc_admission_init(&s->s_adm, s->s_opts.queue_target_ms * 1000000,
	    s->s_opts.queue_interval_ms * 1000000);
	nngrpc_dispatch_seal(s->s_dispatch);
	if ((rv = open_socket(s, err, errlen)) != 0
	    || (rv = open_contexts(s, err, errlen)) != 0
	    || (rv = start_workers(s, err, errlen)) != 0) {
		return (rv);
	}
	/* Contexts receive before anything listens: the first call finds
	 * them waiting. */
	for (size_t i = 0; i < s->s_n_works; i++) {
		ctx_recv(&s->s_works[i]);
	}
	if ((rv = start_listeners(s, err, errlen)) != 0
	    || (rv = start_ops(s, err, errlen)) != 0) {
		return (rv);
	}
	if ((rv = nngrpc_conns_start(s->s_conns)) != 0) {
		return (start_fail(s, rv, err, errlen, "connections",
		    "cannot start a thread"));
	}
	return (0);
}

/* Waits on s_idle_cv with s_mtx held, 10 ms at most, so deadlines are
 * checked even without a wakeup. */
static void
idle_wait(nngrpc_server *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 10 * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&s->s_idle_cv, &s->s_mtx, &ts);
}

/* Nothing queued, running or being sent. With s_mtx held. */
static bool
answered_all_locked(const nngrpc_server *s)
{
	return (s->s_q_len == 0 && s->s_running == 0 && s->s_sending == 0);
}

/* Waits until nothing is queued, running or being sent: 0, or
 * NNG_ETIMEDOUT at until (CLOCK_MONOTONIC ns). */
static int
wait_answered(nngrpc_server *s, int64_t until)
{
	int rv = 0;

	pthread_mutex_lock(&s->s_mtx);
	while (!answered_all_locked(s)) {
		if (nngrpc_now_ns() >= until) {
			rv = NNG_ETIMEDOUT;
			break;
		}
		idle_wait(s);
	}
	pthread_mutex_unlock(&s->s_mtx);
	return (rv);
}

int
nngrpc_server_drain(nngrpc_server *s, int64_t timeout_ms)
{
	int64_t until = nngrpc_now_ns() + timeout_ms * 1000000;

	atomic_store(&s->s_draining, true);
	nngrpc_server_set_serving(s, NULL, false);
	for (;;) {
		/* First the calls received, then the clients' connections
		 * (calls that come meanwhile are answered at once). */
		if (wait_answered(s, until + DRAIN_GRACE_NS) != 0) {
			return (NNG_ETIMEDOUT);
		}
		if (nngrpc_conns_quiet(s->s_conns, DRAIN_QUIET_NS)) {
			return (0);
		}
		if (nngrpc_now_ns() >= until) {
			return (NNG_EBUSY);
		}
		struct timespec ts = { 0, 10 * 1000000 };
		nanosleep(&ts, NULL);
	}
}

void
nngrpc_server_stop(nngrpc_server *s)
{
	int64_t until;

	pthread_mutex_lock(&s->s_mtx);
	if (s->s_stopping) {
		pthread_mutex_unlock(&s->s_mtx);
		return;
	}
	s->s_stopping = true;
	atomic_store(&s->s_draining, true);
	pthread_cond_broadcast(&s->s_cv);
	pthread_cond_broadcast(&s->s_adm_cv);
	pthread_mutex_unlock(&s->s_mtx);
	if (s->s_adm_started) {
		pthread_join(s->s_adm_thread, NULL);
		s->s_adm_started = false;
	}

	/* Listeners stay open until the end: closing one closes its pipes,
	 * and replies still to come would be lost. Meanwhile new calls are
	 * answered UNAVAILABLE. Workers drain the queue, then return. */
	for (size_t i = 0; i < s->s_n_workers; i++) {
		pthread_join(s->s_workers[i], NULL);
	}
	s->s_n_workers = 0;

	/* Let replies already handed to NNG go out, but not forever: a peer
	 * that stopped reading must not hold the process. */
	until = nngrpc_now_ns() + STOP_SEND_WAIT_NS;
	pthread_mutex_lock(&s->s_mtx);
	while (s->s_sending > 0 && nngrpc_now_ns() < until) {
		idle_wait(s);
	}
	pthread_mutex_unlock(&s->s_mtx);

	nngrpc_ops_stop(s->s_ops);
	s->s_ops = NULL;
	nngrpc_conns_stop(s->s_conns);
	if (s->s_sock_open) {
		/* Closes listeners, pipes and contexts; receives abort and
		 * their callbacks go idle. */
		nng_close(s->s_sock);
		s->s_sock_open = false;
		s->s_n_listeners = 0;
	}
	for (size_t i = 0; i < s->s_n_works; i++) {
		work *w = &s->s_works[i];
		nng_aio_free(w->w_aio); /* waits for its callback */
		w->w_aio = NULL;
		if (w->w_msg != NULL) {
			nng_msg_free(w->w_msg);
			w->w_msg = NULL;
		}
	}
	s->s_n_works = 0;
}

void
nngrpc_server_close(nngrpc_server *s)
{
	if (s == NULL) {
		return;
	}
	if (s->s_started) {
		nngrpc_server_stop(s);
	}
	pthread_mutex_destroy(&s->s_mtx);
	pthread_cond_destroy(&s->s_cv);
	pthread_cond_destroy(&s->s_idle_cv);
	pthread_cond_destroy(&s->s_adm_cv);
	nngrpc_tls_free(s->s_tls); /* after the listeners */
	free(s->s_works);
	free(s->s_workers);
	free(s->s_queue);
	nngrpc_conns_free(s->s_conns); /* after the socket: no callback */
	nngrpc_dispatch_free(s->s_dispatch);
	nngrpc_auth_free(s->s_auth);
	nngrpc_metrics_free(s->s_metrics);
	free(s->s_http);
	for (size_t i = 0; i < NNGRPC_MAX_LISTEN; i++) {
		free(s->s_urls[i]);
	}
	free(s);
}
