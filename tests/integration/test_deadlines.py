"""Deadlines end to end: a call whose deadline passes while it waits in the
server's queue is answered DEADLINE_EXCEEDED and never run.

The server has one worker (``--workers 1``), so a Sleep(500) keeps it busy
and everything sent meanwhile waits in the queue.  The proof that the
expired call did not run is in the server's own log: with
``--log-level debug --log-format json --access-log all`` hoteld writes a
debug line "call METHOD" when a worker starts a handler, and an access line
(status, queue and run times) when it answers, each tagged with the call's
``nngrpc-request-id`` metadata.  The expired call has an access line saying
DEADLINE_EXCEEDED after a long queue wait and no "call" line.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import nngrpc
from hoteld_fixture import Server, start_server, stop_server
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

DEADLINE = nngrpc.StatusCode.DEADLINE_EXCEEDED
SLEEP = "/nngrpc.testing.v1.Testing/Sleep"
SEARCH = "/hotel.v1.HotelSearch/Search"


@pytest.fixture(scope="module")
def one_worker(request: pytest.FixtureRequest) -> Iterator[Server]:
    """hoteld --testing with a single worker, 2000 hotels and a full log.
    CoDel admission is off: these tests keep calls queued behind a busy
    worker for longer than its target and interval on purpose."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-deadlines-") as workdir:
        server = start_server(binary, workdir, [
            "--workers", "1", "--hotels", "2000", "--queue-target-ms", "0",
            "--log-level", "debug", "--log-format", "json", "--access-log", "all",
        ])
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture
def channel(one_worker: Server) -> Iterator[nngrpc.Channel]:
    # A long grace: the client waits for the server's own answer (with
    # its details and timings) instead of giving up at its deadline.
    with nngrpc.Channel(one_worker.tcp, deadline_grace=10.0) as ch:
        yield ch


def rid() -> str:
    return "dl-" + uuid.uuid4().hex[:12]


def log_lines(server: Server) -> List[Dict[str, Any]]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
    return lines


def started(server: Server, request_id: str) -> bool:
    """Whether a worker started the handler of the call."""
    return any(
        l.get("msg", "").startswith("call ") and l.get("request_id") == request_id
        for l in log_lines(server)
    )


def access(server: Server, request_id: str, limit: float = 10.0) -> Dict[str, Any]:
    """The access log line of the call (waits for it to be written)."""
    end = time.monotonic() + limit
    while True:
        for l in log_lines(server):
            if l.get("msg") == "access" and l.get("request_id") == request_id:
                return l
        if time.monotonic() > end:
            pytest.fail("no access line for %s in:\n%s" % (request_id, server.log()))
        time.sleep(0.01)


