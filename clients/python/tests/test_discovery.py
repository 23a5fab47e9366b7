"""Discovery: DNS names as one endpoint per address, resolved again while
the channel lives (sync and asyncio), with a fake resolver and fake REP
peers on loopback addresses 127.0.0.2, .3, .4 ... (no hoteld; the same
against real hoteld processes: tests/integration/test_discovery.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import pytest

import nngrpc
import nngrpc.aio
from nngrpc import _sp
from nngrpc._discovery import Discovery, is_name, system_resolver
from nngrpc._transport import parse_url
from nngrpc.v1 import rpc_pb2

from test_retry import closed_by_peer
from test_sp import FakeServer, read_request, send_reply

NOT_RUN = 14  # UNAVAILABLE, with trailer nngrpc-not-run


# ---- fakes ------------------------------------------------------------------------------
class Peer(FakeServer):
    """A REP peer on host:port that answers every request with its own
    tag (or, once ``not_run`` is set, UNAVAILABLE + nngrpc-not-run, as a
    draining hoteld does), counting the calls it answered."""

    def __init__(self, host: str, port: int, tag: bytes, delay: float = 0.0) -> None:
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.url = "tcp://%s:%d" % (host, self.port)
        self.ipc = False
        self.lsock.listen(64)
        self.proto = _sp.PROTO_REP
        self.conns: List[socket.socket] = []
        self.requests: List[bytes] = []
        self.tag = tag
        self.delay = delay
        self.calls = 0
        self.not_run = False
        self.handler = self._answer
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stops listening and cuts every connection (shutdown first: a
        plain close leaves a socket some thread is blocked on working)."""
        for sock in [self.lsock] + self.conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _answer(self, conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            time.sleep(self.delay)
            if self.not_run:
                env = rpc_pb2.Response(code=NOT_RUN, message="draining")
                env.trailers["nngrpc-not-run"] = "1"
            else:
                env = rpc_pb2.Response(code=0, payload=self.tag)
                self.calls += 1
            send_reply(conn, ipc, body[:4] + env.SerializeToString())


def peers(n: int, delay: float = 0.0) -> List[Peer]:
    """n peers on 127.0.0.2, 127.0.0.3, ... sharing one port, as the
    replicas behind a DNS name do."""
    for _ in range(20):
        first = Peer("127.0.0.2", 0, b"127.0.0.2", delay)
        out = [first]
        try:
            for i in range(3, n + 2):
                out.append(Peer("127.0.0.%d" % i, first.port, b"127.0.0.%d" % i, delay))
            return out
        except OSError:  # the port is taken on another address: try another
            for p in out:
                p.close()
    raise RuntimeError("no port free on %d loopback addresses" % n)


class FakeDns:
    """A resolver the test controls: answers[host] is what host resolves
    to (missing: the name does not exist); counts the resolutions and can
    hold them (hang) until released."""

    def __init__(self, answers: Dict[str, Sequence[str]]) -> None:
        self.answers = dict(answers)
        self.count = 0
        self.threads: List[str] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.count += 1
        self.threads.append(threading.current_thread().name)
        self.release.wait(30)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])

    def wait_count(self, n: int, limit: float = 5.0) -> float:
        """Waits until n resolutions started; returns how long it took."""
        t0 = time.monotonic()
        while self.count < n and time.monotonic() - t0 < limit:
            time.sleep(0.005)
        assert self.count >= n, "%d resolutions, not %d, within %.0f s" % (self.count, n, limit)
        return time.monotonic() - t0


def ips(ps: Sequence[Peer]) -> List[str]:
    return [p.host for p in ps]


def poll(cond: Callable[[], bool], limit: float = 5.0) -> bool:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


# ---- Discovery, the state machine ------------------------------------------------------
def test_names_and_literals() -> None:
    assert is_name(parse_url("tcp://tasks.hoteld:5555"))
    assert is_name(parse_url("tls+tcp://localhost:1"))
    for literal in ["tcp://127.0.0.1:1", "tcp://[::1]:1", "tcp://[fe80::1%eth0]:1", "ipc:///x"]:
        assert not is_name(parse_url(literal))
    assert "127.0.0.1" in system_resolver("localhost", 1)


