"""nngrpc.aio against a real hoteld: many calls multiplexed on few
connections, cancellation, deadlines, errors, close.

Each test runs its own event loop (asyncio.run): no pytest-asyncio needed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any, Awaitable, Callable, Iterator, List, TypeVar

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, free_port, start_server, stop_server

T = TypeVar("T")
ECHO = "/nngrpc.testing.v1.Testing/Echo"


def run(coro_fn: Callable[[], Awaitable[T]], limit: float = 30.0) -> T:
    """Runs coro_fn() on a new event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), limit)

    return asyncio.run(bounded())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def wide_hoteld(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A hoteld of its own with 128 workers, so 100 slow calls run at once
    without holding up the session's server."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-aio-") as workdir:
        server = start_server(binary, workdir, ["--no-hotels", "--workers", "128"])
        try:
            yield server
        finally:
            stop_server(server)


# ---- basics --------------------------------------------------------------------
def test_stub_calls_request_id_and_timings(hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            resp = await stub.Echo(testing_pb2.EchoRequest(payload=b"hi"), timeout=2.0)
            assert resp.payload == b"hi"
            resp, call = await stub.Sleep.with_call(testing_pb2.SleepRequest(ms=20), timeout=2.0)
            assert call.code() is nngrpc.StatusCode.OK
            assert call.run_us >= 20_000 and resp.slept_us >= 20_000
            assert len(call.request_id) == 16 and call.attempts == 1
            assert call.peer() == hoteld.tcp
            _, call = await stub.Echo.with_call(
                testing_pb2.EchoRequest(), timeout=2.0, metadata={"nngrpc-request-id": "mine-1"}
            )
            assert call.request_id == "mine-1"
            assert await ch.call(ECHO, testing_pb2.EchoRequest(payload=b"raw").SerializeToString(),
                                 timeout=2.0) == testing_pb2.EchoResponse(payload=b"raw").SerializeToString()

    run(main)


def test_errors_map_to_status_codes_like_the_sync_client(hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            with pytest.raises(nngrpc.RpcError) as e:
                await stub.Fail(testing_pb2.FailRequest(code=7, message="no"), timeout=2.0)
            assert e.value.code() is nngrpc.StatusCode.PERMISSION_DENIED
            assert e.value.details() == "no" and len(e.value.request_id) == 16
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/no.Such/Method", b"", timeout=2.0)
            assert e.value.code() is nngrpc.StatusCode.UNIMPLEMENTED
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                await stub.Sleep(testing_pb2.SleepRequest(ms=2000), timeout=0.1)
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < 1.0
            with pytest.raises(nngrpc.RpcError) as e:
                await stub.Echo(testing_pb2.EchoRequest(), timeout=0)
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(nngrpc.RpcError) as e:
                await stub.Echo(
                    testing_pb2.EchoRequest(payload=b"x" * nngrpc.DEFAULT_MAX_MESSAGE_BYTES),
                    timeout=2.0,
                )
            assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
            # The channel is still fine.
            assert (await stub.Echo(testing_pb2.EchoRequest(payload=b"ok"), timeout=2.0)).payload == b"ok"

    run(main)


def test_unreachable_is_unavailable_quickly(tmp_path: "os.PathLike[str]") -> None:
    async def main() -> None:
        for url in ["tcp://127.0.0.1:%d" % free_port(), "ipc://%s/none.sock" % tmp_path]:
            async with nngrpc.aio.Channel(url) as ch:
                t0 = time.monotonic()
                with pytest.raises(nngrpc.RpcError) as e:
                    await ch.call(ECHO, b"", timeout=5.0)
                assert time.monotonic() - t0 < 0.5
                assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
                assert url in e.value.details()

    run(main)


def test_ipc_and_large_messages(hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.ipc) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            big = os.urandom(3 * 1024 * 1024)
            small = [stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=5.0) for i in range(50)]
            results = await asyncio.gather(stub.Echo(testing_pb2.EchoRequest(payload=big), timeout=5.0), *small)
            assert results[0].payload == big
            assert [r.payload for r in results[1:]] == [b"%d" % i for i in range(50)]

    run(main)


def test_oversize_reply_fails_only_its_call(hoteld: Server) -> None:
    """The pipe skips an oversize reply's body: other calls on the same
    connection go on."""

    async def main() -> None:
        async with nngrpc.aio.Channel(
            hoteld.tcp, max_receive_message_bytes=10_000, max_connections_per_endpoint=1
        ) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            calls = [stub.Echo(testing_pb2.EchoRequest(payload=b"y" * 50_000), timeout=2.0)]
            calls += [stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=2.0) for i in range(20)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(results[0], nngrpc.RpcError)
            assert results[0].code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
            assert [r.payload for r in results[1:]] == [b"%d" % i for i in range(20)]  # type: ignore[union-attr]
            assert ch._connection_count() == 1

    run(main)


# ---- multiplexing ------------------------------------------------------------------
def test_1000_concurrent_echo_calls_on_one_loop(hoteld: Server) -> None:
    async def main() -> None:
        before = fd_count()
        async with nngrpc.aio.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            await stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)  # connect
            t0 = time.monotonic()
            results = await asyncio.gather(
                *[stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=10.0) for i in range(1000)]
            )
            elapsed = time.monotonic() - t0
            assert [r.payload for r in results] == [b"%d" % i for i in range(1000)]
            assert elapsed < 3.0, elapsed
            assert 1 <= ch._connection_count() <= 4
            assert fd_count() <= before + 4
            assert ch._pending_count() == 0 and ch._in_flight_count() == 0
        assert fd_count() == before

    run(main)


