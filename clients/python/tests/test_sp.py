"""SP framing and the Channel against fake REP peers and a real NNG peer
(nngcat), with no hoteld."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

import nngrpc
from nngrpc import _sp
from nngrpc._pipe import ReqPipe
from nngrpc._transport import dial, parse_url
from nngrpc.v1 import rpc_pb2

Handler = Callable[[socket.socket, bool], None]


class FakeServer:
    """Accepts connections, answers the SP handshake as proto, then runs
    handler(conn, ipc) in a thread per connection."""

    def __init__(self, handler: Handler, *, proto: int = _sp.PROTO_REP, ipc_path: Optional[str] = None) -> None:
        if ipc_path is None:
            self.lsock = socket.socket()
            self.lsock.bind(("127.0.0.1", 0))
            self.url = "tcp://127.0.0.1:%d" % self.lsock.getsockname()[1]
        else:
            self.lsock = socket.socket(socket.AF_UNIX)
            self.lsock.bind(ipc_path)
            self.url = "ipc://" + ipc_path
        self.ipc = ipc_path is not None
        self.lsock.listen(16)
        self.handler = handler
        self.proto = proto
        self.conns: List[socket.socket] = []
        self.requests: List[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(_sp.handshake_header(self.proto))
            assert recv_exact(conn, 8) == _sp.handshake_header(_sp.PROTO_REQ)
            self.handler(conn, self.ipc)
        except (OSError, AssertionError):
            pass

    def close(self) -> None:
        self.lsock.close()
        for c in self.conns:
            c.close()


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def read_request(conn: socket.socket, ipc: bool) -> bytes:
    if ipc:
        kind, size = struct.unpack(">BQ", recv_exact(conn, 9))
        assert kind == 1
    else:
        (size,) = struct.unpack(">Q", recv_exact(conn, 8))
    return recv_exact(conn, size)


def send_reply(conn: socket.socket, ipc: bool, body: bytes) -> None:
    conn.sendall(_sp.encode_message(body, ipc=ipc))


def ok_envelope(payload: bytes) -> bytes:
    return rpc_pb2.Response(code=0, payload=payload, queue_us=1, run_us=2).SerializeToString()


def echo_handler(server_requests: List[bytes]) -> Handler:
    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            server_requests.append(body)
            req = rpc_pb2.Request.FromString(body[4:])
            send_reply(conn, ipc, body[:4] + ok_envelope(req.payload))

    return handler


@pytest.fixture
def echo_server() -> Iterator[FakeServer]:
    reqs: List[bytes] = []
    s = FakeServer(echo_handler(reqs))
    s.requests = reqs
    yield s
    s.close()


def test_handshake_header() -> None:
    assert _sp.handshake_header(_sp.PROTO_REQ) == b"\x00SP\x00\x00\x30\x00\x00"
    assert _sp.parse_handshake(b"\x00SP\x00\x00\x31\x00\x00") == 0x31
    with pytest.raises(_sp.ProtocolError):
        _sp.parse_handshake(b"HTTP/1.1")


def test_request_framing(echo_server: FakeServer) -> None:
    with nngrpc.Channel(echo_server.url) as ch:
        assert ch.call("/a/B", b"hello", timeout=2.0, metadata={"k": "v"}) == b"hello"
        assert ch.call("/a/B", b"again") == b"again"
    first, second = echo_server.requests
    (rid1,) = struct.unpack(">I", first[:4])
    (rid2,) = struct.unpack(">I", second[:4])
    assert rid1 & 0x80000000
    assert rid2 == 0x80000000 | ((rid1 + 1) & 0x7FFFFFFF)
    req = rpc_pb2.Request.FromString(first[4:])
    rid = req.metadata["nngrpc-request-id"]
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert req.method == "/a/B" and req.payload == b"hello"
    # The first call of a connection asks for the server's capabilities;
    # this one says none (OK without them): the next call does not ask.
    assert dict(req.metadata) == {"k": "v", "nngrpc-request-id": rid,
                                  "nngrpc-accept-encoding": "identity"}
    assert 1_900_000 < req.timeout_us <= 2_000_000
    again = rpc_pb2.Request.FromString(second[4:])
    assert again.timeout_us == 0 and list(again.metadata) == ["nngrpc-request-id"]


def test_ipc_framing(tmp_path: Path) -> None:
    reqs: List[bytes] = []
    s = FakeServer(echo_handler(reqs), ipc_path=str(tmp_path / "s.sock"))
    try:
        with nngrpc.Channel(s.url) as ch:
            big = os.urandom(300_000)
            assert ch.call("/a/B", big, timeout=2.0) == big
    finally:
        s.close()


def test_stale_replies_are_discarded() -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        body = read_request(conn, ipc)
        (rid,) = struct.unpack(">I", body[:4])
        send_reply(conn, ipc, struct.pack(">I", rid ^ 1) + ok_envelope(b"stale"))
        send_reply(conn, ipc, body[:4] + ok_envelope(b"fresh"))

    s = FakeServer(handler)
    try:
        with nngrpc.Channel(s.url) as ch:
            assert ch.call("/a/B", b"", timeout=2.0) == b"fresh"
    finally:
        s.close()


def test_not_a_rep_peer_is_unavailable() -> None:
    s = FakeServer(lambda c, i: None, proto=0x51)  # PULL
    try:
        with nngrpc.Channel(s.url) as ch, pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
        assert "not REP" in e.value.details()
    finally:
        s.close()


def test_client_deadline_when_server_is_silent() -> None:
    s = FakeServer(lambda c, i: (read_request(c, i), time.sleep(5)) and None)
    try:
        with nngrpc.Channel(s.url) as ch:
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/a/B", b"", timeout=0.1)
            elapsed = time.monotonic() - t0
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.1 <= elapsed < 0.1 + 0.02 + 0.05, elapsed
            assert ch._open_fds() == []  # the interrupted connection is gone
    finally:
        s.close()


def test_server_closing_mid_call_is_unavailable() -> None:
    s = FakeServer(lambda c, i: (read_request(c, i), c.close()) and None)
    try:
        with nngrpc.Channel(s.url) as ch, pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
    finally:
        s.close()


def test_pooled_connection_closed_by_server_is_replaced() -> None:
    def one_call_then_close(conn: socket.socket, ipc: bool) -> None:
        body = read_request(conn, ipc)
        send_reply(conn, ipc, body[:4] + ok_envelope(b"1"))
        conn.close()

    s = FakeServer(one_call_then_close)
    try:
        with nngrpc.Channel(s.url) as ch:
            assert ch.call("/a/B", b"", timeout=2.0) == b"1"
            deadline = time.monotonic() + 2
            while len(s.conns) < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.05)  # let the FIN arrive
            assert ch.call("/a/B", b"", timeout=2.0) == b"1"
            assert len(s.conns) == 2
    finally:
        s.close()


def test_bad_envelope_is_internal() -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        body = read_request(conn, ipc)
        send_reply(conn, ipc, body[:4] + b"\xff\xff\xff")

    s = FakeServer(handler)
    try:
        with nngrpc.Channel(s.url) as ch, pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.INTERNAL
    finally:
        s.close()


def test_urls() -> None:
    a = parse_url("tcp://[::1]:5555")
    assert (a.host, a.port, a.ipc) == ("::1", 5555, False)
    assert parse_url("ipc:///tmp/x.sock").path == "/tmp/x.sock"
    t = parse_url("tls+tcp://127.0.0.1:5556")
    assert (t.host, t.port, t.tls, t.ipc) == ("127.0.0.1", 5556, True, False)
    assert not parse_url("tcp://h:1").tls
    for bad in ["localhost:5", "tcp://host", "tcp://*:5", "tcp://h:0", "udp://h:1", "ws://h:1",
                "tls+ipc:///x", "tls+tcp://h"]:
        with pytest.raises(ValueError):
            parse_url(bad)
    with pytest.raises(ValueError):
        nngrpc.Channel([])


# ---- against a real NNG peer ------------------------------------------------------
needs_nngcat = pytest.mark.skipif(shutil.which("nngcat") is None, reason="nngcat not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nngcat(*args: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(["nngcat", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dial_retry(url: str, limit: float = 5.0) -> ReqPipe:
    end = time.monotonic() + limit
    while True:
        try:
            return dial(parse_url(url), time.monotonic() + 1, 1 << 20)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


@needs_nngcat
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_nngcat_rep_answers(tmp_path: Path, transport: str) -> None:
    url = "tcp://127.0.0.1:%d" % free_port() if transport == "tcp" else "ipc://%s/n.sock" % tmp_path
    proc = nngcat("--rep", "--listen", url, "--data", "pong")
    try:
        pipe = dial_retry(url)
        for size in (0, 100, 200_000):
            assert bytes(pipe.request(b"x" * size, time.monotonic() + 2)) == b"pong"
        pipe.close()
    finally:
        proc.terminate()
        proc.wait()


@needs_nngcat
def test_nngcat_non_rep_is_rejected() -> None:
    url = "tcp://127.0.0.1:%d" % free_port()
    proc = nngcat("--pull", "--listen", url)
    try:
        end = time.monotonic() + 5
        while True:
            try:
                dial(parse_url(url), time.monotonic() + 1, 1 << 20)
            except _sp.ProtocolError as e:
                assert "0x51" in str(e)
                break
            except OSError:
                assert time.monotonic() < end
                time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait()


@needs_nngcat
def test_nngcat_req_accepts_our_rep_framing() -> None:
    """The reverse direction: libnng's REQ (nngcat) talking to our framing
    code acting as REP, so both ends of the framing are checked."""
    got: List[bytes] = []

    def handler(conn: socket.socket, ipc: bool) -> None:
        body = read_request(conn, ipc)
        got.append(body)
        send_reply(conn, ipc, body[:4] + b"PONG")

    class RepServer(FakeServer):
        def _serve(self, conn: socket.socket) -> None:
            conn.sendall(_sp.handshake_header(_sp.PROTO_REP))
            assert _sp.parse_handshake(recv_exact(conn, 8)) == _sp.PROTO_REQ
            handler(conn, False)

    s = RepServer(handler)
    try:
        out = subprocess.run(
            ["nngcat", "--req", "--dial", s.url, "--data", "ping", "--raw", "--recv-timeout", "2"],
            capture_output=True,
            timeout=10,
        )
        assert out.stdout == b"PONG"
        assert got[0][4:] == b"ping" and got[0][0] & 0x80
    finally:
        s.close()
