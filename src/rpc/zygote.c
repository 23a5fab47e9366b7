/*
 * The zygote and the worker loop (zygote.h).
 *
 * DESIGN
 * ------
 * The zygote waits on its control socket with a short poll timeout and
 * reaps dead workers on every wake-up, so a zombie lives a few tens of
 * milliseconds at most. A worker is a socketpair and a fork: the front
 * end's end goes back over the control socket (SCM_RIGHTS), the worker
 * keeps the other, and the zygote closes both of its copies, so each
 * worker holds its own socket only and sees the front end go away as an
 * end of file.
 */
#include "zygote.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nngrpc/clock.h>

#include "call.h"
#include "crash.h"
#include "isoproto.h"
#include "log.h"
#include "sandbox.h"

#define REAP_EVERY_MS 20
/* Workers the zygote keeps forked ahead, so that a replacement is a
 * message, not a fork: two, for two losses in a row. */
#define SPARES 2
/* Output of a call up to this size packs without a heap allocation. */
#define OUT_INLINE 4096

typedef struct zygote {
	const zygote_spec *z_spec;
	int                z_ctl;
	pid_t              z_pid;
	int64_t            z_generation;
	/* Workers forked ahead, each ready to hand over (z_n_spares). */
	int   z_spare_fd[SPARES];
	pid_t z_spare_pid[SPARES];
	int   z_n_spares;
	bool  z_loaded;       /* spares only after the load step succeeded */
	bool  z_spare_failed; /* a spare's fork failed: none until a request */
} zygote;

/* Dies with the process that forked this one; false when it is gone
 * already. */
static bool
die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	return (getppid() == parent);
}

/* Runs one call frame's bytes (buf, borrowed) into call (initialised by
 * the caller) and out; returns the status. */
static nngrpc_status
exec_call(nngrpc_dispatch *d, const iso_frame *f, const uint8_t *buf,
    nngrpc_call *call, ProtobufCBuffer *out)
{
	const char    *parts[3] = { "", "", "unknown" };
	const char    *meta, *end;
	const uint8_t *body;
	size_t         meta_len, body_len;

	if (!iso_parse_call(buf, f->f_len, &meta, &meta_len, &body, &body_len)
	    || meta_len == 0 || meta[meta_len - 1] != '\0') {
		return (nngrpc_call_error(call, NNGRPC_INTERNAL,
		    "worker: a call frame that does not parse"));
	}
	/* meta: method, request id and peer, each NUL-terminated (the
	 * last byte is a NUL, so strlen() stays inside). */
	end = meta + meta_len;
	for (int i = 0; i < 3 && meta < end; i++) {
		parts[i] = meta;
		meta += strlen(meta) + 1;
	}
	crash_set_call(parts[0], parts[1]);
	call->c_peer = nngrpc_call_strdup(call, parts[2]);
	return (nngrpc_dispatch_invoke(
	    d, call, (uint32_t) f->f_b, body, body_len, f->f_a, out));
}

/* Runs a call and answers it on fd, where a cancel may arrive while it
 * runs (nngrpc_call_cancelled()); what a worker does. */
static int
run_one(nngrpc_dispatch *d, int fd, const iso_frame *f, const uint8_t *buf)
{
	uint8_t               tmp[OUT_INLINE];
	ProtobufCBufferSimple out = PROTOBUF_C_BUFFER_SIMPLE_INIT(tmp);
	nngrpc_call           call;
	nngrpc_status         st;
	int                   rv;

	nngrpc_call_init(&call);
	call.c_cancel_fd = fd;
	st = exec_call(d, f, buf, &call, &out.base);
	rv = iso_send_reply(
	    fd, ISO_REPLY, 0, (int32_t) st, &call, out.data, out.len);
	crash_set_call(NULL, NULL);
	nngrpc_log_set_request_id(NULL);
	PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&out);
	nngrpc_call_fini(&call);
	return (rv);
}

