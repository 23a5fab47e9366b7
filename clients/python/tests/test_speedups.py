"""The sync channel's C path (nngrpc._speedups, _channel._fast_unary)
against fake REP peers on real sockets: it sends what the pure-Python path
sends, byte for byte, and every outcome that is not the usual OK reply
(stale and split replies, large replies, errors, trailers, not-run, a lost
connection, deadlines, signals) ends as it does on the pure-Python path.
Calls against a real hoteld take the same path in every other test."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import nngrpc
from nngrpc import _channel, _core
from nngrpc.v1 import rpc_pb2

from test_sp import FakeServer, read_request, send_reply

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NNGRPC_NO_SPEEDUPS")), reason="NNGRPC_NO_SPEEDUPS: the pure-Python run"
)


class Spy:
    """Counts the calls into the real _speedups module."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def call(self, *args: Any) -> Any:
        self.calls += 1
        return self.real.call(*args)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    s = Spy(_channel._speedups)
    monkeypatch.setattr(_channel, "_speedups", s)
    return s


def test_the_extension_is_loaded() -> None:
    assert _channel.speedups_enabled(), "nngrpc._speedups did not load: the wheel has no C part"


def ok(payload: bytes, **kw: Any) -> bytes:
    return rpc_pb2.Response(code=0, payload=payload, **kw).SerializeToString()


def serve(handler: Any, tmp_path: Path, ipc: bool = False) -> FakeServer:
    return FakeServer(handler, ipc_path=str(tmp_path / "s.ipc") if ipc else None)


def echo(requests: List[bytes]) -> Any:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            requests.append(body)
            req = rpc_pb2.Request.FromString(body[4:])
            send_reply(conn, ipc, body[:4] + ok(req.payload, queue_us=3, run_us=200))

    return handler


@pytest.mark.parametrize("ipc", [False, True], ids=["tcp", "ipc"])
def test_sends_the_bytes_the_python_path_sends(spy: Spy, tmp_path: Path, ipc: bool) -> None:
    reqs: List[bytes] = []
    srv = serve(echo(reqs), tmp_path, ipc)
    with nngrpc.Channel(srv.url) as ch:
        ch.call("/a/B", b"first")  # a new connection asks for capabilities: Python
        assert spy.calls == 0
        for payload in (b"", b"x" * 100, os.urandom(200_000)):
            for fast in (True, False):
                ch._fast = fast
                got, call = ch.invoke("/p.S/M", payload, timeout=5.0)
                assert got == payload and (call.queue_us, call.run_us) == (3, 200)
                body = reqs[-1][4:]
                req = rpc_pb2.Request.FromString(body)
                assert 4_900_000 < req.timeout_us <= 5_000_000
                assert dict(req.metadata) == {"nngrpc-request-id": call.request_id}
                # What CallState.head() makes for that timeout, then the payload.
                want = _core.method_field("/p.S/M") + b"\x10" + _core.uvarint(req.timeout_us)
                want += _core._RID_PREFIX + call.request_id.encode()
                want += b"\x22" + _core.uvarint(len(payload)) + payload
                assert body == want
        ch._fast = True
        assert ch.call("/a/B", b"no deadline") == b"no deadline"
        assert rpc_pb2.Request.FromString(reqs[-1][4:]).timeout_us == 0  # none
    rids = [struct.unpack(">I", r[:4])[0] for r in reqs]
    assert all(b == 0x80000000 | ((a + 1) & 0x7FFFFFFF) for a, b in zip(rids, rids[1:]))
    assert spy.calls == 4
    srv.close()


def test_stale_and_split_replies(spy: Spy, tmp_path: Path) -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            stale = struct.pack(">I", struct.unpack(">I", body[:4])[0] ^ 1)
            send_reply(conn, ipc, stale + ok(b"stale"))  # an abandoned call's
            reply = struct.pack(">Q", len(body[:4] + ok(b"mine"))) + body[:4] + ok(b"mine")
            for i in range(0, len(reply), 7):  # in pieces, a moment apart
                conn.sendall(reply[i : i + 7])
                time.sleep(0.002)

    srv = serve(handler, tmp_path)
    with nngrpc.Channel(srv.url) as ch:
        for _ in range(3):
            assert ch.call("/a/B", b"", timeout=5.0) == b"mine"
    assert spy.calls == 2
    srv.close()


