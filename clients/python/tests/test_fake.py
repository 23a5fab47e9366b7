"""nngrpc.testing.FakeChannel and FakeAsyncChannel with servicers derived
from the generated TestingServicer: statuses, metadata, deadlines,
retries, limits, as a real channel has them (no server, no sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing import FakeAsyncChannel, FakeChannel, ServicerContext
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.tracing import TraceContextInterceptor, parse_traceparent

StatusCode = nngrpc.StatusCode
ECHO = "/nngrpc.testing.v1.Testing/Echo"
FAIL = "/nngrpc.testing.v1.Testing/Fail"


class Servicer(testing_nngrpc.TestingServicer):
    """Echo echoes and records its context; Fail fails as asked (the first
    `flaky` calls answer UNAVAILABLE); Sleep is left unimplemented."""

    def __init__(self, flaky: int = 0, not_run: bool = False) -> None:
        self.contexts: List[ServicerContext] = []
        self.flaky = flaky
        self.not_run = not_run
        self.calls = 0

    def Echo(self, request: Any, context: ServicerContext) -> Any:
        self.contexts.append(context)
        context.set_trailing_metadata({"echoed": str(len(request.payload))})
        return testing_pb2.EchoResponse(payload=request.payload)

    def Fail(self, request: Any, context: ServicerContext) -> Any:
        self.calls += 1
        if self.calls <= self.flaky:
            if self.not_run:
                context.set_trailing_metadata([("nngrpc-not-run", "1")])
            context.abort(StatusCode.UNAVAILABLE, "flaky %d" % self.calls)
        if request.code == 99:
            raise KeyError("oops")
        if request.code == 98:
            return testing_pb2.EchoResponse()  # the wrong type
        if request.code == 97:
            context.set_code(StatusCode.ABORTED)
            context.set_details("set, not raised")
            return testing_pb2.FailResponse()
        if request.code:
            context.abort(StatusCode.from_int(request.code), request.message)
        return testing_pb2.FailResponse()


def fail_request(code: int, message: str = "") -> bytes:
    return testing_pb2.FailRequest(code=code, message=message).SerializeToString()


def test_calls_through_the_generated_stub() -> None:
    s = Servicer()
    ch = FakeChannel([s])
    assert isinstance(ch, nngrpc.Channel)
    stub = testing_nngrpc.TestingStub(ch)
    resp, call = stub.Echo.with_call(
        testing_pb2.EchoRequest(payload=b"hi"), timeout=2.0, metadata={"k": "v"}
    )
    assert resp.payload == b"hi"
    assert call.code() is StatusCode.OK and call.attempts == 1
    assert call.trailing_metadata() == (("echoed", "2"),)
    ctx = s.contexts[-1]
    assert dict(ctx.invocation_metadata()) == {"k": "v", "nngrpc-request-id": call.request_id}
    assert ctx.request_id == call.request_id and ctx.method == ECHO
    assert 1.9 < ctx.time_remaining() <= 2.0  # type: ignore[operator]
    stub.Echo(testing_pb2.EchoRequest())
    assert s.contexts[-1].time_remaining() is None  # no deadline
    assert ch.call(ECHO, testing_pb2.EchoRequest(payload=b"b").SerializeToString()) == (
        testing_pb2.EchoResponse(payload=b"b").SerializeToString()
    )


@pytest.mark.parametrize(
    "code, want, details",
    [
        (5, StatusCode.NOT_FOUND, "gone"),
        (16, StatusCode.UNAUTHENTICATED, "who"),
        (99, StatusCode.UNKNOWN, "Exception calling application: KeyError: 'oops'"),
        (98, StatusCode.INTERNAL, "handler /nngrpc.testing.v1.Testing/Fail returned EchoResponse, not nngrpc.testing.v1.FailResponse"),
        (97, StatusCode.ABORTED, "set, not raised"),
    ],
)
def test_statuses(code: int, want: StatusCode, details: str) -> None:
    stub = testing_nngrpc.TestingStub(FakeChannel([Servicer()]))
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Fail(testing_pb2.FailRequest(code=code, message=details), timeout=1.0)
    assert e.value.code() is want and e.value.details() == details
    assert e.value.request_id and e.value.call.attempts == 1


def test_unimplemented_and_unknown_methods() -> None:
    ch = FakeChannel([Servicer()])
    with pytest.raises(nngrpc.RpcError) as e:
        testing_nngrpc.TestingStub(ch).Sleep(testing_pb2.SleepRequest(ms=1), timeout=1.0)
    assert e.value.code() is StatusCode.UNIMPLEMENTED and "not implemented" in e.value.details()
    with pytest.raises(nngrpc.RpcError) as e:
        ch.call("/nngrpc.testing.v1.Testing/Nope", b"", timeout=1.0)
    assert e.value.code() is StatusCode.UNIMPLEMENTED
    assert e.value.details() == 'unknown method "/nngrpc.testing.v1.Testing/Nope"'
    with pytest.raises(nngrpc.RpcError) as e:
        ch.call(ECHO, b"\xff\xff", timeout=1.0)  # not an EchoRequest
    assert e.value.code() is StatusCode.INTERNAL and "cannot decode the request payload" in e.value.details()
    with pytest.raises(TypeError):
        FakeChannel([object()])
    with pytest.raises(ValueError):
        FakeChannel([Servicer(), Servicer()])


def test_deadlines() -> None:
    class Slow(testing_nngrpc.TestingServicer):
        ran = 0

        def Sleep(self, request: Any, context: ServicerContext) -> Any:
            Slow.ran += 1
            time.sleep(request.ms / 1000)
            return testing_pb2.SleepResponse(slept_us=request.ms * 1000)

    stub = testing_nngrpc.TestingStub(FakeChannel([Slow()]))
    t0 = time.monotonic()
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Sleep(testing_pb2.SleepRequest(ms=200), timeout=0.05)
    assert e.value.code() is StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 >= 0.2
    assert stub.Sleep(testing_pb2.SleepRequest(ms=1), timeout=1.0).slept_us == 1000
    for t in (0.0, -1.0):
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Sleep(testing_pb2.SleepRequest(ms=1), timeout=t)
        assert e.value.code() is StatusCode.DEADLINE_EXCEEDED
    assert Slow.ran == 2  # no time left: never sent


def test_retries_follow_the_channel_policy() -> None:
    policy = nngrpc.RetryPolicy(max_attempts=4, initial_backoff=0.001)
    s = Servicer(flaky=2)
    _, call = testing_nngrpc.TestingStub(FakeChannel([s], retry=policy)).Fail.with_call(
        testing_pb2.FailRequest(), timeout=5.0
    )
    assert call.attempts == 3 and s.calls == 3  # Fail is NO_SIDE_EFFECTS: retried
    s = Servicer(flaky=10)
    with pytest.raises(nngrpc.RpcError) as e:
        testing_nngrpc.TestingStub(FakeChannel([s], retry=policy)).Fail(testing_pb2.FailRequest(), timeout=5.0)
    assert e.value.code() is StatusCode.UNAVAILABLE and e.value.call.attempts == 4 == s.calls
    # Not idempotent: sent once...
    s = Servicer(flaky=1)
    with pytest.raises(nngrpc.RpcError) as e:
        FakeChannel([s], retry=policy).call(FAIL, fail_request(0), timeout=5.0, idempotent=False)
    assert e.value.call.attempts == 1
    # ... unless the server says the handler never ran.
    s = Servicer(flaky=1, not_run=True)
    assert FakeChannel([s], retry=policy).call(FAIL, fail_request(0), timeout=5.0, idempotent=False) == b""
    assert s.calls == 2
    s = Servicer(flaky=1)
    with pytest.raises(nngrpc.RpcError):
        FakeChannel([s], retry=None).call(FAIL, fail_request(0), timeout=5.0, idempotent=True)


def test_limits_and_close() -> None:
    s = Servicer()
    ch = FakeChannel([s], max_message_bytes=1000, max_receive_message_bytes=500)
    stub = testing_nngrpc.TestingStub(ch)
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Echo(testing_pb2.EchoRequest(payload=b"x" * 1000), timeout=1.0)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED and s.contexts == []  # never sent
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Echo(testing_pb2.EchoRequest(payload=b"x" * 600), timeout=1.0)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED and len(s.contexts) == 1  # the reply
    ch.close()
    with pytest.raises(ValueError):
        stub.Echo(testing_pb2.EchoRequest(), timeout=1.0)


def test_interceptors_over_a_fake_channel() -> None:
    s = Servicer()
    ch = nngrpc.intercept_channel(FakeChannel([s]), TraceContextInterceptor())
    testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(), timeout=1.0)
    assert parse_traceparent(dict(s.contexts[-1].invocation_metadata())["traceparent"])


def test_fake_async_channel() -> None:
    cancelled: List[str] = []

    class Async(testing_nngrpc.TestingServicer):
        async def Echo(self, request: Any, context: ServicerContext) -> Any:
            await asyncio.sleep(0.001)
            return testing_pb2.EchoResponse(payload=request.payload)

        async def Sleep(self, request: Any, context: ServicerContext) -> Any:
            try:
                await asyncio.sleep(request.ms / 1000)
            except asyncio.CancelledError:
                cancelled.append(context.request_id)
                raise
            return testing_pb2.SleepResponse(slept_us=request.ms * 1000)

        def Fail(self, request: Any, context: ServicerContext) -> Any:  # a plain function works too
            context.abort(StatusCode.from_int(request.code), request.message)

    async def main() -> None:
        ch = FakeAsyncChannel([Async()])
        assert isinstance(ch, nngrpc.aio.Channel)
        stub = testing_nngrpc.TestingAsyncStub(ch)
        got = await asyncio.gather(*[stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=2.0) for i in range(50)])
        assert [g.payload for g in got] == [b"%d" % i for i in range(50)]
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            await stub.Sleep.with_call(testing_pb2.SleepRequest(ms=5000), timeout=0.05)
        assert e.value.code() is StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 1.0
        assert cancelled == [e.value.request_id]  # the handler was cancelled, as a real client gives up
        with pytest.raises(nngrpc.RpcError) as e:
            await stub.Fail(testing_pb2.FailRequest(code=7, message="no"), timeout=1.0)
        assert e.value.code() is StatusCode.PERMISSION_DENIED and e.value.details() == "no"
        with pytest.raises(nngrpc.RpcError) as e:
            await stub.Fail(testing_pb2.FailRequest(code=14, message="down"), timeout=5.0)
        assert e.value.call.attempts == nngrpc.DEFAULT_RETRY_POLICY.max_attempts  # retried, as a real channel
        await ch.close()
        with pytest.raises(ValueError):
            await stub.Echo(testing_pb2.EchoRequest(), timeout=1.0)

    asyncio.run(asyncio.wait_for(main(), 20))
