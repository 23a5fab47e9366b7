"""Start, poll and stop a real hoteld for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import List

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
)


@dataclass
class Server:
    """A running hoteld: its URLs and process."""

    tcp: str
    ipc: str
    proc: "subprocess.Popen[bytes]"
    log_path: str
    workers: int

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(server: Server, limit: float = 60.0) -> None:
    """Polls with real Echo calls until the server answers (no fixed sleep)."""
    end = time.monotonic() + limit
    with nngrpc.Channel(server.tcp, backoff=0.01, backoff_max=0.05) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        while True:
            try:
                stub.Echo(testing_pb2.EchoRequest(payload=b"ready?"), timeout=1.0)
                return
            except nngrpc.RpcError as e:
                if server.proc.poll() is not None:
                    pytest.fail(
                        "hoteld exited with %s before serving:\n%s"
                        % (server.proc.returncode, server.log())
                    )
                if time.monotonic() > end:
                    pytest.fail("hoteld did not answer within %.0f s: %s" % (limit, e))
                time.sleep(0.02)


def start_server(binary: str, workdir: str, extra: List[str]) -> Server:
    if not os.access(binary, os.X_OK):
        pytest.fail("hoteld binary not found or not executable: %s" % binary)
    tcp = "tcp://127.0.0.1:%d" % free_port()
    ipc = "ipc://%s/hoteld.sock" % workdir
    log_path = os.path.join(workdir, "hoteld.log")
    workers = 32
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "--testing", "--listen", tcp, "--listen", ipc,
             "--workers", str(workers)] + extra,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(tcp=tcp, ipc=ipc, proc=proc, log_path=log_path, workers=workers)
    wait_until_serving(server)
    return server


def stop_server(server: Server) -> None:
    """SIGTERM; the server must exit 0 with no sanitizer report."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            pytest.fail("hoteld did not exit within 30 s of SIGTERM:\n" + server.log())
    log = server.log()
    reports = [m for m in SANITIZER_MARKS if m in log]
    assert not reports, "sanitizer report in hoteld's output:\n" + log
    assert server.proc.returncode == 0, "hoteld exit code %s:\n%s" % (
        server.proc.returncode,
        log,
    )