def test_statuses_trailers_and_not_run(spy: Spy, tmp_path: Path) -> None:
    answers = [
        ok(b"first"),
        rpc_pb2.Response(code=5, message="no such hotel").SerializeToString(),
        rpc_pb2.Response(code=0, payload=b"t", trailers={"k": "v"}).SerializeToString(),
        rpc_pb2.Response(code=14, message="draining", trailers={"nngrpc-not-run": "1"})
        .SerializeToString(),
        ok(b"after not-run"),
    ]
    seen: List[str] = []

    def handler(conn: socket.socket, ipc: bool) -> None:
        while answers:
            body = read_request(conn, ipc)
            seen.append(dict(rpc_pb2.Request.FromString(body[4:]).metadata)["nngrpc-request-id"])
            send_reply(conn, ipc, body[:4] + answers.pop(0))

    srv = serve(handler, tmp_path)
    with nngrpc.Channel(srv.url) as ch:
        assert ch.call("/a/B", b"") == b"first"
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.NOT_FOUND
        assert e.value.details() == "no such hotel" and e.value.request_id == seen[-1]
        got, call = ch.invoke("/a/B", b"", timeout=5.0)
        assert got == b"t" and call.trailing_metadata() == (("k", "v"),)
        # Not run: sent again (a new connection), though not idempotent.
        got, call = ch.invoke("/a/B", b"", timeout=5.0)
        assert got == b"after not-run" and call.attempts == 2
        assert seen[-1] == seen[-2] == call.request_id
    assert spy.calls == 3
    srv.close()


def test_a_lost_connection(spy: Spy, tmp_path: Path) -> None:
    count = [0]

    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            count[0] += 1
            if count[0] in (2, 3):  # read, then gone: the reply never comes
                conn.shutdown(socket.SHUT_RDWR)
                return
            send_reply(conn, ipc, body[:4] + ok(b"ok"))

    srv = serve(handler, tmp_path)
    with nngrpc.Channel(srv.url) as ch:
        assert ch.call("/a/B", b"") == b"ok"
        with pytest.raises(nngrpc.RpcError) as e:  # sent once: not idempotent
            ch.call("/a/B", b"", timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
        got, call = ch.invoke("/a/B", b"", timeout=5.0, idempotent=True)
        assert got == b"ok" and call.attempts == 2  # the third request was lost too
    assert spy.calls >= 1
    srv.close()


def slow_server(tmp_path: Path, delay: float) -> FakeServer:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            if body[4:] and rpc_pb2.Request.FromString(body[4:]).payload == b"slow":
                time.sleep(delay)
            send_reply(conn, ipc, body[:4] + ok(b"done"))

    return serve(handler, tmp_path)


def test_deadline_while_waiting(spy: Spy, tmp_path: Path) -> None:
    srv = slow_server(tmp_path, 0.5)
    with nngrpc.Channel(srv.url) as ch:
        ch.call("/a/B", b"")
        started = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"slow", timeout=0.05)
        assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.4
        assert ch.call("/a/B", b"", timeout=5.0) == b"done"  # on a new connection
    assert spy.calls == 1  # the last call dialled: Python
    srv.close()


def test_a_signal_handler_interrupts_the_wait(spy: Spy, tmp_path: Path) -> None:
    class Interrupted(Exception):
        pass

    def on_alarm(*_: object) -> None:
        raise Interrupted

    srv = slow_server(tmp_path, 1.0)
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with nngrpc.Channel(srv.url) as ch:
            ch.call("/a/B", b"")
            started = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                ch.call("/a/B", b"slow", timeout=5.0)
            assert time.monotonic() - started < 0.5
            assert ch.call("/a/B", b"", timeout=5.0) == b"done"  # the late reply is not read
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert spy.calls == 1
    srv.close()


def test_the_gil_is_released_while_waiting(spy: Spy, tmp_path: Path) -> None:
    srv = slow_server(tmp_path, 0.3)
    spins = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            spins[0] += 1

    with nngrpc.Channel(srv.url) as ch:
        ch.call("/a/B", b"")
        t = threading.Thread(target=spin)
        t.start()
        try:
            time.sleep(0.05)
            before = spins[0]
            assert ch.call("/a/B", b"slow", timeout=5.0) == b"done"
            during = spins[0] - before
        finally:
            stop.set()
            t.join()
    # Holding the GIL for 0.3 s would let the spinner run only at the
    # switch interval's pace (a few iterations per 5 ms).
    assert during > 10_000
    assert spy.calls == 1
    srv.close()


def test_a_reply_over_the_receive_limit(spy: Spy, tmp_path: Path) -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            big = rpc_pb2.Request.FromString(body[4:]).payload == b"big"
            send_reply(conn, ipc, body[:4] + ok(b"x" * (5000 if big else 10)))

    srv = serve(handler, tmp_path)
    with nngrpc.Channel(srv.url, max_receive_message_bytes=1000) as ch:
        ch.call("/a/B", b"")
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"big", timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
    assert spy.calls == 1
    srv.close()