def test_schedule_interval_and_asked_for_resolutions() -> None:
    d = Discovery([parse_url("tcp://svc:1")], interval=10.0)
    assert d.has_names and d.addresses() == []
    assert d.due(0.0)  # the first one: at once
    assert d.start(100.0) == [("svc", 1)]
    assert not d.due(100.0) and d.running  # one at a time
    assert d.finish([["10.0.0.1"]]) == [parse_url("tcp://10.0.0.1:1").__class__(
        url="tcp://10.0.0.1:1", ipc=False, family=socket.AF_INET, host="10.0.0.1", port=1,
        name="svc")]
    assert not d.due(109.9) and d.due(110.0)  # every interval
    d.ask()  # something failed: at once, but min_gap after the last start
    assert not d.due(100.4) and d.due(100.5)
    d.start(100.5)
    d.ask()  # asked while running: the next one right after the gap
    assert d.finish([["10.0.0.1"]]) is None  # unchanged
    assert d.due(101.0)
    d.after_fork()  # the child: nothing runs, resolve at once
    assert not d.running and d.due(0.0)
    with pytest.raises(ValueError):
        Discovery([], interval=0)


def test_answers_make_endpoints() -> None:
    d = Discovery(
        [parse_url("tcp://127.0.0.1:7"), parse_url("tls+tcp://svc:5"), parse_url("tcp4://v4:6")],
        interval=1.0,
    )
    assert [a.url for a in d.addresses()] == ["tcp://127.0.0.1:7"]  # literals at once
    d.start(0.0)
    new = d.finish([["10.0.0.2", "fd00::2", "10.0.0.2"], ["10.0.0.3", "fd00::3"]])
    assert new is not None
    assert [a.url for a in new] == [
        "tcp://127.0.0.1:7", "tls+tcp://10.0.0.2:5", "tls+tcp://[fd00::2]:5", "tcp4://10.0.0.3:6"]
    tls = new[1]
    assert tls.tls and tls.host == "10.0.0.2" and tls.name == "svc" and tls.tls_name == "svc"
    assert new[2].family == socket.AF_INET6 and new[0].tls_name == "127.0.0.1"
    # A failure keeps the last good addresses: an error, no address, garbage.
    for bad in [socket.gaierror(-3, "Temporary failure in name resolution"), [], ["not-an-ip"]]:
        d.start(0.0)
        assert d.finish([bad, ["10.0.0.3"]]) is None
        assert d.addresses() == new
    d.start(0.0)
    assert [a.host for a in d.finish([["10.0.0.9"], ["10.0.0.3"]]) or []] == [
        "127.0.0.1", "10.0.0.9", "10.0.0.3"]


def test_never_resolved_names_say_why() -> None:
    d = Discovery([parse_url("tcp://a.example:1"), parse_url("tcp://b.example:1")], interval=1.0)
    assert d.unresolved() == (
        "cannot resolve a.example: no answer yet; cannot resolve b.example: no answer yet")
    d.start(0.0)
    d.finish([socket.gaierror(-2, "Name or service not known"), ["10.1.1.1"]])
    assert d.unresolved() == "cannot resolve a.example: Name or service not known"


def test_a_failing_name_is_logged_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nngrpc")
    d = Discovery([parse_url("tcp://svc:1")], interval=1.0)
    err = socket.gaierror(-3, "Temporary failure in name resolution")
    for answer in [err, err, ["10.0.0.1"], err, err, err, ["10.0.0.1"], ["10.0.0.1"]]:
        d.start(0.0)
        d.finish([answer])
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "nngrpc"]
    assert lines == [
        ("WARNING", "cannot resolve svc: Temporary failure in name resolution"),
        ("INFO", "svc resolves again: 10.0.0.1"),
        ("WARNING", "cannot resolve svc: Temporary failure in name resolution;"
                    " keeping its last addresses 10.0.0.1"),
        ("INFO", "svc resolves again: 10.0.0.1"),
    ]


