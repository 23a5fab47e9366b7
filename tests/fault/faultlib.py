"""Shared helpers for the fault tests (tests/fault): start and stop hoteld,
read its memory and descriptors from /proc, speak raw SP to it, and drive
an open-loop load.

Servers are started the way tests/integration/hoteld_fixture.py starts
them (--testing, a tcp and an ipc listener, polled with real Echo calls
until they answer) and stopped by its stop_server(): SIGTERM, exit 0 and no
ASan/LSan/UBSan report in the log, so every test here doubles as a leak
check when --hoteld is the ASan build.  What the fixture cannot do and this
module adds: extra flags, a fixed port (restarts on the same port), extra
environment (ASAN_OPTIONS), and one log file per start.

Every loop here is bounded in count and in time; the only targets are
127.0.0.1 and ipc:// paths under a temporary directory.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

REPO = Path(__file__).resolve().parents[2]
_INTEGRATION = str(REPO / "tests" / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import pytest  # noqa: E402

import nngrpc  # noqa: E402
from nngrpc.health.v1 import health_nngrpc, health_pb2  # noqa: E402
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2  # noqa: E402
from nngrpc.v1 import rpc_pb2  # noqa: E402

from hoteld_fixture import (  # noqa: E402
    Server,
    free_port,
    libnng_version,
    nng_library_version,
    stop_server,
    wait_until_serving,
)

MiB = 1024 * 1024

ECHO = "/nngrpc.testing.v1.Testing/Echo"
SLEEP = "/nngrpc.testing.v1.Testing/Sleep"
FAIL = "/nngrpc.testing.v1.Testing/Fail"

# SP protocol ids (nng: src/sp/protocol/*): REQ 0x30, REP 0x31.
PROTO_REQ = 0x30
PROTO_REP = 0x31


# ---- the binary -----------------------------------------------------------
def is_asan(binary: str) -> bool:
    """True if binary was linked with AddressSanitizer."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def rss_tolerance_kib(binary: str) -> int:
    """How much VmRSS may grow over a repeated hostile action, after a
    warm-up round of the same action.

    Plain build: 5 MiB.  glibc keeps freed memory in its per-thread arenas
    (hoteld has 32 workers and NNG's own threads), so RSS does not go back
    to the pre-action level, but a warm-up round brings every arena the
    action touches to its high-water mark; what grows after that is a
    leak.  Each repeated action below moves tens of MiB through the
    server, so a leak of even a small share of it exceeds 5 MiB.

    ASan build: 40 MiB.  ASan holds freed blocks in its quarantine
    (capped at 16 MiB by asan_env() below) and its allocator keeps
    per-size-class free lists and shadow pages; LSan at exit is the exact
    leak check there.
    """
    return 40 * 1024 if is_asan(binary) else 5 * 1024


def asan_env(extra: str = "") -> Dict[str, str]:
    """The environment for a started hoteld: LSan on, a smaller quarantine
    (so RSS readings mean something), reports to the log.  Options already
    in $ASAN_OPTIONS come last and win."""
    env = dict(os.environ)
    opts = "detect_leaks=1:quarantine_size_mb=16:halt_on_error=1"
    if extra:
        opts += ":" + extra
    if env.get("ASAN_OPTIONS"):
        opts += ":" + env["ASAN_OPTIONS"]
    env["ASAN_OPTIONS"] = opts
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def running_libnng_version(pid: int) -> Tuple[int, ...]:
    """The version of the libnng a running process has mapped (from
    /proc/PID/maps, asked for its nng_version()); () if none is mapped."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
    except OSError:
        return ()
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and "/libnng.so" in fields[5]:
            return nng_library_version(fields[5].strip())
    return ()


def nng_reaper_can_wedge(binary: str) -> bool:
    """libnng before 1.6.0 can wedge its pipe reaper when a connection
    closes while a receive is in progress (nanomsg/nng#1636; see
    test_hostile.py::test_abrupt_disconnects_do_not_leak_descriptors)."""
    v = libnng_version(binary)
    return not v or v < (1, 6, 0)


def stop_or_explain(h: "Hoteld", limit: float = 20.0) -> None:
    """SIGTERM and the fixture's checks, but a hoteld still running after
    `limit` seconds is killed and reported with its descriptor count
    (the libnng reaper wedge leaks one per closed connection)."""
    if h.alive():
        h.server.proc.send_signal(signal.SIGTERM)
        try:
            h.server.proc.wait(limit)
        except subprocess.TimeoutExpired:
            fds = h.fds()
            h.server.proc.kill()
            h.server.proc.wait(10)
            pytest.fail(
                "hoteld did not exit within %.0f s of SIGTERM, holding %d descriptors: stuck in "
                "nng_close()? (libnng %s; see test_hostile.py::"
                "test_abrupt_disconnects_do_not_leak_descriptors)\n%s"
                % (limit, fds, ".".join(map(str, libnng_version(h.binary))) or "?", h.log()[-3000:])
            )
    stop_server(h.server)


# ---- /proc ------------------------------------------------------------------
def proc_status(pid: int) -> Dict[str, str]:
    out: Dict[str, str] = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of pid in KiB."""
    return int(proc_status(pid)["VmRSS"].split()[0])


