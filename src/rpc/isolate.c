/*
 * Process isolation, the front end (isolate.h).
 *
 * DESIGN
 * ------
 * The pool is a list of idle workers, each with its socket, pid,
 * generation and resident memory at birth. A call takes one of the
 * current generation, or waits (until its deadline) for one to come back
 * or to be forked. Replacements are asked of the zygote without waiting:
 * its answer (ISO_SPAWNED, with the socket) reaches the supervisor
 * thread, which puts the worker in the pool. So the call that lost its
 * worker is answered at once, and the others go on with the rest.
 *
 * Waiting for a reply is a poll() on the worker's socket, in slices of
 * WATCH_MS while a memory limit is set (each slice reads the worker's
 * resident pages from /proc/PID/statm) or the call can be cancelled
 * (each slice looks at its flag), and otherwise in one wait until the
 * deadline plus the grace. A crashing worker writes an ISO_CRASH frame
 * from its signal handler before it dies; a worker that dies without one
 * (killed from outside) is an end of file.
 *
 * A cancelled call (its client gave up: nngrpc_call_cancelled()) is
 * passed on to its worker as an ISO_CANCEL frame, where the handler's
 * nngrpc_call_cancelled() sees it; a worker that has not answered within
 * the grace after that is killed and replaced, as one past its deadline
 * is, and the call is answered CANCELLED. A reload runs in the zygote,
 * which is not killed: its cancel is a flag in a page shared with the
 * zygote (i_reload_cancel, zygote.h), which the reload's handler sees
 * through nngrpc_call_cancelled() and stops on, keeping the old state.
 */
#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "call.h"
#include "crash.h"
#include "isoproto.h"
#include "log.h"
#include "zygote.h"

#define WATCH_MS        10
#define POISON_SLOTS    256
#define CRASH_SLOTS     64
#define NAME_BYTES      128
#define PATH_BYTES      1024
#define REPLACE_PENDING 4096
/* How long /metrics waits for the zygote's gauges (it may be reloading). */
#define GAUGE_WAIT_MS 200

/* The reload's cancel flag is shared by two processes: only a lock-free
 * atomic works there. */
_Static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "atomic_bool is lock-free");

typedef struct iso_worker {
	struct iso_worker *w_next;
	pid_t              w_pid;
	int                w_fd;
	int64_t            w_gen;
	long               w_rss_base; /* resident pages when it joined */
} iso_worker;

typedef struct poison_slot {
	uint64_t p_hash;
	int      p_crashes;
	int64_t  p_first_ns;
} poison_slot;

typedef struct crash_count {
	char     c_method[NAME_BYTES];
	char     c_signal[24];
	uint64_t c_n;
} crash_count;

/* What happened to a call handed to a worker. */
typedef enum {
	OUT_REPLY,
	OUT_CRASH,
	OUT_GONE,
	OUT_HUNG,
	OUT_MEMORY,
	OUT_CANCELLED, /* did not stop within the grace after a cancel */
} outcome;

struct nngrpc_isolate {
	nngrpc_isolate_config i_cfg;
	int                   i_ctl;
	pid_t                 i_zygote;
	pthread_t             i_super;
	bool                  i_super_started;
	long                  i_page;

	pthread_mutex_t i_ctl_mtx;
	pthread_mutex_t i_reload_mtx;
	pthread_mutex_t i_mtx;
	pthread_cond_t  i_cv;
	iso_worker     *i_idle;    /* guarded by i_mtx */
	int             i_alive;   /* workers in the pool or running; i_mtx */
	int64_t         i_gen;     /* the current generation; i_mtx */
	bool            i_gone;    /* the zygote is; i_mtx */
	bool            i_closing; /* nngrpc_isolate_free() ends it; i_mtx */
	bool            i_loaded;  /* ISO_LOADED came; i_mtx */
	int             i_load_code;
	char            i_load_err[512];
	bool            i_reloaded; /* an ISO_RELOADED came; i_mtx */
	/* Shared with the zygote: the running reload's caller gave up
	 * (zygote.h); written under i_reload_mtx. */
	atomic_bool *i_reload_cancel;
	iso_frame    i_reload_frame;
	uint8_t     *i_reload_body;
	/* When replacements were asked, oldest first (a ring); i_mtx. */
	int64_t  i_pending[REPLACE_PENDING];
	size_t   i_pending_head, i_pending_n;
	double   i_replace_sum_s, i_replace_max_s;
	uint64_t i_replaced;
	uint64_t i_spawned, i_kills_deadline, i_kills_memory, i_refused;
	uint64_t i_kills_cancel, i_cancels; /* cancels passed on */
	/* The service's gauges, as the zygote last read them; i_mtx. */
	pthread_mutex_t i_gauge_mtx; /* one /metrics read at a time */
	int64_t         i_gauge_seq; /* the read waited for; i_mtx */
	bool            i_gauge_fresh;
	double          i_gauges[NNGRPC_METRICS_MAX_FNS];
	size_t          i_n_gauges;
	poison_slot     i_poison[POISON_SLOTS];
	crash_count     i_crashes[CRASH_SLOTS];
	size_t          i_n_crashes;
};

