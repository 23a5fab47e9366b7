"""Fixtures of the bench smoke tests: a hoteld --testing on a free port.

    build/venv/bin/python -m pytest tests/bench [--bench-build build]

The build directory (binaries under BUILD/bin, anchors under BUILD/bench)
comes from --bench-build, or $NNGRPC_BUILD, default build.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-build",
        default=os.environ.get("NNGRPC_BUILD", "build"),
        help="build directory (default $NNGRPC_BUILD or build)",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def build_dir(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--bench-build"))


@pytest.fixture(scope="session")
def bench_bin(build_dir: str) -> str:
    path = os.path.join(build_dir, "bin", "nngrpc-bench")
    if not os.access(path, os.X_OK):
        pytest.fail("nngrpc-bench is not built: %s (run make)" % path)
    return path


def _stop(proc: "subprocess.Popen[bytes]", name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("%s did not stop within 30 s of SIGTERM" % name)
    assert proc.returncode == 0, "%s exit code %s" % (name, proc.returncode)


@pytest.fixture(scope="session")
def hoteld_url(build_dir: str) -> Iterator[str]:
    """tcp:// URL of a hoteld --testing --no-hotels, polled until it answers."""
    binary = os.path.join(build_dir, "bin", "hoteld")
    if not os.access(binary, os.X_OK):
        pytest.fail("hoteld is not built: %s" % binary)
    url = "tcp://127.0.0.1:%d" % free_port()
    with tempfile.TemporaryFile() as logf:
        proc = subprocess.Popen(
            [binary, "--testing", "--no-hotels", "--listen", url, "--workers", "8"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        )
        try:
            end = time.monotonic() + 30
            with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
                stub = testing_nngrpc.TestingStub(ch)
                while True:
                    try:
                        stub.Echo(testing_pb2.EchoRequest(payload=b"up?"), timeout=1.0)
                        break
                    except nngrpc.RpcError:
                        if proc.poll() is not None or time.monotonic() > end:
                            logf.seek(0)
                            pytest.fail("hoteld did not start:\n%s" % logf.read().decode())
                        time.sleep(0.02)
            yield url
        finally:
            _stop(proc, "hoteld")


@pytest.fixture(scope="session")
def nng_echo_url(build_dir: str) -> Iterator[str]:
    """tcp:// URL of the raw NNG echo server anchor (skips if not built)."""
    binary = os.path.join(build_dir, "bench", "nng_echo_server")
    if not os.access(binary, os.X_OK):
        pytest.skip("the NNG echo server anchor is not built (make bench-build)")
    url = "tcp://127.0.0.1:%d" % free_port()
    proc = subprocess.Popen([binary, "--listen", url], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", line
        yield url
    finally:
        _stop(proc, "nng_echo_server")