void
zygote_worker_loop(nngrpc_dispatch *d, int fd)
{
	for (;;) {
		iso_frame f;
		uint8_t  *buf;
		int       rv;

		if (iso_recv_header(fd, &f, NULL) != 0) {
			return;
		}
		if (f.f_kind == ISO_CANCEL && f.f_len == 0) {
			continue; /* for a call already answered */
		}
		if (f.f_kind != ISO_CALL
		    || (buf = iso_recv_body(fd, f.f_len, &rv)) == NULL) {
			return;
		}
		rv = run_one(d, fd, &f, buf);
		free(buf);
		if (rv != 0) {
			return;
		}
	}
}

/* In the forked worker: never returns. */
static void
worker_main(zygote *z, int fd)
{
	int rv;

	close(z->z_ctl);
	if (!die_with_parent(z->z_pid)) {
		_exit(0);
	}
	if ((rv = crash_install(fd)) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "worker: crash handler: %s",
		    strerror(rv));
		_exit(1);
	}
	if (z->z_spec->sandbox && (rv = sandbox_enter()) != 0) {
		nngrpc_log(NNGRPC_LOG_ERROR, "worker: seccomp sandbox: %s",
		    strerror(rv));
		_exit(1);
	}
	zygote_worker_loop(z->z_spec->dispatch, fd);
	_exit(0);
}

/* Forks one worker: *fdp is the front end's end of its socket. */
static int
fork_worker(zygote *z, int *fdp, pid_t *pidp)
{
	int   sv[2];
	pid_t pid;
	int   rv;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		return (errno);
	}
	if ((pid = fork()) < 0) {
		rv = errno;
		close(sv[0]);
		close(sv[1]);
		return (rv);
	}
	if (pid == 0) {
		close(sv[0]);
		for (int i = 0; i < z->z_n_spares; i++) {
			close(z->z_spare_fd[i]); /* the spares', not ours */
		}
		worker_main(z, sv[1]);
	}
	close(sv[1]);
	*fdp = sv[0];
	*pidp = pid;
	return (0);
}

/* Forks one spare when fewer than SPARES are ready. A failure (out of
 * processes, out of memory) stops the spares until the next request; a
 * replacement then forks its own. */
static void
fork_spare(zygote *z)
{
	if (!z->z_loaded || z->z_spare_failed || z->z_n_spares >= SPARES) {
		return;
	}
	if (fork_worker(z, &z->z_spare_fd[z->z_n_spares],
	        &z->z_spare_pid[z->z_n_spares])
	    != 0) {
		z->z_spare_failed = true;
		return;
	}
	z->z_n_spares++;
}

/* Ends the spares (a reload made them stale): their sockets close. */
static void
drop_spares(zygote *z)
{
	while (z->z_n_spares > 0) {
		close(z->z_spare_fd[--z->z_n_spares]);
	}
}

/* Hands the front end a worker: a spare if there is one, else a new one.
 * Spares are forked again after, off the replacement's path. */
static int
spawn(zygote *z)
{
	int   fd, rv;
	pid_t pid;

	if (z->z_n_spares > 0) {
		z->z_n_spares--;
		fd = z->z_spare_fd[z->z_n_spares];
		pid = z->z_spare_pid[z->z_n_spares];
	} else if ((rv = fork_worker(z, &fd, &pid)) != 0) {
		return (iso_send(z->z_ctl, ISO_SPAWN_FAILED, rv, 0, NULL, 0));
	}
	rv = iso_send_fd(z->z_ctl, ISO_SPAWNED, pid, z->z_generation, fd);
	close(fd);
	return (rv);
}

/* A whole generation (the loop forks its spares after). */
static int
spawn_all(zygote *z)
{
	int rv = 0;
	for (int i = 0; i < z->z_spec->workers && rv == 0; i++) {
		rv = spawn(z);
	}
	return (rv);
}

static int
load(zygote *z)
{
	char err[512] = "";
	int  code = z->z_spec->load(z->z_spec->load_arg, err, sizeof(err));
	struct iovec v = { err, strlen(err) };
	int          rv;

	z->z_loaded = code == 0;
	if (code == 0 && (rv = spawn_all(z)) != 0) {
		return (rv);
	}
	return (iso_send(z->z_ctl, ISO_LOADED, code, 0, &v, 1));
}

