"""Client interceptors against the real hoteld: what they change reaches
the server (metadata, method, timeout), what they observe is the server's
answer (status, trailers), a failing interceptor fails its call and leaves
the channel as it was, and the shipped ones run on real calls, sync and
asyncio: the trace context interceptor's trace ids are the ones hoteld's
access log records, the Prometheus one counts what was called.  (The
token interceptor is in test_auth.py, against a hoteld that wants one;
hoteld's own interceptors are in test_interceptors.py.)"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from typing import Any, Dict, Iterator, List

import prometheus_client  # Debian's python3-prometheus-client (tools/install-deps)
import pytest

import nngrpc
import nngrpc.aio
from nngrpc.prometheus import AsyncPrometheusInterceptor, PrometheusInterceptor
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.tracing import (
    AsyncTraceContextInterceptor,
    TraceContextInterceptor,
    new_traceparent,
    parse_traceparent,
)

from hoteld_fixture import Server, start_server, stop_server

ECHO = "/nngrpc.testing.v1.Testing/Echo"
HOSTNAME_KEY = "testing-hostname"  # Echo answers it with a trailer


class AskHostname(nngrpc.UnaryUnaryClientInterceptor):
    """Adds metadata the server answers; records the trailers it sees."""

    def __init__(self) -> None:
        self.trailers: List[Any] = []

    def intercept_unary_unary(self, continuation: Any, details: nngrpc.ClientCallDetails, request: Any) -> nngrpc.Outcome:
        out = continuation(details._replace(metadata=[(HOSTNAME_KEY, "1")]), request)
        self.trailers.append(dict(out.trailing_metadata()))
        return out


class Rewrite(nngrpc.UnaryUnaryClientInterceptor):
    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    def intercept_unary_unary(self, continuation: Any, details: nngrpc.ClientCallDetails, request: Any) -> nngrpc.Outcome:
        return continuation(details._replace(**self.changes), request)


class Broken(nngrpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> nngrpc.Outcome:
        continuation(details, request)
        raise ZeroDivisionError("division by zero in the interceptor")


def test_metadata_reaches_hoteld_and_trailers_come_back(channel: nngrpc.Channel) -> None:
    ask = AskHostname()
    stub = testing_nngrpc.TestingStub(nngrpc.intercept_channel(channel, ask))
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"x"), timeout=5.0).payload == b"x"
    assert ask.trailers[0].get(HOSTNAME_KEY)  # hoteld saw the metadata and answered it
    _, call = testing_nngrpc.TestingStub(channel).Echo.with_call(testing_pb2.EchoRequest(), timeout=5.0)
    assert HOSTNAME_KEY not in dict(call.trailing_metadata())  # not without the interceptor


def test_method_and_timeout_changes_reach_hoteld(channel: nngrpc.Channel) -> None:
    missing = nngrpc.intercept_channel(channel, Rewrite(method="/nngrpc.testing.v1.Testing/Missing"))
    with pytest.raises(nngrpc.RpcError) as e:
        testing_nngrpc.TestingStub(missing).Echo(testing_pb2.EchoRequest(), timeout=5.0)
    assert e.value.code() is nngrpc.StatusCode.UNIMPLEMENTED
    short = nngrpc.intercept_channel(channel, Rewrite(timeout=0.1))
    with pytest.raises(nngrpc.RpcError) as e:
        testing_nngrpc.TestingStub(short).Sleep(testing_pb2.SleepRequest(ms=3000), timeout=30.0)
    assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED


def test_a_broken_interceptor_leaves_the_channel_as_it_was(channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    stub.Echo(testing_pb2.EchoRequest(), timeout=5.0)
    fds = channel._open_fds()
    broken = testing_nngrpc.TestingStub(nngrpc.intercept_channel(channel, Broken()))
    for _ in range(5):
        with pytest.raises(nngrpc.RpcError) as e:
            broken.Echo(testing_pb2.EchoRequest(payload=b"y"), timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.INTERNAL
        assert "interceptor Broken failed: ZeroDivisionError" in e.value.details()
        assert isinstance(e.value.__cause__, ZeroDivisionError)
    assert channel._open_fds() == fds
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"z"), timeout=5.0).payload == b"z"


def test_trace_context_and_metrics_on_real_calls(hoteld: Server) -> None:
    reg = prometheus_client.CollectorRegistry()
    with nngrpc.Channel(hoteld.tcp) as base:
        ch = nngrpc.intercept_channel(base, PrometheusInterceptor(reg), TraceContextInterceptor())
        stub = testing_nngrpc.TestingStub(ch)
        for i in range(10):
            assert stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=5.0).payload == b"%d" % i
        with pytest.raises(nngrpc.RpcError):
            stub.Fail(testing_pb2.FailRequest(code=5, message="gone"), timeout=5.0)
    get = reg.get_sample_value
    assert get("nngrpc_client_calls_total", {"method": ECHO, "code": "OK"}) == 10
    fail = "/nngrpc.testing.v1.Testing/Fail"
    assert get("nngrpc_client_calls_total", {"method": fail, "code": "NOT_FOUND"}) == 1
    assert get("nngrpc_client_call_duration_seconds_count", {"method": ECHO}) == 10
    assert get("nngrpc_client_call_duration_seconds_bucket", {"method": ECHO, "le": "10.0"}) == 10


def test_aio_interceptors_on_real_calls(hoteld: Server) -> None:
    reg = prometheus_client.CollectorRegistry()

    class AsyncAsk(nngrpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> nngrpc.Outcome:
            return await continuation(details._replace(metadata=[(HOSTNAME_KEY, "1")]), request)

    async def main() -> None:
        async with nngrpc.aio.Channel(hoteld.tcp) as base:
            ch = nngrpc.aio.intercept_channel(
                base, AsyncPrometheusInterceptor(reg), AsyncTraceContextInterceptor(), AsyncAsk()
            )
            stub = testing_nngrpc.TestingAsyncStub(ch)
            calls = await asyncio.gather(
                *[stub.Echo.with_call(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=5.0) for i in range(50)]
            )
            assert [r.payload for r, _ in calls] == [b"%d" % i for i in range(50)]
            assert all(dict(c.trailing_metadata()).get(HOSTNAME_KEY) for _, c in calls)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert reg.get_sample_value("nngrpc_client_calls_total", {"method": ECHO, "code": "OK"}) == 50


# ---- trace ids in hoteld's access log ------------------------------------------------------
@pytest.fixture(scope="module")
def logging_hoteld(request: pytest.FixtureRequest) -> Iterator[Server]:
    """hoteld --testing writing a JSON access line for every call."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-cit-") as workdir:
        server = start_server(
            binary, workdir, ["--no-hotels", "--access-log", "all", "--log-format", "json"]
        )
        try:
            yield server
        finally:
            stop_server(server)