/* ---- the pool ------------------------------------------------------------
 */

static long
resident_pages(pid_t pid)
{
	char    path[64], buf[128];
	long    size = 0, resident = -1;
	int     fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int) pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		return (-1);
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		return (-1);
	}
	buf[n] = '\0';
	if (sscanf(buf, "%ld %ld", &size, &resident) != 2) {
		return (-1);
	}
	return (resident);
}

/* Closes a worker's socket, which ends it; with i_mtx held or not. */
static void
retire(iso_worker *w)
{
	close(w->w_fd);
	free(w);
}

/* Asks the zygote for a replacement (not waiting for it). */
static void
ask_replacement(nngrpc_isolate *iso)
{
	pthread_mutex_lock(&iso->i_mtx);
	if (iso->i_pending_n < REPLACE_PENDING) {
		iso->i_pending[(iso->i_pending_head + iso->i_pending_n++)
		    % REPLACE_PENDING]
		    = nngrpc_now_ns();
	}
	pthread_mutex_unlock(&iso->i_mtx);
	pthread_mutex_lock(&iso->i_ctl_mtx);
	if (iso_send(iso->i_ctl, ISO_SPAWN, 0, 0, NULL, 0) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR,
		    "isolation: cannot ask the zygote for a worker");
	}
	pthread_mutex_unlock(&iso->i_ctl_mtx);
}

/* A worker that will not come back (dead or killed): replaced when it
 * was of the current generation. */
static void
lost(nngrpc_isolate *iso, iso_worker *w)
{
	bool current;

	pthread_mutex_lock(&iso->i_mtx);
	iso->i_alive--;
	current = w->w_gen == iso->i_gen;
	pthread_mutex_unlock(&iso->i_mtx);
	retire(w);
	if (current) {
		ask_replacement(iso);
	}
}

/* A worker back from a call: to the pool, or out when a newer generation
 * is serving. */
static void
give_back(nngrpc_isolate *iso, iso_worker *w)
{
	pthread_mutex_lock(&iso->i_mtx);
	if (w->w_gen == iso->i_gen) {
		w->w_next = iso->i_idle;
		iso->i_idle = w;
		pthread_cond_signal(&iso->i_cv);
		w = NULL;
	} else {
		iso->i_alive--;
	}
	pthread_mutex_unlock(&iso->i_mtx);
	if (w != NULL) {
		retire(w);
	}
}

/* Ends the idle workers of older generations; with i_mtx held. Busy ones
 * leave as their calls end (give_back()). */
static void
retire_older(nngrpc_isolate *iso)
{
	iso_worker **pp = &iso->i_idle;

	while (*pp != NULL) {
		iso_worker *x = *pp;
		if (x->w_gen < iso->i_gen) {
			*pp = x->w_next;
			iso->i_alive--;
			retire(x);
		} else {
			pp = &x->w_next;
		}
	}
}

/* Takes an idle worker of the current generation, retiring older ones on
 * the way; waits for one until deadline. NULL with the call's error set
 * when none comes. */
static iso_worker *
take(nngrpc_isolate *iso, nngrpc_call *call, nngrpc_status *stp)
{
	int64_t     deadline = nngrpc_call_deadline(call);
	iso_worker *w = NULL;

	pthread_mutex_lock(&iso->i_mtx);
	for (;;) {
		iso_worker **pp = &iso->i_idle;
		while (*pp != NULL && w == NULL) {
			iso_worker *x = *pp;
			if (x->w_gen == iso->i_gen) {
				*pp = x->w_next;
				w = x;
			} else if (x->w_gen < iso->i_gen) {
				*pp = x->w_next;
				iso->i_alive--;
				retire(x);
			} else {
				pp = &x->w_next;
			}
		}
		if (w != NULL || iso->i_gone || nngrpc_now_ns() >= deadline) {
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&iso->i_cv, &iso->i_mtx, &ts);
	}
	pthread_mutex_unlock(&iso->i_mtx);
	if (w == NULL) {
		*stp = iso->i_gone
		    ? nngrpc_call_error(call, NNGRPC_UNAVAILABLE,
		        "no worker process: the zygote is gone")
		    : nngrpc_call_error(call, NNGRPC_DEADLINE_EXCEEDED,
		        "deadline exceeded waiting for a worker process");
	}
	return (w);
}

/* ---- the supervisor thread: the zygote's answers -------------------- */

static void
on_spawned(nngrpc_isolate *iso, const iso_frame *f, int fd)
{
	iso_worker *w = calloc(1, sizeof(*w));
	int64_t     now = nngrpc_now_ns();

	if (w == NULL || fd < 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "isolation: lost a new worker");
		free(w);
		if (fd >= 0) {
			close(fd);
		}
		return;
	}
	w->w_pid = (pid_t) f->f_a;
	w->w_fd = fd;
	w->w_gen = f->f_b;
	w->w_rss_base = resident_pages(w->w_pid);
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_alive++;
	iso->i_spawned++;
	if (w->w_gen == iso->i_gen && iso->i_pending_n > 0) {
		double s = (double) (now - iso->i_pending[iso->i_pending_head])
		    / 1e9;
		iso->i_pending_head
		    = (iso->i_pending_head + 1) % REPLACE_PENDING;
		iso->i_pending_n--;
		iso->i_replace_sum_s += s;
		iso->i_replaced++;
		if (s > iso->i_replace_max_s) {
			iso->i_replace_max_s = s;
		}
	}
	w->w_next = iso->i_idle;
	iso->i_idle = w;
	pthread_cond_broadcast(&iso->i_cv);
	pthread_mutex_unlock(&iso->i_mtx);
}

