"""The future-peer proxy's envelope edits (tests/compat/future_proxy.py),
checked with the real generated envelope: what it adds parses, old fields
keep their values, and the status code is replaced only when asked."""

from __future__ import annotations

import sys
from pathlib import Path

from nngrpc.v1 import rpc_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))

import future_proxy as fp  # noqa: E402


def test_request_gains_unknown_fields_and_metadata() -> None:
    req = rpc_pb2.Request(method="/a.B/C", timeout_us=7, payload=b"\x00\x01")
    req.metadata["x-app"] = "1"
    out = rpc_pb2.Request.FromString(fp.future_request(req.SerializeToString()))
    assert (out.method, out.timeout_us, out.payload) == ("/a.B/C", 7, b"\x00\x01")
    assert dict(out.metadata) == {"x-app": "1", fp.FUTURE_KEY: "1", fp.FUTURE_APP_KEY: "1"}
    numbers = sorted(n for n, *_ in fp.fields(out.SerializeToString()))
    assert [n for n in numbers if n >= 1000] == [1000, 1001, 1002, 1003]


def test_reply_gains_trailers_and_keeps_its_code() -> None:
    resp = rpc_pb2.Response(code=5, message="not here", payload=b"p", queue_us=3, run_us=4)
    out = rpc_pb2.Response.FromString(fp.future_reply(resp.SerializeToString()))
    assert (out.code, out.message, out.payload, out.queue_us, out.run_us) == (5, "not here", b"p", 3, 4)
    assert dict(out.trailers) == {fp.FUTURE_KEY: "1", fp.FUTURE_APP_KEY: "1"}


def test_reply_code_replaced_when_the_message_asks() -> None:
    resp = rpc_pb2.Response(code=13, message=fp.FUTURE_CODE_MESSAGE)
    resp.trailers["nngrpc-not-run"] = "1"
    out = rpc_pb2.Response.FromString(fp.future_reply(resp.SerializeToString()))
    assert out.code == fp.FUTURE_CODE and out.message == fp.FUTURE_CODE_MESSAGE
    assert out.trailers["nngrpc-not-run"] == "1"


def test_ok_reply_without_fields_still_parses() -> None:
    out = rpc_pb2.Response.FromString(fp.future_reply(b""))
    assert out.code == 0 and len(out.trailers) == 2