@pytest.fixture
def raw_peer(tmp_path: Path) -> Iterator[FakeServer]:
    """Answers with an envelope that does not decode."""

    def handler(conn: socket.socket, ipc: bool) -> None:
        first = True
        while True:
            body = read_request(conn, ipc)
            send_reply(conn, ipc, body[:4] + (ok(b"") if first else b"\x1a\x05ab"))
            first = False

    srv = serve(handler, tmp_path)
    yield srv
    srv.close()


def test_an_undecodable_reply_is_internal(spy: Spy, raw_peer: FakeServer) -> None:
    with nngrpc.Channel(raw_peer.url) as ch:
        ch.call("/a/B", b"")
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.INTERNAL
        assert "undecodable" in e.value.details()
    assert spy.calls == 1




def test_round_robin_over_several_endpoints(spy: Spy, tmp_path: Path) -> None:
    def tagged(tag: bytes) -> Any:
        def handler(conn: socket.socket, ipc: bool) -> None:
            while True:
                body = read_request(conn, ipc)
                send_reply(conn, ipc, body[:4] + ok(tag))

        return handler

    servers = [FakeServer(tagged(b"%d" % i)) for i in range(3)]
    with nngrpc.Channel([s.url for s in servers]) as ch:
        got = []
        for _ in range(30):
            answer, call = ch.invoke("/a/B", b"", timeout=5.0)
            assert call.peer() == servers[int(answer)].url  # Call.peer(): who answered
            got.append(answer)
    # Each endpoint's first call dials (Python); the rest take the C path,
    # and the round-robin turns are the same as the pure-Python path's.
    assert sorted(got.count(b"%d" % i) for i in range(3)) == [10, 10, 10]
    assert all(len(set(got[i : i + 3])) == 3 for i in range(0, 30, 3))
    assert spy.calls == 27
    for s in servers:
        s.close()


# ---- _speedups.call() itself, on a socket pair (every outcome and error) ----------------
RID = 0x80000005
ENTRY = _core._RID_PREFIX + b"0123456789abcdef"
METHOD = _core.method_field("/a/B")
#: The receive timeout each socket was left with (by id), as a pipe keeps it.
ARMED: Dict[int, float] = {}


def c_call(sock: socket.socket, payload: bytes = b"hi", buf: Any = None, **kw: Any) -> Any:
    """_speedups.call() on sock; returns its outcome without the receive
    timeout it left armed (the last item, checked against the socket's)."""
    args = dict(ipc=False, rid=RID, method=METHOD, deadline=time.monotonic() + 5.0,
                wait_until=time.monotonic() + 5.0, max_recv=1 << 20,
                armed=ARMED.get(id(sock), 0.0))
    args.update(kw)
    out = _channel._speedups.call(
        sock.fileno(), args["ipc"], args["rid"], args["method"], ENTRY, payload,
        args["deadline"], args["wait_until"], bytearray(4096) if buf is None else buf,
        args["max_recv"], args["armed"],
    )
    if sock.fileno() >= 0:
        sec, usec = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        got = sec + usec / 1e6  # the kernel keeps it in clock ticks (up to 10 ms)
        assert (got == 0) == (out[-1] == 0) and abs(got - out[-1]) < 0.011, (out, got)
    ARMED[id(sock)] = out[-1]
    return out[:-1]


def reply_frame(rid: int, env: bytes) -> bytes:
    return struct.pack(">QI", len(env) + 4, rid) + env


@pytest.fixture
def pair() -> Iterator[Any]:
    a, b = socket.socketpair()
    ARMED.clear()  # ids of closed sockets come back
    yield a, b
    a.close()
    b.close()


def test_c_call_outcomes(pair: Any) -> None:
    me, peer = pair
    # The usual OK reply as hoteld writes it: timings, then the payload.
    u = _core.uvarint
    env = b"\x28" + u(300) + b"\x30" + u(70000) + b"\x1a" + u(4) + b"pong"
    peer.sendall(reply_frame(RID, env))  # in before the request: read after it
    buf = bytearray(4096)
    out = c_call(me, b"ping", buf=buf)
    assert out[:3] == (0, 12, 12 + len(env)) and out[5:] == (300, 70000)
    assert bytes(buf[out[3] : out[4]]) == b"pong"
    sent = peer.recv(4096)
    req = rpc_pb2.Request.FromString(sent[12:])
    assert struct.unpack(">QI", sent[:12]) == (len(sent) - 8, RID)
    assert req.method == "/a/B" and req.payload == b"ping" and 4_000_000 < req.timeout_us
    # An OK reply with no payload; then any other reply: its envelope.
    peer.sendall(reply_frame(RID, b""))
    assert c_call(me) == (0, 12, 12, 12, 12, 0, 0)
    # Any other reply (an error, or fields in another order): its envelope.
    for other in (rpc_pb2.Response(code=5, message="x").SerializeToString(),
                  ok(b"pong", queue_us=3), env + b"\x08\x01", b"\x1a\x09short"):
        peer.sendall(reply_frame(RID, other))
        assert c_call(me) == (1, 12, 12 + len(other))
    # A stale reply, two replies at once, one over max_recv: the pipe's.
    for data, kw in ((reply_frame(RID ^ 1, env), {}),
                     (reply_frame(RID, env) * 2, {}),
                     (reply_frame(RID, env), {"max_recv": 10})):
        peer.sendall(data)
        time.sleep(0.01)  # all of it in before the call reads
        assert c_call(me, **kw) == (2, len(data))
    peer.recv(65536)