/* One frame from the zygote; false when the zygote is gone. */
static bool
supervise_one(nngrpc_isolate *iso)
{
	iso_frame f;
	uint8_t  *body;
	int       fd, rv;

	if ((rv = iso_recv_header(iso->i_ctl, &f, &fd)) != 0) {
		return (false);
	}
	if (f.f_kind == ISO_SPAWNED) {
		on_spawned(iso, &f, fd);
		return (true);
	}
	if ((body = iso_recv_body(iso->i_ctl, f.f_len, &rv)) == NULL) {
		return (false);
	}
	pthread_mutex_lock(&iso->i_mtx);
	if (f.f_kind == ISO_LOADED) {
		iso->i_loaded = true;
		iso->i_load_code = (int) f.f_a;
		snprintf(iso->i_load_err, sizeof(iso->i_load_err), "%.*s",
		    (int) f.f_len, (const char *) body);
	} else if (f.f_kind == ISO_RELOADED) {
		iso->i_reloaded = true;
		iso->i_reload_frame = f;
		iso->i_reload_body = body;
		body = NULL;
		if (f.f_a == NNGRPC_OK) {
			iso->i_gen = f.f_b; /* new calls go to the new ones */
			retire_older(iso);
		}
	} else if (f.f_kind == ISO_GAUGE_VALUES && f.f_a == iso->i_gauge_seq) {
		iso->i_n_gauges = f.f_len / sizeof(double);
		if (iso->i_n_gauges > NNGRPC_METRICS_MAX_FNS) {
			iso->i_n_gauges = NNGRPC_METRICS_MAX_FNS;
		}
		memcpy(iso->i_gauges, body, iso->i_n_gauges * sizeof(double));
		iso->i_gauge_fresh = true;
	} else if (f.f_kind == ISO_SPAWN_FAILED) {
		nngrpc_log(NNGRPC_LOG_ERROR,
		    "isolation: the zygote cannot fork a worker: %s",
		    strerror((int) f.f_a));
		if (iso->i_pending_n > 0) {
			iso->i_pending_head
			    = (iso->i_pending_head + 1) % REPLACE_PENDING;
			iso->i_pending_n--;
		}
	}
	pthread_cond_broadcast(&iso->i_cv);
	pthread_mutex_unlock(&iso->i_mtx);
	free(body);
	return (true);
}

static void *
supervise(void *arg)
{
	nngrpc_isolate *iso = arg;

	bool closing;

	while (supervise_one(iso)) { }
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_gone = true;
	closing = iso->i_closing;
	pthread_cond_broadcast(&iso->i_cv);
	pthread_mutex_unlock(&iso->i_mtx);
	if (!closing) {
		/* No replacement will ever come: let the process end (the
		 * serve helper drains on SIGTERM), so that its orchestrator
		 * starts a whole one. */
		nngrpc_log(NNGRPC_LOG_ERROR,
		    "isolation: the zygote (pid %d) is gone: draining and "
		    "exiting",
		    (int) iso->i_zygote);
		kill(getpid(), SIGTERM);
	}
	return (NULL);
}

bool
nngrpc_isolate_lost(nngrpc_isolate *iso)
{
	bool lost;

	if (iso == NULL) {
		return (false);
	}
	pthread_mutex_lock(&iso->i_mtx);
	lost = iso->i_gone && !iso->i_closing;
	pthread_mutex_unlock(&iso->i_mtx);
	return (lost);
}

/* ---- the life of the pool ------------------------------------------- */

int
nngrpc_isolate_alloc(const nngrpc_isolate_config *cfg, nngrpc_isolate **isop)
{
	nngrpc_isolate *iso = calloc(1, sizeof(*iso));

	if (iso == NULL) {
		return (ENOMEM);
	}
	iso->i_cfg = *cfg;
	iso->i_ctl = -1;
	iso->i_gen = 1;
	iso->i_page = sysconf(_SC_PAGESIZE);
	pthread_mutex_init(&iso->i_mtx, NULL);
	pthread_mutex_init(&iso->i_ctl_mtx, NULL);
	pthread_mutex_init(&iso->i_reload_mtx, NULL);
	pthread_mutex_init(&iso->i_gauge_mtx, NULL);
	pthread_cond_init(&iso->i_cv, NULL);
	*isop = iso;
	return (0);
}

