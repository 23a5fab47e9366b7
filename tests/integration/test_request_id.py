"""Request ids: every call carries ``nngrpc-request-id`` (the caller's, or
one the channel makes), the call object gives it back, and the server logs
it on the lines about that call (``--log-level debug`` and
``--access-log all``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from typing import Iterator, List

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, start_server, stop_server

FAIL = "/nngrpc.testing.v1.Testing/Fail"


@pytest.fixture(scope="module")
def logging_hoteld(request: pytest.FixtureRequest) -> Iterator[Server]:
    binary = str(request.config.getoption("--hoteld"))
    usage = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    if "--access-log" not in usage:
        pytest.skip("%s has no --access-log flag: cannot see the ids it logs" % binary)
    with tempfile.TemporaryDirectory(prefix="nngrpc-rid-") as workdir:
        server = start_server(
            binary, workdir, ["--no-hotels", "--log-level", "debug", "--access-log", "all"]
        )
        try:
            yield server
        finally:
            stop_server(server)


def log_lines_with(server: Server, request_id: str, count: int = 1, limit: float = 5.0) -> List[str]:
    """Polls the server's log until count access lines carry request_id;
    returns every line that does."""
    needle = "request_id=%s" % request_id
    end = time.monotonic() + limit
    while True:
        lines = [ln for ln in server.log().splitlines() if re.search(re.escape(needle) + r"(\s|$)", ln)]
        if sum(" access " in ln for ln in lines) >= count or time.monotonic() > end:
            return lines


def test_generated_and_chosen_ids_reach_the_server_log(logging_hoteld: Server) -> None:
    with nngrpc.Channel(logging_hoteld.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        _, generated = stub.Echo.with_call(testing_pb2.EchoRequest(payload=b"a"), timeout=2.0)
        _, chosen = stub.Sleep.with_call(
            testing_pb2.SleepRequest(ms=1), timeout=2.0, metadata={"nngrpc-request-id": "caller-chosen-42"}
        )
        _, pairs = stub.Echo.with_call(
            testing_pb2.EchoRequest(), timeout=2.0, metadata=[("k", "v"), ("nngrpc-request-id", "as-pair-7")]
        )
        with pytest.raises(nngrpc.RpcError) as failed:
            stub.Fail(testing_pb2.FailRequest(code=5, message="nope"), timeout=2.0)

    assert re.fullmatch(r"[0-9a-f]{16}", generated.request_id), generated.request_id
    assert chosen.request_id == "caller-chosen-42"
    assert pairs.request_id == "as-pair-7"
    assert re.fullmatch(r"[0-9a-f]{16}", failed.value.request_id)
    assert len({generated.request_id, failed.value.request_id}) == 2

    for rid, method, status in [
        (generated.request_id, "Echo", "OK"),
        (chosen.request_id, "Sleep", "OK"),
        (pairs.request_id, "Echo", "OK"),
        (failed.value.request_id, "Fail", "NOT_FOUND"),
    ]:
        lines = log_lines_with(logging_hoteld, rid)
        access = [ln for ln in lines if " access " in ln]
        assert len(access) == 1, (rid, lines, logging_hoteld.log())
        assert "method=/nngrpc.testing.v1.Testing/%s" % method in access[0]
        assert "status=%s" % status in access[0]
        # The debug line about the call carries it too.
        assert any(" debug " in ln and method in ln for ln in lines), lines


def test_retries_keep_the_request_id(logging_hoteld: Server) -> None:
    """Every attempt of a retried call is logged under the same id."""
    policy = nngrpc.RetryPolicy(max_attempts=3, initial_backoff=0.001)
    unavailable = testing_pb2.FailRequest(code=14, message="later").SerializeToString()
    with nngrpc.Channel(logging_hoteld.tcp, retry=policy) as ch:
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(FAIL, unavailable, timeout=2.0, idempotent=True)
    rid = e.value.request_id
    assert e.value.call.attempts == 3
    access = [ln for ln in log_lines_with(logging_hoteld, rid, count=3) if " access " in ln]
    assert len(access) == 3 and all("status=UNAVAILABLE" in ln for ln in access), access


def test_aio_calls_carry_request_ids(logging_hoteld: Server) -> None:
    async def main() -> List[nngrpc.Call]:
        async with nngrpc.aio.Channel(logging_hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            calls = await asyncio.gather(
                *[stub.Echo.with_call(testing_pb2.EchoRequest(), timeout=2.0) for _ in range(5)],
                stub.Echo.with_call(testing_pb2.EchoRequest(), timeout=2.0,
                                    metadata={"nngrpc-request-id": "aio-chosen"}),
            )
            return [c for _, c in calls]

    calls = asyncio.run(main())
    ids = [c.request_id for c in calls]
    assert ids[-1] == "aio-chosen"
    assert len(set(ids)) == 6
    for rid in ids:
        assert any(" access " in ln for ln in log_lines_with(logging_hoteld, rid)), rid


def test_forked_child_draws_other_ids(hoteld: Server) -> None:
    """The id generator is reseeded in a forked child, so parent and child
    never send the same ids."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            with nngrpc.Channel(hoteld.tcp) as ch:
                _, call = testing_nngrpc.TestingStub(ch).Echo.with_call(testing_pb2.EchoRequest(), timeout=2.0)
            os.write(w, call.request_id.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with nngrpc.Channel(hoteld.tcp) as ch:
        _, call = testing_nngrpc.TestingStub(ch).Echo.with_call(testing_pb2.EchoRequest(), timeout=2.0)
    _, status = os.waitpid(pid, 0)
    child_id = os.read(r, 64).decode()
    os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0
    assert re.fullmatch(r"[0-9a-f]{16}", child_id)
    assert child_id != call.request_id