/* Runs a reload method's handler here; on OK the next generation of
 * workers is forked before the answer, so the front end has them when it
 * learns of the new generation. Its caller giving up sets the spec's
 * reload_cancel flag, which the handler sees as a cancel. */
static int
reload(zygote *z, const iso_frame *f, const uint8_t *buf)
{
	uint8_t               tmp[OUT_INLINE];
	ProtobufCBufferSimple out = PROTOBUF_C_BUFFER_SIMPLE_INIT(tmp);
	nngrpc_call           call;
	nngrpc_status         st;
	int                   rv = 0;

	nngrpc_call_init(&call);
	call.c_cancel = z->z_spec->reload_cancel;
	st = exec_call(z->z_spec->dispatch, f, buf, &call, &out.base);
	crash_set_call(NULL, NULL);
	nngrpc_log_set_request_id(NULL);
	if (st == NNGRPC_OK) {
		z->z_generation++;
		drop_spares(z);
		rv = spawn_all(z);
	}
	if (rv == 0) {
		rv = iso_send_reply(z->z_ctl, ISO_RELOADED, z->z_generation,
		    (int32_t) st, &call, out.data, out.len);
	}
	PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&out);
	nngrpc_call_fini(&call);
	return (rv);
}

/* The service's gauges, read here where the dataset is. */
static int
gauges(zygote *z, const iso_frame *f)
{
	double       v[NNGRPC_METRICS_MAX_FNS];
	size_t       n = z->z_spec->metrics == NULL
	          ? 0
	          : nngrpc_metrics_read_service_fns(
	              z->z_spec->metrics, v, NNGRPC_METRICS_MAX_FNS);
	struct iovec iov = { v, n * sizeof(double) };

	return (iso_send(z->z_ctl, ISO_GAUGE_VALUES, f->f_a, 0, &iov, 1));
}

static void
reap(void)
{
	int status;
	while (waitpid(-1, &status, WNOHANG) > 0) { }
}

/* The zygote's loop: never returns. */
static void
zygote_main(zygote *z)
{
	for (;;) {
		struct pollfd p = { z->z_ctl, POLLIN, 0 };
		iso_frame     f;
		uint8_t      *buf = NULL;
		int           rv;

		bool short_of_spares;

		reap();
		/* Spares are forked one at a time when nothing waits: a
		 * request that came meanwhile is answered first. */
		if (poll(&p, 1, 0) == 0) {
			fork_spare(z);
		}
		short_of_spares = z->z_loaded && !z->z_spare_failed
		    && z->z_n_spares < SPARES;
		if (poll(&p, 1, short_of_spares ? 0 : REAP_EVERY_MS) <= 0) {
			continue;
		}
		z->z_spare_failed = false;
		if (iso_recv_header(z->z_ctl, &f, NULL) != 0
		    || (buf = iso_recv_body(z->z_ctl, f.f_len, &rv)) == NULL) {
			_exit(0); /* the front end is gone */
		}
		switch (f.f_kind) {
		case ISO_LOAD:
			rv = load(z);
			break;
		case ISO_SPAWN:
			rv = spawn(z);
			break;
		case ISO_RELOAD:
			rv = reload(z, &f, buf);
			break;
		case ISO_GAUGES:
			rv = gauges(z, &f);
			break;
		default:
			rv = EPROTO;
			break;
		}
		free(buf);
		if (rv != 0) {
			_exit(1);
		}
	}
}

int
zygote_fork(const zygote_spec *spec, int *ctlp, pid_t *pidp)
{
	zygote z = { .z_spec = spec, .z_generation = 1 };
	int    sv[2];
	pid_t  front = getpid();
	pid_t  pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		return (errno);
	}
	if ((pid = fork()) < 0) {
		int rv = errno;
		close(sv[0]);
		close(sv[1]);
		return (rv);
	}
	if (pid == 0) {
		close(sv[0]);
		z.z_ctl = sv[1];
		z.z_pid = getpid();
		if (!die_with_parent(front)) {
			_exit(0);
		}
		prctl(PR_SET_NAME, "nngrpc-zygote", 0, 0, 0);
		zygote_main(&z);
	}
	close(sv[1]);
	*ctlp = sv[0];
	*pidp = pid;
	return (0);
}
