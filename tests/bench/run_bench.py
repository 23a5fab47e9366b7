#!/usr/bin/env python3
"""make bench: nngrpc against its anchors, side by side in one run.

    build/venv/bin/python tests/bench/run_bench.py --build build [--quick]
        [--only latency,throughput,sleep,loadgen,search,rss,isolation,overload,
                compression]

Run by ``make bench`` (``QUICK=1`` for the short CI run), after the anchors
are built into BUILD/bench by tests/bench/bench.mk.  Starts every server
itself on free loopback ports, runs the scenarios, prints one table per
scenario with each figure and its ratio to that scenario's anchor measured
in the same run, then the issue's goals (met / missed), and writes the same
to BUILD/bench/results.md and BUILD/bench/results.json.

Scenarios (anchor of each in brackets):

  latency     one caller, Echo 64 B and 16 KiB, p50/p99: nngrpc Python ->
              hoteld, grpcio -> C++ gRPC sync server, http.client ->
              libmicrohttpd, raw SP Python -> NNG echo server, the
              in-process GIL-holding extension, and nngrpc-bench (C) ->
              hoteld / NNG echo server                         [grpcio]
              (1b: CPU per call; each client's also against the raw SP
              client's to hoteld, envelope built once     [raw SP client])
  throughput  1, 8 and 32 Python threads, Echo 64 B, 16 KiB and 1 MiB: one
              shared nngrpc Channel / one grpc channel / one http (or raw
              SP) connection per thread                          [grpcio]
  sleep       32 threads x Sleep(10 ms) against 1 thread, for nngrpc
              (hoteld --workers 64), grpcio, http and _gilhold.work  [the
              same client with 1 thread; ideal 32x]
  loadgen     nngrpc-bench, 64 calls in flight: hoteld Echo against the raw
              NNG echo server (--raw)                    [raw NNG echo]
  search      Search on 100k hotels from 1 and 8 Python threads through
              nngrpc, against the same queries in SQLite FTS5 built from
              the same data (paged out of hoteld into a JSON Lines file);
              result sets are checked equal first          [SQLite FTS5]
  rss         hoteld VmRSS: testing only, 100k hotels, and 1000 idle SP
              connections                                    [the goals]
  isolation   --isolation process against thread: Search p50/p99 and calls/s,
              Echo, the crash storm, the memory of 8 workers with 100k and
              1M hotels (tests/bench/bench_isolation.py)   [thread mode]
  overload    hoteld --workers 4 --queue 64 serving Sleep(20 ms) (capacity
              200 calls/s) under nngrpc-bench: 60 callers in a closed loop
              and 2000 calls/s offered open-loop (10x), with CoDel
              admission on (the default) and off (--queue-target-ms 0):
              offered, served, shed, served p99   [the same server, one
              caller: the unloaded p99]
  compression a 100-hit Search page from Python with identity, gzip and
              zstd: bytes on the wire, call time, server run time, client
              CPU (tests/bench/bench_compression.py)          [identity]

The exit status is 0 unless something is broken: a server that does not
start or exits badly, a call that fails, an echo that comes back wrong,
search results that differ.  Speed goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

SECTIONS = ("latency", "throughput", "sleep", "loadgen", "search", "rss", "isolation",
            "overload", "compression")
KIB = 1024
MIB = 1024 * 1024
CALL_TIMEOUT = 30.0  # seconds, every client's per-call deadline


class BenchFailure(Exception):
    """Something is broken (not merely slow)."""


# ---- settings ----------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    latency_calls: int  # per client and size
    latency_rounds: int  # clients take turns, this many times
    c_latency_s: float  # nngrpc-bench --concurrency 1
    tput_s: float  # each throughput cell
    tput_rounds: int  # each cell this many times, the best kept
    tput_threads: Tuple[int, ...] = (1, 8, 32)
    tput_sizes: Tuple[int, ...] = (64, 16 * KIB, MIB)
    sleep_s: float = 3.0
    overload_s: float = 5.0
    loadgen_s: float = 5.0
    loadgen_rounds: int = 3
    hotels: int = 100_000
    search_queries: int = 200  # checked against SQLite
    search_full_sets: int = 30  # of those, compared over every page
    search_s: float = 5.0
    idle_clients: int = 1000

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        if quick:
            return cls(
                quick=True,
                latency_calls=400,
                latency_rounds=10,
                c_latency_s=0.7,
                tput_s=0.5,
                tput_rounds=1,
                sleep_s=0.8,
                overload_s=1.5,
                loadgen_s=1.0,
                loadgen_rounds=1,
                search_queries=40,
                search_full_sets=6,
                search_s=1.0,
            )
        return cls(
            quick=False,
            latency_calls=5000,
            latency_rounds=50,
            c_latency_s=3.0,
            tput_s=2.0,
            tput_rounds=2,
            sleep_s=3.0,
            loadgen_s=5.0,
            loadgen_rounds=3,
            search_queries=300,
            search_full_sets=40,
            search_s=5.0,
        )


# ---- small helpers -----------------------------------------------------------


def log(msg: str) -> None:
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[idx]


def size_name(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return "%d MiB" % (n // MIB)
    if n >= KIB and n % KIB == 0:
        return "%d KiB" % (n // KIB)
    return "%d B" % n


def vm_kib(pid: int, key: str) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchFailure("no %s in /proc/%d/status" % (key, pid))


class Cost:
    """CPU time and context switches of a server process or of this
    process, summed over measured blocks of calls.

    A server's CPU time is the larger of the sum over its live threads
    (/proc/PID/task/*/schedstat, ns) and the process total (/proc/PID/stat,
    clock ticks, which keeps the time of threads that ended); its context
    switches are summed over the live threads, so a server that ends threads
    during a block (gRPC's sync server does) is marked `lossy` and its
    switches are a lower bound.  This process: getrusage (every thread),
    and the calling thread's own CPU time (time.thread_time) per block in
    `thread_blocks`: a single-threaded client's cost without what other
    threads of this process (grpcio's pollers) spend meanwhile."""

    _TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: Optional[int]) -> None:
        self.pid = pid
        self.cpu_s = 0.0
        self.switches = 0
        self.calls = 0
        self.lossy = False
        self.blocks: List[float] = []  # CPU µs per call of each block
        self.thread_blocks: List[float] = []  # the calling thread's, likewise
        self._t0: Tuple[float, float, int, frozenset] = (0.0, 0.0, 0, frozenset())
        self._thread0 = 0.0

    def _read(self) -> Tuple[float, float, int, frozenset]:
        if self.pid is None:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            return ru.ru_utime + ru.ru_stime, 0.0, ru.ru_nvcsw + ru.ru_nivcsw, frozenset()
        cpu_ns, sw = 0, 0
        base = "/proc/%d/task" % self.pid
        tids = frozenset(os.listdir(base))
        for tid in tids:
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    cpu_ns += int(f.read().split()[0])
                with open("%s/%s/status" % (base, tid)) as f:
                    for line in f:  # voluntary_ and nonvoluntary_ctxt_switches
                        if "ctxt_switches:" in line:
                            sw += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = (int(fields[11]) + int(fields[12])) / self._TICK  # utime + stime
        return cpu_ns / 1e9, ticks, sw, tids

    def start(self) -> None:
        self._t0 = self._read()
        self._thread0 = time.thread_time()

    def stop(self, calls: int) -> None:
        thread = time.thread_time() - self._thread0
        cpu, ticks, sw, tids = self._read()
        block = max(cpu - self._t0[0], ticks - self._t0[1])
        self.cpu_s += block
        self.switches += sw - self._t0[2]
        if self._t0[3] - tids:
            self.lossy = True
        self.calls += calls
        if calls:
            self.blocks.append(block * 1e6 / calls)
            self.thread_blocks.append(thread * 1e6 / calls)

    def median_per_call(self) -> float:
        """The median over the measured blocks of CPU µs per call: on a
        machine shared with other work, a burst of it lands on one block of
        one client, which the median leaves out and a sum does not."""
        if not self.blocks:
            return float("nan")
        return percentile(sorted(self.blocks), 0.5)

    def per_call(self) -> Tuple[float, float]:
        """(CPU µs, context switches) per call."""
        if self.calls == 0:
            return float("nan"), float("nan")
        return self.cpu_s * 1e6 / self.calls, self.switches / self.calls


def ratio_vs(ours: Sequence[float], anchor: Sequence[float]) -> Tuple[float, str]:
    """(median, "q1-q3") of the ratios ours[i] / anchor[i]: blocks measured
    in the same round, so that a burst of other work on the machine moves
    both sides of a ratio, not one side of a median."""
    ratios = sorted(a / b for a, b in zip(ours, anchor) if b > 0)
    if not ratios:
        return float("nan"), "-"
    return percentile(ratios, 0.5), "%.2f-%.2f" % (percentile(ratios, 0.25),
                                                   percentile(ratios, 0.75))


def thread_count(pid: int) -> int:
    return len(os.listdir("/proc/%d/task" % pid))


def fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None or v != v:
        return "-"
    if abs(v) >= 100000:
        return "{:,.0f}".format(v)
    return "{:,.{d}f}".format(v, d=digits)


def ratio_str(r: Optional[float]) -> str:
    if r is None or r != r:
        return "-"
    return "%.2fx" % r


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


# ---- servers -----------------------------------------------------------------


class Server:
    """A child process serving on loopback; logs to BUILD/bench/logs."""

    def __init__(self, name: str, argv: List[str], logdir: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(logdir, name + ".log")
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    def start(self) -> "Server":
        if not os.access(self.argv[0], os.X_OK):
            raise BenchFailure("%s: %s is not built" % (self.name, self.argv[0]))
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C goes to the harness only
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchFailure(
                "%s exited with %s:\n%s" % (self.name, self.proc.returncode, self.log()[-3000:])
            )

    def wait_ready(self, probe: Callable[[], bool], limit: float = 120.0) -> None:
        """Polls probe() (no fixed sleeps) until it returns True."""
        end = time.monotonic() + limit
        last: Optional[BaseException] = None
        while time.monotonic() < end:
            self.check_alive()
            try:
                if probe():
                    return
            except Exception as e:  # not up yet
                last = e
            time.sleep(0.02)
        raise BenchFailure("%s did not get ready in %.0f s (%s)" % (self.name, limit, last))

    def wait_log_line(self, text: str, limit: float = 60.0) -> None:
        self.wait_ready(lambda: text in self.log(), limit)

    def stop(self) -> None:
        """SIGTERM; a server that does not exit 0 is broken."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise BenchFailure("%s did not stop within 30 s of SIGTERM" % self.name)
        if proc.returncode != 0:
            raise BenchFailure(
                "%s exited with %s:\n%s" % (self.name, proc.returncode, self.log()[-3000:])
            )


# ---- clients -----------------------------------------------------------------
#
# A client hands out per-thread call functions: echo(payload) returns a
# function that makes one Echo call with that payload and checks the reply;
# sleep(ms) one that makes one Sleep call.  Shared state (a Channel) is made
# once in the constructor; per-connection state in the per-thread factory.


class Client:
    name = ""
    server = ""

    def echo(self, payload: bytes) -> Callable[[], None]:
        raise NotImplementedError

    def sleep(self, ms: int) -> Callable[[], None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _check_echo(got: bytes, want: bytes, who: str) -> None:
    if len(got) != len(want) or got[:16] != want[:16] or got[-16:] != want[-16:]:
        raise BenchFailure("%s: echo came back wrong (%d bytes for %d)" % (who, len(got), len(want)))


class NngrpcClient(Client):
    name = "nngrpc Python"
    server = "hoteld --testing"

    def __init__(self, url: str) -> None:
        import nngrpc
        from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

        self._pb = testing_pb2
        self.channel = nngrpc.Channel(url)  # one, shared by every thread
        self.stub = testing_nngrpc.TestingStub(self.channel)
        self.server_times: List[List[int]] = []

    def echo(self, payload: bytes) -> Callable[[], None]:
        req = self._pb.EchoRequest(payload=payload)
        stub_echo = self.stub.Echo

        def call() -> None:
            resp = stub_echo(req, timeout=CALL_TIMEOUT)
            _check_echo(resp.payload, payload, self.name)

        return call

    def sleep(self, ms: int) -> Callable[[], None]:
        """Also sums the server's own timings of each call (queue wait and
        handler run, from the response envelope) into self.server_times."""
        req = self._pb.SleepRequest(ms=ms)
        with_call = self.stub.Sleep.with_call
        acc = [0, 0, 0]  # calls, queue_us, run_us (this thread's)
        self.server_times.append(acc)

        def call() -> None:
            _, info = with_call(req, timeout=CALL_TIMEOUT)
            acc[0] += 1
            acc[1] += info.queue_us
            acc[2] += info.run_us

        return call

    def take_server_times(self) -> Tuple[float, float]:
        """(mean queue µs, mean run µs) of the sleep calls since the last
        take; resets."""
        n = sum(a[0] for a in self.server_times)
        q = sum(a[1] for a in self.server_times)
        r = sum(a[2] for a in self.server_times)
        self.server_times = []
        return (q / n, r / n) if n else (float("nan"), float("nan"))

    def close(self) -> None:
        self.channel.close()


class GrpcClient(Client):
    name = "grpcio Python"
    server = "C++ gRPC sync server"

    def __init__(self, port: int) -> None:
        import grpc
        import bench_echo_pb2
        import bench_echo_pb2_grpc

        self._pb = bench_echo_pb2
        self.channel = grpc.insecure_channel(
            "127.0.0.1:%d" % port,
            options=[
                ("grpc.max_receive_message_length", 64 * MIB),
                ("grpc.max_send_message_length", 64 * MIB),
            ],
        )
        self.stub = bench_echo_pb2_grpc.TestingStub(self.channel)

    def echo(self, payload: bytes) -> Callable[[], None]:
        req = self._pb.EchoRequest(payload=payload)
        stub_echo = self.stub.Echo

        def call() -> None:
            resp = stub_echo(req, timeout=CALL_TIMEOUT)
            _check_echo(resp.payload, payload, self.name)

        return call

    def sleep(self, ms: int) -> Callable[[], None]:
        req = self._pb.SleepRequest(ms=ms)
        stub_sleep = self.stub.Sleep

        def call() -> None:
            stub_sleep(req, timeout=CALL_TIMEOUT)

        return call

    def close(self) -> None:
        self.channel.close()


class HttpClient(Client):
    name = "http.client"
    server = "libmicrohttpd"

    def __init__(self, port: int) -> None:
        self.port = port
        self._conns: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.append(conn)
        return conn

    def _post(self, conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/octet-stream"}
        )
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise BenchFailure("http.client: %s answered %d" % (path, resp.status))
        return data

    def echo(self, payload: bytes) -> Callable[[], None]:
        conn = self._conn()  # one keep-alive connection per thread

        def call() -> None:
            _check_echo(self._post(conn, "/echo", payload), payload, self.name)

        return call

    def sleep(self, ms: int) -> Callable[[], None]:
        conn = self._conn()
        path = "/sleep?ms=%d" % ms

        def call() -> None:
            self._post(conn, path, b"")

        return call

    def close(self) -> None:
        for c in self._conns:
            c.close()


class RawSpClient(Client):
    """The Python-side floor: a minimal SP REQ client on a blocking socket
    (no protobuf, no pool, no deadline bookkeeping) against the raw NNG
    echo server.  With envelope=True it sends a Request envelope built once
    to hoteld instead: the same client, so the difference to the NNG echo
    server is hoteld's own cost, and the difference to the nngrpc client is
    the nngrpc client's cost."""

    name = "raw SP Python"
    server = "NNG echo server"

    def __init__(self, port: int, envelope: bool = False) -> None:
        self.port = port
        self.envelope = envelope
        if envelope:
            self.name = "raw SP Python, envelope built once"
            self.server = "hoteld --testing"
        self._socks: List[socket.socket] = []
        self._lock = threading.Lock()

    def _message(self, payload: bytes) -> bytes:
        if not self.envelope:
            return payload
        from nngrpc.testing.v1 import testing_pb2
        from nngrpc.v1 import rpc_pb2

        return rpc_pb2.Request(
            method="/nngrpc.testing.v1.Testing/Echo", timeout_us=int(CALL_TIMEOUT * 1e6),
            payload=testing_pb2.EchoRequest(payload=payload).SerializeToString(),
        ).SerializeToString()

    def echo(self, payload: bytes) -> Callable[[], None]:
        message = self._message(payload)
        envelope = self.envelope
        tail = payload[-16:]
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=CALL_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._socks.append(sock)
        sock.sendall(b"\x00SP\x00\x00\x30\x00\x00")  # REQ (0x30)
        if _recv_exact(sock, 8)[4:6] != b"\x00\x31":
            raise BenchFailure("raw SP: the peer is not a REP socket")
        rid = [random.getrandbits(31)]
        head = struct.Struct(">QI")
        size = len(message) + 4

        def call() -> None:
            rid[0] = (rid[0] + 1) & 0x7FFFFFFF
            want = rid[0] | 0x80000000
            if len(message) <= 64 * KIB:
                sock.sendall(head.pack(size, want) + message)
            else:
                sock.sendall(head.pack(size, want))
                sock.sendall(message)
            (n,) = struct.unpack(">Q", _recv_exact(sock, 8))
            body = _recv_exact(sock, n)
            if struct.unpack(">I", body[:4])[0] != want:
                raise BenchFailure("raw SP: reply to another request")
            if envelope:  # a Response with code 0 (absent) carrying the bytes
                if body[4:5] == b"\x08" or tail not in body:
                    raise BenchFailure("raw SP: hoteld did not echo: %r" % body[:64])
            else:
                _check_echo(body[4:], payload, self.name)

        return call

    def close(self) -> None:
        for s in self._socks:
            s.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise BenchFailure("connection closed by the server")
        got += k
    return bytes(buf)


class GilHoldClient(Client):
    """The original problem: the work runs in-process holding the GIL."""

    name = "_gilhold (in-process)"
    server = "C extension holding the GIL"

    def __init__(self) -> None:
        import _gilhold

        self.mod = _gilhold

    def echo(self, payload: bytes) -> Callable[[], None]:
        echo = self.mod.echo

        def call() -> None:
            _check_echo(echo(payload), payload, self.name)

        return call

    def sleep(self, ms: int) -> Callable[[], None]:
        work = self.mod.work

        def call() -> None:
            work(ms)

        return call


# ---- measuring ---------------------------------------------------------------


@dataclass
class Run:
    """Calls made by some threads in a timed window."""

    threads: int
    seconds: float
    calls: int
    latencies: List[float] = field(default_factory=list)  # seconds, sorted

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e6


def run_threads(
    make_call: Callable[[], Callable[[], None]], threads: int, seconds: float, warm: int = 3,
    costs: Sequence[Cost] = (),
) -> Run:
    """threads threads each make their call function, warm up, wait for each
    other, then call in a loop for `seconds`.  Counts calls that end inside
    the window.  Any exception is a BenchFailure.  costs are measured from
    the start of the window to the end of the last call, over every call
    made meanwhile; the first one's window lies inside the others' (give the
    client's first: reading a server's figures is then not counted as the
    client's CPU)."""
    window = [0.0, 0.0]
    made = [0] * threads  # calls after the barrier, late ones included

    def open_window() -> None:  # runs once, when the last thread arrives
        for c in reversed(costs):  # the first one's window inside the others'
            c.start()
        window[0] = time.perf_counter()
        window[1] = window[0] + seconds

    barrier = threading.Barrier(threads + 1, action=open_window)
    counts = [0] * threads
    lats: List[List[float]] = [[] for _ in range(threads)]
    errors: List[str] = []

    def worker(i: int) -> None:
        try:
            call = make_call()
            for _ in range(warm):
                call()
        except Exception as e:
            errors.append("%s: %s" % (type(e).__name__, e))
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        start, end = window
        pc = time.perf_counter
        mine = lats[i]
        n = 0
        m = 0
        try:
            t = pc()
            while t < end:
                call()
                m += 1
                t2 = pc()
                if t2 <= end:
                    n += 1
                    mine.append(t2 - t)
                t = t2
        except Exception as e:
            errors.append("%s: %s" % (type(e).__name__, e))
        counts[i] = n
        made[i] = m

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        pass
    for t in ts:
        t.join(timeout=seconds + 2 * CALL_TIMEOUT)
    if errors:
        raise BenchFailure("%d thread(s) failed: %s" % (len(errors), errors[0]))
    if any(t.is_alive() for t in ts):
        raise BenchFailure("a client thread hung")
    for c in costs:
        c.stop(sum(made))
    all_lats = sorted(x for lst in lats for x in lst)
    return Run(threads=threads, seconds=seconds, calls=sum(counts), latencies=all_lats)


def run_nngrpc_bench(binary: str, args: List[str]) -> Dict[str, Any]:
    cmd = [binary, "--json", "--quiet"] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if p.returncode != 0:
        raise BenchFailure(
            "%s exited with %d:\n%s%s"
            % (" ".join(cmd), p.returncode, p.stdout.decode(errors="replace"),
               p.stderr.decode(errors="replace"))
        )
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise BenchFailure("nngrpc-bench printed no JSON: %r" % p.stdout[:500]) from None
    if out["errors"] != 0 or out["ok"] == 0:
        raise BenchFailure("nngrpc-bench: %d errors, %d ok: %s" % (out["errors"], out["ok"], out))
    return out


# ---- report ------------------------------------------------------------------


class Report:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sections: Dict[str, Dict[str, Any]] = {}
        self.goals: List[Dict[str, Any]] = []
        self.failures: List[str] = []
        self.md: List[str] = []

    def section(self, key: str, title: str, anchor: str, note: str,
                header: List[str], rows: List[List[str]], data: Any) -> None:
        self.sections[key] = {"title": title, "anchor": anchor, "note": note, "data": data}
        out = ["", "### " + title, "", "Anchor: " + anchor + ". " + note, ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            out.append("| " + " | ".join(r) + " |")
        text = "\n".join(out)
        self.md.append(text)
        print(text, flush=True)

    def goal(self, key: str, text: str, value: Optional[float], shown: str,
             target: float, higher_is_better: bool) -> None:
        met: Optional[bool]
        if value is None or value != value:
            met = None
        else:
            met = value >= target if higher_is_better else value <= target
        self.goals.append({"key": key, "goal": text, "value": value, "shown": shown,
                           "target": target, "higher_is_better": higher_is_better, "met": met})

    def fail(self, what: str, err: BaseException) -> None:
        msg = "%s: %s" % (what, err)
        self.failures.append(msg)
        log("FAILED " + msg)


# ---- scenarios ---------------------------------------------------------------


class Bench:
    def __init__(self, build: str, settings: Settings) -> None:
        self.build = build
        self.s = settings
        self.dir = os.path.join(build, "bench")
        self.logdir = os.path.join(self.dir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.hoteld_bin = os.path.join(build, "bin", "hoteld")
        self.loadgen_bin = os.path.join(build, "bin", "nngrpc-bench")
        self.report = Report(settings)
        self.servers: List[Server] = []
        self.echo_hoteld: Optional[Server] = None
        self.urls: Dict[str, Any] = {}
        self.clients: Dict[str, Client] = {}

    # -- servers --
    def _start(self, server: Server) -> Server:
        self.servers.append(server)
        return server.start()

    def _stop(self, server: Server) -> None:
        try:
            server.stop()
        finally:
            if server in self.servers:
                self.servers.remove(server)

    def stop_all(self) -> None:
        for srv in list(self.servers):
            try:
                self._stop(srv)
            except BenchFailure as e:
                self.report.fail("stopping " + srv.name, e)

    def start_echo_servers(self) -> None:
        """hoteld --testing, the NNG echo server, C++ gRPC, libmicrohttpd."""
        import nngrpc
        from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

        hp, ep, gp, mp = free_port(), free_port(), free_port(), free_port()
        self.urls = {"hoteld": "tcp://127.0.0.1:%d" % hp, "nng": "tcp://127.0.0.1:%d" % ep,
                     "nng_port": ep, "grpc_port": gp, "http_port": mp}
        self.echo_hoteld = self._start(Server(
            "hoteld-testing",
            [self.hoteld_bin, "--testing", "--no-hotels", "--workers", "64",
             "--listen", self.urls["hoteld"], "--log-level", "warn"],
            self.logdir))
        nng = self._start(Server(
            "nng_echo_server",
            [os.path.join(self.dir, "nng_echo_server"), "--listen", self.urls["nng"],
             "--contexts", "64"], self.logdir))
        grpc_srv = self._start(Server(
            "grpc_echo_server",
            [os.path.join(self.dir, "grpc_echo_server"), "--port", str(gp)], self.logdir))
        mhd = self._start(Server(
            "mhd_echo_server",
            [os.path.join(self.dir, "mhd_echo_server"), "--port", str(mp)], self.logdir))

        def hoteld_up() -> bool:
            with nngrpc.Channel(self.urls["hoteld"], backoff=0.01, backoff_max=0.05) as ch:
                testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(payload=b"up?"),
                                                    timeout=1.0)
            return True

        self.echo_hoteld.wait_ready(hoteld_up)
        for srv in (nng, grpc_srv, mhd):
            srv.wait_log_line("ready")

        self.server_pid = {"nngrpc": self.echo_hoteld.pid, "grpc": grpc_srv.pid,
                           "http": mhd.pid, "rawsp": nng.pid,
                           "rawsp_env": self.echo_hoteld.pid}
        self.clients = {
            "nngrpc": NngrpcClient(self.urls["hoteld"]),
            "grpc": GrpcClient(gp),
            "http": HttpClient(mp),
            "rawsp": RawSpClient(ep),
            "rawsp_env": RawSpClient(hp, envelope=True),
            "gil": GilHoldClient(),
        }
        # A real call through each before anything is measured.
        for c in self.clients.values():
            c.echo(b"ready?")()

    def close_clients(self) -> None:
        for c in self.clients.values():
            try:
                c.close()
            except Exception:
                pass
        self.clients = {}

    # -- 1. latency --
    def latency(self) -> None:
        s = self.s
        order = ["nngrpc", "grpc", "http", "rawsp", "rawsp_env", "gil"]
        sizes = (64, 16 * KIB)
        samples: Dict[Tuple[str, int], List[float]] = {}
        costs: Dict[Tuple[str, str, int], Cost] = {}
        for size in sizes:
            payload = random.Random(size).randbytes(size)
            calls = {k: self.clients[k].echo(payload) for k in order}
            for k in order:  # warm up: connections, caches
                for _ in range(100):
                    calls[k]()
            per_round = max(1, s.latency_calls // s.latency_rounds)
            pc = time.perf_counter
            for r in range(s.latency_rounds):  # take turns: noise hits all alike
                # (every other round backwards, so that no client always
                # follows the same one)
                for k in (order if r % 2 == 0 else order[::-1]):
                    call = calls[k]
                    out = samples.setdefault((k, size), [])
                    ccost = costs.setdefault(("client", k, size), Cost(None))
                    scost = costs.setdefault(("server", k, size),
                                             Cost(self.server_pid.get(k)))
                    # The server's figures are read outside the client's
                    # window: reading /proc/PID/task/* of hoteld's threads
                    # costs this process about a millisecond, which would
                    # land on the client's CPU per call.
                    if scost.pid is not None:
                        scost.start()
                    ccost.start()
                    for _ in range(per_round):
                        t = pc()
                        call()
                        out.append(pc() - t)
                    ccost.stop(per_round)
                    if scost.pid is not None:
                        scost.stop(per_round)
        for v in samples.values():
            v.sort()

        # The C client, one call in flight: the same servers without Python.
        cl: Dict[Tuple[str, int], Dict[str, Any]] = {}
        for size in sizes:
            common = ["--concurrency", "1", "--duration", str(s.c_latency_s),
                      "--warmup", "0.2", "--payload-bytes", str(size)]
            for key, args in (("c_hoteld", ["--url", self.urls["hoteld"]]),
                              ("c_raw", ["--url", self.urls["nng"], "--raw"])):
                scost = costs.setdefault(("server", key, size), Cost(
                    self.server_pid["nngrpc" if key == "c_hoteld" else "rawsp"]))
                scost.start()
                res = run_nngrpc_bench(self.loadgen_bin, args + common)
                cl[(key, size)] = res
                scost.stop(res["calls_started"])

        names = {k: "%s → %s" % (self.clients[k].name, self.clients[k].server) for k in order}
        names["c_hoteld"] = "nngrpc-bench (C) → hoteld --testing"
        names["c_raw"] = "nngrpc-bench --raw (C) → NNG echo server"

        def fig(k: str, size: int) -> Tuple[float, float]:
            if k.startswith("c_"):
                lat = cl[(k, size)]["latency_us"]
                return lat["p50"], lat["p99"]
            v = samples[(k, size)]
            return percentile(v, 0.5) * 1e6, percentile(v, 0.99) * 1e6

        rows: List[List[str]] = []
        data: Dict[str, Any] = {}
        anchor = {size: fig("grpc", size) for size in sizes}
        for k in order + ["c_hoteld", "c_raw"]:
            row = [names[k]]
            for size in sizes:
                p50, p99 = fig(k, size)
                a50, a99 = anchor[size]
                row += [fmt(p50), ratio_str(p50 / a50), fmt(p99), ratio_str(p99 / a99)]
                data["%s/%d" % (k, size)] = {"client": names[k], "payload_bytes": size,
                                             "p50_us": p50, "p99_us": p99,
                                             "p50_ratio": p50 / a50, "p99_ratio": p99 / a99}
            rows.append(row)
        self.report.section(
            "latency", "1. One caller: Echo latency (µs, lower is better)",
            "grpcio → C++ gRPC sync server",
            "%d calls per client and size, clients taking turns in %d rounds; "
            "ratio < 1 is faster than grpcio." % (s.latency_calls, s.latency_rounds),
            ["client → server", "64 B p50", "×", "64 B p99", "×",
             "16 KiB p50", "×", "16 KiB p99", "×"], rows, data)
        # Where the time goes: CPU and context switches per call on each side.
        # The client's CPU is also given against the raw SP client's to the
        # same server (envelope built once): the Python floor of a call.
        rows = []
        data = {}
        raw = {size: costs[("client", "rawsp_env", size)] for size in sizes}
        for k in order + ["c_hoteld", "c_raw"]:
            row = [names[k]]
            for size in sizes:
                cc = costs.get(("client", k, size))
                sc = costs.get(("server", k, size))
                c_cpu, c_sw = cc.per_call() if cc else (float("nan"), float("nan"))
                s_cpu, s_sw = sc.per_call() if sc and sc.pid else (float("nan"), float("nan"))
                c_mean = c_cpu
                t_cpu = vs_raw = spread = float("nan")
                if cc:  # (a server's figures stay the mean: its process
                    # total comes in 10 ms ticks, too coarse for one block)
                    c_cpu = cc.median_per_call()
                    t_cpu = percentile(sorted(cc.thread_blocks), 0.5)
                    vs_raw, spread = ratio_vs(cc.thread_blocks, raw[size].thread_blocks)
                row += [fmt(c_cpu), fmt(t_cpu), ratio_str(vs_raw), fmt(c_sw),
                        fmt(s_cpu), (">= " if sc is not None and sc.lossy else "") + fmt(s_sw)]
                data["%s/%d" % (k, size)] = {"client": names[k], "payload_bytes": size,
                                             "client_cpu_us": c_cpu, "client_switches": c_sw,
                                             "client_thread_cpu_us": t_cpu,
                                             "client_cpu_vs_raw_sp": vs_raw,
                                             "client_cpu_vs_raw_sp_iqr": spread,
                                             "client_cpu_mean_us": c_mean,
                                             "server_cpu_us": s_cpu, "server_switches": s_sw}
            rows.append(row)
        threads = {k: thread_count(pid) for k, pid in self.server_pid.items()}
        data["server_threads"] = dict(threads)
        self.report.section(
            "latency_cost", "1b. One caller: CPU and context switches per call",
            "none (absolute figures)",
            "Same calls as table 1; the client's CPU per call is the median over the rounds "
            "(the mean of every call is in results.json), the server's the mean. Client CPU: "
            "this Python process (getrusage: all its threads, grpcio's included; the C "
            "client's own cost is not counted); thread CPU: the calling thread's alone "
            "(time.thread_time; grpcio does its I/O on other threads). \"× raw SP\": the "
            "median over the rounds of the client's thread CPU against the raw SP Python "
            "client's to hoteld (envelope built once) in the same round; server: "
            "every thread of the server process (/proc/PID/task/*/schedstat and status; "
            "\">=\": threads ended meanwhile, their switches are lost). "
            "Server threads: hoteld %d, C++ gRPC %d, libmicrohttpd %d, NNG echo %d."
            % (threads["nngrpc"], threads["grpc"], threads["http"], threads["rawsp"]),
            ["client → server", "64 B client CPU µs", "thread CPU µs", "× raw SP", "client cs",
             "server CPU µs", "server cs", "16 KiB client CPU µs", "thread CPU µs", "× raw SP",
             "client cs", "server CPU µs", "server cs"],
            rows, data)
        for size in sizes:
            d = data["nngrpc/%d" % size]
            r = data["rawsp_env/%d" % size]
            self.report.goal(
                "client_cpu_%d" % size,
                "client CPU per call, Echo %s: nngrpc Python <= 1.2x the raw SP Python client "
                "(envelope built once, same hoteld; calling thread, median of the rounds' "
                "ratios)" % size_name(size),
                d["client_cpu_vs_raw_sp"],
                "%.2fx, quartiles %s (%s vs %s µs)" % (
                    d["client_cpu_vs_raw_sp"], d["client_cpu_vs_raw_sp_iqr"],
                    fmt(d["client_thread_cpu_us"]), fmt(r["client_thread_cpu_us"])),
                1.2, False)
        self.instructions(sizes)

        p50, _ = fig("nngrpc", 64)
        a50, _ = anchor[64]
        self.report.goal("latency_p50_64", "single-call p50, Echo 64 B: nngrpc Python → hoteld "
                         "<= 1.0x grpcio → C++ gRPC", p50 / a50,
                         "%.2fx (%s vs %s µs)" % (p50 / a50, fmt(p50), fmt(a50)), 1.0, False)

    def instructions(self, sizes: Sequence[int]) -> None:
        """Table 1c: user-space instructions per call of the nngrpc client
        and of the raw SP client (envelope built once) to the same hoteld,
        counted by callgrind around a block of calls (_cgmark; the
        interpreter's start, the imports and the warm-up are left out).
        Deterministic: other work on the machine does not change it, and
        the kernel's share of a call (the same system calls on both sides,
        save nngrpc's poll) is not in it.  Skipped without valgrind."""
        calls = 100 if self.s.quick else 300
        if not os.path.exists(os.path.join(self.dir, "_cgmark.so")) or not shutil.which(
                "valgrind"):
            log("no valgrind or no _cgmark.so: table 1c skipped")
            return
        out = os.path.join(self.dir, "callgrind")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               "--callgrind-out-file=" + os.path.join(out, "cg.out"),
               sys.executable, os.path.abspath(__file__), "--build", self.build,
               "--count-instructions", "%s,%d" % (self.urls["hoteld"], calls)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=600)
        if proc.returncode != 0:
            raise BenchFailure("callgrind run failed: %s" % proc.stderr[-2000:])
        counts: Dict[str, float] = {}
        for name in os.listdir(out):  # one file per dump: cg.out.N
            label, total = "", 0
            with open(os.path.join(out, name)) as f:
                for line in f:
                    if line.startswith("desc: Trigger: Client Request: "):
                        label = line.rsplit(":", 1)[1].strip()
                    elif line.startswith("totals:"):
                        total = int(line.split()[1])
            if label:
                counts[label] = total / calls
        rows: List[List[str]] = []
        data: Dict[str, Any] = {}
        for k in ("nngrpc", "rawsp_env"):
            row = ["%s → %s" % (self.clients[k].name, self.clients[k].server)]
            for size in sizes:
                ours, anchor = counts.get("%s/%d" % (k, size)), counts.get("rawsp_env/%d" % size)
                if ours is None or not anchor:
                    raise BenchFailure("callgrind counted no block %s/%d" % (k, size))
                row += ["{:,.0f}".format(ours), ratio_str(ours / anchor)]
                data["%s/%d" % (k, size)] = {"instructions": ours, "ratio": ours / anchor}
            rows.append(row)
        self.report.section(
            "latency_instructions", "1c. One caller: instructions per call (callgrind)",
            "raw SP Python → hoteld (envelope built once)",
            "%d calls per block, user space only (the interpreter, libc, protobuf: what the "
            "client's code costs, not the kernel's socket work), as counted by valgrind "
            "--tool=callgrind; the same on every run and every machine load. A copy counts "
            "one instruction per byte (rep movsb), so at 16 KiB the payload's copies weigh "
            "more than they cost." % calls,
            ["client → server", "64 B instructions", "×", "16 KiB instructions", "×"],
            rows, data)

    # -- 2. throughput --
    def throughput(self) -> None:
        s = self.s
        order = ["nngrpc", "grpc", "http", "rawsp"]
        results: Dict[Tuple[str, int, int], Run] = {}
        costs: Dict[Tuple[str, int, int], Tuple[Cost, Cost]] = {}
        for size in s.tput_sizes:
            payload = random.Random(size).randbytes(size)
            for n in s.tput_threads:
                log("throughput, %d threads, %s" % (n, size_name(size)))
                for rnd in range(s.tput_rounds):  # alternate the order, keep the best
                    for k in (order if rnd % 2 == 0 else order[::-1]):
                        c = self.clients[k]
                        cc, sc = Cost(None), Cost(self.server_pid[k])
                        r = run_threads(lambda: c.echo(payload), n, s.tput_s, costs=(cc, sc))
                        best = results.get((k, size, n))
                        if best is None or r.rate > best.rate:
                            results[(k, size, n)] = r
                            costs[(k, size, n)] = (cc, sc)
        rows: List[List[str]] = []
        data: Dict[str, Any] = {}
        for size in s.tput_sizes:
            for k in order:
                c = self.clients[k]
                row = ["%s → %s" % (c.name, c.server), size_name(size)]
                for n in s.tput_threads:
                    r = results[(k, size, n)]
                    a = results[("grpc", size, n)]
                    row += [fmt(r.rate, 0), ratio_str(r.rate / a.rate)]
                    cc, sc = costs[(k, size, n)]
                    data["%s/%d/%d" % (k, size, n)] = {
                        "client": c.name, "payload_bytes": size, "threads": n,
                        "calls_per_s": r.rate, "ratio": r.rate / a.rate,
                        "p50_us": r.p(0.5), "p99_us": r.p(0.99), "calls": r.calls,
                        "client_cpu_us": cc.per_call()[0],
                        "client_switches": cc.per_call()[1],
                        "server_cpu_us": sc.per_call()[0],
                        "server_switches": sc.per_call()[1]}
                rows.append(row)
        hdr = ["client → server", "payload"]
        for n in s.tput_threads:
            hdr += ["%d thread%s calls/s" % (n, "" if n == 1 else "s"), "×"]
        self.report.section(
            "throughput", "2. Python threads: Echo throughput (calls/s, higher is better)",
            "grpcio → C++ gRPC sync server, same payload and threads",
            "%.1f s per cell, best of %d runs in alternating order. nngrpc: one Channel "
            "shared by all threads; grpcio: one channel shared; http.client and raw SP: "
            "one connection per thread." % (s.tput_s, s.tput_rounds),
            hdr, rows, data)
        # Where the CPU goes: both processes share the machine's CPUs.
        rows = []
        n_max = max(s.tput_threads)
        for size in [x for x in (64, 16 * KIB) if x in s.tput_sizes]:
            for k in order:
                c = self.clients[k]
                row = ["%s → %s" % (c.name, c.server), size_name(size)]
                for n in (1, n_max):
                    cc, sc = costs[(k, size, n)]
                    (c_cpu, c_sw), (s_cpu, s_sw) = cc.per_call(), sc.per_call()
                    row += [fmt(c_cpu), fmt(c_sw), fmt(s_cpu),
                            (">= " if sc.lossy else "") + fmt(s_sw), fmt(c_cpu + s_cpu)]
                rows.append(row)
        hdr = ["client → server", "payload"]
        for n in (1, n_max):
            t = "%d thr" % n
            hdr += [t + " client CPU µs", "client cs", "server CPU µs", "server cs",
                    "total CPU µs"]
        self.report.section(
            "throughput_cost", "2b. Python threads: CPU and context switches per call",
            "none (absolute figures)",
            "From the runs of table 2. With %d CPUs shared by client and server, "
            "calls/s can be at most %d s / (total CPU per call); the client's part "
            "mostly holds the GIL." % (os.cpu_count() or 0, os.cpu_count() or 0),
            hdr, rows, {})
        for size, target in ((64, 2.0), (16 * KIB, 3.0)):
            if 32 in s.tput_threads and size in s.tput_sizes:
                ours = results[("nngrpc", size, 32)].rate
                theirs = results[("grpc", size, 32)].rate
                self.report.goal(
                    "tput32_%d" % size,
                    "32 Python threads on one Channel, Echo %s: >= %.1fx grpcio"
                    % (size_name(size), target),
                    ours / theirs,
                    "%.2fx (%s vs %s calls/s)" % (ours / theirs, fmt(ours, 0), fmt(theirs, 0)),
                    target, True)

    # -- 3. sleep --
    def sleep(self) -> None:
        s = self.s
        order = ["nngrpc", "grpc", "http", "gil"]
        rows: List[List[str]] = []
        data: Dict[str, Any] = {}
        ratios: Dict[str, float] = {}
        for k in order:
            c = self.clients[k]
            log("sleep %s" % k)
            one = run_threads(lambda: c.sleep(10), 1, s.sleep_s, warm=1)
            split = ["", ""]
            if isinstance(c, NngrpcClient):
                q1, r1 = c.take_server_times()
            many = run_threads(lambda: c.sleep(10), 32, s.sleep_s, warm=1)
            if isinstance(c, NngrpcClient):
                q32, r32 = c.take_server_times()
                split = ["%.0f / %.0f" % (q1, q32), "%.0f / %.0f" % (r1, r32)]
                data["nngrpc_server_us"] = {"queue_1": q1, "run_1": r1,
                                            "queue_32": q32, "run_32": r32}
            ratio = many.rate / one.rate
            ratios[k] = ratio
            mean1 = 1e3 / one.rate  # ms per call per thread
            mean32 = 32e3 / many.rate
            rows.append(["%s → %s" % (c.name, c.server), fmt(one.rate), fmt(many.rate),
                         "%.1fx" % ratio, "%.0f%%" % (100 * ratio / 32),
                         "%.2f / %.2f" % (mean1, mean32)] + split)
            data[k] = {"client": c.name, "one_thread_calls_per_s": one.rate,
                       "threads_32_calls_per_s": many.rate, "speedup": ratio,
                       "ms_per_call_1": mean1, "ms_per_call_32": mean32,
                       "p50_us_32": many.p(0.5), "p99_us_32": many.p(0.99)}
        self.report.section(
            "sleep", "3. Slow calls: 32 threads × Sleep(10 ms) against 1 thread",
            "the same client with 1 thread; ideal 32x",
            "%.1f s per run; hoteld has --workers 64; _gilhold.work(10) sleeps "
            "holding the GIL. ms per call = threads / calls/s. For nngrpc, the server's "
            "own timings from the replies: queue = waiting for a worker, run = the "
            "handler (the 10 ms sleep); the rest of a call is transport and client."
            % s.sleep_s,
            ["client → server", "1 thread calls/s", "32 threads calls/s", "speed-up",
             "of ideal", "ms per call 1 / 32 thr", "server queue µs 1 / 32",
             "server run µs 1 / 32"], rows, data)
        self.report.goal("sleep_32", "32 threads × 10 ms of server work: >= 31x one thread "
                         "(nngrpc)", ratios["nngrpc"], "%.1fx" % ratios["nngrpc"], 31.0, True)

    # -- 4. loadgen --
    def loadgen(self) -> None:
        s = self.s
        rows: List[List[str]] = []
        data: Dict[str, Any] = {}
        sizes = (64, 16 * KIB)
        ratio64 = float("nan")
        servers = (("hoteld", "nngrpc-bench → hoteld Echo", ["--url", self.urls["hoteld"]],
                    self.server_pid["nngrpc"]),
                   ("raw", "nngrpc-bench --raw → NNG echo server",
                    ["--url", self.urls["nng"], "--raw"], self.server_pid["rawsp"]))
        for size in sizes:
            runs: Dict[str, List[Tuple[Dict[str, Any], Cost]]] = {"hoteld": [], "raw": []}
            common = ["--concurrency", "64", "--duration", str(s.loadgen_s), "--warmup",
                      "0.3", "--payload-bytes", str(size)]
            log("loadgen %s" % size_name(size))
            for _ in range(s.loadgen_rounds):  # alternate, keep the best
                for key, _name, args, pid in servers:
                    cost = Cost(pid)
                    cost.start()
                    out = run_nngrpc_bench(self.loadgen_bin, args + common)
                    cost.stop(out["calls_started"])
                    runs[key].append((out, cost))
            best = {k: max(v, key=lambda rc: rc[0]["calls_per_s"]) for k, v in runs.items()}
            anchor = best["raw"][0]["calls_per_s"]
            ratio = best["hoteld"][0]["calls_per_s"] / anchor
            if size == 64:
                ratio64 = ratio
            for key, name, _args, _pid in servers:
                out, cost = best[key]
                cpu, sw = cost.per_call()
                rows.append([name, size_name(size), fmt(out["calls_per_s"], 0),
                             ratio_str(out["calls_per_s"] / anchor),
                             fmt(out["latency_us"]["p50"]), fmt(out["latency_us"]["p99"]),
                             fmt(cpu), fmt(sw)])
            data[str(size)] = {
                "ratio": ratio,
                "hoteld": best["hoteld"][0], "raw": best["raw"][0],
                "hoteld_server_cpu_us": best["hoteld"][1].per_call()[0],
                "hoteld_server_switches": best["hoteld"][1].per_call()[1],
                "raw_server_cpu_us": best["raw"][1].per_call()[0],
                "raw_server_switches": best["raw"][1].per_call()[1],
                "all_hoteld": [o["calls_per_s"] for o, _ in runs["hoteld"]],
                "all_raw": [o["calls_per_s"] for o, _ in runs["raw"]]}
        self.report.section(
            "loadgen", "4. C load generator, 64 calls in flight (calls/s, higher is better)",
            "the raw NNG echo server (REP, 64 contexts, echo in the aio callback)",
            "%.1f s per run, best of %d alternating runs. The client and the server share "
            "the machine's %d CPUs. Server CPU and context switches per call over all its "
            "threads." % (s.loadgen_s, s.loadgen_rounds, os.cpu_count() or 0),
            ["client → server", "payload", "calls/s", "×", "p50 µs", "p99 µs",
             "server CPU µs/call", "server cs/call"], rows, data)
        self.report.goal("loadgen_64", "C load generator → hoteld Echo 64 B at 64 in flight: "
                         ">= 90% of raw NNG echo", ratio64, "%.0f%%" % (100 * ratio64),
                         0.9, True)

    # -- 5. search --
    def search(self) -> None:
        s = self.s
        import nngrpc
        from hotel.v1 import hotel_nngrpc, hotel_pb2

        jsonl, gen_id = self._hotel_file(hotel_nngrpc, hotel_pb2)
        url = "tcp://127.0.0.1:%d" % free_port()
        srv = self._start(Server(
            "hoteld-hotels", [self.hoteld_bin, "--data", jsonl, "--listen", url,
                              "--log-level", "warn"], self.logdir))
        ch = nngrpc.Channel(url, backoff=0.01, backoff_max=0.05)
        stub = hotel_nngrpc.HotelSearchStub(ch)
        try:
            srv.wait_ready(lambda: stub.Stats(hotel_pb2.StatsRequest(), timeout=2.0)
                           .hotel_count == s.hotels)
            stats = stub.Stats(hotel_pb2.StatsRequest(), timeout=10)
            if gen_id and stats.dataset_id != gen_id:
                raise BenchFailure("hoteld --data %s has dataset id %s, the generated one %s"
                                   % (jsonl, stats.dataset_id, gen_id))
            self.rss_hotels_start = vm_kib(srv.pid, "VmRSS")
            db_path, hotels = self._sqlite_data(jsonl)
            queries = make_queries(hotels, s.search_queries, random.Random(42))
            del hotels
            self._check_search(stub, hotel_pb2, db_path, queries)

            rows: List[List[str]] = []
            data: Dict[str, Any] = {}
            runs: Dict[Tuple[str, int], Run] = {}
            conns: List[sqlite3.Connection] = []
            conns_lock = threading.Lock()
            for n in (1, 8):
                for k in ("nngrpc", "sqlite"):
                    log("search %s, %d threads" % (k, n))
                    counter = iter(range(10**9))

                    def make_call(k: str = k) -> Callable[[], None]:
                        i0 = next(counter) * 7919
                        state = [i0]
                        if k == "nngrpc":
                            reqs = [hotel_pb2.SearchRequest(query=q, sort=hotel_pb2.SORT_PRICE,
                                                            page_size=10) for q in queries]

                            def rpc_call() -> None:
                                state[0] += 1
                                stub.Search(reqs[state[0] % len(reqs)], timeout=CALL_TIMEOUT)
                            return rpc_call
                        conn = sqlite_connect(db_path)
                        with conns_lock:
                            conns.append(conn)

                        def sql_call() -> None:
                            state[0] += 1
                            sqlite_search(conn, queries[state[0] % len(queries)], 10)
                        return sql_call

                    runs[(k, n)] = run_threads(make_call, n, s.search_s)
            for c in conns:
                c.close()
            self.rss_hotels_after = vm_kib(srv.pid, "VmRSS")
            self.rss_hotels_hwm = vm_kib(srv.pid, "VmHWM")
            names = {"nngrpc": "nngrpc Python → hoteld Search",
                     "sqlite": "sqlite3 FTS5 (in-process, one connection per thread)"}
            for n in (1, 8):
                a = runs[("sqlite", n)]
                for k in ("nngrpc", "sqlite"):
                    r = runs[(k, n)]
                    rows.append([names[k], str(n), fmt(r.rate, 0), ratio_str(r.rate / a.rate),
                                 fmt(r.p(0.5)), fmt(r.p(0.99))])
                    data["%s/%d" % (k, n)] = {"client": names[k], "threads": n,
                                              "queries_per_s": r.rate, "ratio": r.rate / a.rate,
                                              "p50_us": r.p(0.5), "p99_us": r.p(0.99)}
            data["queries"] = len(queries)
            data["dataset_id"] = stats.dataset_id
            r8 = runs[("nngrpc", 8)].rate / runs[("sqlite", 8)].rate
            self.report.section(
                "search", "5. Search on %s hotels (queries/s, higher is better)"
                % "{:,}".format(s.hotels),
                "SQLite FTS5 with the same data and queries",
                "hoteld and SQLite load the same JSON Lines file (the engine's generated "
                "hotels, paged out of a hoteld). %d AND-of-words queries, last word as a "
                "prefix, first page of 10 by price (id tie-break) plus the total; %.1f s per "
                "run. Result sets checked equal first: %d top pages of 100, %d complete id "
                "sets."
                % (len(queries), s.search_s, len(queries), min(s.search_full_sets, len(queries))),
                ["client → server", "threads", "queries/s", "×", "p50 µs", "p99 µs"],
                rows, data)
            self.report.goal("search_8", "Search, 8 threads, 100k hotels: >= 5x SQLite FTS5",
                             r8, "%.2fx" % r8, 5.0, True)
        finally:
            ch.close()
            self._stop(srv)

    def _hotel_file(self, svc: Any, pb: Any) -> Tuple[str, str]:
        """Returns (path, dataset id) of a JSON Lines file with the engine's
        generated hotels (--hotels N --seed 1): a hoteld generates them and
        they are paged out of it with Search (empty query, id order), so
        hoteld (--data) and SQLite load the very same file.  The file is
        kept in BUILD/bench/data, keyed by count, seed and the hoteld
        binary; the dataset id is "" when the file came from that cache."""
        import nngrpc
        from google.protobuf.json_format import MessageToDict  # type: ignore

        data_dir = os.path.join(self.dir, "data")
        os.makedirs(data_dir, exist_ok=True)
        st = os.stat(self.hoteld_bin)
        jsonl = os.path.join(data_dir, "hotels-%d-seed1-%x.jsonl"
                             % (self.s.hotels, (st.st_mtime_ns ^ st.st_size) & 0xFFFFFFFF))
        if os.path.exists(jsonl):
            return jsonl, ""
        for old in os.listdir(data_dir):  # older hoteld builds' files
            os.remove(os.path.join(data_dir, old))
        url = "tcp://127.0.0.1:%d" % free_port()
        gen = self._start(Server(
            "hoteld-generate", [self.hoteld_bin, "--hotels", str(self.s.hotels), "--seed", "1",
                                "--listen", url, "--log-level", "warn"], self.logdir))
        try:
            with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
                stub = svc.HotelSearchStub(ch)
                gen.wait_ready(lambda: stub.Stats(pb.StatsRequest(), timeout=2.0)
                               .hotel_count == self.s.hotels)
                dataset_id = stub.Stats(pb.StatsRequest(), timeout=10).dataset_id
                log("paging %d hotels out of hoteld into %s" % (self.s.hotels, jsonl))
                tmp = jsonl + ".tmp"
                token = ""
                n = 0
                with open(tmp, "w") as f:
                    while True:
                        resp = stub.Search(pb.SearchRequest(query="", page_size=100,
                                                            page_token=token),
                                           timeout=CALL_TIMEOUT)
                        for hit in resp.hits:
                            f.write(json.dumps(MessageToDict(hit.hotel), ensure_ascii=False))
                            f.write("\n")
                            n += 1
                        token = resp.next_page_token
                        if not token:
                            break
        finally:
            self._stop(gen)
        if n != self.s.hotels:
            raise BenchFailure("paged out %d hotels, expected %d" % (n, self.s.hotels))
        os.replace(tmp, jsonl)
        return jsonl, dataset_id

    def _sqlite_data(self, jsonl: str) -> Tuple[str, List[Dict[str, Any]]]:
        """Reads the hotels of jsonl and builds (or reuses) its SQLite FTS5
        database next to it."""
        hotels = []
        with open(jsonl) as f:
            for line in f:
                hotels.append(json.loads(line))
        db = jsonl[: -len(".jsonl")] + ".sqlite"
        if not os.path.exists(db):
            log("building the SQLite FTS5 table %s" % db)
            build_sqlite(db + ".tmp", hotels)
            os.replace(db + ".tmp", db)
        return db, hotels

    def _check_search(self, stub: Any, pb: Any, db: str, queries: List[str]) -> None:
        """Same ids on both sides: the top 100 by (price, id), the totals,
        and for some queries the complete sets over every page."""
        conn = sqlite_connect(db)
        full_left = self.s.search_full_sets
        try:
            for q in queries:
                resp = stub.Search(pb.SearchRequest(query=q, sort=pb.SORT_PRICE, page_size=100),
                                   timeout=CALL_TIMEOUT)
                ids, total = sqlite_search(conn, q, 100)
                got = [h.hotel.id for h in resp.hits]
                if resp.total != total or got != ids:
                    raise BenchFailure(
                        "search results differ for %r: hoteld total %d, first ids %s; "
                        "SQLite total %d, first ids %s"
                        % (q, resp.total, got[:8], total, ids[:8]))
                if full_left > 0 and total <= 3000:
                    full_left -= 1
                    every = set(got)
                    token = resp.next_page_token
                    while token:
                        page = stub.Search(pb.SearchRequest(query=q, sort=pb.SORT_PRICE,
                                                            page_size=100, page_token=token),
                                           timeout=CALL_TIMEOUT)
                        every.update(h.hotel.id for h in page.hits)
                        token = page.next_page_token
                    want = {r[0] for r in conn.execute(
                        "SELECT rowid FROM hotels_fts WHERE hotels_fts MATCH ?",
                        (fts_query(q),))}
                    if every != want:
                        raise BenchFailure(
                            "search result sets differ for %r: %d only in hoteld, %d only "
                            "in SQLite" % (q, len(every - want), len(want - every)))
        finally:
            conn.close()

    # -- 7, 8. isolation --
    def isolation(self) -> None:
        import bench_isolation

        bench_isolation.run(self)

    # -- 11. compression --
    def compression(self) -> None:
        import bench_compression

        bench_compression.run(self)

    # -- 6. rss --
    def rss(self) -> None:
        s = self.s
        import nngrpc
        from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

        url_port = free_port()
        url = "tcp://127.0.0.1:%d" % url_port
        srv = self._start(Server(
            "hoteld-rss", [self.hoteld_bin, "--testing", "--no-hotels", "--listen", url,
                           "--log-level", "warn"], self.logdir))
        socks: List[socket.socket] = []
        try:
            with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
                stub = testing_nngrpc.TestingStub(ch)

                def up() -> bool:
                    stub.Echo(testing_pb2.EchoRequest(payload=b"x"), timeout=1.0)
                    return True

                srv.wait_ready(up)
                for _ in range(20):
                    stub.Echo(testing_pb2.EchoRequest(payload=b"x" * 64), timeout=5)
            base = vm_kib(srv.pid, "VmRSS")
            log("opening %d idle SP connections" % s.idle_clients)
            hello = b"\x00SP\x00\x00\x30\x00\x00"
            for _ in range(s.idle_clients):
                sk = socket.create_connection(("127.0.0.1", url_port), timeout=10)
                socks.append(sk)
                sk.sendall(hello)
            for sk in socks:  # every handshake answered: the server has the pipe
                if _recv_exact(sk, 8)[4:6] != b"\x00\x31":
                    raise BenchFailure("idle client: the peer is not a REP socket")
            srv.check_alive()
            idle = _settled_rss(srv.pid)
            for sk in socks:
                sk.close()
            socks = []
        finally:
            for sk in socks:
                sk.close()
            self._stop(srv)

        rows = []
        data: Dict[str, Any] = {"testing_only_kib": base, "idle_clients": s.idle_clients,
                                "with_idle_clients_kib": idle}
        limit = {"testing": 10 * KIB, "hotels": 120 * KIB, "idle": 50 * KIB}
        rows.append(["hoteld --testing --no-hotels, after 20 calls", fmt(base / KIB), "",
                     "<= 10 MiB", ratio_str(base / limit["testing"])])
        rows.append(["  + %d idle SP connections" % s.idle_clients, fmt(idle / KIB),
                     "+" + fmt((idle - base) / KIB), "<= +50 MiB",
                     ratio_str((idle - base) / limit["idle"])])
        if self.echo_hoteld is not None and self.echo_hoteld.proc is not None:
            after = vm_kib(self.echo_hoteld.pid, "VmRSS")
            hwm = vm_kib(self.echo_hoteld.pid, "VmHWM")
            data["testing_after_load_kib"] = after
            data["testing_after_load_hwm_kib"] = hwm
            rows.append(["hoteld --testing --workers 64 after the Echo runs (peak)",
                         "%s (%s)" % (fmt(after / KIB), fmt(hwm / KIB)), "", "(info)", ""])
        hot = getattr(self, "rss_hotels_after", None)
        if hot is not None:
            start = self.rss_hotels_start
            data["hotels_start_kib"] = start
            data["hotels_after_search_kib"] = hot
            data["hotels_hwm_kib"] = self.rss_hotels_hwm
            rows.append(["hoteld with %s hotels, ready" % "{:,}".format(s.hotels),
                         fmt(start / KIB), "", "(info)", ""])
            rows.append(["  after the search runs (peak)",
                         "%s (%s)" % (fmt(hot / KIB), fmt(self.rss_hotels_hwm / KIB)),
                         "+" + fmt((hot - start) / KIB), "<= 120 MiB",
                         ratio_str(hot / limit["hotels"])])
        self.report.section(
            "rss", "6. hoteld resident memory (VmRSS, MiB)", "the goal's limit",
            "From /proc/PID/status; ratio = measured / limit. The 100k-hotel figure is "
            "taken after the search runs (run `--only search,rss` to get it).",
            ["hoteld", "VmRSS MiB", "delta MiB", "goal", "× limit"], rows, data)
        self.report.goal("rss_testing", "RSS, testing service only: <= 10 MiB", base / KIB,
                         "%.1f MiB" % (base / KIB), 10.0, False)
        if hot is not None:
            self.report.goal("rss_hotels", "RSS with 100k hotels: <= 120 MiB", hot / KIB,
                             "%.1f MiB" % (hot / KIB), 120.0, False)
        self.report.goal("rss_idle", "1000 idle connected clients add <= 50 MiB",
                         (idle - base) / KIB, "+%.1f MiB" % ((idle - base) / KIB), 50.0, False)


    def _wait_echo(self, srv: Server, url: str) -> None:
        import nngrpc
        from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

        with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
            stub = testing_nngrpc.TestingStub(ch)

            def up() -> bool:
                stub.Echo(testing_pb2.EchoRequest(payload=b"x"), timeout=1.0)
                return True

            srv.wait_ready(up)

    # -- 10. overload --
    OVERLOAD_WORKERS = 4
    OVERLOAD_QUEUE = 64
    OVERLOAD_SLEEP_MS = 20

    def overload(self) -> None:
        """Served latency and throughput under 10x load, CoDel on and off."""
        s = self.s
        capacity = self.OVERLOAD_WORKERS * 1000.0 / self.OVERLOAD_SLEEP_MS
        req = os.path.join(self.dir, "sleep20.bin")
        with open(req, "wb") as f:  # SleepRequest{ms: 20}
            f.write(bytes([0x08, self.OVERLOAD_SLEEP_MS]))
        loads = (
            ("unloaded: 1 caller", ["--concurrency", "1"]),
            ("closed loop: 60 callers", ["--concurrency", "60"]),
            ("open loop: %d calls/s (10x)" % (10 * capacity),
             ["--rate", "%d" % (10 * capacity), "--concurrency", "2000"]),
        )
        runs: Dict[Tuple[int, int], Dict[str, Any]] = {}
        for target in (5, 0):
            url = "tcp://127.0.0.1:%d" % free_port()
            srv = self._start(Server(
                "hoteld-overload-%d" % target,
                [self.hoteld_bin, "--testing", "--no-hotels", "--listen", url,
                 "--workers", str(self.OVERLOAD_WORKERS), "--queue", str(self.OVERLOAD_QUEUE),
                 "--queue-target-ms", str(target), "--log-level", "warn"], self.logdir))
            try:
                self._wait_echo(srv, url)
                for i, (name, args) in enumerate(loads):
                    log("overload: admission %s, %s" % ("on" if target else "off", name))
                    runs[(target, i)] = run_loadgen_refusals(self.loadgen_bin, [
                        "--url", url, "--method", "/nngrpc.testing.v1.Testing/Sleep",
                        "--request-file", req, "--duration", str(s.overload_s),
                        "--warmup", "0.5"] + args)
            finally:
                self._stop(srv)
        rows: List[List[str]] = []
        data: Dict[str, Any] = {"capacity": capacity, "runs": {}}
        goals: Dict[str, Tuple[float, float, float]] = {}
        for target in (5, 0):
            unloaded = runs[(target, 0)]["latency_us"]["p99"]
            for i, (name, _args) in enumerate(loads):
                out = runs[(target, i)]
                secs = out["duration_s"]
                offered = out["calls"] / secs
                served = out["ok"] / secs
                shed = out["refused"]["count"] / secs
                p99 = out["latency_us"]["p99"]
                ratio = p99 / unloaded
                rej = out["refused"]["latency_us"]
                rows.append([name, "on, target 5 ms" if target else "off",
                             fmt(offered, 0), fmt(served, 0), "%.0f%%" % (100 * served / capacity),
                             fmt(shed, 0), fmt(out["latency_us"]["p50"] / 1e3),
                             fmt(p99 / 1e3), "%.2f" % ratio,
                             "%s / %s" % (fmt(rej["p50"] / 1e3, 2), fmt(rej["p99"] / 1e3, 2))
                             if out["refused"]["count"] else ""])
                data["runs"]["%s/%d" % ("on" if target else "off", i)] = {
                    "load": name, "queue_target_ms": target, "offered_per_s": offered,
                    "served_per_s": served, "shed_per_s": shed, "served_p99_us": p99,
                    "unloaded_p99_us": unloaded, "p99_ratio": ratio, "bench": out}
                if target and i > 0:
                    goals["closed" if i == 1 else "open"] = (served / capacity, ratio,
                                                             rej["p99"] / 1e3)
        self.report.section(
            "overload", "10. Overload: served latency and throughput at 10x capacity",
            "the same server with one caller (unloaded p99)",
            "hoteld --testing --workers %d --queue %d serving Sleep(%d ms): capacity %.0f "
            "calls/s. nngrpc-bench (C), %.1f s per run: 60 callers in a closed loop (each "
            "sends again at once, shed or not), then calls started at 10x capacity whatever "
            "happened before (open loop; latency from each call's due time). Admission on: "
            "CoDel, --queue-target-ms 5 --queue-interval-ms 100 (the defaults); off: "
            "--queue-target-ms 0, only a full queue refuses. Shed = answered "
            "RESOURCE_EXHAUSTED (queue full or shed); × = served p99 / unloaded p99."
            % (self.OVERLOAD_WORKERS, self.OVERLOAD_QUEUE, self.OVERLOAD_SLEEP_MS, capacity,
               s.overload_s),
            ["load", "admission", "offered/s", "served/s", "of capacity", "shed/s",
             "served p50 ms", "served p99 ms", "×", "shed p50 / p99 ms"], rows, data)
        for key, (share, ratio, shed_p99) in goals.items():
            loop = "closed loop" if key == "closed" else "open loop"
            self.report.goal("overload_%s_p99" % key, "overload, %s: served p99 <= 2x "
                             "unloaded" % loop, ratio, "%.2fx" % ratio, 2.0, False)
            self.report.goal("overload_%s_served" % key, "overload, %s: served >= 90%% of "
                             "capacity" % loop, share, "%.0f%%" % (100 * share), 0.9, True)
            self.report.goal("overload_%s_shed" % key, "overload, %s: shed calls answered "
                             "within 10 ms (p99)" % loop, shed_p99, "%.1f ms" % shed_p99,
                             10.0, False)