def trace_ids(server: Server, request_ids: List[str]) -> Dict[str, str]:
    """request id -> the trace id of its access line (polled, bounded)."""
    end = time.monotonic() + 5
    while True:
        found: Dict[str, str] = {}
        for line in server.log().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("msg") == "access" and rec.get("request_id") in request_ids:
                    found[rec["request_id"]] = rec.get("trace_id", "")
        if len(found) == len(request_ids) or time.monotonic() > end:
            return found


def test_hoteld_logs_the_trace_the_interceptor_sent(logging_hoteld: Server) -> None:
    mine = new_traceparent()
    outer = new_traceparent()
    with nngrpc.Channel(logging_hoteld.tcp) as base:
        plain = nngrpc.intercept_channel(base, TraceContextInterceptor())
        inside = nngrpc.intercept_channel(base, TraceContextInterceptor(parent=lambda: outer))
        plain.call(ECHO, b"", timeout=5.0, metadata={"nngrpc-request-id": "cit-new"})
        plain.call(ECHO, b"", timeout=5.0, metadata={"nngrpc-request-id": "cit-mine", "traceparent": mine})
        inside.call(ECHO, b"", timeout=5.0, metadata={"nngrpc-request-id": "cit-child"})
        base.call(ECHO, b"", timeout=5.0, metadata={"nngrpc-request-id": "cit-none"})
    got = trace_ids(logging_hoteld, ["cit-new", "cit-mine", "cit-child", "cit-none"])
    assert len(got["cit-new"]) == 32 and got["cit-new"] not in (mine, outer)  # a new trace
    assert got["cit-mine"] == parse_traceparent(mine)[1]  # type: ignore[index]  # the caller's, kept
    assert got["cit-child"] == parse_traceparent(outer)[1]  # type: ignore[index]  # inside the caller's trace
    assert got["cit-none"] == ""  # no interceptor, no trace

    async def aio_call() -> None:
        async with nngrpc.aio.Channel(logging_hoteld.tcp) as ach:
            ch = nngrpc.aio.intercept_channel(ach, AsyncTraceContextInterceptor(parent=lambda: outer))
            await ch.call(ECHO, b"", timeout=5.0, metadata={"nngrpc-request-id": "cit-aio"})

    asyncio.run(asyncio.wait_for(aio_call(), 10))
    assert trace_ids(logging_hoteld, ["cit-aio"])["cit-aio"] == parse_traceparent(outer)[1]  # type: ignore[index]