def fd_count(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for(pred: Callable[[], bool], limit: float, step: float = 0.05) -> bool:
    """Polls pred until it is true or limit seconds pass; returns pred()."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---- starting servers ---------------------------------------------------------
@dataclass
class Hoteld:
    """A hoteld this module started (wraps the fixture's Server)."""

    server: Server
    binary: str
    args: List[str]
    port: int
    workdir: str
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    @property
    def tcp(self) -> str:
        return self.server.tcp

    @property
    def ipc(self) -> str:
        return self.server.ipc

    def rss(self) -> int:
        return rss_kib(self.pid)

    def fds(self) -> int:
        return fd_count(self.pid)

    def alive(self) -> bool:
        return self.server.proc.poll() is None

    def log(self) -> str:
        return self.server.log()

    def stop(self) -> None:
        """SIGTERM: exit 0 and no sanitizer report (hoteld_fixture)."""
        stop_server(self.server)


_starts = 0
_starts_lock = threading.Lock()


def spawn_hoteld(
    binary: str,
    workdir: str,
    args: Sequence[str] = (),
    *,
    port: Optional[int] = None,
    env: Optional[Dict[str, str]] = None,
    wait: bool = True,
    wait_limit: float = 60.0,
    wrapper: Sequence[str] = (),
) -> Hoteld:
    """Starts ``binary --testing --listen tcp://127.0.0.1:PORT --listen
    ipc://WORKDIR/hoteld-N.sock ARGS`` (later flags win, so ARGS may set
    --workers) and, with wait, polls it with Echo until it answers.
    wrapper: a command to run it under (valgrind)."""
    global _starts
    if not os.access(binary, os.X_OK):
        pytest.fail("hoteld binary not found or not executable: %s" % binary)
    with _starts_lock:
        _starts += 1
        n = _starts
    port = port or free_port()
    tcp = "tcp://127.0.0.1:%d" % port
    ipc = "ipc://%s/hoteld-%d.sock" % (workdir, n)
    log_path = os.path.join(workdir, "hoteld-%d.log" % n)
    env = env if env is not None else asan_env()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(wrapper)
            + [binary, "--testing", "--listen", tcp, "--listen", ipc]
            + list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    workers = 32
    for i, a in enumerate(args):
        if a == "--workers" and i + 1 < len(args):
            workers = int(args[i + 1])
    server = Server(tcp=tcp, ipc=ipc, proc=proc, log_path=log_path, workers=workers)
    h = Hoteld(server, binary, list(args), port, workdir, env)
    if wait:
        wait_until_serving(server, wait_limit)
    return h


# ---- is it well? ------------------------------------------------------------
def assert_serves(h: Hoteld, timeout: float = 2.0, what: str = "") -> None:
    """The server answers a normal call correctly, on a fresh connection:
    Echo returns the random bytes sent, Health says SERVING."""
    assert h.alive(), "hoteld died%s (exit %s):\n%s" % (
        " after " + what if what else "",
        h.server.proc.returncode,
        h.log()[-4000:],
    )
    payload = os.urandom(48)
    with nngrpc.Channel(h.tcp) as ch:
        try:
            got = testing_nngrpc.TestingStub(ch).Echo(
                testing_pb2.EchoRequest(payload=payload), timeout=timeout
            )
            health = health_nngrpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except nngrpc.RpcError as e:
            pytest.fail(
                "hoteld does not answer a normal call%s: %s %s"
                % (" after " + what if what else "", e.code(), e.details())
            )
    assert got.payload == payload
    assert health.status == health_pb2.HealthCheckResponse.SERVING


class MemoryCheck:
    """VmRSS around a repeated action: the first run warms up (arenas,
    quarantine, NNG's pipe structures), then the growth over the repeats
    must stay under the tolerance (see rss_tolerance_kib).

    A warm-up round cannot promise to touch every malloc arena: calls land
    on threads at random (32 workers and NNG's own threads share up to 8 x
    CPUs arenas), so a repeat may still bring one more arena to its
    high-water mark, once.  check(again=...) tells that apart from a leak:
    when the repeat grew too much, it runs the repeat again (up to CONFIRM
    times) and judges the last one; a leak grows by as much every time."""

    CONFIRM = 2

    def __init__(self, h: Hoteld, asan_tolerance_kib: Optional[int] = None) -> None:
        self.h = h
        self.tolerance = rss_tolerance_kib(h.binary)
        if asan_tolerance_kib is not None and is_asan(h.binary):
            self.tolerance = asan_tolerance_kib
        self.baseline = h.rss()
        self.warm: Optional[int] = None

    def warmed(self) -> None:
        self.warm = self.h.rss()

    def check(self, what: str, again: Optional[Callable[[], None]] = None) -> Tuple[int, int, int]:
        """Asserts the growth since warmed() is within the tolerance; with
        again (the repeated action), a growth over it is judged on up to
        CONFIRM more repeats instead (each against the reading before it)."""
        assert self.warm is not None, "call warmed() after the warm-up round"
        start = self.warm
        end = self.h.rss()
        growths = [end - start]
        while growths[-1] > self.tolerance and again is not None and len(growths) <= self.CONFIRM:
            start = end
            again()
            end = self.h.rss()
            growths.append(end - start)
        growth = growths[-1]
        print(
            "%s: VmRSS %d KiB before, %d after warm-up, %d at end (+%s KiB per repeat, tolerance %d)"
            % (what, self.baseline, self.warm, end, ", +".join(map(str, growths)), self.tolerance)
        )
        assert growth <= self.tolerance, (
            "%s: hoteld's VmRSS grew by %s KiB over %s (tolerance %d KiB): "
            "%d KiB before, %d after the warm-up round, %d at the end"
            % (what, ", ".join(map(str, growths)),
               "each repeat" if len(growths) > 1 else "the repeats",
               self.tolerance, self.baseline, self.warm, end)
        )
        return self.baseline, self.warm, end


# ---- raw SP over TCP ---------------------------------------------------------
def sp_header(proto: int = PROTO_REQ) -> bytes:
    return b"\x00SP\x00" + struct.pack(">HH", proto, 0)


def sp_frame(body: bytes) -> bytes:
    """One SP-over-TCP message: 64-bit big-endian length, then the body."""
    return struct.pack(">Q", len(body)) + body


def req_body(envelope: bytes, rid: int) -> bytes:
    """A REQ message body: the request id (top bit set), then the envelope."""
    return struct.pack(">I", 0x80000000 | (rid & 0x7FFFFFFF)) + envelope


def envelope(
    method: str,
    payload: bytes = b"",
    timeout_us: int = 0,
    metadata: Optional[Dict[str, str]] = None,
) -> bytes:
    req = rpc_pb2.Request(method=method, payload=payload, timeout_us=timeout_us)
    if metadata:
        req.metadata.update(metadata)
    return req.SerializeToString()


class RawConn:
    """A TCP connection to hoteld that the test drives byte by byte."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buf = bytearray()

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self, proto: int = PROTO_REQ) -> int:
        """Sends our SP header, returns the peer's protocol id."""
        self.send(sp_header(proto))
        hdr = self.read_exact(8)
        assert hdr[:4] == b"\x00SP\x00", hdr
        return int(struct.unpack(">H", hdr[4:6])[0])

    def read_exact(self, n: int, timeout: Optional[float] = None) -> bytes:
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self._buf) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("read %d of %d bytes" % (len(self._buf), n))
            self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def call(self, env: bytes, rid: int = 1, timeout: Optional[float] = None) -> "rpc_pb2.Response":
        """Sends one request envelope, returns the decoded Response."""
        self.send(sp_frame(req_body(env, rid)))
        return self.recv_response(rid, timeout)

    def recv_response(self, rid: int, timeout: Optional[float] = None) -> "rpc_pb2.Response":
        (size,) = struct.unpack(">Q", self.read_exact(8, timeout))
        assert size <= 64 * MiB, "reply of %d bytes" % size
        body = self.read_exact(size, timeout)
        (got,) = struct.unpack(">I", body[:4])
        assert got == 0x80000000 | (rid & 0x7FFFFFFF), "reply to request %x, sent %x" % (got, rid)
        return rpc_pb2.Response.FromString(body[4:])

    def closed_by_peer(self, limit: float) -> bool:
        """True if the server closes (or resets) the connection within limit
        seconds; whatever it sends meanwhile is read and dropped."""
        end = time.monotonic() + limit
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True


# ---- open-loop load ---------------------------------------------------------
@dataclass
class Sample:
    start: float  # monotonic, when the call was due
    sent: float  # when it was sent (>= start when the sender ran late)
    end: float
    code: str  # StatusCode name
    server_us: int = -1  # the server's queue + run time, when known


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def open_loop(
    target: str,
    make_call: Callable[["nngrpc.Channel", int], Union[str, Tuple[str, int]]],
    rate: float,
    duration: float,
    threads: int,
    stop_after: Optional[float] = None,
    processes: int = 1,
    **channel_options: object,
) -> Tuple[List[Sample], float]:
    """Offers ``rate`` calls/s for ``duration`` seconds, open-loop: call k
    is due at t0 + k/rate whatever happened to the calls before it.

    ``processes`` forked processes (each with its own GIL) of ``threads``
    threads each; the threads of a process share one Channel (one
    connection per call in flight).  Process j makes calls j, j+P, ...;
    its thread i every threads-th of those, each at its due time, or late
    when the thread's previous call was still running (recorded as
    sent - start).

    make_call(channel, k) makes call k and returns the StatusCode name, or
    (name, the server's queue_us + run_us).
    Returns (samples, elapsed seconds from t0 to the last reply).
    Bounded: nothing is sent after t0 + duration + stop_after (10 s)."""
    stop_after = stop_after if stop_after is not None else 10.0
    if processes <= 1:
        t0 = time.monotonic() + 0.05
        samples = _open_loop_share(
            target, make_call, rate, duration, threads, 0, 1, t0, stop_after, channel_options
        )
    else:
        samples = _open_loop_forked(
            target, make_call, rate, duration, threads, processes, stop_after, channel_options
        )
        t0 = min((s.start for s in samples), default=time.monotonic())
    elapsed = max((s.end for s in samples), default=t0) - t0
    return samples, max(elapsed, 1e-9)


def _open_loop_share(
    target: str,
    make_call: Callable[["nngrpc.Channel", int], Union[str, Tuple[str, int]]],
    rate: float,
    duration: float,
    threads: int,
    phase: int,
    stride: int,
    t0: float,
    stop_after: float,
    channel_options: Dict[str, object],
) -> List[Sample]:
    """This process's share of open_loop(): calls phase, phase+stride, ..."""
    mine = list(range(phase, int(rate * duration), stride))
    samples: List[Optional[Sample]] = [None] * len(mine)
    limit = t0 + duration + stop_after
    opts = dict(channel_options)
    opts.setdefault("max_idle_per_endpoint", threads)
    with nngrpc.Channel(target, **opts) as ch:  # type: ignore[arg-type]

        def run(i: int) -> None:
            for n in range(i, len(mine), threads):
                k = mine[n]
                due = t0 + k / rate
                now = time.monotonic()
                if now > limit:
                    return
                if due > now:
                    time.sleep(due - now)
                sent = time.monotonic()
                got = make_call(ch, k)
                end = time.monotonic()
                if isinstance(got, tuple):
                    samples[n] = Sample(due, sent, end, got[0], got[1])
                else:
                    samples[n] = Sample(due, sent, end, got)

        ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=max(1.0, limit - time.monotonic() + 5.0))
    return [s for s in samples if s is not None]


