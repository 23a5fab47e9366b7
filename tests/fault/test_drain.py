"""A draining hoteld and pooled connections, as release 0.1.0's client
keeps them: it resolves a name only when it dials, and sends a call that
was answered nngrpc-not-run again on whichever pooled connection is idle,
so it leaves a draining server only when that server closes connections.

With libnng 1.6.0 or later (the Debian 13 image; make fault-test-trixie
runs this file there): while draining, a connection that was answered
not-run is closed once the reply is out (and none of its calls is in
flight); a connection that got no such answer stays open, and health
checks, which a draining server still answers, do not close theirs
(nngrpc_connections_drain_closes_total counts the closes). The drain goes
on while calls keep coming and ends 0.5 s after the last request (or at
the drain timeout, exit 0 when every call was answered), so it does not
close connections under calls on their way.

With an older libnng (Debian 12's 1.5.2) no connection is closed before
the end of the drain: closing one while a request arrives on it can wedge
that libnng's pipe reaper, and then SIGTERM hangs in nng_close()
(nanomsg/nng#1636, see test_hostile.py). There the first test checks that
connections stay open, and the other two, which need the closes to tell
the drain's length, do not apply (tests/integration/test_drain.py checks
the quiet time there).

Raw SP pipes of this tree's client stand for the 0.1.0 client's: the same
dial, one call at a time, the same idle-and-open check before reuse.
(make upgrade-test is this on the Swarm stack, with the 0.1.0 client.)
"""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
import urllib.request
from typing import Iterator, List, Optional

import pytest

from faultlib import Hoteld, free_port, nng_reaper_can_wedge, spawn_hoteld
from nngrpc._pipe import ReqPipe
from nngrpc._transport import dial, parse_url
from nngrpc.health.v1 import health_pb2
from nngrpc.testing.v1 import testing_pb2
from nngrpc.v1 import rpc_pb2

ECHO = "/nngrpc.testing.v1.Testing/Echo"
SLEEP = "/nngrpc.testing.v1.Testing/Sleep"
CHECK = "/nngrpc.health.v1.Health/Check"
HELD_S = 8.0  # the call that keeps the first test's drain going sleeps this long
QUIET_S = 0.5  # the drain ends this long after the last request
UNAVAILABLE = 14