# ---- the sync channel ------------------------------------------------------------------
def test_one_endpoint_per_address_balanced_round_robin() -> None:
    ps = peers(3)
    dns = FakeDns({"svc": ips(ps)})
    try:
        with nngrpc.Channel("tcp://svc:%d" % ps[0].port, resolver=dns) as ch:
            assert [ch.call("/a/B", b"", timeout=2.0) for _ in range(6)] == [
                p.tag for p in ps] * 2
            errors: List[BaseException] = []

            def load() -> None:
                try:
                    for _ in range(50):
                        ch.call("/a/B", b"", timeout=5.0)
                except BaseException as e:  # noqa: B902
                    errors.append(e)

            threads = [threading.Thread(target=load) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not errors
            assert [p.calls for p in ps] == [102, 102, 102]  # exactly: round-robin
            assert dns.threads[0].startswith("nngrpc-resolver")
            assert repr(ch) == "<nngrpc.Channel tcp://svc:%d>" % ps[0].port
    finally:
        for p in ps:
            p.close()


def test_addresses_come_and_go_within_one_interval() -> None:
    a, b, c = peers(3)
    a.delay = 0.3  # so that a call is in flight on a when it leaves DNS
    dns = FakeDns({"svc": [a.host, b.host]})
    interval = 0.2
    try:
        with nngrpc.Channel("tcp://svc:%d" % a.port, resolver=dns, resolve_interval=interval) as ch:
            assert sorted(ch.call("/a/B", b"", timeout=2.0) for _ in range(2)) == [a.tag, b.tag]
            # c appears: it takes calls within one interval.
            dns.answers["svc"] = [a.host, b.host, c.host]
            t0 = time.monotonic()
            while c.calls == 0 and time.monotonic() - t0 < 5:
                ch.call("/a/B", b"", timeout=2.0)
            assert c.calls and time.monotonic() - t0 < interval + 0.5
            # a leaves while a call runs there: the call finishes, no new
            # call goes to a, and its connections close.
            done: List[bytes] = []
            slow = threading.Thread(
                target=lambda: done.extend(
                    ch.call("/a/B", b"", timeout=5.0) for _ in range(3)))
            slow.start()
            assert poll(lambda: any(e.addr.host == a.host and e.load() for e in ch._endpoints))
            dns.answers["svc"] = [b.host, c.host]
            n = dns.count
            dns.wait_count(n + 2)  # an interval has passed since a left
            calls_on_a = a.calls
            for _ in range(10):
                assert ch.call("/a/B", b"", timeout=2.0) in (b.tag, c.tag)
            slow.join(10)
            assert a.tag in done and a.calls <= calls_on_a + 1
            assert all(closed_by_peer(conn) for conn in a.conns)
            assert [e.addr.host for e in ch._endpoints] == [b.host, c.host]
    finally:
        for p in (a, b, c):
            p.close()


def test_a_failed_resolution_keeps_the_last_addresses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nngrpc")
    ps = peers(2)
    dns = FakeDns({"svc": ips(ps)})
    try:
        with nngrpc.Channel("tcp://svc:%d" % ps[0].port, resolver=dns, resolve_interval=0.05) as ch:
            ch.call("/a/B", b"", timeout=2.0)
            del dns.answers["svc"]  # the DNS server loses the name
            dns.wait_count(dns.count + 4)
            assert sorted(ch.call("/a/B", b"", timeout=2.0) for _ in range(4)) == sorted(
                [p.tag for p in ps] * 2)
        warnings = [r.getMessage() for r in caplog.records if r.name == "nngrpc"]
        assert warnings == [
            "cannot resolve svc: Name or service not known; keeping its last addresses"
            " 127.0.0.2, 127.0.0.3"]
    finally:
        for p in ps:
            p.close()


def test_a_name_that_never_resolves_fails_unavailable_naming_it() -> None:
    dns = FakeDns({})
    with nngrpc.Channel("tcp://no-such-host.test:5555", resolver=dns) as ch:
        for idempotent in (False, True):
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/a/B", b"", timeout=2.0, idempotent=idempotent)
            assert time.monotonic() - t0 < 1.0
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
            assert e.value.details() == (
                "cannot resolve no-such-host.test: Name or service not known")


def test_a_hanging_resolver_never_holds_a_call_past_its_deadline() -> None:
    (p,) = peers(1)
    dns = FakeDns({"svc": [p.host], "slow": [p.host]})
    dns.release.clear()  # every resolution hangs until released
    try:
        with nngrpc.Channel("tcp://svc:%d" % p.port, resolver=dns) as ch:
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/a/B", b"", timeout=0.3)
            took = time.monotonic() - t0
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            assert e.value.details() == "Deadline Exceeded while resolving svc"
            assert 0.3 <= took < 0.5, took
            dns.release.set()
            assert ch.call("/a/B", b"", timeout=2.0) == p.tag
        # A name that hangs does not hold the calls that have an endpoint.
        dns.release.clear()
        with nngrpc.Channel([p.url, "tcp://slow:%d" % p.port], resolver=dns) as ch:
            t0 = time.monotonic()
            assert ch.call("/a/B", b"", timeout=2.0) == p.tag
            assert time.monotonic() - t0 < 0.2
            dns.release.set()
    finally:
        dns.release.set()
        p.close()


def test_a_failure_resolves_at_once_but_rate_limited() -> None:
    a, b = peers(2)
    dns = FakeDns({"svc": [a.host, b.host]})
    try:
        with nngrpc.Channel("tcp://svc:%d" % a.port, resolver=dns, resolve_interval=60.0,
                            backoff=0.0, backoff_max=0.0) as ch:
            ch.call("/a/B", b"", timeout=2.0)
            assert dns.count == 1
            a.close()  # a refuses connections from now on
            time.sleep(0.6)  # past the rate limit
            t0 = time.monotonic()
            for _ in range(4):
                assert ch.call("/a/B", b"", timeout=2.0) == b.tag
            dns.wait_count(2)  # at once, not after the 60 s interval
            assert time.monotonic() - t0 < 0.3
            # a flaps: every call meets the refusal, resolutions stay at
            # one per MIN_RESOLVE_GAP (0.5 s).
            t0 = time.monotonic()
            n = dns.count
            while time.monotonic() - t0 < 1.2:
                ch.call("/a/B", b"", timeout=2.0)
            assert dns.count - n <= 3
    finally:
        b.close()


def test_not_run_answer_stops_the_pooled_connections() -> None:
    """A draining server (it answers nngrpc-not-run) loses every pooled
    connection at once, idle or not: the client stops sending to it before
    it closes them, and a call that is not idempotent moves on."""
    d, h = peers(2)
    dns = FakeDns({"svc": [d.host, h.host]})
    try:
        with nngrpc.Channel("tcp://svc:%d" % d.port, resolver=dns, resolve_interval=60.0) as ch:
            # Several pooled connections to d.
            threads = [threading.Thread(target=lambda: [ch.call("/a/B", b"", timeout=2.0)
                                                        for _ in range(20)]) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            pooled = len(d.conns)
            assert pooled >= 2 and dns.count == 1
            d.not_run = True
            answers = [ch.invoke("/a/B", b"", timeout=2.0) for _ in range(6)]
            assert [r for r, _ in answers] == [h.tag] * 6
            assert sorted(c.attempts for _, c in answers) == [1] * 5 + [2]
            assert all(closed_by_peer(conn) for conn in d.conns)  # none kept
            assert len(d.conns) == pooled  # and none dialled since
            dns.wait_count(2, limit=1.0)  # and the name is resolved again
    finally:
        d.close()
        h.close()


def test_fork_child_resolves_on_its_own() -> None:
    """The parent's resolution under way (here: hanging) is not the
    child's: the child starts its own resolver and calls work there."""
    (p,) = peers(1)
    parent = os.getpid()
    dns = FakeDns({"svc": [p.host]})
    try:
        with nngrpc.Channel("tcp://svc:%d" % p.port, resolver=dns, resolve_interval=0.1) as ch:
            assert ch.call("/a/B", b"", timeout=2.0) == p.tag
            dns.release.clear()  # the parent's next resolution hangs
            n = dns.count
            dns.wait_count(n + 1)
            pid = os.fork()
            if pid == 0:  # the child: its own resolver thread, which answers
                code = 1
                try:
                    dns.release.set()
                    before = dns.count
                    ok = ch.call("/a/B", b"", timeout=2.0) == p.tag
                    ok = ok and dns.wait_count(before + 1, limit=2.0) < 2.0
                    code = 0 if ok and os.getpid() != parent else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.WEXITSTATUS(status) == 0
            assert dns.count == n + 1  # the parent's still hangs
            dns.release.set()
            assert ch.call("/a/B", b"", timeout=2.0) == p.tag
    finally:
        dns.release.set()
        p.close()


def test_the_resolver_ends_with_its_channel() -> None:
    """Closed or dropped (never closed), a channel's resolver thread ends:
    close() waits for it when no resolution is under way, and a dropped
    channel (the thread holds it only weakly) stops it at once, not at its
    next resolution, 60 s away here.  The name is this test's own, so the
    threads of other tests' channels are not counted."""
    (p,) = peers(1)
    dns = FakeDns({"ends.svc": [p.host]})
    url = "tcp://ends.svc:%d" % p.port

    def resolvers() -> int:
        return sum(t.name == "nngrpc-resolver ends.svc" for t in threading.enumerate())

    try:
        ch = nngrpc.Channel(url, resolver=dns, resolve_interval=60.0)
        ch.call("/a/B", b"", timeout=2.0)
        assert resolvers() == 1
        ch.close()
        assert resolvers() == 0  # close() waited for it
        ch = nngrpc.Channel(url, resolver=dns, resolve_interval=60.0)
        ch.call("/a/B", b"", timeout=2.0)
        assert resolvers() == 1
        del ch  # its last reference: freed here, and the thread told
        gc.collect()
        assert poll(lambda: resolvers() == 0, 2.0)
        n = dns.count
        time.sleep(0.2)
        assert dns.count == n

        async def dropped() -> None:
            ch = nngrpc.aio.Channel(url, resolver=dns, resolve_interval=0.05)
            await ch.call("/a/B", b"", timeout=2.0)
            del ch
            gc.collect()
            await asyncio.sleep(0.2)
            n = dns.count
            await asyncio.sleep(0.2)
            assert dns.count == n

        run(dropped)
    finally:
        p.close()


# ---- the asyncio channel -----------------------------------------------------------------
def run(coro: "Callable[[], object]") -> None:
    asyncio.run(asyncio.wait_for(coro(), 20))  # type: ignore[arg-type]


def test_aio_balanced_and_changing() -> None:
    a, b, c = peers(3)
    dns = FakeDns({"svc": [a.host, b.host]})

    async def main() -> None:
        async with nngrpc.aio.Channel("tcp://svc:%d" % a.port, resolver=dns,
                                      resolve_interval=0.2) as ch:
            got = await asyncio.gather(*[ch.call("/a/B", b"", timeout=2.0) for _ in range(40)])
            assert sorted(set(got)) == [a.tag, b.tag] and a.calls == b.calls == 20
            assert dns.threads[0].startswith("asyncio")  # the loop's executor
            dns.answers["svc"] = [b.host, c.host]
            t0 = time.monotonic()
            while c.calls == 0 and time.monotonic() - t0 < 5:
                await ch.call("/a/B", b"", timeout=2.0)
            assert c.calls and time.monotonic() - t0 < 0.2 + 0.5
            await asyncio.sleep(0.05)
            n = a.calls
            await asyncio.gather(*[ch.call("/a/B", b"", timeout=2.0) for _ in range(20)])
            assert a.calls == n
            assert all(closed_by_peer(conn) for conn in a.conns)

    try:
        run(main)
    finally:
        for p in (a, b, c):
            p.close()


def test_aio_unresolved_and_hanging_names() -> None:
    (p,) = peers(1)
    dns = FakeDns({"svc": [p.host]})

    async def main() -> None:
        async with nngrpc.aio.Channel("tcp://nope.test:1", resolver=dns) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/a/B", b"", timeout=2.0, idempotent=True)
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
            assert e.value.details() == "cannot resolve nope.test: Name or service not known"
        dns.release.clear()
        async with nngrpc.aio.Channel("tcp://svc:%d" % p.port, resolver=dns) as ch:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/a/B", b"", timeout=0.3)
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.3 <= time.monotonic() - t0 < 0.5
            assert ticks >= 10  # the loop ran meanwhile
            ticker.cancel()
            dns.release.set()
            assert await ch.call("/a/B", b"", timeout=2.0) == p.tag

    try:
        run(main)
    finally:
        dns.release.set()
        p.close()


def test_aio_not_run_answer_stops_the_connections() -> None:
    d, h = peers(2)
    dns = FakeDns({"svc": [d.host, h.host]})

    async def main() -> None:
        async with nngrpc.aio.Channel("tcp://svc:%d" % d.port, resolver=dns,
                                      resolve_interval=60.0) as ch:
            await asyncio.gather(*[ch.call("/a/B", b"", timeout=2.0) for _ in range(40)])
            await asyncio.sleep(0.2)  # dials started under that load end
            pooled = len(d.conns)
            d.not_run = True
            got = await asyncio.gather(*[ch.invoke("/a/B", b"", timeout=2.0) for _ in range(10)])
            assert [r for r, _ in got] == [h.tag] * 10
            await asyncio.sleep(0.05)
            # Every connection to d is closed, the pooled ones and one a
            # call may have begun to dial (under load) before the answer.
            assert all(closed_by_peer(conn) for conn in d.conns)
            assert len(d.conns) <= pooled + 1
            t0 = time.monotonic()  # and the name is resolved again (rate-limited)
            while dns.count < 2 and time.monotonic() - t0 < 1.0:
                await asyncio.sleep(0.01)
            assert dns.count == 2

    try:
        run(main)
    finally:
        d.close()
        h.close()


def test_options_are_checked() -> None:
    for cls in (nngrpc.Channel, nngrpc.aio.Channel):
        with pytest.raises(ValueError):
            cls("tcp://svc:1", resolve_interval=0)  # type: ignore[operator]
    ch: Optional[nngrpc.Channel] = nngrpc.Channel("tcp://127.0.0.1:1")
    assert ch is not None and ch._resolver is None  # no name: no resolver thread
    ch.close()