def test_calls_overlap_on_one_connection(hoteld: Server) -> None:
    """One connection, many requests outstanding: the server's REP contexts
    run them in parallel and the replies come back in finishing order."""

    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp, max_connections_per_endpoint=1) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            await stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)
            done: List[str] = []

            async def sleep(ms: int) -> None:
                await stub.Sleep(testing_pb2.SleepRequest(ms=ms), timeout=5.0)
                done.append("sleep")

            async def echo() -> None:
                await asyncio.sleep(0.05)
                await stub.Echo(testing_pb2.EchoRequest(), timeout=5.0)
                done.append("echo")

            t0 = time.monotonic()
            await asyncio.gather(*[sleep(300) for _ in range(16)], echo())
            elapsed = time.monotonic() - t0
            assert done[0] == "echo"  # overtook 16 calls sent before it
            assert elapsed < 1.0, "16 x 300 ms calls took %.2f s: not concurrent" % elapsed
            assert ch._connection_count() == 1

    run(main)


def test_calls_over_the_in_flight_limit_wait_in_line(hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp, max_in_flight_per_endpoint=4) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            t0 = time.monotonic()
            tasks = [
                asyncio.ensure_future(stub.Sleep(testing_pb2.SleepRequest(ms=100), timeout=5.0))
                for _ in range(12)
            ]
            await asyncio.sleep(0.05)
            assert ch._pending_count() == 4 and ch._in_flight_count() == 12
            # A waiting call's deadline counts while it waits.
            with pytest.raises(nngrpc.RpcError) as e:
                await stub.Echo(testing_pb2.EchoRequest(), timeout=0.05)
            assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
            # Cancelling waiting calls gives their places up.
            for t in tasks[8:]:
                t.cancel()
            await asyncio.gather(*tasks[:8])
            assert 0.2 <= time.monotonic() - t0 < 1.5  # two rounds of 4 x 100 ms
            assert ch._in_flight_count() == 0

    run(main)


