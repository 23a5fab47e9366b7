"""Idle connections: the client closes its own before the server would.

hoteld closes a connection that has carried no call for --idle-timeout
(here 1 s; 120 s by default).  A client that reaches for such a connection
just as the server closes it sends its call into the close: "connection
closed by the server", and a call that is not idempotent is not retried.
The channels never use a connection idle for their ``idle_timeout`` (here
0.5 s; 30 s by default): they close it instead, so they never reach for
one the server closed (which it does only after 1 s).  Measured: calls at
random gaps of 0 to 1.4 s, around both limits, all succeed, and the
client never once finds a pooled connection closed by the server.  The
control, without the client's limit: the client keeps reaching for
connections the server has closed (each one a call that would have failed
had the close come a moment later; here its poll(0) check still caught
it).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import threading
import time
import urllib.request
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import nngrpc
import nngrpc.aio
from hoteld_fixture import Server, free_port, start_server, stop_server
from nngrpc._pipe import ReqPipe
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

RUN_S = 3.0
THREADS = 4


@pytest.fixture
def idle_hoteld(request: pytest.FixtureRequest) -> Iterator[Tuple[Server, str]]:
    binary = str(request.config.getoption("--hoteld"))
    http = "127.0.0.1:%d" % free_port()
    with tempfile.TemporaryDirectory(prefix="nngrpc-idle-") as workdir:
        server = start_server(binary, workdir, ["--no-hotels", "--idle-timeout", "1",
                                                "--http", http])
        try:
            yield server, http
        finally:
            stop_server(server)


def counters(http: str) -> Dict[str, float]:
    with urllib.request.urlopen("http://%s/metrics" % http, timeout=5) as r:
        text = r.read().decode()
    return {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
            if l.startswith("nngrpc_connections_")}


class ClosedFound:
    """Counts how often a channel, about to reuse a pooled connection,
    finds the server has closed it (ReqPipe.is_idle_and_open says no)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = ReqPipe.is_idle_and_open

        def counted(pipe: ReqPipe) -> bool:
            ok = real(pipe)
            if not ok:
                self.count += 1
            return ok

        monkeypatch.setattr(ReqPipe, "is_idle_and_open", counted)


#: Gaps of one caller: each over 1.25 s outlives the server's idle close
#: (1 s, seen by its sweeper within a quarter more).
GAPS = [0.2, 1.4, 0.7, 1.4, 0.1, 1.35]


def sync_gaps(url: str, idle_timeout: Optional[float]) -> List[str]:
    """One caller, the GAPS between its calls; returns the failures."""
    failures: List[str] = []
    with nngrpc.Channel(url, retry=None, idle_timeout=idle_timeout) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for gap in GAPS + [0.0]:
            try:
                stub.Echo(testing_pb2.EchoRequest(payload=b"g"), timeout=5.0)
            except nngrpc.RpcError as e:
                failures.append("%s: %s" % (e.code().name, e.details()))
            time.sleep(gap)
    return failures


def sync_load(url: str, idle_timeout: Optional[float]) -> Tuple[int, List[str]]:
    """THREADS threads call Echo (not idempotent, one attempt) with random
    gaps of 0 to 1.4 s for RUN_S seconds; returns (calls, failures)."""
    calls = [0]
    failures: List[str] = []
    lock = threading.Lock()
    with nngrpc.Channel(url, retry=None, idle_timeout=idle_timeout) as ch:
        stub = testing_nngrpc.TestingStub(ch)

        def loop(seed: int) -> None:
            rng = random.Random(seed)
            end = time.monotonic() + RUN_S
            while time.monotonic() < end:
                try:
                    stub.Echo(testing_pb2.EchoRequest(payload=b"i"), timeout=5.0)
                except nngrpc.RpcError as e:
                    with lock:
                        failures.append("%s: %s" % (e.code().name, e.details()))
                with lock:
                    calls[0] += 1
                time.sleep(rng.uniform(0.0, 1.4))

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RUN_S + 30)
    return calls[0], failures


def test_sync_channel_closes_idle_connections_first(
    idle_hoteld: Tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, http = idle_hoteld
    found = ClosedFound(monkeypatch)
    before = counters(http)
    calls, failures = sync_load(server.tcp, idle_timeout=0.5)
    failures += sync_gaps(server.tcp, idle_timeout=0.5)
    after = counters(http)
    dialled = (after["nngrpc_connections_accepted_total"]
               - before["nngrpc_connections_accepted_total"])
    print("client idle 0.5 s, server idle 1 s: %d calls, %d failed, %d connections "
          "dialled, %d pooled connections found closed by the server"
          % (calls, len(failures), dialled, found.count))
    assert not failures, failures[:5]
    assert found.count == 0
    assert dialled > THREADS  # the client did close idle connections


def test_control_client_reaches_for_closed_connections(
    idle_hoteld: Tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same load with no client limit: the client reaches for pooled
    connections the server has closed."""
    server, http = idle_hoteld
    found = ClosedFound(monkeypatch)
    before = counters(http)
    calls, failures = sync_load(server.tcp, idle_timeout=None)
    failures += sync_gaps(server.tcp, idle_timeout=None)
    after = counters(http)
    closed_by_server = (after["nngrpc_connections_idle_timeouts_total"]
                        - before["nngrpc_connections_idle_timeouts_total"])
    print("no client idle limit, server idle 1 s: %d calls, %d failed, %d closed idle by "
          "the server, %d of them found closed by a call" % (
              calls, len(failures), closed_by_server, found.count))
    assert found.count >= 3  # at least each of GAPS' three long gaps


def test_aio_channel_closes_idle_connections_first(idle_hoteld: Tuple[Server, str]) -> None:
    server, http = idle_hoteld
    before = counters(http)
    failures: List[str] = []
    calls = [0]

    async def loop(ch: nngrpc.aio.Channel, seed: int) -> None:
        rng = random.Random(seed)
        stub = testing_nngrpc.TestingAsyncStub(ch)
        end = time.monotonic() + RUN_S
        while time.monotonic() < end:
            try:
                await stub.Echo(testing_pb2.EchoRequest(payload=b"a"), timeout=5.0)
            except nngrpc.RpcError as e:
                failures.append("%s: %s" % (e.code().name, e.details()))
            calls[0] += 1
            await asyncio.sleep(rng.uniform(0.0, 1.4))

    async def main() -> None:
        async with nngrpc.aio.Channel(server.tcp, retry=None, idle_timeout=0.5) as ch:
            await asyncio.gather(*[loop(ch, i) for i in range(THREADS)])

    asyncio.run(main())
    after = counters(http)
    closed_by_server = (after["nngrpc_connections_idle_timeouts_total"]
                        - before["nngrpc_connections_idle_timeouts_total"])
    print("aio, client idle 0.5 s, server idle 1 s: %d calls, %d failed, %d closed idle "
          "by the server" % (calls[0], len(failures), closed_by_server))
    assert not failures, failures[:5]
