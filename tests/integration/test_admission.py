"""Admission: what the server answers, at once, to calls it will not run.

A full queue is answered RESOURCE_EXHAUSTED at receipt, marked
``nngrpc-not-run: 1`` (the handler never ran, so a client may send even a
call that is not idempotent elsewhere).
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List

import pytest

import nngrpc
from hoteld_fixture import Server, start_server, stop_server
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

SLEEP = "/nngrpc.testing.v1.Testing/Sleep"


def start(request: pytest.FixtureRequest, workdir: str, extra: List[str]) -> Server:
    binary = str(request.config.getoption("--hoteld"))
    return start_server(binary, workdir, ["--no-hotels"] + extra)


@pytest.fixture
def tiny(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One worker, a queue of one."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-admission-") as workdir:
        server = start(request, workdir, ["--workers", "1", "--queue", "1"])
        try:
            yield server
        finally:
            stop_server(server)


def sleep_req(ms: int) -> testing_pb2.SleepRequest:
    return testing_pb2.SleepRequest(ms=ms)


def test_full_queue_is_refused_at_once_and_marked_not_run(tiny: Server) -> None:
    with nngrpc.Channel(tiny.tcp, retry=None) as ch, ThreadPoolExecutor(2) as pool:
        stub = testing_nngrpc.TestingStub(ch)
        running = pool.submit(stub.Sleep, sleep_req(400), 5.0)
        time.sleep(0.1)
        queued = pool.submit(stub.Sleep, sleep_req(1), 5.0)
        time.sleep(0.1)
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Sleep(sleep_req(1), timeout=5.0)
        took = time.monotonic() - t0
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        assert "queue is full" in e.value.details()
        assert dict(e.value.trailing_metadata()).get("nngrpc-not-run") == "1"
        assert took < 0.2, "refused after %.3f s" % took
        running.result(timeout=5)
        queued.result(timeout=5)