int
nngrpc_isolate_fork(nngrpc_isolate *iso, nngrpc_dispatch *d, nngrpc_metrics *m,
    int (*load)(void *, char *, size_t), void *load_arg)
{
	/* Static: the zygote reads it after the fork, in its own copy. */
	static zygote_spec spec;
	void *page = mmap(NULL, sizeof(atomic_bool), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED) {
		return (errno);
	}
	iso->i_reload_cancel = page;
	atomic_init(iso->i_reload_cancel, false);
	spec = (zygote_spec) { .dispatch = d,
		.load = load,
		.load_arg = load_arg,
		.workers = iso->i_cfg.workers,
		.sandbox = iso->i_cfg.sandbox,
		.metrics = m,
		.reload_cancel = iso->i_reload_cancel };
	return (zygote_fork(&spec, &iso->i_ctl, &iso->i_zygote));
}

int
nngrpc_isolate_load(nngrpc_isolate *iso, char *err, size_t errlen)
{
	sigset_t all, old;
	int      rv;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&iso->i_super, NULL, supervise, iso);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		snprintf(err, errlen, "isolation: cannot start a thread");
		return (1);
	}
	pthread_setname_np(iso->i_super, "nngrpc-zygote");
	iso->i_super_started = true;
	pthread_mutex_lock(&iso->i_ctl_mtx);
	rv = iso_send(iso->i_ctl, ISO_LOAD, 0, 0, NULL, 0);
	pthread_mutex_unlock(&iso->i_ctl_mtx);
	pthread_mutex_lock(&iso->i_mtx);
	while (rv == 0 && !iso->i_loaded && !iso->i_gone) {
		pthread_cond_wait(&iso->i_cv, &iso->i_mtx);
	}
	if (rv != 0 || !iso->i_loaded) {
		snprintf(err, errlen, "isolation: the zygote died loading");
		rv = 1;
	} else if ((rv = iso->i_load_code) != 0) {
		snprintf(err, errlen, "%s", iso->i_load_err);
	}
	pthread_mutex_unlock(&iso->i_mtx);
	return (rv);
}

void
nngrpc_isolate_free(nngrpc_isolate *iso)
{
	if (iso == NULL) {
		return;
	}
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_closing = true;
	pthread_mutex_unlock(&iso->i_mtx);
	if (iso->i_ctl >= 0) {
		shutdown(iso->i_ctl, SHUT_RDWR); /* ends the supervisor too */
	}
	if (iso->i_super_started) {
		pthread_join(iso->i_super, NULL);
	}
	while (iso->i_idle != NULL) {
		iso_worker *w = iso->i_idle;
		iso->i_idle = w->w_next;
		retire(w);
	}
	if (iso->i_ctl >= 0) {
		close(iso->i_ctl);
		waitpid(iso->i_zygote, NULL, 0);
	}
	free(iso->i_reload_body);
	if (iso->i_reload_cancel != NULL) {
		munmap(iso->i_reload_cancel, sizeof(atomic_bool));
	}
	pthread_mutex_destroy(&iso->i_mtx);
	pthread_mutex_destroy(&iso->i_ctl_mtx);
	pthread_mutex_destroy(&iso->i_reload_mtx);
	pthread_mutex_destroy(&iso->i_gauge_mtx);
	pthread_cond_destroy(&iso->i_cv);
	free(iso);
}

/* ---- the poison-pill guard ------------------------------------------ */

/* FNV-1a over the method and the payload. */
static uint64_t
request_hash(const nngrpc_call *call)
{
	uint64_t    h = 0xcbf29ce484222325ULL;
	const char *m = call->c_method;

	for (; *m != '\0'; m++) {
		h = (h ^ (uint8_t) *m) * 0x100000001b3ULL;
	}
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (size_t i = 0; i < call->c_req->payload.len; i++) {
		h = (h ^ call->c_req->payload.data[i]) * 0x100000001b3ULL;
	}
	return (h);
}

/* The slot of hash h, or the one to reuse for it; with i_mtx held. */
static poison_slot *
poison_slot_of(nngrpc_isolate *iso, uint64_t h, int64_t now)
{
	poison_slot *s = &iso->i_poison[h % POISON_SLOTS];

	if (s->p_hash != h
	    || now - s->p_first_ns > iso->i_cfg.poison_window_ns) {
		s->p_hash = h;
		s->p_crashes = 0;
		s->p_first_ns = now;
	}
	return (s);
}

/* True when this request crashed workers often enough to be refused. */
static bool
poisoned(nngrpc_isolate *iso, const nngrpc_call *call)
{
	poison_slot *s;
	uint64_t     h;
	bool         yes;

	if (iso->i_cfg.poison_crashes <= 0) {
		return (false);
	}
	h = request_hash(call);
	pthread_mutex_lock(&iso->i_mtx);
	s = &iso->i_poison[h % POISON_SLOTS];
	yes = s->p_hash == h && s->p_crashes >= iso->i_cfg.poison_crashes
	    && nngrpc_now_ns() - s->p_first_ns <= iso->i_cfg.poison_window_ns;
	iso->i_refused += yes;
	pthread_mutex_unlock(&iso->i_mtx);
	return (yes);
}

