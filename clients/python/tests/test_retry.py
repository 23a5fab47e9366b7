"""RetryPolicy, endpoint ordering and retries against fake REP peers (no
hoteld)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, List

import pytest

import nngrpc
import nngrpc.aio
from nngrpc._retry import connect_backoff, order_endpoints
from nngrpc.v1 import rpc_pb2

from test_sp import FakeServer, read_request, send_reply


@dataclass
class Ep:
    name: str
    retry_at: float = 0.0


def test_policy_defaults_and_validation() -> None:
    p = nngrpc.RetryPolicy()
    assert p == nngrpc.DEFAULT_RETRY_POLICY
    assert (p.max_attempts, p.initial_backoff, p.backoff_multiplier, p.max_backoff) == (5, 0.01, 2.0, 1.0)
    assert p.retryable_codes == frozenset({nngrpc.StatusCode.UNAVAILABLE})
    for bad in [dict(max_attempts=0), dict(initial_backoff=-1.0), dict(backoff_multiplier=0.5)]:
        with pytest.raises(ValueError):
            nngrpc.RetryPolicy(**bad)  # type: ignore[arg-type]


def test_backoff_is_full_jitter_under_a_growing_bound() -> None:
    p = nngrpc.RetryPolicy(initial_backoff=0.01, backoff_multiplier=2.0, max_backoff=0.05)
    for retry, bound in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (9, 0.05)]:
        draws = [p.backoff(retry) for _ in range(300)]
        assert all(0.0 <= d <= bound for d in draws)
        assert max(draws) > bound * 0.8 and min(draws) < bound * 0.2  # spread, not fixed


def test_connect_backoff_grows_with_jitter() -> None:
    assert 0.8 <= connect_backoff(1, 1.0, 30.0) <= 1.2
    assert 1.6 * 0.8 <= connect_backoff(2, 1.0, 30.0) <= 1.6 * 1.2
    assert connect_backoff(50, 1.0, 30.0) <= 36.0
    assert connect_backoff(10**6, 1.0, 30.0) <= 36.0  # no OverflowError, ever


def test_order_endpoints() -> None:
    a, b, c = Ep("a"), Ep("b"), Ep("c")
    eps = [a, b, c]
    assert order_endpoints(eps, 0, 10.0) == [a, b, c]
    assert order_endpoints(eps, 2, 10.0) == [c, a, b]
    b.retry_at, c.retry_at = 20.0, 15.0  # down: last, soonest up first
    assert order_endpoints(eps, 1, 10.0) == [a, c, b]
    b.retry_at = c.retry_at = 0.0
    assert order_endpoints(eps, 0, 10.0, avoid=a) == [b, c, a]  # the retry avoids a
    # One down: the others share its turns evenly (not the next one in line).
    b.retry_at = 20.0
    firsts = [order_endpoints(eps, turn, 10.0)[0] for turn in range(6)]
    assert firsts.count(a) == firsts.count(c) == 3


def reply(conn: socket.socket, ipc: bool, body: bytes, code: int, payload: bytes = b"") -> None:
    env = rpc_pb2.Response(code=code, message="m%d" % code, payload=payload).SerializeToString()
    send_reply(conn, ipc, body[:4] + env)


def test_unavailable_answer_is_retried_on_the_other_server() -> None:
    """A server answering UNAVAILABLE (draining) is marked down: the retry
    and the next calls go to the other one."""
    hits: List[str] = []

    def draining(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            hits.append("draining")
            reply(conn, ipc, body, 14)

    def healthy(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            hits.append("healthy")
            reply(conn, ipc, body, 0, b"ok")

    d, h = FakeServer(draining), FakeServer(healthy)
    try:
        with nngrpc.Channel([d.url, h.url]) as ch:
            payload, call = ch.invoke("/a/B", b"", timeout=2.0, idempotent=True)
            assert payload == b"ok" and call.attempts == 2
            for _ in range(5):
                assert ch.call("/a/B", b"", timeout=2.0) == b"ok"
            assert hits == ["draining"] + ["healthy"] * 6
            # Not idempotent: the UNAVAILABLE answer itself is raised.
            ch._endpoints[0].retry_at = 0.0
            ch._endpoints.rr = 0
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/a/B", b"", timeout=2.0)
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE and e.value.call.attempts == 1
    finally:
        d.close()
        h.close()


def test_lost_connection_retried_only_when_idempotent() -> None:
    """Every odd request (counted over all connections) is cut: the server
    closes its connection before answering.  It answers the health checks
    a client makes to learn the limit after a lost connection, uncounted,
    as a server that predates capability trailers: OK, saying nothing."""
    count = [0]

    def flaky(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            if rpc_pb2.Request.FromString(body[4:]).method == "/nngrpc.health.v1.Health/Check":
                reply(conn, ipc, body, 0, b"")
                continue
            count[0] += 1
            if count[0] % 2:
                conn.close()
                return
            reply(conn, ipc, body, 0, b"even")

    s = FakeServer(flaky)
    try:
        with nngrpc.Channel(s.url, retry=nngrpc.RetryPolicy(initial_backoff=0.001)) as ch:
            payload, call = ch.invoke("/a/B", b"", timeout=2.0, idempotent=True)  # 1 cut, 2
            assert payload == b"even" and call.attempts == 2
            with pytest.raises(nngrpc.RpcError) as e:
                ch.invoke("/a/B", b"", timeout=2.0, idempotent=False)  # 3 cut
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
            assert "lost during the call" in e.value.details() and e.value.call.attempts == 1
        with nngrpc.Channel(s.url, retry=None) as ch:
            assert ch.call("/a/B", b"", timeout=2.0, idempotent=True) == b"even"  # 4
            with pytest.raises(nngrpc.RpcError) as e:
                ch.invoke("/a/B", b"", timeout=2.0, idempotent=True)  # 5 cut
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE and e.value.call.attempts == 1
    finally:
        s.close()


def test_request_id_is_the_same_on_every_attempt() -> None:
    ids: List[str] = []

    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            ids.append(rpc_pb2.Request.FromString(body[4:]).metadata["nngrpc-request-id"])
            reply(conn, ipc, body, 14)

    s = FakeServer(handler)
    try:
        policy = nngrpc.RetryPolicy(max_attempts=3, initial_backoff=0.001)
        with nngrpc.Channel(s.url, retry=policy) as ch, pytest.raises(nngrpc.RpcError) as e:
            ch.call("/a/B", b"", timeout=2.0, idempotent=True)
        assert ids == [e.value.request_id] * 3
    finally:
        s.close()


def tagged(tag: bytes, delay: float = 0.0) -> "Callable[[socket.socket, bool], None]":
    """A REP peer answering every request with tag, after delay seconds."""

    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            time.sleep(delay)
            reply(conn, ipc, body, 0, tag)

    return handler


def closed_by_peer(conn: socket.socket, limit: float = 2.0) -> bool:
    """True once the client closed conn (bounded wait)."""
    conn.settimeout(limit)
    try:
        return conn.recv(1) == b""
    except OSError:
        return True


def test_endpoints_change_under_a_sync_channel() -> None:
    """Discovery's hook: a removed endpoint takes no new call, its call in
    flight finishes, and its connections close once idle."""
    a, b = FakeServer(tagged(b"a", delay=0.2)), FakeServer(tagged(b"b"))
    try:
        with nngrpc.Channel(a.url) as ch:
            got: List[bytes] = []
            slow = threading.Thread(target=lambda: got.append(ch.call("/a/B", b"", timeout=5.0)))
            slow.start()
            end = time.monotonic() + 2
            while not a.conns and time.monotonic() < end:
                time.sleep(0.005)
            ch._update_endpoints([b.url])
            assert [ch.call("/a/B", b"", timeout=2.0) for _ in range(3)] == [b"b"] * 3
            slow.join(5)
            assert got == [b"a"]  # the call in flight on the removed endpoint finished
            assert closed_by_peer(a.conns[0])  # and its connection closed as it came back
            assert [e.addr.url for e in ch._endpoints] == [b.url]
            ch._update_endpoints([b.url, a.url])  # b keeps its pooled connection
            assert sorted(ch.call("/a/B", b"", timeout=2.0) for _ in range(4)) == [b"a", b"a", b"b", b"b"]
            assert len(b.conns) == 1
    finally:
        a.close()
        b.close()


def test_endpoints_change_under_an_aio_channel() -> None:
    a, b = FakeServer(tagged(b"a", delay=0.2)), FakeServer(tagged(b"b"))

    async def main() -> None:
        async with nngrpc.aio.Channel(a.url) as ch:
            slow = asyncio.ensure_future(ch.call("/a/B", b"", timeout=5.0))
            end = time.monotonic() + 2
            while ch._pending_count() < 1 and time.monotonic() < end:
                await asyncio.sleep(0.005)
            ch._update_endpoints([b.url])
            assert await asyncio.gather(*[ch.call("/a/B", b"", timeout=2.0) for _ in range(3)]) == [b"b"] * 3
            assert await slow == b"a"
            await asyncio.sleep(0.05)
            assert closed_by_peer(a.conns[0])
            assert ch._connection_count() == len(b.conns)

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        a.close()
        b.close()