def test_c_call_ipc_framing(pair: Any) -> None:
    me, peer = pair
    env = ok(b"pong")
    peer.sendall(b"\x01" + reply_frame(RID, env))
    out = c_call(me, ipc=True)
    assert out[:3] == (0, 13, 13 + len(env))
    sent = peer.recv(4096)
    assert sent[0] == 1 and struct.unpack(">QI", sent[1:13]) == (len(sent) - 9, RID)


def test_c_call_failures(pair: Any) -> None:
    me, peer = pair
    assert c_call(me, deadline=time.monotonic() - 1) == (3,)  # nothing sent
    assert c_call(me, wait_until=time.monotonic() + 0.05) == (4,)  # sent, no reply
    assert c_call(me, method=b"\x0a" + b"m" * 2000) == (7,)  # nothing sent
    # A full socket buffer that nobody reads: the send waits, until wait_until.
    me.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    assert c_call(me, b"x" * (8 << 20), wait_until=time.monotonic() + 0.1) == (4,)
    peer.close()
    assert c_call(me)[0] in (5, 6)  # EOF, or EPIPE / ECONNRESET
    bad = socket.socket()
    bad.close()  # fileno() -1
    assert c_call(bad) == (6, errno.EBADF)


def test_c_call_bad_arguments(pair: Any) -> None:
    me, _ = pair
    with pytest.raises(TypeError):
        _channel._speedups.call()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c_call(me, method="/a/B")  # not bytes
    with pytest.raises((TypeError, BufferError)):
        c_call(me, buf=b"read-only")
    with pytest.raises(TypeError):
        c_call(me, deadline="soon")
    with pytest.raises(OverflowError):
        c_call(me, max_recv=-1)


@pytest.mark.parametrize("fast", [True, False], ids=["C path", "Python path"])
def test_call_peer_names_the_server_that_answered(fast: bool, tmp_path: Path) -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            fail = rpc_pb2.Request.FromString(body[4:]).payload == b"fail"
            env = rpc_pb2.Response(code=5, message="no").SerializeToString() if fail else ok(b"")
            send_reply(conn, ipc, body[:4] + env)

    for ipc in (False, True):
        srv = serve(handler, tmp_path, ipc)
        with nngrpc.Channel(srv.url) as ch:
            ch.call("/a/B", b"")
            ch._fast = fast
            assert ch.invoke("/a/B", b"", timeout=5.0)[1].peer() == srv.url
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/a/B", b"fail", timeout=5.0)
            assert e.value.call.peer() == e.value.peer() == srv.url
        srv.close()
        if ipc:
            os.unlink(tmp_path / "s.ipc")
    with nngrpc.Channel("tcp://127.0.0.1:1", connect_timeout=0.2, retry=None) as ch:
        with pytest.raises(nngrpc.RpcError) as e:  # nobody answered
            ch.call("/a/B", b"", timeout=1.0)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE and e.value.call.peer() == ""


def test_c_call_arms_the_receive_timeout_as_the_pipe_does(pair: Any) -> None:
    me, peer = pair
    env = ok(b"")
    for wait, armed_in in ((5.0, 0.0), (5.0, 4.99), (1.0, 4.99), (None, 0.9)):
        peer.sendall(reply_frame(RID, env))
        until = None if wait is None else time.monotonic() + wait
        out = _channel._speedups.call(me.fileno(), False, RID, METHOD, ENTRY, b"", until, until,
                                      bytearray(256), 1 << 20, armed_in)
        peer.recv(4096)
        if wait is None:
            assert out[-1] == 0.0  # no limit: disarmed
        elif armed_in and armed_in < wait:
            assert out[-1] == armed_in  # armed already: no system call
        else:
            assert wait - 0.01 < out[-1] < wait  # a little short of the time left