/* Counts a crash: by method and signal, and for the guard. */
static void
count_crash(nngrpc_isolate *iso, const nngrpc_call *call, const char *sig)
{
	crash_count *c = NULL;

	pthread_mutex_lock(&iso->i_mtx);
	if (iso->i_cfg.poison_crashes > 0) {
		poison_slot_of(iso, request_hash(call), nngrpc_now_ns())
		    ->p_crashes++;
	}
	for (size_t i = 0; i < iso->i_n_crashes && c == NULL; i++) {
		if (strcmp(iso->i_crashes[i].c_method, call->c_method) == 0
		    && strcmp(iso->i_crashes[i].c_signal, sig) == 0) {
			c = &iso->i_crashes[i];
		}
	}
	if (c == NULL && iso->i_n_crashes < CRASH_SLOTS) {
		c = &iso->i_crashes[iso->i_n_crashes++];
		snprintf(
		    c->c_method, sizeof(c->c_method), "%s", call->c_method);
		snprintf(c->c_signal, sizeof(c->c_signal), "%s", sig);
	}
	if (c != NULL) {
		c->c_n++;
	}
	pthread_mutex_unlock(&iso->i_mtx);
}

/* ---- crash reports ------------------------------------------------------ */

/* Writes the request envelope, without its authorization metadata, into
 * --crash-dir; path receives the file's name. */
static int
save_request(nngrpc_isolate *iso, const nngrpc_call *call, const char *why,
    char *path, size_t pathlen)
{
	Nngrpc__V1__Request                  req = *call->c_req;
	Nngrpc__V1__Request__MetadataEntry **md;
	struct timespec                      ts;
	uint8_t                             *buf;
	size_t                               n = 0, len;
	int                                  fd, rv = 0;

	if ((md = calloc(req.n_metadata + 1, sizeof(*md))) == NULL) {
		return (ENOMEM);
	}
	for (size_t i = 0; i < req.n_metadata; i++) {
		if (strcasecmp(req.metadata[i]->key, "authorization") != 0) {
			md[n++] = req.metadata[i];
		}
	}
	req.metadata = md;
	req.n_metadata = n;
	len = nngrpc__v1__request__get_packed_size(&req);
	if ((buf = malloc(len + 1)) == NULL) {
		free(md);
		return (ENOMEM);
	}
	nngrpc__v1__request__pack(&req, buf);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(path, pathlen, "%s/crash-%lld%03ld-%d-%s.nngrpc-request",
	    iso->i_cfg.crash_dir, (long long) ts.tv_sec, ts.tv_nsec / 1000000,
	    (int) getpid(), why);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t) len) {
		rv = errno != 0 ? errno : EIO;
	}
	if (fd >= 0) {
		close(fd);
	}
	free(buf);
	free(md);
	return (rv);
}

/* The log line of a lost call, and its report file. */
static void
report(nngrpc_isolate *iso, const nngrpc_call *call, pid_t pid,
    const char *why, const char *status_message)
{
	char path[PATH_BYTES];
	int  rv;

	nngrpc_log(
	    NNGRPC_LOG_ERROR, "worker %d: %s", (int) pid, status_message);
	if (iso->i_cfg.crash_dir == NULL) {
		return;
	}
	if ((rv = save_request(iso, call, why, path, sizeof(path))) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR,
		    "crash report: cannot write in %s: %s",
		    iso->i_cfg.crash_dir, strerror(rv));
		return;
	}
	nngrpc_log(NNGRPC_LOG_ERROR,
	    "crash report: %s (run it again: %s --replay %s)", path,
	    iso->i_cfg.program != NULL ? iso->i_cfg.program : "SERVER", path);
}

/* ---- one call ------------------------------------------------------------
 */

/* Sends a call frame: a = the time the deadline counts from, so that
 * the other end (CLOCK_MONOTONIC is the host's) finds the same one. */
static int
send_call(const nngrpc_call *call, uint32_t method, uint32_t kind, int fd,
    const uint8_t *body, size_t len)
{
	int64_t      deadline = nngrpc_call_deadline(call);
	const char  *rid = nngrpc_call_request_id(call);
	const char  *peer = call->c_peer != NULL ? call->c_peer : "unknown";
	size_t       ml = strlen(call->c_method) + 1, rl = strlen(rid) + 1;
	uint32_t     meta_len = (uint32_t) (ml + rl + strlen(peer) + 1);
	struct iovec v[5] = {
		{ &meta_len, 4 },
		{ (void *) call->c_method, ml },
		{ (void *) rid, rl },
		{ (void *) peer, strlen(peer) + 1 },
		{ (void *) body, len },
	};

	return (iso_send(fd, kind,
	    deadline == NNGRPC_NO_DEADLINE
	        ? nngrpc_now_ns()
	        : deadline - (int64_t) call->c_req->timeout_us * 1000,
	    method, v, 5));
}

/* True when w should be killed now (past kill_at, or over the memory
 * limit); *op says why. */
static bool
must_kill(nngrpc_isolate *iso, iso_worker *w, int64_t kill_at, outcome why,
    outcome *op)
{
	if (kill_at != NNGRPC_NO_DEADLINE && nngrpc_now_ns() >= kill_at) {
		*op = why;
		return (true);
	}
	if (iso->i_cfg.memory_limit > 0 && w->w_rss_base >= 0) {
		long rss = resident_pages(w->w_pid);
		if (rss > w->w_rss_base
		    && (uint64_t) (rss - w->w_rss_base)
		            * (uint64_t) iso->i_page
		        > iso->i_cfg.memory_limit) {
			*op = OUT_MEMORY;
			return (true);
		}
	}
	return (false);
}

