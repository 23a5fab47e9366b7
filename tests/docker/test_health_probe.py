"""nngrpc-health: exit 0 only for SERVING, else exit 1 with one line on
stderr saying why. Fake SP REP servers give each answer the probe must
handle; a local hoteld gives the real one. No Docker needed:

    build/venv/bin/python -m pytest tests/docker/test_health_probe.py \
        --probe build/bin/nngrpc-health --hoteld build/bin/hoteld
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from nngrpc.v1 import rpc_pb2

SP_REQ, SP_REP = 0x30, 0x31
HEALTH_CHECK = "/nngrpc.health.v1.Health/Check"


@pytest.fixture(scope="session")
def probe(request: pytest.FixtureRequest) -> str:
    path = str(request.config.getoption("--probe"))
    if not os.access(path, os.X_OK):
        pytest.skip("no probe binary at %s (make build/bin/nngrpc-health)" % path)
    return path


def run_probe(probe: str, *args: str, env: Optional[dict] = None, limit: float = 10.0
              ) -> Tuple[int, str, str, float]:
    start = time.monotonic()
    p = subprocess.run([probe, *args], capture_output=True, text=True, timeout=limit,
                       env=env if env is not None else {"PATH": os.environ.get("PATH", "")})
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class FakeRep:
    """A TCP SP REP peer on 127.0.0.1: handshakes, reads one request, and
    answers with whatever ``answer(request_envelope_bytes)`` returns (bytes
    of the reply envelope), or nothing when it returns None."""

    def __init__(self, answer: Callable[[bytes], Optional[bytes]], handshake: bytes = b"") -> None:
        self.answer = answer
        self.handshake = handshake or b"\x00SP\x00" + struct.pack(">H", SP_REP) + b"\x00\x00"
        self.requests: List[rpc_pb2.Request] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns: List[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.handshake)
            peer = recv_exact(conn, 8)
            assert peer[:4] == b"\x00SP\x00"
            while True:
                (n,) = struct.unpack(">Q", recv_exact(conn, 8))
                body = recv_exact(conn, n)
                header, envelope = body[:4], body[4:]
                self.requests.append(rpc_pb2.Request.FromString(envelope))
                reply = self.answer(envelope)
                if reply is not None:
                    conn.sendall(struct.pack(">Q", 4 + len(reply)) + header + reply)
        except (EOFError, OSError):
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeRep]]:
    made: List[FakeRep] = []

    def make(answer: Callable[[bytes], Optional[bytes]], **kw: bytes) -> FakeRep:
        f = FakeRep(answer, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def reply(code: int = 0, message: str = "", payload: bytes = b"") -> Callable[[bytes], bytes]:
    data = rpc_pb2.Response(code=code, message=message, payload=payload).SerializeToString()
    return lambda _req: data


def test_serving(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(payload=b"\x08\x01"))
    rc, out, err, _ = run_probe(probe, f.url)
    assert (rc, out, err) == (0, "status: SERVING\n", "")
    (req,) = f.requests
    assert req.method == HEALTH_CHECK
    assert req.payload == b""  # service "" is the empty message
    assert 0 < req.timeout_us <= 1_000_000  # the default 1000 ms deadline


def test_service_and_timeout_are_sent(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(payload=b"\x08\x01"))
    rc, _, _, _ = run_probe(probe, "--service", "hotel.v1.HotelSearch",
                            "--timeout-ms=3000", f.url)
    assert rc == 0
    (req,) = f.requests
    assert req.payload == b"\x0a\x14hotel.v1.HotelSearch"
    assert 2_000_000 < req.timeout_us <= 3_000_000


@pytest.mark.parametrize("status,name", [(2, "NOT_SERVING"), (0, "UNKNOWN"),
                                         (3, "SERVICE_UNKNOWN")])
def test_not_serving(probe: str, fake: Callable[..., FakeRep], status: int, name: str) -> None:
    f = fake(reply(payload=b"\x08" + bytes([status]) if status else b""))
    rc, out, err, _ = run_probe(probe, "--service", "x.v1.X", f.url)
    assert rc == 1 and out == ""
    assert err == 'nngrpc-health: %s: service "x.v1.X" is %s\n' % (f.url, name)


def test_error_status_names_the_code(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(code=12, message="unknown method " + HEALTH_CHECK))
    rc, out, err, _ = run_probe(probe, f.url)
    assert rc == 1 and out == ""
    assert err == "nngrpc-health: %s: UNIMPLEMENTED (12): unknown method %s\n" % (
        f.url, HEALTH_CHECK)


def test_error_status_without_message(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(code=14))
    rc, _, err, _ = run_probe(probe, f.url)
    assert rc == 1
    assert err == "nngrpc-health: %s: UNAVAILABLE (14): (no message)\n" % f.url


def test_out_of_range_code(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(code=99, message="odd"))
    rc, _, err, _ = run_probe(probe, f.url)
    assert rc == 1
    assert "UNKNOWN_CODE (99): odd" in err


def test_undecodable_envelope(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(lambda _req: b"\xff\xff\xff")
    rc, _, err, _ = run_probe(probe, f.url)
    assert rc == 1
    assert "undecodable response envelope" in err


def test_undecodable_health_response(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(payload=b"\x0a\xff"))
    rc, _, err, _ = run_probe(probe, f.url)
    assert rc == 1
    assert "undecodable HealthCheckResponse" in err


def test_no_answer_times_out(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(lambda _req: None)
    rc, out, err, took = run_probe(probe, "--timeout-ms", "300", f.url)
    assert rc == 1 and out == ""
    assert err == "nngrpc-health: %s: no answer within 300 ms\n" % f.url
    assert 0.25 < took < 2.0


def test_silent_listener_times_out(probe: str) -> None:
    # Accepts the TCP connection but never sends the SP handshake.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = "tcp://127.0.0.1:%d" % s.getsockname()[1]
        rc, _, err, took = run_probe(probe, "--timeout-ms", "300", url)
    assert rc == 1
    assert err.startswith("nngrpc-health: %s: " % url) and "300 ms" in err
    assert err.count("\n") == 1
    assert took < 2.0


def test_wrong_protocol_peer(probe: str, fake: Callable[..., FakeRep]) -> None:
    # A REQ peer instead of a REP: NNG refuses the pairing.
    f = fake(reply(), handshake=b"\x00SP\x00" + struct.pack(">H", SP_REQ) + b"\x00\x00")
    rc, _, err, took = run_probe(probe, "--timeout-ms", "500", f.url)
    assert rc == 1
    assert err.startswith("nngrpc-health: %s: " % f.url) and err.count("\n") == 1
    assert took < 2.5


def test_connection_refused(probe: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "tcp://127.0.0.1:%d" % port
    rc, out, err, took = run_probe(probe, url)
    assert (rc, out, err) == (1, "", "nngrpc-health: %s: connection refused\n" % url)
    assert took < 1.0


def test_bad_url(probe: str) -> None:
    rc, _, err, _ = run_probe(probe, "nonsense")
    assert rc == 1
    assert err.startswith("nngrpc-health: nonsense: ") and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--timeout-ms", "0"], ["--timeout-ms", "x"],
                                  ["--bogus"], ["a", "b"], ["--service"]])
def test_bad_arguments_exit_1(probe: str, args: List[str]) -> None:
    rc, out, err, _ = run_probe(probe, *args)
    assert rc == 1 and out == ""
    assert err.startswith("nngrpc-health: ") and err.count("\n") == 1


def test_help(probe: str) -> None:
    rc, out, _, _ = run_probe(probe, "--help")
    assert rc == 0 and "usage: nngrpc-health" in out


@pytest.mark.parametrize("listen,probed", [
    ("tcp://0.0.0.0:{port}", "tcp://127.0.0.1:{port}"),
    ("tcp://*:{port}", "tcp://127.0.0.1:{port}"),
    ("tcp://:{port}", "tcp://127.0.0.1:{port}"),
    ("tcp://127.0.0.1:{port},tcp://0.0.0.0:1", "tcp://127.0.0.1:{port}"),
])
def test_url_from_nngrpc_listen(probe: str, fake: Callable[..., FakeRep],
                                listen: str, probed: str) -> None:
    f = fake(reply(payload=b"\x08\x02"))  # NOT_SERVING: the line names the URL
    port = f.url.rsplit(":", 1)[1]
    env = {"NNGRPC_LISTEN": listen.format(port=port)}
    rc, _, err, _ = run_probe(probe, env=env)
    assert rc == 1
    assert err == 'nngrpc-health: %s: service "" is NOT_SERVING\n' % probed.format(port=port)


def test_health_url_wins_over_listen(probe: str, fake: Callable[..., FakeRep]) -> None:
    f = fake(reply(payload=b"\x08\x01"))
    env = {"NNGRPC_HEALTH_URL": f.url, "NNGRPC_LISTEN": "tcp://0.0.0.0:1"}
    assert run_probe(probe, env=env)[0] == 0


def test_default_url(probe: str) -> None:
    rc, _, err, _ = run_probe(probe, "--timeout-ms", "300", env={})
    assert rc == 1 and "tcp://127.0.0.1:5555: " in err


# ---- against a real hoteld -------------------------------------------------
@pytest.fixture(scope="module")
def hoteld(request: pytest.FixtureRequest) -> Iterator[str]:
    binary = str(request.config.getoption("--hoteld"))
    if not os.access(binary, os.X_OK):
        pytest.skip("no hoteld at %s" % binary)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "tcp://127.0.0.1:%d" % port
    proc = subprocess.Popen([binary, "--listen", url, "--hotels", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail("hoteld did not start: %s" % proc.communicate()[1].decode())
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_hoteld_serving(probe: str, hoteld: str) -> None:
    rc, out, err, took = run_probe(probe, "--timeout-ms", "5000", hoteld)
    if rc == 1 and "UNIMPLEMENTED" in err:
        pytest.skip("this hoteld has no health service: " + err.strip())
    assert (rc, out, err) == (0, "status: SERVING\n", "")
    assert took < 2.0


def test_hoteld_unknown_service(probe: str, hoteld: str) -> None:
    rc, _, err, _ = run_probe(probe, "--service", "no.such.Service", hoteld)
    if rc == 1 and "UNIMPLEMENTED" in err:
        pytest.skip("this hoteld has no health service")
    assert rc == 1
    assert err.startswith("nngrpc-health: %s: NOT_FOUND (5): " % hoteld)