def run_loadgen_refusals(binary: str, args: List[str]) -> Dict[str, Any]:
    """nngrpc-bench where RESOURCE_EXHAUSTED is an answer, not a failure."""
    cmd = [binary, "--json", "--quiet"] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    try:
        out: Dict[str, Any] = json.loads(p.stdout)
    except ValueError:
        raise BenchFailure("nngrpc-bench printed no JSON (exit %d): %r %r"
                           % (p.returncode, p.stdout[:500], p.stderr[:500])) from None
    others = {k: v for k, v in out["errors_by_code"].items() if k != "RESOURCE_EXHAUSTED"}
    if others or out["ok"] == 0:
        raise BenchFailure("nngrpc-bench: %d ok, errors %s" % (out["ok"], out["errors_by_code"]))
    return out


def _settled_rss(pid: int) -> int:
    """VmRSS once it stops growing (the server finishes its pipe setup
    asynchronously), polled for at most 3 s."""
    last = vm_kib(pid, "VmRSS")
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        time.sleep(0.1)
        now = vm_kib(pid, "VmRSS")
        if now == last:
            return now
        last = now
    return last


# ---- the SQLite FTS5 side ----------------------------------------------------
#
# hoteld folds text (lower case, Latin accents removed, "ß" -> "ss", "æ" ->
# "ae"; src/engine/text.c) and splits on anything that is not a letter or
# digit.  SQLite gets the same tokens: each field is folded here and stored
# as its tokens joined by spaces, in an FTS5 table with the 'ascii'
# tokenizer (which then only splits on the spaces; non-ASCII letters stay
# as they are, as in the engine).  Queries use ASCII words only.