/* Passes a cancel on to w (once): from now on the worker has the grace
 * to answer, unless its deadline's grace ends sooner. Moves *kill_atp
 * and *whyp when the cancel's does. */
static void
pass_cancel(
    nngrpc_isolate *iso, iso_worker *w, int64_t *kill_atp, outcome *whyp)
{
	int64_t until = nngrpc_now_ns() + iso->i_cfg.grace_ns;

	/* A worker gone already shows as an end of file in the next poll. */
	(void) iso_send(w->w_fd, ISO_CANCEL, 0, 0, NULL, 0);
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_cancels++;
	pthread_mutex_unlock(&iso->i_mtx);
	if (*kill_atp == NNGRPC_NO_DEADLINE || until < *kill_atp) {
		*kill_atp = until;
		*whyp = OUT_CANCELLED;
	}
}

/* Waits for w's answer to the call; the reply or crash note goes to *f
 * and *bodyp (new, freed by the caller). */
static outcome
await_answer(nngrpc_isolate *iso, iso_worker *w, const nngrpc_call *call,
    iso_frame *f, uint8_t **bodyp)
{
	int64_t deadline = nngrpc_call_deadline(call);
	int64_t kill_at = deadline == NNGRPC_NO_DEADLINE
	    ? NNGRPC_NO_DEADLINE
	    : deadline + iso->i_cfg.grace_ns;
	bool    watch = iso->i_cfg.memory_limit > 0 || call->c_cancel != NULL;
	bool    cancelled = false;
	outcome why = OUT_HUNG, o;
	int     rv;

	for (;;) {
		struct pollfd p = { w->w_fd, POLLIN, 0 };
		int64_t       now = nngrpc_now_ns();
		int64_t       wait_ms = kill_at == NNGRPC_NO_DEADLINE
		          ? -1
		          : (kill_at - now) / 1000000 + 1;
		if (watch && (wait_ms < 0 || wait_ms > WATCH_MS)) {
			wait_ms = WATCH_MS;
		}
		if (poll(&p, 1, (int) wait_ms) > 0) {
			break;
		}
		if (!cancelled && call->c_cancel != NULL
		    && atomic_load(call->c_cancel)) {
			pass_cancel(iso, w, &kill_at, &why);
			cancelled = true;
		}
		if (must_kill(iso, w, kill_at, why, &o)) {
			kill(w->w_pid, SIGKILL);
			return (o);
		}
	}
	if (iso_recv_header(w->w_fd, f, NULL) != 0
	    || (*bodyp = iso_recv_body(w->w_fd, f->f_len, &rv)) == NULL) {
		return (OUT_GONE);
	}
	return (f->f_kind == ISO_CRASH ? OUT_CRASH : OUT_REPLY);
}

/* The status of a call whose worker was lost, with its message. */
static nngrpc_status
fail_lost(nngrpc_isolate *iso, iso_worker *w, nngrpc_call *call, outcome o,
    const iso_frame *f, const uint8_t *note_buf)
{
	const char    *rid = nngrpc_call_request_id(call);
	char           sigbuf[24], what[96] = "";
	const char    *sig = "none";
	iso_crash_note note = { 0 };
	nngrpc_status  st;

	if (o == OUT_CRASH && f->f_len >= sizeof(note)) {
		memcpy(&note, note_buf, sizeof(note));
	}
	if (o == OUT_CRASH) {
		sig = crash_signal_name((int) f->f_a, sigbuf, sizeof(sigbuf));
		if (note.n_stack_overflow) {
			snprintf(what, sizeof(what), " (stack overflow)");
		} else if (f->f_a == SIGSYS) {
			snprintf(what, sizeof(what), " (forbidden syscall %d)",
			    (int) note.n_syscall);
		}
	}
	switch (o) {
	case OUT_HUNG:
		st = nngrpc_call_error(call, NNGRPC_DEADLINE_EXCEEDED,
		    "%s ran %.3g s past its deadline: its worker process was "
		    "killed (request id %s)",
		    call->c_method, (double) iso->i_cfg.grace_ns / 1e9,
		    rid[0] ? rid : "none");
		break;
	case OUT_CANCELLED:
		st = nngrpc_call_error(call, NNGRPC_CANCELLED,
		    "%s was cancelled and did not stop within %.3g s: its "
		    "worker process was killed (request id %s)",
		    call->c_method, (double) iso->i_cfg.grace_ns / 1e9,
		    rid[0] ? rid : "none");
		break;
	case OUT_MEMORY:
		st = nngrpc_call_error(call, NNGRPC_RESOURCE_EXHAUSTED,
		    "%s: its worker process went over the memory limit "
		    "(--worker-memory-mb %" PRIu64 ") and was killed (request "
		    "id %s)",
		    call->c_method, iso->i_cfg.memory_limit >> 20,
		    rid[0] ? rid : "none");
		break;
	default:
		st = nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "worker process crashed: %s%s running %s (request id %s); "
		    "the call was not retried",
		    o == OUT_CRASH ? sig : "died without a report", what,
		    call->c_method, rid[0] ? rid : "none");
		break;
	}
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_kills_deadline += o == OUT_HUNG;
	iso->i_kills_memory += o == OUT_MEMORY;
	iso->i_kills_cancel += o == OUT_CANCELLED;
	pthread_mutex_unlock(&iso->i_mtx);
	if (o == OUT_CRASH || o == OUT_GONE) {
		count_crash(iso, call, o == OUT_CRASH ? sig : "unknown");
	}
	report(iso, call, w->w_pid,
	    o == OUT_HUNG            ? "deadline"
	        : o == OUT_CANCELLED ? "cancel"
	        : o == OUT_MEMORY    ? "memory"
	        : o == OUT_CRASH     ? sig
	                             : "died",
	    nngrpc_call_message(call));
	return (st);
}

