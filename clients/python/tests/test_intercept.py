"""Client interceptors against a fake REP peer that records what it got:
what interceptors change reaches the wire, what they observe, how their
failures fail the call (and only the call), trace context and Prometheus
metrics, sync and asyncio."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable, Callable, Iterator, List

import pytest

import nngrpc
import nngrpc.aio
from nngrpc import ClientCallDetails, Outcome
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.tracing import (
    AsyncTraceContextInterceptor,
    TraceContextInterceptor,
    child_traceparent,
    new_traceparent,
    parse_traceparent,
)
from nngrpc.v1 import rpc_pb2

from test_sp import FakeServer, read_request, send_reply

ECHO = "/nngrpc.testing.v1.Testing/Echo"


class Recorder(FakeServer):
    """Answers Echo with the payload; "/x/Fail" with NOT_FOUND; records
    every Request envelope it decodes."""

    def __init__(self) -> None:
        self.got: List[Any] = []
        super().__init__(self.handle)

    def handle(self, conn: socket.socket, ipc: bool) -> None:
        while True:
            body = read_request(conn, ipc)
            req = rpc_pb2.Request.FromString(body[4:])
            self.got.append(req)
            if req.method == "/x/Fail":
                resp = rpc_pb2.Response(code=5, message="no such thing", trailers={"t": "1"})
            else:
                resp = rpc_pb2.Response(payload=req.payload, trailers={"t": "1"})
            send_reply(conn, ipc, body[:4] + resp.SerializeToString())


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


class Log(nngrpc.UnaryUnaryClientInterceptor):
    def __init__(self, name: str, log: List[str]) -> None:
        self.name, self.log = name, log

    def intercept_unary_unary(self, continuation: Any, details: ClientCallDetails, request: Any) -> Outcome:
        self.log.append(self.name + " in")
        out = continuation(details, request)
        self.log.append("%s out %s" % (self.name, out.code().name))
        return out


class Rewrite(nngrpc.UnaryUnaryClientInterceptor):
    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    def intercept_unary_unary(self, continuation: Any, details: ClientCallDetails, request: Any) -> Outcome:
        return continuation(details._replace(**self.changes), request)


class Raises(nngrpc.UnaryUnaryClientInterceptor):
    def __init__(self, exc: BaseException, after: bool = False) -> None:
        self.exc, self.after = exc, after

    def intercept_unary_unary(self, continuation: Any, details: ClientCallDetails, request: Any) -> Outcome:
        if self.after:
            continuation(details, request)
        raise self.exc


class ReturnsNone(nngrpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation: Any, details: ClientCallDetails, request: Any) -> Any:
        continuation(details, request)
        return None


def test_changes_reach_the_wire_and_order_is_outermost_first(rec: Recorder) -> None:
    log: List[str] = []
    with nngrpc.Channel(rec.url) as base:
        ch = nngrpc.intercept_channel(
            base,
            Log("a", log),
            Rewrite(metadata={"k": "v"}, timeout=3.0),
            Log("b", log),
        )
        stub = testing_nngrpc.TestingStub(ch)  # the stubs take it as a Channel
        resp, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=b"hi"), timeout=1.0)
        assert resp.payload == b"hi" and call.trailing_metadata() == (("t", "1"),)
        req = rec.got[-1]
        # The first call of a connection asks for the server's capabilities.
        assert dict(req.metadata) == {"k": "v", "nngrpc-request-id": call.request_id,
                                      "nngrpc-accept-encoding": "identity"}
        assert 2_900_000 < req.timeout_us <= 3_000_000
        assert log == ["a in", "b in", "b out OK", "a out OK"]
        # Another method, same serializers; the error is observed as an outcome.
        redirected = nngrpc.intercept_channel(ch, Rewrite(method="/x/Fail"))
        with pytest.raises(nngrpc.RpcError) as e:
            testing_nngrpc.TestingStub(redirected).Echo(testing_pb2.EchoRequest(), timeout=1.0)
        assert e.value.code() is nngrpc.StatusCode.NOT_FOUND and rec.got[-1].method == "/x/Fail"
        assert log[-2:] == ["b out NOT_FOUND", "a out NOT_FOUND"]
        assert ch.call(ECHO, b"raw", timeout=1.0) == b"raw"  # the bytes API goes through them too


def test_an_interceptor_may_replace_the_outcome(rec: Recorder) -> None:
    class Fallback(nngrpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Outcome:
            out = continuation(details, request)
            if out.exception() is not None and out.code() is nngrpc.StatusCode.NOT_FOUND:
                return Outcome.of_response(testing_pb2.EchoResponse(payload=b"fallback"))
            return out

    with nngrpc.Channel(rec.url) as base:
        ch = nngrpc.intercept_channel(base, Fallback(), Rewrite(method="/x/Fail"))
        assert testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(), timeout=1.0).payload == b"fallback"


@pytest.mark.parametrize(
    "bad, want",
    [
        (Raises(ValueError("boom")), "interceptor Raises failed: ValueError: boom"),
        (Raises(KeyError("k"), after=True), "interceptor Raises failed: KeyError: 'k'"),
        (ReturnsNone(), "interceptor ReturnsNone failed: returned NoneType, not the outcome"),
    ],
)
def test_a_failing_interceptor_fails_the_call_not_the_channel(
    rec: Recorder, bad: nngrpc.UnaryUnaryClientInterceptor, want: str
) -> None:
    log: List[str] = []
    with nngrpc.Channel(rec.url) as base:
        assert base.call(ECHO, b"warm", timeout=1.0) == b"warm"
        fds = base._open_fds()
        ch = nngrpc.intercept_channel(base, Log("outer", log), bad)
        for _ in range(3):
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call(ECHO, b"x", timeout=1.0)
            assert e.value.code() is nngrpc.StatusCode.INTERNAL
            assert e.value.details().startswith(want), e.value.details()
        assert log[-1] == "outer out INTERNAL"  # outer interceptors see the failure
        assert base._open_fds() == fds  # the channel is as it was
        assert base.call(ECHO, b"after", timeout=1.0) == b"after"


def test_an_rpc_error_from_an_interceptor_is_the_calls_error(rec: Recorder) -> None:
    refuse = Raises(nngrpc.RpcError.of(nngrpc.StatusCode.PERMISSION_DENIED, "not you"))
    with nngrpc.Channel(rec.url) as base:
        with pytest.raises(nngrpc.RpcError) as e:
            nngrpc.intercept_channel(base, refuse).call(ECHO, b"", timeout=1.0)
        assert e.value.code() is nngrpc.StatusCode.PERMISSION_DENIED
    assert rec.got == []  # nothing was sent


def test_errors_of_a_call_that_never_started_pass_through(rec: Recorder) -> None:
    base = nngrpc.Channel(rec.url)
    ch = nngrpc.intercept_channel(base, Log("a", []))
    with pytest.raises(TypeError):
        ch.call(ECHO, b"", metadata={"k": 1})  # type: ignore[dict-item]
    ch.close()
    with pytest.raises(ValueError):
        ch.call(ECHO, b"")
    with pytest.raises(TypeError):
        nngrpc.intercept_channel(base, object())  # type: ignore[arg-type]


# ---- trace context -----------------------------------------------------------------
def test_traceparent_helpers() -> None:
    tp = new_traceparent()
    version, trace_id, parent_id, flags = parse_traceparent(tp)  # type: ignore[misc]
    assert (version, flags, len(trace_id), len(parent_id)) == ("00", "01", 32, 16)
    assert parse_traceparent(new_traceparent(sampled=False))[3] == "00"  # type: ignore[index]
    child = child_traceparent(tp)
    assert child is not None and child.split("-")[1] == trace_id and child.split("-")[2] != parent_id
    for bad in ["", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
                "00-" + "A" * 32 + "-" + "b" * 16 + "-01", "00-abc-def-01", "00-" + "a" * 32 + "-" + "b" * 16 + "-01-x"]:
        assert parse_traceparent(bad) is None
    assert parse_traceparent("01-" + "a" * 32 + "-" + "b" * 16 + "-01-future") is not None
    assert len({new_traceparent() for _ in range(1000)}) == 1000


def test_trace_context_interceptor(rec: Recorder) -> None:
    mine = new_traceparent()
    outer = new_traceparent()
    with nngrpc.Channel(rec.url) as base:
        ch = nngrpc.intercept_channel(base, TraceContextInterceptor())
        ch.call(ECHO, b"", timeout=1.0)
        made = rec.got[-1].metadata["traceparent"]
        assert parse_traceparent(made) is not None
        ch.call(ECHO, b"", timeout=1.0, metadata=[("traceparent", mine), ("tracestate", "v=1")])
        assert rec.got[-1].metadata["traceparent"] == mine  # the caller's, kept
        assert rec.got[-1].metadata["tracestate"] == "v=1"
        ch.call(ECHO, b"", timeout=1.0, metadata={"traceparent": "garbage"})
        assert parse_traceparent(rec.got[-1].metadata["traceparent"]) is not None  # replaced
        inside = nngrpc.intercept_channel(base, TraceContextInterceptor(parent=lambda: outer))
        inside.call(ECHO, b"", timeout=1.0)
        sent = rec.got[-1].metadata["traceparent"]
        assert sent.split("-")[1] == outer.split("-")[1] and sent != outer  # a child span


# ---- Prometheus ------------------------------------------------------------------------
def sample(registry: Any, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def test_prometheus_interceptor(rec: Recorder) -> None:
    import prometheus_client

    from nngrpc.prometheus import PrometheusInterceptor

    reg = prometheus_client.CollectorRegistry()
    with nngrpc.Channel(rec.url) as base:
        ch = nngrpc.intercept_channel(base, PrometheusInterceptor(reg), PrometheusInterceptor(reg, namespace="x"))
        for _ in range(3):
            ch.call(ECHO, b"", timeout=1.0)
        with pytest.raises(nngrpc.RpcError):
            ch.call("/x/Fail", b"", timeout=1.0)
        PrometheusInterceptor(reg)  # a second one on the same registry shares the metrics
    assert sample(reg, "nngrpc_client_calls_total", method=ECHO, code="OK") == 3
    assert sample(reg, "nngrpc_client_calls_total", method="/x/Fail", code="NOT_FOUND") == 1
    assert sample(reg, "nngrpc_client_call_duration_seconds_count", method=ECHO) == 3
    assert 0 < sample(reg, "nngrpc_client_call_duration_seconds_sum", method=ECHO) < 3
    assert sample(reg, "x_client_calls_total", method=ECHO, code="OK") == 3


def test_prometheus_is_imported_only_when_used() -> None:
    import subprocess
    import sys

    code = "import sys, nngrpc, nngrpc.aio, nngrpc.tracing; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- asyncio -------------------------------------------------------------------------
class AsyncLog(nngrpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, log: List[str]) -> None:
        self.log = log

    async def intercept_unary_unary(
        self, continuation: Callable[[ClientCallDetails, Any], Awaitable[Outcome]], details: Any, request: Any
    ) -> Outcome:
        out = await continuation(details._replace(metadata={"k": "v"}), request)
        self.log.append(out.code().name)
        return out


class AsyncRaises(nngrpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Outcome:
        raise RuntimeError("async boom")


def test_aio_interceptors(rec: Recorder) -> None:
    import prometheus_client

    from nngrpc.prometheus import AsyncPrometheusInterceptor

    reg = prometheus_client.CollectorRegistry()
    log: List[str] = []

    async def main() -> None:
        async with nngrpc.aio.Channel(rec.url) as base:
            ch = nngrpc.aio.intercept_channel(
                base, AsyncLog(log), AsyncPrometheusInterceptor(reg), AsyncTraceContextInterceptor()
            )
            stub = testing_nngrpc.TestingAsyncStub(ch)
            got = await asyncio.gather(*[stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=2.0) for i in range(20)])
            assert [g.payload for g in got] == [b"%d" % i for i in range(20)]
            req = rec.got[-1]
            assert req.metadata["k"] == "v" and parse_traceparent(req.metadata["traceparent"]) is not None
            with pytest.raises(nngrpc.RpcError) as e:
                await nngrpc.aio.intercept_channel(base, AsyncRaises()).call(ECHO, b"", timeout=1.0)
            assert e.value.code() is nngrpc.StatusCode.INTERNAL
            assert "interceptor AsyncRaises failed: RuntimeError: async boom" in e.value.details()
            assert await base.call(ECHO, b"ok", timeout=1.0) == b"ok"
            # grpc.aio style: an outcome can be awaited for the response.
            out = await Outcome.of_response(b"r")
            assert out == b"r"

    asyncio.run(asyncio.wait_for(main(), 10))
    assert log == ["OK"] * 20
    assert sample(reg, "nngrpc_client_calls_total", method=ECHO, code="OK") == 20
