"""Cancellation that reaches the hotel engine: a real hoteld with hotels and
the real client.  Searches that run long are abandoned, by cancelling
their asyncio tasks and by closing their connections, and the engine stops
them early: every one ends CANCELLED in the server's /metrics, the workers
are free long before the searches would have ended, and hoteld serves the
next call; in thread and in process isolation.

A search is made to run long by what it asks, not by a sleep: every hotel
of the dataset (a geo circle around the whole Earth) sorted by distance,
with facets: some 0.3 us a hotel, 100-200 ms for the 500 000 here.  Each test first
measures one such search run to its end, and prints it beside what it
measured (pytest -s shows it): the searches abandoned, how long they had
run, and when the workers were free.  A Reload that generates a large
dataset is abandoned too: it stops, and the old dataset stays.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from typing import Iterator, List, Tuple

import pytest

import nngrpc
import nngrpc.aio
from hoteld_fixture import start_server, stop_server, free_port
from hotel.v1 import hotel_nngrpc, hotel_pb2
from test_cancel import Hoteld

SEARCH = "/hotel.v1.HotelSearch/Search"
RELOAD = "/hotel.v1.HotelSearch/Reload"
HOTELS = 500_000
WORKERS = 4
CALLS = 12  # 4 running, 8 queued: 3 searches' time of work each worker
# A Reload that generates this many hotels runs for seconds (about 5 s on
# a 2-core machine, 16 s for 3 000 000): far longer than the test waits.
RELOAD_HOTELS = 2_000_000


def costly_search() -> hotel_pb2.SearchRequest:
    """Every hotel, each one's distance computed and all of them sorted."""
    return hotel_pb2.SearchRequest(
        geo=hotel_pb2.GeoFilter(latitude=48.8584, longitude=2.2945, radius_km=20_100),
        sort=hotel_pb2.SORT_DISTANCE,
        facets=True,
    )


@pytest.fixture(scope="module", params=["thread", "process"])
def hoteld(request: pytest.FixtureRequest) -> Iterator[Hoteld]:
    """HOTELS generated hotels, WORKERS workers, no CoDel admission (it
    would shed the queued searches before the test abandons them)."""
    binary = str(request.config.getoption("--hoteld"))
    http = "127.0.0.1:%d" % free_port()
    with tempfile.TemporaryDirectory(prefix="nngrpc-cancel-engine-") as workdir:
        server = start_server(binary, workdir, [
            "--hotels", str(HOTELS), "--workers", str(WORKERS), "--queue", "64",
            "--queue-target-ms", "0", "--http", http, "--isolation", request.param])
        try:
            yield Hoteld(server, http)
        finally:
            stop_server(server)


def mode(h: Hoteld) -> str:
    return str(h.server.proc.args[-1])


def one_search(h: Hoteld) -> float:
    """Runs one costly search to its end; returns its run time in the
    server (seconds)."""
    with nngrpc.Channel(h.tcp) as ch:
        resp, call = hotel_nngrpc.HotelSearchStub(ch).Search.with_call(
            costly_search(), timeout=60)
    assert resp.total == HOTELS
    return call.run_us / 1e6


def wait_running(h: Hoteld, n: int) -> float:
    """Until n calls are in flight and every worker is busy; returns when."""
    return h.wait("%d searches received" % n,
                  lambda t: h.busy(t) == (float(n), float(min(n, WORKERS))))


def wait_free(h: Hoteld) -> float:
    return h.wait("workers free", lambda t: h.busy(t) == (0.0, 0.0))


def still_serving(h: Hoteld) -> None:
    """hoteld answers the next search, whole."""
    with nngrpc.Channel(h.tcp) as ch:
        resp = hotel_nngrpc.HotelSearchStub(ch).Search(
            hotel_pb2.SearchRequest(query="spa", page_size=5), timeout=10)
    assert len(resp.hits) == 5


def report(h: Hoteld, how: str, alone: float, ran: float, took: float) -> None:
    print("\n%s: %d Searches of %d hotels (%d running, %d queued; one alone runs %.0f ms), "
          "%s %.0f ms after they were sent: workers free %.1f ms later"
          % (mode(h), CALLS, HOTELS, WORKERS, CALLS - WORKERS, alone * 1e3,
             how, ran * 1e3, took * 1e3))


