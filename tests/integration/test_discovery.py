"""Discovery against real hoteld processes: one Channel to a DNS name whose
answer the test controls (a fake resolver, the documented ``resolver=``
option) and that stands for hoteld replicas on 127.0.0.2, .3, .4, .5, all
on one port, as a Swarm service's tasks or a headless Service's pods are.

Which replica answered: each replica's own /metrics (calls of Echo).
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, Iterator, List, Sequence, Tuple

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, free_port, start_server, stop_server

ECHO = "/nngrpc.testing.v1.Testing/Echo"
NAME = "hoteld.test"
_ECHO_OK = re.compile(r'^nngrpc_calls_total\{method="%s",code="OK"\} (\d+)$' % re.escape(ECHO), re.M)


@dataclass
class Replica:
    """A hoteld listening on host:port (besides the fixture's own URLs)."""

    server: Server
    host: str
    port: int
    http: str

    def echoes(self) -> int:
        """Echo calls it answered OK, from its /metrics."""
        with urllib.request.urlopen("http://%s/metrics" % self.http, timeout=5) as r:
            text = r.read().decode()
        m = _ECHO_OK.search(text)
        return int(m.group(1)) if m else 0


def shared_port(hosts: Sequence[str]) -> int:
    """A port free on every one of hosts."""
    for _ in range(50):
        port = free_port()
        socks = []
        try:
            for h in hosts:
                s = socket.socket()
                socks.append(s)
                s.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no port free on %s" % ", ".join(hosts))


@pytest.fixture
def replicas(request: pytest.FixtureRequest) -> Iterator[List[Replica]]:
    """Four hoteld --testing, on 127.0.0.2-5 and one shared port."""
    binary = str(request.config.getoption("--hoteld"))
    hosts = ["127.0.0.%d" % i for i in range(2, 6)]
    port = shared_port(hosts)
    with ExitStack() as stack:
        out: List[Replica] = []
        for h in hosts:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nngrpc-disc-"))
            http = "127.0.0.1:%d" % free_port()
            s = start_server(binary, workdir, ["--no-hotels", "--drain-timeout", "5",
                                               "--listen", "tcp://%s:%d" % (h, port),
                                               "--http", http])
            out.append(Replica(s, h, port, http))
        try:
            yield out
        finally:
            for r in out:
                stop_server(r.server)


class Dns:
    """The name's answer, as the test sets it (a list of replicas)."""

    def __init__(self, rs: Sequence[Replica]) -> None:
        self.hosts = [r.host for r in rs]

    def set(self, rs: Sequence[Replica]) -> None:
        self.hosts = [r.host for r in rs]

    def __call__(self, host: str, port: int) -> List[str]:
        assert host == NAME
        return list(self.hosts)


class Load:
    """threads calling Echo through one channel, idempotent (the stub) and
    not (the same method, idempotent=False) in turn, until stop()."""

    def __init__(self, ch: nngrpc.Channel, threads: int = 8) -> None:
        self.stub = testing_nngrpc.TestingStub(ch)
        self.raw = ch.unary_unary(ECHO, testing_pb2.EchoRequest.SerializeToString,
                                  testing_pb2.EchoResponse.FromString, idempotent=False)
        self.ok = {"idem": 0, "non": 0}
        self.errors: Dict[str, List[nngrpc.RpcError]] = {"idem": [], "non": []}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _loop(self, i: int) -> None:
        req = testing_pb2.EchoRequest(payload=b"discovery")
        n = i
        while not self._stop.is_set():
            n += 1
            kind = "idem" if n % 2 else "non"
            try:
                (self.stub.Echo if kind == "idem" else self.raw)(req, timeout=5.0)
            except nngrpc.RpcError as e:
                with self._lock:
                    self.errors[kind].append(e)
                continue
            with self._lock:
                self.ok[kind] += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def failed(self) -> Tuple[int, int]:
        return len(self.errors["idem"]), len(self.errors["non"])


def until(cond: "Callable[[], bool]", limit: float) -> float:
    """Polls cond every 20 ms; returns the seconds it took (fails past limit)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            pytest.fail("not within %.1f s" % limit)
        time.sleep(0.02)
    return time.monotonic() - t0


def connected_to(ch: nngrpc.Channel, r: Replica) -> int:
    """The channel's connections to r."""
    n = 0
    with ch._lock:
        pipes = [p for e in ch._endpoints for p in e.idle] + list(ch._busy)
    for p in pipes:
        try:
            n += p.sock.getpeername()[0] == r.host
        except OSError:
            pass
    return n


def test_one_channel_spreads_calls_evenly(replicas: List[Replica]) -> None:
    three = replicas[:3]
    before = [r.echoes() for r in three]
    with nngrpc.Channel("tcp://%s:%d" % (NAME, three[0].port), resolver=Dns(three)) as ch:
        load = Load(ch)
        until(lambda: sum(load.ok.values()) >= 1500, 30)
        load.stop()
        assert load.failed() == (0, 0)
        calls = [r.echoes() - b for r, b in zip(three, before)]
        total = sum(load.ok.values())
        assert sum(calls) == total
        # Round-robin over the addresses: even to a call, whatever the
        # connections' ages (each thread's calls go to every replica).
        assert max(calls) - min(calls) <= 2, calls
        assert sum(connected_to(ch, r) > 0 for r in three) == 3


def test_replicas_join_leave_and_drain_without_a_failed_call(replicas: List[Replica]) -> None:
    """As a Swarm scale-up, scale-down and rolling update do: a new replica
    takes calls within one resolve_interval; one that leaves DNS takes no
    new call and loses its connections; stopped after it left (SIGTERM:
    it drains), no call fails, idempotent or not."""
    a, b, c, d = replicas
    dns = Dns([a, b, c])
    interval = 0.5
    with nngrpc.Channel("tcp://%s:%d" % (NAME, a.port), resolver=dns,
                        resolve_interval=interval) as ch:
        load = Load(ch)
        try:
            until(lambda: all(r.echoes() > 20 for r in (a, b, c)), 10)
            # d joins.
            dns.set([a, b, c, d])
            joined = until(lambda: d.echoes() > 0, 5)
            assert joined < interval + 0.5, joined
            # a leaves DNS: within one interval, no new call and no
            # connection; then it is stopped, and drains.
            dns.set([b, c, d])
            until(lambda: connected_to(ch, a) == 0, interval + 1.0)
            n = a.echoes()
            time.sleep(interval)
            assert a.echoes() == n
            a.server.proc.send_signal(signal.SIGTERM)
            assert a.server.proc.wait(10) == 0
            time.sleep(0.3)
            ok = dict(load.ok)
            time.sleep(0.3)
        finally:
            load.stop()
        assert load.failed() == (0, 0), load.errors
        assert load.ok["non"] > ok["non"] and load.ok["idem"] > ok["idem"]


def test_a_replica_that_drains_while_in_dns(replicas: List[Replica]) -> None:
    """SIGTERM to a replica still in DNS (Kubernetes sends it as the pod
    leaves the endpoints): its not-run answers send the calls elsewhere
    and close its connections.  No idempotent call fails."""
    a, b, c, _ = replicas
    dns = Dns([a, b, c])
    with nngrpc.Channel("tcp://%s:%d" % (NAME, a.port), resolver=dns,
                        resolve_interval=60.0) as ch:
        load = Load(ch)
        try:
            until(lambda: all(r.echoes() > 20 for r in (a, b, c)), 10)
            a.server.proc.send_signal(signal.SIGTERM)
            assert a.server.proc.wait(10) == 0
            ok = dict(load.ok)
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.failed()[0] == 0, load.errors["idem"][:3]
        assert load.ok["idem"] > ok["idem"] and load.ok["non"] > ok["non"]
        assert connected_to(ch, a) == 0


def test_aio_replicas_join_and_leave(replicas: List[Replica]) -> None:
    a, b, c, _ = replicas
    dns = Dns([a, b])

    async def main() -> None:
        async with nngrpc.aio.Channel("tcp://%s:%d" % (NAME, a.port), resolver=dns,
                                      resolve_interval=0.3) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            req = testing_pb2.EchoRequest(payload=b"aio")
            stop = False
            failed: List[BaseException] = []

            async def worker() -> None:
                while not stop:
                    try:
                        await stub.Echo(req, timeout=5.0)
                    except nngrpc.RpcError as e:
                        failed.append(e)

            workers = [asyncio.ensure_future(worker()) for _ in range(16)]
            loop = asyncio.get_running_loop()

            async def echoes(r: Replica) -> int:
                return await loop.run_in_executor(None, r.echoes)

            async def until_async(cond: "Callable[[], Awaitable[bool]]", limit: float) -> float:
                t0 = time.monotonic()
                while not await cond():
                    assert time.monotonic() - t0 < limit, "not within %.1f s" % limit
                    await asyncio.sleep(0.02)
                return time.monotonic() - t0

            async def answered(r: Replica) -> bool:
                return await echoes(r) > 0

            await until_async(lambda: answered(b), 10)
            dns.set([a, b, c])
            assert await until_async(lambda: answered(c), 5) < 0.3 + 0.5
            dns.set([b, c])
            await asyncio.sleep(0.8)
            n = await echoes(a)
            await asyncio.sleep(0.5)
            stop = True
            await asyncio.gather(*workers)
            assert await echoes(a) == n
            assert not failed, failed[:3]
            assert all(not e.addr.host == a.host for e in ch._endpoints)

    asyncio.run(asyncio.wait_for(main(), 60))
