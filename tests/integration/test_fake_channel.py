"""The same client code against hoteld and against nngrpc.testing's fake
channels serving a Python implementation of the same service: the
outcomes (responses, status codes, messages, attempts, trailers,
deadlines, request ids) are the same, sync and asyncio.  That is what lets
a team unit-test its code with FakeChannel and trust it against hoteld."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Tuple

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing import FakeAsyncChannel, FakeChannel, ServicerContext
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server

StatusCode = nngrpc.StatusCode
HOSTNAME_KEY = "testing-hostname"
RETRY = nngrpc.RetryPolicy(max_attempts=3, initial_backoff=0.001)


class PyTesting(testing_nngrpc.TestingServicer):
    """nngrpc.testing.v1.Testing in Python, as hoteld --testing serves it
    (src/service/testing_service.c)."""

    def Echo(self, request: Any, context: ServicerContext) -> Any:
        if any(k == HOSTNAME_KEY for k, _ in context.invocation_metadata()):
            context.set_trailing_metadata([(HOSTNAME_KEY, "fake")])
        return testing_pb2.EchoResponse(payload=request.payload)

    def Sleep(self, request: Any, context: ServicerContext) -> Any:
        start = time.monotonic()
        left = context.time_remaining()
        want = request.ms / 1000
        if left is not None and left < want:
            time.sleep(left)
            context.abort(
                StatusCode.DEADLINE_EXCEEDED,
                "deadline exceeded after sleeping %d of %d ms"
                % ((time.monotonic() - start) * 1000, request.ms),
            )
        time.sleep(want)
        return testing_pb2.SleepResponse(slept_us=int((time.monotonic() - start) * 1e6))

    def Fail(self, request: Any, context: ServicerContext) -> Any:
        if not 0 <= request.code <= 16:
            context.abort(
                StatusCode.INVALID_ARGUMENT, "code: %d is not a status code (0..16)" % request.code
            )
        if request.code:
            context.abort(StatusCode.from_int(request.code), request.message)
        return testing_pb2.FailResponse()


Outcome = Tuple[str, ...]


def exercise(stub: testing_nngrpc.TestingStub) -> List[Outcome]:
    """Client code under test: a few calls, their outcomes as plain data."""
    out: List[Outcome] = []

    def run(name: str, fn: Any, *args: Any, show: Any = repr, **kw: Any) -> None:
        try:
            resp, call = fn.with_call(*args, **kw)
            out.append((name, "OK", str(call.attempts), str(show(resp)).replace("\n", " ")))
        except nngrpc.RpcError as e:
            out.append((name, e.code().name, e.details(), str(e.call.attempts), str(bool(e.request_id))))

    run("echo", stub.Echo, testing_pb2.EchoRequest(payload=b"abc" * 100), timeout=5.0)
    run("empty", stub.Echo, testing_pb2.EchoRequest(), timeout=5.0)
    for code in (0, 3, 5, 7, 8, 12, 13, 16, 17, -1):
        run("fail%d" % code, stub.Fail, testing_pb2.FailRequest(code=code, message="m%d" % code), timeout=5.0)
    run("unavailable", stub.Fail, testing_pb2.FailRequest(code=14, message="down"), timeout=5.0)
    run("sleep", stub.Sleep, testing_pb2.SleepRequest(ms=1), timeout=5.0, show=lambda r: r.slept_us >= 1000)
    run("no-time", stub.Sleep, testing_pb2.SleepRequest(ms=1), timeout=0.0)
    try:  # the server's deadline answer or the client's: both DEADLINE_EXCEEDED
        stub.Sleep(testing_pb2.SleepRequest(ms=2000), timeout=0.1)
        out.append(("late", "OK"))
    except nngrpc.RpcError as e:
        out.append(("late", e.code().name))
    _, call = stub.Echo.with_call(
        testing_pb2.EchoRequest(), timeout=5.0, metadata={HOSTNAME_KEY: "1", "nngrpc-request-id": "mine-42"}
    )
    out.append(("trailer", str(HOSTNAME_KEY in dict(call.trailing_metadata())), call.request_id))
    return out


def test_same_outcomes_sync(hoteld: Server) -> None:
    with nngrpc.Channel(hoteld.tcp, retry=RETRY) as real:
        want = exercise(testing_nngrpc.TestingStub(real))
    got = exercise(testing_nngrpc.TestingStub(FakeChannel([PyTesting()], retry=RETRY)))
    assert got == want
    assert ("unavailable", "UNAVAILABLE", "down", "3", "True") in got  # retried three times both ways


async def exercise_async(stub: testing_nngrpc.TestingAsyncStub) -> List[Outcome]:
    out: List[Outcome] = []
    got = await asyncio.gather(
        *[stub.Echo.with_call(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=5.0) for i in range(30)],
        stub.Fail.with_call(testing_pb2.FailRequest(code=14, message="down"), timeout=5.0),
        stub.Fail.with_call(testing_pb2.FailRequest(code=6, message="dup"), timeout=5.0),
        return_exceptions=True,
    )
    for r in got:
        if isinstance(r, nngrpc.RpcError):
            out.append((r.code().name, r.details(), str(r.call.attempts)))
        else:
            resp, call = r  # type: ignore[misc]
            out.append(("OK", repr(resp).replace("\n", " "), str(call.attempts)))
    return out


def test_same_outcomes_asyncio(hoteld: Server) -> None:
    async def both() -> Tuple[List[Outcome], List[Outcome]]:
        async with nngrpc.aio.Channel(hoteld.tcp, retry=RETRY) as real:
            want = await exercise_async(testing_nngrpc.TestingAsyncStub(real))
        got = await exercise_async(testing_nngrpc.TestingAsyncStub(FakeAsyncChannel([PyTesting()], retry=RETRY)))
        return want, got

    want, got = asyncio.run(asyncio.wait_for(both(), 30))
    assert got == want
    assert want[-2] == ("UNAVAILABLE", "down", "3")


def test_same_code_with_interceptors(hoteld: Server) -> None:
    seen: Dict[str, List[str]] = {"real": [], "fake": []}

    class Record(nngrpc.UnaryUnaryClientInterceptor):
        def __init__(self, name: str) -> None:
            self.name = name

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> nngrpc.Outcome:
            out = continuation(details, request)
            seen[self.name].append(out.code().name)
            return out

    with nngrpc.Channel(hoteld.tcp, retry=RETRY) as real:
        exercise(testing_nngrpc.TestingStub(nngrpc.intercept_channel(real, Record("real"))))
    exercise(testing_nngrpc.TestingStub(nngrpc.intercept_channel(FakeChannel([PyTesting()], retry=RETRY), Record("fake"))))
    assert seen["fake"] == seen["real"] and len(seen["real"]) >= 15