def check_stopped(h: Hoteld, before: Tuple[float, float], alone: float, took: float) -> None:
    """Every search abandoned ended CANCELLED, none ran to its end (a
    search that ends is OK, cancelled or not), and the workers were free
    sooner than one search runs alone on an idle server."""
    cancelled, ok = before
    assert h.calls(SEARCH, "CANCELLED") - cancelled == CALLS
    assert h.calls(SEARCH, "OK") == ok
    assert took < alone, (took, alone)
    if mode(h) == "process":
        # The handlers stopped when told; no worker process was killed.
        assert 'nngrpc_worker_kills_total{reason="cancel"} 0' in h.metrics()


# ---- asyncio tasks cancelled: a cancel by request id each ---------------------------------
def test_cancelled_searches_stop_in_the_engine(hoteld: Hoteld) -> None:
    alone = one_search(hoteld)
    before = (hoteld.calls(SEARCH, "CANCELLED"), hoteld.calls(SEARCH, "OK"))

    async def main() -> Tuple[float, float]:
        async with nngrpc.aio.Channel(hoteld.tcp, retry=None) as ch:
            stub = hotel_nngrpc.HotelSearchAsyncStub(ch)
            t_start = time.monotonic()
            tasks = [asyncio.ensure_future(stub.Search(costly_search(), timeout=60))
                     for _ in range(CALLS)]
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_running, hoteld, CALLS)
            t0 = time.monotonic()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            free = await loop.run_in_executor(None, wait_free, hoteld)
            return t0 - t_start, free - t0

    ran, took = asyncio.run(main())
    report(hoteld, "tasks cancelled", alone, ran, took)
    check_stopped(hoteld, before, alone, took)
    still_serving(hoteld)


# ---- connections closed: the sync client's close() -----------------------------------------
def test_closed_connections_stop_searches_in_the_engine(hoteld: Hoteld) -> None:
    alone = one_search(hoteld)
    before = (hoteld.calls(SEARCH, "CANCELLED"), hoteld.calls(SEARCH, "OK"))
    channels = [nngrpc.Channel(hoteld.tcp, retry=None) for _ in range(CALLS)]
    errors: List[BaseException] = []

    def search(ch: nngrpc.Channel) -> None:
        try:
            hotel_nngrpc.HotelSearchStub(ch).Search(costly_search(), timeout=60)
        except BaseException as e:  # what the closed channel raised
            errors.append(e)

    threads = [threading.Thread(target=search, args=(ch,)) for ch in channels]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    wait_running(hoteld, CALLS)
    t0 = time.monotonic()
    for ch in channels:
        ch.close()  # shuts the connection of the call in flight down
    took = wait_free(hoteld) - t0
    for t in threads:
        t.join(10)
    report(hoteld, "channels closed", alone, t0 - t_start, took)
    assert len(errors) == CALLS  # every caller got an error, not a result
    check_stopped(hoteld, before, alone, took)
    still_serving(hoteld)


# ---- a long Reload: it stops, and the old dataset stays -----------------------------------
def test_a_cancelled_reload_stops_and_keeps_the_dataset(hoteld: Hoteld) -> None:
    with nngrpc.Channel(hoteld.tcp) as ch:
        old = hotel_nngrpc.HotelSearchStub(ch).Stats(hotel_pb2.StatsRequest(), timeout=10)
    before = hoteld.calls(RELOAD, "CANCELLED")

    async def main() -> Tuple[float, float]:
        async with nngrpc.aio.Channel(hoteld.tcp, retry=None) as ch:
            stub = hotel_nngrpc.HotelSearchAsyncStub(ch)
            req = hotel_pb2.ReloadRequest(
                generate=hotel_pb2.GeneratedDataset(count=RELOAD_HOTELS, seed=7))
            task = asyncio.ensure_future(stub.Reload(req, timeout=120))
            loop = asyncio.get_running_loop()
            started = await loop.run_in_executor(None, wait_running, hoteld, 1)
            await asyncio.sleep(0.3)  # well into its build
            t0 = time.monotonic()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            free = await loop.run_in_executor(None, wait_free, hoteld)
            return t0 - started, free - t0

    ran, took = asyncio.run(main())
    print("\n%s: Reload generating %d hotels cancelled after %.0f ms: worker free %.1f ms later"
          % (mode(hoteld), RELOAD_HOTELS, ran * 1e3, took * 1e3))
    assert hoteld.calls(RELOAD, "CANCELLED") - before == 1
    assert took < 1.0
    with nngrpc.Channel(hoteld.tcp) as ch:
        now = hotel_nngrpc.HotelSearchStub(ch).Stats(hotel_pb2.StatsRequest(), timeout=10)
    assert (now.dataset_id, now.hotel_count) == (old.dataset_id, old.hotel_count) == (
        old.dataset_id, HOTELS)
    still_serving(hoteld)