def _open_loop_forked(
    target: str,
    make_call: Callable[["nngrpc.Channel", int], Union[str, Tuple[str, int]]],
    rate: float,
    duration: float,
    threads: int,
    processes: int,
    stop_after: float,
    channel_options: Dict[str, object],
) -> List[Sample]:
    """open_loop() over forked processes; samples come back through pipes.
    Call with no other thread running (fork)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    t0 = time.monotonic() + 0.3  # CLOCK_MONOTONIC is the same in every process
    children = []
    for j in range(processes):
        r, w = ctx.Pipe(duplex=False)

        def child(w=w, j=j) -> None:  # type: ignore[no-untyped-def]
            got = _open_loop_share(
                target, make_call, rate, duration, threads, j, processes, t0, stop_after,
                channel_options,
            )
            w.send([(s.start, s.sent, s.end, s.code, s.server_us) for s in got])
            w.close()

        p = ctx.Process(target=child, daemon=True)
        p.start()
        w.close()
        children.append((p, r))
    samples: List[Sample] = []
    wait_until = t0 + duration + stop_after + 15.0
    for p, r in children:
        left = max(0.1, wait_until - time.monotonic())
        if r.poll(left):
            samples.extend(Sample(*t) for t in r.recv())
        p.join(max(0.1, wait_until - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(5)
        r.close()
    return samples


def code_of(fn: Callable[[], object]) -> str:
    """Runs one call; returns its StatusCode name ("OK" or the error's)."""
    try:
        fn()
        return "OK"
    except nngrpc.RpcError as e:
        return e.code().name


def rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""