_FOLD_SPECIAL = {
    "ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o",
    "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "þ": "th", "Þ": "th", "ł": "l", "Ł": "l",
    "ħ": "h", "Ħ": "h", "ı": "i", "ŀ": "l", "Ŀ": "l", "ĳ": "ij", "Ĳ": "ij", "ŧ": "t",
    "Ŧ": "t", "ĸ": "k", "ŉ": "n", "ſ": "s",
}


def fold_tokens(text: str) -> List[str]:
    out: List[str] = []
    cur: List[str] = []
    for ch in text:
        cp = ord(ch)
        piece: Optional[str]
        if cp < 0x80:
            piece = ch.lower() if ch.isalnum() else None
        elif 0xC0 <= cp < 0x250:
            if ch in "×÷":
                piece = None
            elif ch in _FOLD_SPECIAL:
                piece = _FOLD_SPECIAL[ch]
            else:
                base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                               if not unicodedata.combining(c)).lower()
                piece = base if base.isascii() and base.isalnum() else ch
        elif unicodedata.combining(ch):
            piece = ""
        elif unicodedata.category(ch)[0] in "LN":
            piece = ch
        else:
            piece = None
        if piece is None:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(piece)
    if cur:
        out.append("".join(cur))
    return out


def build_sqlite(path: str, hotels: List[Dict[str, Any]]) -> None:
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE hotels (
            id INTEGER PRIMARY KEY, name TEXT, city TEXT, country TEXT,
            latitude REAL, longitude REAL, stars INTEGER, price_cents INTEGER,
            rating REAL, review_count INTEGER, amenities TEXT, description TEXT);
        CREATE VIRTUAL TABLE hotels_fts USING fts5(
            name, city, country, description, content='', tokenize='ascii');
        """
    )
    conn.executemany(
        "INSERT INTO hotels VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ((int(h["id"]), h.get("name", ""), h.get("city", ""), h.get("country", ""),
          h.get("latitude", 0.0), h.get("longitude", 0.0), h.get("stars", 0),
          int(h.get("priceCents", 0)), h.get("rating", 0.0), h.get("reviewCount", 0),
          ",".join(h.get("amenities", [])), h.get("description", "")) for h in hotels))
    conn.executemany(
        "INSERT INTO hotels_fts (rowid, name, city, country, description) VALUES (?,?,?,?,?)",
        ((int(h["id"]),) + tuple(" ".join(fold_tokens(h.get(f, "")))
                                 for f in ("name", "city", "country", "description"))
         for h in hotels))
    conn.execute("CREATE INDEX hotels_price ON hotels (price_cents, id)")
    conn.execute("INSERT INTO hotels_fts (hotels_fts) VALUES ('optimize')")
    conn.commit()
    conn.close()


def sqlite_connect(path: str) -> sqlite3.Connection:
    # Read-only, one connection per thread; sqlite3 releases the GIL while
    # SQLite runs a statement.  Sorts in memory (not temp files), and the
    # database memory-mapped so that the threads share the OS page cache
    # instead of each warming its own.
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, check_same_thread=False)
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA mmap_size = 1073741824")
    return conn


def fts_query(q: str) -> str:
    words = fold_tokens(q)
    return " ".join('"%s"' % w for w in words[:-1]) + (" " if len(words) > 1 else "") + \
        '"%s"*' % words[-1]


def sqlite_search(conn: sqlite3.Connection, q: str, limit: int) -> Tuple[List[int], int]:
    """The anchor's Search: the first page by (price, id), whole rows, and
    the total, as hoteld answers."""
    m = fts_query(q)
    rows = conn.execute(
        "SELECT id, name, city, country, latitude, longitude, stars, price_cents, rating,"
        " review_count, amenities, description FROM hotels WHERE id IN"
        " (SELECT rowid FROM hotels_fts WHERE hotels_fts MATCH ?)"
        " ORDER BY price_cents, id LIMIT ?", (m, limit)).fetchall()
    (total,) = conn.execute("SELECT count(*) FROM hotels_fts WHERE hotels_fts MATCH ?",
                            (m,)).fetchone()
    return [r[0] for r in rows], total


def make_queries(hotels: List[Dict[str, Any]], n: int, rng: random.Random) -> List[str]:
    """AND-of-words queries drawn from the data: 1 to 3 ASCII words of one
    hotel's name, city, country and description; the last one often cut to
    a prefix of at least 3 letters."""
    queries: List[str] = []
    seen = set()
    while len(queries) < n:
        h = rng.choice(hotels)
        words = [w for f in ("name", "city", "country", "description")
                 for w in fold_tokens(h.get(f, "")) if w.isascii() and len(w) >= 3]
        if not words:
            continue
        k = rng.choice((1, 2, 2, 3))
        picked = rng.sample(words, min(k, len(words)))
        last = picked[-1]
        if len(last) > 4 and rng.random() < 0.6:
            picked[-1] = last[: rng.randint(3, len(last) - 1)]
        q = " ".join(picked)
        if q not in seen:
            seen.add(q)
            queries.append(q)
    return queries


# ---- output ------------------------------------------------------------------


def count_instructions_child(url: str, calls: int) -> None:
    """Run under callgrind by Bench.instructions: a block of calls of each
    client at each size, its instructions dumped as "<client>/<size>"."""
    import _cgmark

    port = int(url.rsplit(":", 1)[1])
    clients = {"nngrpc": NngrpcClient(url), "rawsp_env": RawSpClient(port, envelope=True)}
    _cgmark.start()
    for size in (64, 16 * KIB):
        payload = random.Random(size).randbytes(size)
        for name, client in clients.items():
            call = client.echo(payload)
            for _ in range(50):  # warm up: the connection, the caches
                call()
            _cgmark.zero()
            for _ in range(calls):
                call()
            _cgmark.dump("%s/%d" % (name, size))
    for client in clients.values():
        client.close()


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for pkg in ("libnng1", "python3-grpcio", "libgrpc++1.51", "libmicrohttpd12",
                "python3-protobuf", "libsqlite3-0"):
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                               capture_output=True, text=True, timeout=10).stdout
            if v:
                info[pkg] = v
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def write_results(bench: Bench, started: float, meta: Dict[str, Any]) -> str:
    rep = bench.report
    lines = ["## Goals (from the issue)", "", "| goal | measured | result |", "|---|---:|---|"]
    for g in rep.goals:
        res = "not measured" if g["met"] is None else ("met" if g["met"] else "**missed**")
        lines.append("| %s | %s | %s |" % (g["goal"], g["shown"], res))
    if rep.failures:
        lines += ["", "## FAILED", ""] + ["- " + f.replace("\n", " ")[:600] for f in rep.failures]
    goals_md = "\n".join(lines)
    print("\n" + goals_md, flush=True)

    elapsed = time.monotonic() - started
    meta["elapsed_s"] = round(elapsed, 1)
    meta["loadavg_end"] = os.getloadavg()
    head = [
        "# nngrpc bench results",
        "",
        "%s, %s run in %.0f s on %s (%s CPUs, %s), Linux %s. Load average at start %s, "
        "at end %s (other processes on the machine share the CPUs)."
        % (meta["date"], "QUICK" if bench.s.quick else "full", elapsed, meta["host"],
           meta["cpus"], meta.get("cpu", "?"), meta["kernel"],
           "/".join("%.1f" % x for x in meta["loadavg_start"]),
           "/".join("%.1f" % x for x in meta["loadavg_end"])),
        "Every figure's ratio (×) is to its section's anchor, measured in this same run.",
    ]
    busy = max(meta["loadavg_start"][0], meta["loadavg_end"][0])
    if busy > 0.5 * (meta.get("cpus") or 1):
        head.append("**The machine was busy (load average %.1f on %s CPUs): absolute figures "
                    "are noisy; compare ratios, and rerun on a quiet machine to judge the "
                    "goals.**" % (busy, meta.get("cpus")))
    md = "\n".join(head) + "\n" + "\n".join(rep.md) + "\n\n" + goals_md + "\n"
    with open(os.path.join(bench.dir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(bench.dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "quick": bench.s.quick, "sections": rep.sections,
                   "goals": rep.goals, "failures": rep.failures}, f, indent=2, default=str)
    return md


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory (default build)")
    ap.add_argument("--quick", action="store_true", help="short run for CI (< 2 minutes)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(SECTIONS))
    ap.add_argument("--count-instructions", default="", help=argparse.SUPPRESS)  # URL,CALLS
    args = ap.parse_args(argv)
    only = [x for x in args.only.split(",") if x] or list(SECTIONS)
    bad = [x for x in only if x not in SECTIONS]
    if bad:
        ap.error("unknown section(s): %s" % ", ".join(bad))

    settings = Settings.make(args.quick)
    bench_dir = os.path.join(args.build, "bench")
    sys.path.insert(0, os.path.join(bench_dir, "gen", "py"))  # bench_echo_pb2(_grpc)
    sys.path.insert(0, bench_dir)  # _gilhold, _cgmark
    if args.count_instructions:  # the child of Bench.instructions, under callgrind
        url, calls = args.count_instructions.rsplit(",", 1)
        count_instructions_child(url, int(calls))
        return 0
    raise_fd_limit(4 * settings.idle_clients + 1024)

    started = time.monotonic()
    meta = machine_info()
    meta["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    meta["loadavg_start"] = os.getloadavg()
    meta["settings"] = settings.__dict__
    bench = Bench(args.build, settings)
    print("# nngrpc bench (%s)" % ("QUICK" if settings.quick else "full"), flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        needs_echo = any(x in only for x in ("latency", "throughput", "sleep", "loadgen"))
        if needs_echo:
            try:
                bench.start_echo_servers()
            except Exception as e:
                bench.report.fail("starting the echo servers", e)
                needs_echo = False
        for name in only:
            if name in ("latency", "throughput", "sleep", "loadgen") and not needs_echo:
                continue
            log("== %s" % name)
            try:
                getattr(bench, name)()
            except Exception as e:  # BenchFailure, RpcError, grpc errors...
                bench.report.fail(name, e)
    except KeyboardInterrupt:
        bench.report.fail("run", RuntimeError("interrupted"))
    finally:
        bench.close_clients()
        bench.stop_all()
    write_results(bench, started, meta)
    log("results in %s/results.md and results.json (%.0f s)"
        % (bench.dir, time.monotonic() - started))
    return 1 if bench.report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
