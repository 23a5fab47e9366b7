"""nngrpc.aio's multiplexed SP pipe against fake REP peers (no hoteld):
replies out of order, stale and oversize replies, broken peers."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable, List, TypeVar

import pytest

import nngrpc
import nngrpc.aio
from nngrpc import _sp
from nngrpc.v1 import rpc_pb2

from test_sp import FakeServer, ok_envelope, read_request, send_reply

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(fn(), 10)

    return asyncio.run(bounded())


def batch_reverse_handler(n: int) -> Callable[[socket.socket, bool], None]:
    """Reads n requests, then answers them last first."""

    def handler(conn: socket.socket, ipc: bool) -> None:
        while True:
            bodies = [read_request(conn, ipc) for _ in range(n)]
            for body in reversed(bodies):
                req = rpc_pb2.Request.FromString(body[4:])
                send_reply(conn, ipc, body[:4] + ok_envelope(req.payload))

    return handler


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_replies_out_of_order_reach_their_callers(tmp_path: Path, transport: str) -> None:
    path = str(tmp_path / "s.sock") if transport == "ipc" else None
    s = FakeServer(batch_reverse_handler(20), ipc_path=path)

    async def main() -> None:
        async with nngrpc.aio.Channel(s.url, max_connections_per_endpoint=1) as ch:
            got = await asyncio.gather(*[ch.call("/a/B", b"%d" % i, timeout=5.0) for i in range(20)])
            assert got == [b"%d" % i for i in range(20)]
            assert ch._connection_count() == 1 and ch._pending_count() == 0

    try:
        run(main)
        assert len(s.conns) == 1
    finally:
        s.close()


def test_stale_and_unknown_replies_are_dropped() -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        body = read_request(conn, ipc)
        (rid,) = struct.unpack(">I", body[:4])
        send_reply(conn, ipc, struct.pack(">I", rid ^ 1) + ok_envelope(b"stale"))
        send_reply(conn, ipc, body[:4] + ok_envelope(b"fresh"))

    s = FakeServer(handler)

    async def main() -> None:
        async with nngrpc.aio.Channel(s.url) as ch:
            assert await ch.call("/a/B", b"", timeout=2.0) == b"fresh"
            assert ch._stale_count() == 1

    try:
        run(main)
    finally:
        s.close()


def test_oversize_reply_is_skipped_and_the_rest_go_on() -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        bodies = [read_request(conn, ipc) for _ in range(3)]
        send_reply(conn, ipc, bodies[1][:4] + ok_envelope(b"z" * 300_000))  # too big
        send_reply(conn, ipc, bodies[0][:4] + ok_envelope(b"0"))
        send_reply(conn, ipc, bodies[2][:4] + ok_envelope(b"2"))

    s = FakeServer(handler)

    async def main() -> None:
        async with nngrpc.aio.Channel(
            s.url, max_receive_message_bytes=1000, max_connections_per_endpoint=1
        ) as ch:
            results = await asyncio.gather(
                *[ch.call("/a/B", b"", timeout=2.0) for _ in range(3)], return_exceptions=True
            )
            assert results[0] == b"0" and results[2] == b"2"
            assert isinstance(results[1], nngrpc.RpcError)
            assert results[1].code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED

    try:
        run(main)
    finally:
        s.close()


def test_peer_closing_fails_every_pending_call_unavailable() -> None:
    def handler(conn: socket.socket, ipc: bool) -> None:
        for _ in range(5):
            read_request(conn, ipc)
        conn.close()

    s = FakeServer(handler)

    async def main() -> None:
        async with nngrpc.aio.Channel(s.url, retry=None, max_connections_per_endpoint=1) as ch:
            results = await asyncio.gather(
                *[ch.call("/a/B", b"", timeout=2.0, idempotent=True) for _ in range(5)],
                return_exceptions=True,
            )
            assert {r.code() for r in results} == {nngrpc.StatusCode.UNAVAILABLE}  # type: ignore[union-attr]
            assert ch._pending_count() == 0 and ch._connection_count() == 0

    try:
        run(main)
    finally:
        s.close()


def test_not_a_rep_peer_and_tls_peer_are_refused() -> None:
    s = FakeServer(lambda c, i: None, proto=0x51)  # PULL

    async def main(url: str) -> nngrpc.RpcError:
        async with nngrpc.aio.Channel(url) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/a/B", b"", timeout=2.0)
            return e.value

    try:
        err = run(lambda: main(s.url))
        assert err.code() is nngrpc.StatusCode.UNAVAILABLE and "not REP" in err.details()
    finally:
        s.close()
    # A TLS server answers a plain client's bytes with an alert record.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def tls_like() -> None:
        conn, _ = lsock.accept()
        conn.recv(8)
        conn.sendall(b"\x15\x03\x03\x00\x02\x02\x32")  # fatal alert
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=tls_like, daemon=True).start()
    try:
        err = run(lambda: main("tcp://127.0.0.1:%d" % lsock.getsockname()[1]))
        assert "tls+tcp://" in err.details()
    finally:
        lsock.close()


def test_silent_server_deadline() -> None:
    s = FakeServer(lambda c, i: (read_request(c, i), time.sleep(3)) and None)

    async def main() -> None:
        async with nngrpc.aio.Channel(s.url) as ch:
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/a/B", b"", timeout=0.1)
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.1 <= time.monotonic() - t0 < 0.3
            assert ch._pending_count() == 0

    try:
        run(main)
    finally:
        s.close()


def test_loop_binding() -> None:
    s = FakeServer(batch_reverse_handler(1))
    ch = nngrpc.aio.Channel(s.url)

    async def call() -> bytes:
        return await ch.call("/a/B", b"x", timeout=2.0)

    async def from_another_loop_while_first_runs() -> None:
        errors: List[BaseException] = []

        def other() -> None:
            try:
                asyncio.run(call())
            except BaseException as e:  # noqa: B902
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.01)
        assert errors and isinstance(errors[0], RuntimeError)

    async def both() -> None:
        assert await call() == b"x"
        await from_another_loop_while_first_runs()
        await ch.close()

    try:
        run(both)
    finally:
        s.close()


def test_framing_helpers_agree_with_the_sync_pipe() -> None:
    assert _sp.request_head(0x80000001, 10, ipc=False) == struct.pack(">QI", 14, 0x80000001)
    assert _sp.request_head(0x80000001, 10, ipc=True) == struct.pack(">BQI", 1, 14, 0x80000001)
    assert _sp.next_request_id(0xFFFFFFFF) == 0x80000000