class Drainer:
    """A hoteld of our own with its ops endpoint (for /metrics)."""

    def __init__(self, h: Hoteld, http: str) -> None:
        self.h = h
        self.http = http
        self.closes = not nng_reaper_can_wedge(h.binary)  # libnng >= 1.6
        self.keeper: Optional[ReqPipe] = None

    def metric(self, name: str) -> float:
        with urllib.request.urlopen("http://%s/metrics" % self.http, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError("%s not in /metrics" % name)

    def start_draining(self) -> None:
        """SIGTERM, once a call on a connection of its own (left open)
        makes the drain last at least QUIET_S: a drain with no connection
        open, or none used for QUIET_S, ends at once."""
        self.keeper = dial(parse_url(self.h.tcp), time.monotonic() + 5, 1 << 20)
        assert echo(self.keeper).code == 0
        self.h.server.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while self.metric("nngrpc_serving") != 0:
            assert time.monotonic() < end, "still SERVING 10 s after SIGTERM"
            time.sleep(0.01)

    def exited_0(self, limit: float) -> None:
        self.h.server.proc.wait(limit)
        assert self.h.server.proc.returncode == 0, self.h.log()[-3000:]


def start_drainer(binary: str, workdir: str, drain_timeout: str) -> Iterator[Drainer]:
    http = "127.0.0.1:%d" % free_port()
    d: Optional[Drainer] = None
    h = spawn_hoteld(binary, workdir, [
        "--no-hotels", "--drain-timeout", drain_timeout, "--http", http])
    try:
        d = Drainer(h, http)
        yield d
    finally:
        if d is not None and d.keeper is not None:
            d.keeper.close()
        h.stop()


@pytest.fixture
def drainer(hoteld_binary: str, workdir: str) -> Iterator[Drainer]:
    yield from start_drainer(hoteld_binary, workdir, "60")


@pytest.fixture
def short_drainer(hoteld_binary: str, workdir: str) -> Iterator[Drainer]:
    yield from start_drainer(hoteld_binary, workdir, "1")


def needs_safe_closes(d: Drainer) -> None:
    if not d.closes:
        pytest.skip("libnng before 1.6.0: the drain closes no connection (it could wedge "
                    "that libnng, nanomsg/nng#1636); make fault-test-trixie runs this")


def envelope(method: str, payload: bytes, timeout_s: float = 5.0) -> bytes:
    return rpc_pb2.Request(method=method, timeout_us=int(timeout_s * 1e6),
                           payload=payload).SerializeToString()


def call(pipe: ReqPipe, method: str, payload: bytes, timeout_s: float = 5.0) -> rpc_pb2.Response:
    reply = pipe.request(envelope(method, payload, timeout_s), time.monotonic() + timeout_s + 5)
    return rpc_pb2.Response.FromString(reply)


def echo(pipe: ReqPipe) -> rpc_pb2.Response:
    return call(pipe, ECHO, testing_pb2.EchoRequest(payload=b"drain").SerializeToString())


def closed_within(pipe: ReqPipe, seconds: float) -> bool:
    """True once the server has closed pipe (EOF readable), within seconds."""
    ready = select.select([pipe.fileno()], [], [], seconds)[0]
    return bool(ready) and pipe.sock.recv(1, socket.MSG_PEEK) == b""


def test_a_connection_answered_not_run_while_draining_closes(drainer: Drainer) -> None:
    url = parse_url(drainer.h.tcp)
    pipes: List[ReqPipe] = [dial(url, time.monotonic() + 5, 1 << 20) for _ in range(4)]
    first, second, health, held = pipes
    try:
        for p in (first, second, health):
            assert echo(p).code == 0
        # A call in flight keeps the drain going for HELD_S.
        sleeping = threading.Thread(target=call, args=(
            held, SLEEP, testing_pb2.SleepRequest(ms=int(HELD_S * 1000)).SerializeToString(),
            HELD_S + 60), daemon=True)
        sleeping.start()
        end = time.monotonic() + 10
        while drainer.metric("nngrpc_busy_workers") < 1:
            assert time.monotonic() < end, "the held call never ran"
            time.sleep(0.01)
        t_term = time.monotonic()
        drainer.start_draining()
        check = health_pb2.HealthCheckRequest().SerializeToString()
        status = health_pb2.HealthCheckResponse.FromString(call(health, CHECK, check).payload)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING

        # Answered not run: the reply arrives whole, then (libnng >= 1.6)
        # the connection closes.
        resp = echo(first)
        assert resp.code == UNAVAILABLE, resp
        assert dict(resp.trailers).get("nngrpc-not-run") == "1", resp
        if drainer.closes:
            assert closed_within(first, 5.0), "a connection answered not-run stayed open"
        else:
            assert not closed_within(first, 0.3) and first.is_idle_and_open()
        # Not answered not-run (health checks run while draining): open.
        assert not closed_within(second, 0.3) and second.is_idle_and_open()
        resp = echo(second)
        assert dict(resp.trailers).get("nngrpc-not-run") == "1", resp
        assert closed_within(second, 5.0) == drainer.closes
        assert health.is_idle_and_open(), "a health check's connection was closed"
        assert drainer.metric("nngrpc_connections_drain_closes_total") == (
            2 if drainer.closes else 0)
        # All of that within the drain: the held call is still running.
        assert drainer.h.alive() and time.monotonic() - t_term < HELD_S, \
            "the drain ended before the checks did (machine too slow?)"
        sleeping.join(HELD_S + 60)
        assert not sleeping.is_alive(), "the held call never ended"
    finally:
        for p in pipes:
            p.close()
    drainer.exited_0(30)


class Sender:
    """Calls Echo again and again, each on a new connection (as a 0.1.0
    client does once the draining server closed its pooled ones), until
    stopped or the server is gone; notes when each not-run answer came."""

    def __init__(self, url: str) -> None:
        self.url = parse_url(url)
        self.answers: List[float] = []
        self.other: List[str] = []
        self.lost: List[str] = []  # a call on its way when the server closed
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                pipe = dial(self.url, time.monotonic() + 5, 1 << 20)
            except OSError:
                return  # the server is gone
            try:
                resp = echo(pipe)
                if dict(resp.trailers).get("nngrpc-not-run") != "1":
                    self.other.append(str(resp))
                elif not closed_within(pipe, 5.0):
                    self.other.append("connection open 5 s after a not-run answer")
                self.answers.append(time.monotonic())
            except OSError as e:
                self.lost.append(repr(e))
                return
            finally:
                pipe.close()

    def longest_gap(self, end: float) -> float:
        times = self.answers + [end]
        return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else 0.0

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_the_drain_lasts_while_calls_are_answered_not_run(drainer: Drainer) -> None:
    needs_safe_closes(drainer)
    drainer.start_draining()
    sender = Sender(drainer.h.tcp)
    time.sleep(1.0)
    t_stop = time.monotonic()
    alive = drainer.h.alive()
    sender.finish()
    assert not sender.other and not sender.lost, (sender.other[:3], sender.lost)
    assert len(sender.answers) >= 5, "too few calls answered to tell"
    if not alive:  # only if the sender itself paused that long
        assert sender.longest_gap(t_stop) >= QUIET_S, \
            "the drain ended while calls kept being answered not run"
    drainer.exited_0(10)
    assert "stopped" in drainer.h.log()


def test_a_drain_timeout_with_clients_still_sending_exits_0(short_drainer: Drainer) -> None:
    """--drain-timeout 1: clients never go quiet, but every call was
    answered, so hoteld ends at the timeout as a finished drain does."""
    needs_safe_closes(short_drainer)
    short_drainer.start_draining()
    sender = Sender(short_drainer.h.tcp)
    try:
        short_drainer.h.server.proc.wait(15)
    finally:
        sender.finish()
    # The connections close at the timeout with calls still coming: the
    # one on its way then is lost (what the quiet period spares clients
    # that stop sending here).
    assert not sender.other and len(sender.lost) <= 1, (sender.other[:3], sender.lost)
    log = short_drainer.h.log()
    assert short_drainer.h.server.proc.returncode == 0, log
    assert "every call answered" in log or sender.longest_gap(time.monotonic()) >= QUIET_S, log
