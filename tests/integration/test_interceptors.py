"""Interceptors in hoteld, through real calls: the access log (an `after`
hook) records the caller's W3C trace id from its ``traceparent`` metadata,
and none for a malformed one; the token check (a `before` hook) refuses a
call before the serving check and the handler, lets health checks through
without a token, and the access log still sees the refused call."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List

import pytest

import nngrpc
import nngrpc.health

from hoteld_fixture import Server, free_port, stop_server, wait_until_healthy

ECHO = "/nngrpc.testing.v1.Testing/Echo"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = "00-%s-00f067aa0ba902b7-01" % TRACE_ID
TOKEN = "interceptor-token"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """hoteld --testing with a token file, every call in the access log."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-ic-") as workdir:
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        srv = start_secured(binary, workdir, token_file)
        try:
            yield srv
        finally:
            stop_server(srv)


def start_secured(binary: str, workdir: str, token_file: str) -> Server:
    """Starts hoteld and polls health (open without a token), not Echo."""
    tcp = "tcp://127.0.0.1:%d" % free_port()
    log_path = os.path.join(workdir, "hoteld.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "--testing", "--no-hotels", "--listen", tcp,
             "--auth-token-file", token_file, "--access-log", "all",
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = Server(tcp=tcp, ipc="", proc=proc, log_path=log_path, workers=32)
    return wait_until_healthy(server, 60, "hoteld", check_timeout=5.0)


def access_lines(server: Server, request_id: str) -> List[Dict[str, Any]]:
    """The access lines of one request id, polled for (bounded)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(l) for l in server.log().splitlines() if l.startswith("{")]
        hits = [l for l in lines if l.get("msg") == "access"
                and l.get("request_id") == request_id]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.02)


def call(server: Server, request_id: str, **metadata: str) -> nngrpc.StatusCode:
    md = {"nngrpc-request-id": request_id, **metadata}
    with nngrpc.Channel(server.tcp, retry=None) as ch:
        try:
            ch.call(ECHO, b"", metadata=md, timeout=5)
            return nngrpc.StatusCode.OK
        except nngrpc.RpcError as e:
            return e.code()


def test_access_log_records_the_trace_id(server: Server) -> None:
    auth = "Bearer " + TOKEN
    assert call(server, "ic-trace", traceparent=TRACEPARENT, authorization=auth) \
        is nngrpc.StatusCode.OK
    [line] = access_lines(server, "ic-trace")
    assert line["trace_id"] == TRACE_ID and line["status"] == "OK"

    bad = "00-%s-0000000000000000-01" % TRACE_ID  # a zero parent id
    assert call(server, "ic-bad-trace", traceparent=bad, authorization=auth) \
        is nngrpc.StatusCode.OK
    [line] = access_lines(server, "ic-bad-trace")
    assert "trace_id" not in line


def test_token_check_refuses_before_anything_and_is_logged(server: Server) -> None:
    assert call(server, "ic-no-token", traceparent=TRACEPARENT) \
        is nngrpc.StatusCode.UNAUTHENTICATED
    assert call(server, "ic-bad-token", authorization="Bearer nope") \
        is nngrpc.StatusCode.UNAUTHENTICATED
    [line] = access_lines(server, "ic-no-token")
    assert line["status"] == "UNAUTHENTICATED" and line["trace_id"] == TRACE_ID
    assert access_lines(server, "ic-bad-token")[0]["status"] == "UNAUTHENTICATED"
    assert TOKEN not in server.log() and "nope" not in server.log()
    # Health checks are open: no token needed.
    with nngrpc.Channel(server.tcp) as ch:
        assert nngrpc.health.check(ch) is nngrpc.health.ServingStatus.SERVING