def wait_started(server: Server, request_id: str, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not started(server, request_id):
        if time.monotonic() > end:
            pytest.fail("call %s never started:\n%s" % (request_id, server.log()))
        time.sleep(0.005)


def sleep_call(
    stub: testing_nngrpc.TestingStub, ms: int, timeout: float, request_id: str
) -> Tuple[testing_pb2.SleepResponse, nngrpc.Call]:
    return stub.Sleep.with_call(
        testing_pb2.SleepRequest(ms=ms), timeout=timeout,
        metadata={"nngrpc-request-id": request_id},
    )


def test_call_expired_in_the_queue_is_not_run(one_worker: Server, channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    busy, expired, queued = rid(), rid(), rid()
    with ThreadPoolExecutor(max_workers=3) as pool:
        # The only worker sleeps 500 ms ...
        first = pool.submit(sleep_call, stub, 500, 30.0, busy)
        wait_started(one_worker, busy)
        # ... while a call with a 100 ms deadline waits behind it, sent
        # from another thread, then one with no deadline to speak of.
        t0 = time.monotonic()
        second = pool.submit(sleep_call, stub, 1, 0.1, expired)
        time.sleep(0.05)
        third = pool.submit(sleep_call, stub, 1, 30.0, queued)

        with pytest.raises(nngrpc.RpcError) as err:
            second.result(timeout=30)
        waited = time.monotonic() - t0
        resp1, call1 = first.result(timeout=30)
        resp3, call3 = third.result(timeout=30)

    # The expired call: DEADLINE_EXCEEDED from the server, which says it
    # expired in its queue, answered only when the worker came free.
    e = err.value
    assert e.code() == DEADLINE, e
    assert "in the server queue" in e.details(), e.details()
    assert e.call.queue_us >= 100_000, e.call
    assert e.call.run_us < 100_000, e.call
    assert waited >= 0.2, "answered after %.3f s: before the worker was free?" % waited

    # The server never ran it: no handler start in its log, and its
    # access line says DEADLINE_EXCEEDED with the time it spent queued.
    line = access(one_worker, expired)
    assert line["status"] == "DEADLINE_EXCEEDED" and line["code"] == 4, line
    assert line["queue_us"] >= 100_000, line
    assert not started(one_worker, expired), one_worker.log()

    # The calls around it ran: the busy one slept its 500 ms; the third
    # waited its turn in the queue, then ran.
    assert resp1.slept_us >= 500_000 and call1.run_us >= 500_000, call1
    assert call3.code() == nngrpc.StatusCode.OK
    assert resp3.slept_us >= 1000
    assert call3.queue_us >= 200_000, call3
    assert started(one_worker, busy) and started(one_worker, queued)
    assert access(one_worker, queued)["status"] == "OK"


def test_sleep_reports_queue_and_run_times(channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    for ms in (1, 2, 5, 10, 20):
        resp, call = sleep_call(stub, ms, 10.0, rid())
        assert call.code() == nngrpc.StatusCode.OK
        assert call.queue_us > 0, call
        assert call.run_us >= ms * 1000, call
        assert resp.slept_us >= ms * 1000
        # The server's run time covers the sleep, with little on top.
        assert call.run_us >= resp.slept_us


def test_server_deadline_stops_a_running_sleep(one_worker: Server, channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    request_id = rid()
    t0 = time.monotonic()
    with pytest.raises(nngrpc.RpcError) as err:
        sleep_call(stub, 5000, 0.2, request_id)
    assert err.value.code() == DEADLINE
    assert time.monotonic() - t0 < 3.0
    # This one did start (it ran out of time while running).
    assert started(one_worker, request_id)
    assert 150_000 <= err.value.call.run_us < 3_000_000, err.value.call


def test_search_with_1us_timeout_is_deadline_exceeded(one_worker: Server, channel: nngrpc.Channel) -> None:
    stub = hotel_nngrpc.HotelSearchStub(channel)
    assert stub.Search(hotel_pb2.SearchRequest(query="hotel"), timeout=10.0).total > 0
    ids = []
    for _ in range(5):
        request_id = rid()
        ids.append(request_id)
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as err:
            stub.Search(
                hotel_pb2.SearchRequest(query="hotel", facets=True), timeout=1e-6,
                metadata={"nngrpc-request-id": request_id},
            )
        assert err.value.code() == DEADLINE, err.value
        assert time.monotonic() - t0 < 2.0
    # Whether the client or the server saw the deadline first, the search
    # never ran on the server.
    for request_id in ids:
        assert not started(one_worker, request_id), one_worker.log()
    # And the service still answers.
    assert stub.Search(hotel_pb2.SearchRequest(query="hotel"), timeout=10.0).total > 0


# ---- deadlines the server imposes ----------------------------------------------------
@pytest.fixture(scope="module")
def imposing(request: pytest.FixtureRequest) -> Iterator[Server]:
    """hoteld --default-deadline 0.3 --max-deadline 1."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-deadlines-") as workdir:
        server = start_server(binary, workdir, [
            "--no-hotels", "--default-deadline", "0.3", "--max-deadline", "1"])
        try:
            yield server
        finally:
            stop_server(server)


@pytest.mark.parametrize("timeout, ms, want_s", [
    (None, 3000, 0.3),  # none sent: the server's default
    (10.0, 3000, 1.0),  # too long: the server's maximum
    (0.5, 3000, 0.5),   # shorter than the maximum: the caller's own
])
def test_server_default_and_max_deadline(
    imposing: Server, timeout: Optional[float], ms: int, want_s: float
) -> None:
    with nngrpc.Channel(imposing.tcp, deadline_grace=10.0, retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Sleep(testing_pb2.SleepRequest(ms=ms), timeout=timeout)
        took = time.monotonic() - t0
        assert e.value.code() == DEADLINE, e.value
        assert want_s - 0.01 <= took < want_s + 0.5, took
        # A call within the deadlines is untouched.
        resp = stub.Sleep(testing_pb2.SleepRequest(ms=50), timeout=timeout)
        assert resp.slept_us >= 50_000