/* Waits (i_mtx held) for the zygote's answer to the reload, in slices of
 * WATCH_MS when the call can be cancelled: a cancel sets the flag the
 * zygote's reload looks at (once), and is counted. */
static void
await_reload(nngrpc_isolate *iso, const nngrpc_call *call)
{
	bool passed = false;

	while (!iso->i_reloaded && !iso->i_gone) {
		struct timespec ts;

		if (call->c_cancel == NULL) {
			pthread_cond_wait(&iso->i_cv, &iso->i_mtx);
			continue;
		}
		if (!passed && atomic_load(call->c_cancel)) {
			atomic_store(iso->i_reload_cancel, true);
			iso->i_cancels++;
			passed = true;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WATCH_MS * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&iso->i_cv, &iso->i_mtx, &ts);
	}
}

/* A reload method: run by the zygote, one at a time. */
static nngrpc_status
run_reload(nngrpc_isolate *iso, nngrpc_call *call, uint32_t method,
    const uint8_t *body, size_t len, ProtobufCBinaryData *payload)
{
	nngrpc_status st;
	int           rv;

	pthread_mutex_lock(&iso->i_reload_mtx);
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_reloaded = false;
	pthread_mutex_unlock(&iso->i_mtx);
	/* Not the last reload's cancel, which may have come after its
	 * answer. */
	atomic_store(iso->i_reload_cancel, false);
	pthread_mutex_lock(&iso->i_ctl_mtx);
	rv = send_call(call, method, ISO_RELOAD, iso->i_ctl, body, len);
	pthread_mutex_unlock(&iso->i_ctl_mtx);
	pthread_mutex_lock(&iso->i_mtx);
	if (rv == 0) {
		await_reload(iso, call);
	}
	if (rv != 0 || !iso->i_reloaded) {
		st = nngrpc_call_error(call, NNGRPC_UNAVAILABLE,
		    "the zygote is gone: cannot reload");
	} else {
		st = (nngrpc_status) iso->i_reload_frame.f_a;
		if (!iso_parse_reply(call, st, iso->i_reload_body,
		        iso->i_reload_frame.f_len, payload)) {
			st = nngrpc_call_error(call, NNGRPC_INTERNAL,
			    "a reload answer that does not parse");
		}
		free(iso->i_reload_body);
		iso->i_reload_body = NULL;
	}
	pthread_mutex_unlock(&iso->i_mtx);
	pthread_mutex_unlock(&iso->i_reload_mtx);
	return (st);
}

nngrpc_status
nngrpc_isolate_runner(void *arg, nngrpc_call *call, uint32_t method,
    bool reload, const uint8_t *body, size_t len, ProtobufCBinaryData *payload)
{
	nngrpc_isolate *iso = arg;
	iso_worker     *w;
	iso_frame       f = { 0 };
	uint8_t        *answer = NULL;
	nngrpc_status   st;
	outcome         o;

	if (poisoned(iso, call)) {
		return (nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "not run: this request crashed worker processes %d times "
		    "within %g s (poison-pill guard)",
		    iso->i_cfg.poison_crashes,
		    (double) iso->i_cfg.poison_window_ns / 1e9));
	}
	(void) nngrpc_call_peer(
	    call); /* formatted here: workers have no NNG */
	if (reload) {
		return (run_reload(iso, call, method, body, len, payload));
	}
	if ((w = take(iso, call, &st)) == NULL) {
		return (st);
	}
	o = send_call(call, method, ISO_CALL, w->w_fd, body, len) != 0
	    ? OUT_GONE
	    : await_answer(iso, w, call, &f, &answer);
	if (o == OUT_REPLY) {
		st = (nngrpc_status) f.f_a;
		if (!iso_parse_reply(
		        call, (int32_t) st, answer, f.f_len, payload)) {
			st = nngrpc_call_error(call, NNGRPC_INTERNAL,
			    "a worker answer that does not parse");
		}
		give_back(iso, w);
	} else {
		st = fail_lost(iso, w, call, o, &f, answer);
		lost(iso, w);
	}
	free(answer);
	return (st);
}

/* ---- metrics --------------------------------------------------------------
 */

