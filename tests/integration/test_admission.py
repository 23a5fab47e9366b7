"""Admission: what the server answers, at once, to calls it will not run.

A full queue is answered RESOURCE_EXHAUSTED at receipt, and a queue that
has stood above its target wait for an interval sheds what waits past the
target (CoDel; src/rpc/admission.h): both are marked ``nngrpc-not-run:
1`` (the handler never ran, so a client may send even a call that is not
idempotent elsewhere).  The overload figures are in tests/fault's
test_overload.py and make bench.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Tuple

import pytest

import nngrpc
from hoteld_fixture import Server, free_port, start_server, stop_server
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

SLEEP = "/nngrpc.testing.v1.Testing/Sleep"


def start(request: pytest.FixtureRequest, workdir: str, extra: List[str]) -> Server:
    binary = str(request.config.getoption("--hoteld"))
    return start_server(binary, workdir, ["--no-hotels"] + extra)


@pytest.fixture
def tiny(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One worker, a queue of one, no CoDel admission (it would shed the
    queued call after about 105 ms)."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-admission-") as workdir:
        server = start(request, workdir, ["--workers", "1", "--queue", "1",
                                          "--queue-target-ms", "0"])
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


# ---- CoDel admission (src/rpc/admission.h) ----------------------------------------
def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics:\n%s" % (name, text))


def http_get(addr: str, path: str) -> str:
    with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=5) as r:
        return r.read().decode()


@pytest.mark.parametrize("target_ms", [5, 0])
def test_standing_queue_is_shed_then_admits_again(
    request: pytest.FixtureRequest, target_ms: int
) -> None:
    """One worker is busy for 1.5 s; 20 calls queue behind it.  With
    admission (the default target of 5 ms, interval 100 ms) the queue has
    stood above the target for an interval after about 105 ms: the queued
    calls are answered RESOURCE_EXHAUSTED, not run, then and not after the
    busy call; /metrics counts them.  Once the queue has drained, calls
    are admitted (and served) again.  With --queue-target-ms 0 the same
    calls wait their turn and are all served."""
    http = "127.0.0.1:%d" % free_port()
    with tempfile.TemporaryDirectory(prefix="nngrpc-admission-") as workdir:
        server = start(request, workdir, ["--workers", "1", "--queue", "64", "--http", http,
                                          "--queue-target-ms", str(target_ms)])
        try:
            with nngrpc.Channel(server.tcp, retry=None) as ch, ThreadPoolExecutor(21) as pool:
                stub = testing_nngrpc.TestingStub(ch)
                busy = pool.submit(stub.Sleep, sleep_req(1500), 10.0)
                time.sleep(0.1)
                t0 = time.monotonic()

                def queued_call() -> Tuple[str, float, Dict[str, str]]:
                    try:
                        stub.Sleep(sleep_req(1), timeout=10.0)
                        return "OK", time.monotonic() - t0, {}
                    except nngrpc.RpcError as e:
                        return e.code().name, time.monotonic() - t0, dict(e.trailing_metadata())

                results = [f.result(timeout=20) for f in
                           [pool.submit(queued_call) for _ in range(20)]]
                busy.result(timeout=10)
                text = http_get(http, "/metrics")
                after = stub.Sleep(sleep_req(1), timeout=5.0)
            codes = sorted({r[0] for r in results})
            if target_ms:
                assert codes == ["RESOURCE_EXHAUSTED"], results
                assert all(r[2].get("nngrpc-not-run") == "1" for r in results), results
                # Shed after about target + interval, not after the busy call.
                assert max(r[1] for r in results) < 1.0, results
                assert metric(text, "nngrpc_queue_shed_total") == 20
            else:
                assert codes == ["OK"], results
                assert min(r[1] for r in results) >= 1.2, results
                assert metric(text, "nngrpc_queue_shed_total") == 0
            assert after.slept_us >= 1000
        finally:
            stop_server(server)