# ---- cancellation ----------------------------------------------------------------------
def test_cancelling_100_in_flight_calls(wide_hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(wide_hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            await stub.Echo(testing_pb2.EchoRequest(), timeout=5.0)
            tasks = [
                asyncio.ensure_future(stub.Sleep(testing_pb2.SleepRequest(ms=1000), timeout=10.0))
                for _ in range(100)
            ]
            end = time.monotonic() + 5.0
            while ch._pending_count() < 100 and time.monotonic() < end:
                await asyncio.sleep(0.005)
            assert ch._pending_count() == 100  # all on the wire
            t0 = time.monotonic()
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert time.monotonic() - t0 < 0.1
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            # Nothing held: no slot, no extra connection; the pending
            # entries left are the cancels sent to the server (one a call,
            # answered at once).
            assert ch._pending_count() <= 100 and ch._in_flight_count() == 0
            assert 1 <= ch._connection_count() <= 4
            # The channel keeps working while the server still runs them.
            for _ in range(3):
                r = await stub.Echo(testing_pb2.EchoRequest(payload=b"after"), timeout=2.0)
                assert r.payload == b"after"
            # The 100 late replies (CANCELLED now) arrive and are dropped by
            # request id.
            end = time.monotonic() + 5.0
            while ch._stale_count() < 100 and time.monotonic() < end:
                await asyncio.sleep(0.01)
            assert ch._stale_count() == 100
            assert ch._pending_count() == 0
            assert 1 <= ch._connection_count() <= 4

    run(main)


def test_deadline_frees_the_call(hoteld: Server) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp, deadline_grace=0.0) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            results = await asyncio.gather(
                *[stub.Sleep(testing_pb2.SleepRequest(ms=2000), timeout=0.1) for _ in range(10)],
                return_exceptions=True,
            )
            assert {r.code() for r in results} == {nngrpc.StatusCode.DEADLINE_EXCEEDED}  # type: ignore[union-attr]
            assert ch._pending_count() == 0 and ch._in_flight_count() == 0

    run(main)


# ---- close and loops ---------------------------------------------------------------------
def test_close_cancels_calls_and_closes_every_fd(hoteld: Server) -> None:
    async def main() -> None:
        before = fd_count()
        ch = nngrpc.aio.Channel([hoteld.tcp, hoteld.ipc])
        stub = testing_nngrpc.TestingAsyncStub(ch)
        tasks = [
            asyncio.ensure_future(stub.Sleep(testing_pb2.SleepRequest(ms=3000), timeout=10.0))
            for _ in range(8)
        ]
        end = time.monotonic() + 5.0
        while ch._pending_count() < 8 and time.monotonic() < end:
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        await ch.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert time.monotonic() - t0 < 0.5
        assert {r.code() for r in results} == {nngrpc.StatusCode.CANCELLED}  # type: ignore[union-attr]
        assert fd_count() == before
        with pytest.raises(ValueError):
            await stub.Echo(testing_pb2.EchoRequest(), timeout=1.0)

    run(main)


def test_channel_follows_a_new_loop_once_the_old_one_closed(hoteld: Server) -> None:
    ch = nngrpc.aio.Channel(hoteld.tcp)
    stub = testing_nngrpc.TestingAsyncStub(ch)

    async def call() -> bytes:
        return (await stub.Echo(testing_pb2.EchoRequest(payload=b"loop"), timeout=2.0)).payload

    assert run(call) == b"loop"
    assert run(call) == b"loop"  # a second asyncio.run: a new loop
    run(ch.close)


def test_sync_and_aio_stubs_share_the_module(hoteld: Server) -> None:
    """The same generated module has both stubs, and they agree on which
    methods may be retried."""
    with nngrpc.Channel(hoteld.tcp) as sync_ch:
        sync_stub = testing_nngrpc.TestingStub(sync_ch)
        assert sync_stub.Echo.idempotent

    async def main() -> Any:
        async with nngrpc.aio.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            assert stub.Echo.idempotent and stub.Echo.method == ECHO
            return await stub.Echo(testing_pb2.EchoRequest(payload=b"both"), timeout=2.0)

    assert run(main).payload == b"both"