static char *
render(void *arg)
{
	nngrpc_isolate *iso = arg;
	char           *text = NULL;
	size_t          len = 0;
	FILE           *f = open_memstream(&text, &len);

	if (f == NULL) {
		return (NULL);
	}
	pthread_mutex_lock(&iso->i_mtx);
	fprintf(f,
	    "# HELP nngrpc_worker_crashes_total Worker processes that died "
	    "running a call, by method and signal.\n"
	    "# TYPE nngrpc_worker_crashes_total counter\n");
	for (size_t i = 0; i < iso->i_n_crashes; i++) {
		fprintf(f,
		    "nngrpc_worker_crashes_total{method=\"%s\",signal=\"%s\"} "
		    "%" PRIu64 "\n",
		    iso->i_crashes[i].c_method, iso->i_crashes[i].c_signal,
		    iso->i_crashes[i].c_n);
	}
	fprintf(f,
	    "# HELP nngrpc_worker_kills_total Worker processes killed by the "
	    "front end, by reason.\n"
	    "# TYPE nngrpc_worker_kills_total counter\n"
	    "nngrpc_worker_kills_total{reason=\"deadline\"} %" PRIu64 "\n"
	    "nngrpc_worker_kills_total{reason=\"memory\"} %" PRIu64 "\n"
	    "nngrpc_worker_kills_total{reason=\"cancel\"} %" PRIu64 "\n"
	    "# HELP nngrpc_worker_cancels_total Cancels passed on to the "
	    "worker process running the call (the zygote for a reload).\n"
	    "# TYPE nngrpc_worker_cancels_total counter\n"
	    "nngrpc_worker_cancels_total %" PRIu64 "\n",
	    iso->i_kills_deadline, iso->i_kills_memory, iso->i_kills_cancel,
	    iso->i_cancels);
	fprintf(f,
	    "# HELP nngrpc_worker_spawns_total Worker processes forked.\n"
	    "# TYPE nngrpc_worker_spawns_total counter\n"
	    "nngrpc_worker_spawns_total %" PRIu64 "\n"
	    "# HELP nngrpc_worker_processes Worker processes alive.\n"
	    "# TYPE nngrpc_worker_processes gauge\n"
	    "nngrpc_worker_processes %d\n"
	    "# HELP nngrpc_poison_pill_refusals_total Calls answered without "
	    "running because their request kept crashing workers.\n"
	    "# TYPE nngrpc_poison_pill_refusals_total counter\n"
	    "nngrpc_poison_pill_refusals_total %" PRIu64 "\n"
	    "# HELP nngrpc_worker_replace_seconds Time from a lost worker to "
	    "its replacement in the pool.\n"
	    "# TYPE nngrpc_worker_replace_seconds summary\n"
	    "nngrpc_worker_replace_seconds_sum %.6f\n"
	    "nngrpc_worker_replace_seconds_count %" PRIu64 "\n"
	    "# HELP nngrpc_worker_replace_seconds_max The longest "
	    "replacement.\n"
	    "# TYPE nngrpc_worker_replace_seconds_max gauge\n"
	    "nngrpc_worker_replace_seconds_max %.6f\n",
	    iso->i_spawned, iso->i_alive, iso->i_refused, iso->i_replace_sum_s,
	    iso->i_replaced, iso->i_replace_max_s);
	pthread_mutex_unlock(&iso->i_mtx);
	if (fclose(f) != 0) {
		free(text);
		return (NULL);
	}
	return (text);
}

/* The metrics relay: the service's gauges from the zygote; the last ones
 * read when it does not answer in time (a reload), none before the first. */
static bool
relay(void *arg, double *values, size_t n)
{
	nngrpc_isolate *iso = arg;
	int64_t         until = nngrpc_now_ns() + GAUGE_WAIT_MS * 1000000LL;
	bool            have;
	int             rv;

	pthread_mutex_lock(&iso->i_gauge_mtx);
	pthread_mutex_lock(&iso->i_mtx);
	iso->i_gauge_fresh = false;
	iso->i_gauge_seq++;
	pthread_mutex_unlock(&iso->i_mtx);
	pthread_mutex_lock(&iso->i_ctl_mtx);
	rv = iso_send(iso->i_ctl, ISO_GAUGES, iso->i_gauge_seq, 0, NULL, 0);
	pthread_mutex_unlock(&iso->i_ctl_mtx);
	pthread_mutex_lock(&iso->i_mtx);
	while (rv == 0 && !iso->i_gauge_fresh && !iso->i_gone
	    && nngrpc_now_ns() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&iso->i_cv, &iso->i_mtx, &ts);
	}
	have = iso->i_n_gauges >= n;
	if (have) {
		memcpy(values, iso->i_gauges, n * sizeof(double));
	}
	pthread_mutex_unlock(&iso->i_mtx);
	pthread_mutex_unlock(&iso->i_gauge_mtx);
	return (have);
}

int
nngrpc_isolate_add_metrics(nngrpc_isolate *iso, nngrpc_metrics *m)
{
	nngrpc_metrics_set_relay(m, relay, iso);
	return (nngrpc_metrics_add_text(m, render, iso));
}
