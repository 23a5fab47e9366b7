"""Hostile connections: the cap, the partial-frame timeout, the idle timeout
(src/rpc/conns.h), and a flood of half-frame clients at 1024 descriptors.

libnng has no receive timeout on a connection: before these, 1100 clients
that each sent half a frame and went silent held hoteld's every descriptor
(at ulimit -n 1024) until they left, and every new client timed out while
connecting.  Now a connection over --max-connections is closed at once,
and one whose frame stays unfinished for --frame-timeout is closed (on
tcp://, exactly: the kernel's byte count says a frame was begun).

Every loop here is bounded; the only target is 127.0.0.1.
"""

from __future__ import annotations

import resource
import struct
import time
import urllib.request
from typing import Dict, List, Optional

import pytest

import nngrpc
from faultlib import (
    ECHO,
    Hoteld,
    RawConn,
    assert_serves,
    envelope,
    free_port,
    spawn_hoteld,
    sp_frame,
    req_body,
    wait_for,
)
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

def echo_payload(data: bytes) -> bytes:
    return testing_pb2.EchoRequest(payload=data).SerializeToString()


HALF_FRAME = struct.pack(">Q", 1000) + b"\x80\x00\x00\x01" + b"x" * 6


def metrics(http: str) -> Dict[str, float]:
    with urllib.request.urlopen("http://%s/metrics" % http, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("nngrpc_connections"):
            name, value = line.split()
            out[name] = float(value)
    return out


def half_frame_client(port: int) -> Optional[RawConn]:
    """Connects, handshakes and sends half a frame; None when hoteld
    closed the connection at once (over the cap) or it could not connect."""
    try:
        c = RawConn(port, timeout=5.0)
    except OSError:
        return None
    try:
        c.handshake()
        c.send(HALF_FRAME)
    except (OSError, AssertionError):
        c.close()
        return None
    return c


def open_count(conns: List[RawConn]) -> int:
    """How many of conns hoteld has not closed (reads nothing else)."""
    n = 0
    for c in conns:
        c.sock.setblocking(False)
        try:
            if c.sock.recv(1) != b"":
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def test_half_frame_closed_after_frame_timeout(hoteld_binary: str, workdir: str) -> None:
    """A half frame is closed after --frame-timeout (not before); complete
    calls, idle pooled connections and a frame finished slowly within the
    timeout are left alone."""
    http = "127.0.0.1:%d" % free_port()
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--no-hotels", "--frame-timeout", "1", "--http", http])
    try:
        with nngrpc.Channel(h.tcp) as ch:
            stub = testing_nngrpc.TestingStub(ch)
            stub.Echo(testing_pb2.EchoRequest(payload=b"pooled"), timeout=5.0)
            half = [half_frame_client(h.port) for _ in range(5)]
            assert all(half)
            slow = RawConn(h.port)
            slow.handshake()
            frame = sp_frame(req_body(envelope(ECHO, echo_payload(b"s" * 100), 5_000_000), 7))
            slow.send(frame[:20])
            time.sleep(0.5)
            slow.send(frame[20:])  # finished within the timeout
            assert slow.recv_response(7).code == 0
            t0 = time.monotonic()
            assert wait_for(lambda: open_count(half) == 0, 5.0), "half frames still open"  # type: ignore[arg-type]
            took = time.monotonic() - t0 + 0.5
            # The pooled connection, idle all along, still works.
            fds = ch._open_fds()
            stub.Echo(testing_pb2.EchoRequest(payload=b"again"), timeout=5.0)
            assert ch._open_fds() == fds
            assert slow.call(envelope(ECHO, echo_payload(b"x"), 5_000_000), rid=8).code == 0
        m = metrics(http)
        print("5 half frames closed %.2f s after they were sent (--frame-timeout 1); %s"
              % (took, m))
        assert 1.0 <= took <= 3.0, took
        assert m["nngrpc_connections_frame_timeouts_total"] == 5
        for c in half:
            c.close()  # type: ignore[union-attr]
        slow.close()
    finally:
        h.stop()


def test_idle_connection_closed_after_idle_timeout(hoteld_binary: str, workdir: str) -> None:
    """A silent connection is closed after --idle-timeout; one that keeps
    calling is not; a connection with a call in flight is not either."""
    http = "127.0.0.1:%d" % free_port()
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--no-hotels", "--idle-timeout", "1", "--http", http])
    try:
        quiet = RawConn(h.port)
        quiet.handshake()
        busy = RawConn(h.port)
        busy.handshake()
        sleeper = RawConn(h.port)
        sleeper.handshake()
        sleep = envelope("/nngrpc.testing.v1.Testing/Sleep",
                         testing_pb2.SleepRequest(ms=2500).SerializeToString(), 10_000_000)
        sleeper.send(sp_frame(req_body(sleep, 1)))
        end = time.monotonic() + 2.2
        i = 0
        while time.monotonic() < end:
            i += 1
            assert busy.call(envelope(ECHO, echo_payload(b"b"), 5_000_000), rid=i).code == 0
            time.sleep(0.3)
        assert quiet.closed_by_peer(0.1), "the silent connection is still open"
        assert sleeper.recv_response(1, timeout=5.0).code == 0  # answered, not closed
        assert busy.call(envelope(ECHO, echo_payload(b"b"), 5_000_000), rid=99).code == 0
        m = metrics(http)
        print("idle timeout 1 s: %s" % m)
        assert m["nngrpc_connections_idle_timeouts_total"] == 1
        for c in (quiet, busy, sleeper):
            c.close()
    finally:
        h.stop()


def test_cap_closes_new_connections_at_once(hoteld_binary: str, workdir: str) -> None:
    http = "127.0.0.1:%d" % free_port()
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--no-hotels", "--max-connections", "10", "--http", http])
    try:
        held = []
        for _ in range(10):
            c = RawConn(h.port)
            c.handshake()
            held.append(c)
        extra = RawConn(h.port)
        extra.handshake()  # libnng finishes the handshake, then we close it
        t0 = time.monotonic()
        assert extra.closed_by_peer(2.0)
        took = time.monotonic() - t0
        m = metrics(http)
        assert m["nngrpc_connections"] == 10 and m["nngrpc_connections_max"] == 10
        assert m["nngrpc_connections_rejected_total"] == 1
        assert took < 0.5, took
        held.pop().close()
        assert wait_for(lambda: metrics(http)["nngrpc_connections"] == 9, 3.0)
        assert held[0].call(envelope(ECHO, echo_payload(b"k"), 5_000_000), rid=1).code == 0
        assert_serves(h, what="the cap")  # the tenth connection again
        for c in held + [extra]:
            c.close()
    finally:
        h.stop()


# ---- the flood -----------------------------------------------------------------------
FLOOD = 1100
NOFILE = 1024


def test_half_frame_flood_at_1024_descriptors(hoteld_binary: str, workdir: str) -> None:
    """hoteld at ulimit -n 1024, --frame-timeout 2.  1100 clients connect,
    handshake, send half a frame and go silent.  Those over the cap (1024
    less an eighth: 896) are closed at once; the rest after the frame
    timeout.  A new client is served within a few seconds, and every
    descriptor comes back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 1000), hard))
    http = "127.0.0.1:%d" % free_port()
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--no-hotels", "--frame-timeout", "2", "--http", http],
                     wrapper=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"])
    flood: List[RawConn] = []
    try:
        base = h.fds()
        t0 = time.monotonic()
        for _ in range(FLOOD):
            c = half_frame_client(h.port)
            if c is not None:
                flood.append(c)
        sent = time.monotonic() - t0
        # Every handshake done (libnng's, then ours: accepted or refused);
        # the readiness probe's connection was one more.
        wait_for(lambda: sum(metrics(http)[k] for k in (
            "nngrpc_connections_accepted_total",
            "nngrpc_connections_rejected_total")) >= FLOOD + 1, 10.0)
        m_flood = metrics(http)
        peak = h.fds()
        # A new client, calling until served (each attempt 1 s).
        t1 = time.monotonic()
        attempts = 0
        served: Optional[float] = None
        with nngrpc.Channel(h.tcp, retry=None, backoff=0.05, backoff_max=0.2) as ch:
            stub = testing_nngrpc.TestingStub(ch)
            while time.monotonic() - t1 < 15.0:
                attempts += 1
                try:
                    stub.Echo(testing_pb2.EchoRequest(payload=b"new"), timeout=1.0)
                    served = time.monotonic() - t1
                    break
                except nngrpc.RpcError:
                    time.sleep(0.05)
        # Closed in one sweep, reaped by libnng over the next moments.
        wait_for(lambda: open_count(flood) == 0, 5.0)
        still_open = open_count(flood)
        m_after = metrics(http)
        for c in flood:
            c.close()
        back = wait_for(lambda: h.fds() <= base, 10.0)
        print(
            "flood: %d half-frame clients in %.1f s against hoteld at ulimit -n %d "
            "(cap %d): %d accepted, %d closed at once; hoteld fds %d at start, peak %d; "
            "a new client served after %s s (%d attempts); %d flood connections still "
            "open then; frame timeouts %d; hoteld fds %d after the flood left (%s)"
            % (FLOOD, sent, NOFILE, m_flood["nngrpc_connections_max"],
               m_flood["nngrpc_connections_accepted_total"],
               m_flood["nngrpc_connections_rejected_total"], base, peak,
               "%.2f" % served if served is not None else "never", attempts, still_open,
               m_after["nngrpc_connections_frame_timeouts_total"], h.fds(),
               "back" if back else "NOT back"))
        assert served is not None and served < 5.0, "a new client was not served in time"
        assert m_flood["nngrpc_connections_rejected_total"] >= FLOOD - m_flood[
            "nngrpc_connections_max"]
        assert still_open == 0
        assert back, "hoteld holds %d descriptors, %d before the flood" % (h.fds(), base)
        assert_serves(h, what="the flood")
    finally:
        for c in flood:
            c.close()
        h.stop()
