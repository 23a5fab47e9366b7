"""What the client core does with what a connection's server supports
(docs/compatibility.md), with no sockets: when a request asks for the
capabilities, what it compresses, what it refuses, what a reply teaches
the connection, what the application sees of the reserved trailers, and
the decisions after a connection lost with its limit unknown."""

from __future__ import annotations

import base64
import os
import gzip
from typing import Any, Optional, Tuple

import pytest

import nngrpc
from nngrpc import _compression, _core
from nngrpc._caps import OLD_SERVER, UNKNOWN, Caps
from nngrpc._core import CallState, EndpointSet
from nngrpc._transport import parse_url
from nngrpc.v1 import rpc_pb2

StatusCode = nngrpc.StatusCode
CAPS = Caps(131072, frozenset({"gzip", "zstd"}))


class Conn:
    """What answered() needs of a connection."""

    class reader:
        max_recv = 1 << 20

    def __init__(self, caps: Caps = UNKNOWN) -> None:
        self.caps = caps


def state(payload: bytes = b"p", metadata: Any = None, compression: Optional[str] = None,
          max_send: int = 1 << 20) -> CallState:
    eps: EndpointSet[_core.Endpoint] = EndpointSet(
        [parse_url("tcp://127.0.0.1:1")], _core.Endpoint, backoff=1.0, backoff_max=30.0,
        unavailable_backoff=1.0)
    mc: _core.MethodBase[bytes, bytes] = _core.MethodBase(None, "/pkg.Svc/M", None, None, True)
    return CallState(eps, mc, payload, 5.0, metadata, nngrpc.RetryPolicy(initial_backoff=0.001),
                     max_send, 0.02, True, compression)


def request(head: bytes, payload: Any) -> Any:
    return rpc_pb2.Request.FromString(head + bytes(payload))


def reply(code: int = 0, payload: bytes = b"", **trailers: str) -> bytes:
    return rpc_pb2.Response(code=code, payload=payload,
                            trailers={k.replace("_", "-"): v for k, v in trailers.items()}
                            ).SerializeToString()


def answer(st: CallState, env: bytes, conn: Any, caps: Caps) -> Tuple[Any, Any]:
    got = st.answered(st.endpoints[0], memoryview(env), 0, len(env), bytes, conn, caps)
    assert got is not None
    return got


# ---- asking -------------------------------------------------------------------------
def test_a_plain_call_asks_only_a_connection_that_does_not_know() -> None:
    st = state()
    assert not st.special
    head, payload = st.prepare(UNKNOWN, 1 << 20)  # first call of a connection
    assert request(head, payload).metadata["nngrpc-accept-encoding"] == "identity"
    head, payload = st.prepare(CAPS, 1 << 20)  # (what a special call would send)
    assert "nngrpc-accept-encoding" not in request(head, payload).metadata
    assert "nngrpc-accept-encoding" not in request(st.head(), st.payload).metadata


def test_asking_never_makes_a_request_too_large() -> None:
    st = state(b"x" * 1000)
    plain = len(st.head()) + 1000 + 4
    head, payload = st.prepare(UNKNOWN, plain)  # no room for the question
    assert len(head) + len(payload) + 4 <= plain
    assert "nngrpc-accept-encoding" not in request(head, payload).metadata


def test_the_callers_own_accept_encoding_is_not_doubled() -> None:
    st = state(metadata=[("nngrpc-accept-encoding", "gzip")])
    assert st.special and st.app_asked
    head, payload = st.prepare(UNKNOWN, 1 << 20)
    assert request(head, payload).metadata["nngrpc-accept-encoding"] == "gzip"
    assert (head + bytes(payload)).count(b"nngrpc-accept-encoding") == 1


# ---- compressing ----------------------------------------------------------------------
@pytest.mark.parametrize("name", _compression.AVAILABLE)
def test_compressed_only_for_a_server_that_decodes_it(name: str) -> None:
    data = b"compress me " * 1000
    st = state(data, compression=name)
    head, payload = st.prepare(UNKNOWN, 1 << 20)  # first call: plain, asks
    req = request(head, payload)
    assert req.payload == data and req.metadata["nngrpc-accept-encoding"] == name
    assert "nngrpc-encoding" not in req.metadata
    head, payload = st.prepare(OLD_SERVER, 1 << 20)
    assert request(head, payload).payload == data
    head, payload = st.prepare(CAPS, 1 << 20)
    req = request(head, payload)
    assert req.metadata["nngrpc-encoding"] == name and len(req.payload) < len(data) // 10
    assert _compression.decompress(name, req.payload, len(data)) == data


def test_small_or_incompressible_requests_go_plain() -> None:
    for data in (b"x" * (_compression.MIN_BYTES - 1), os.urandom(2048)):
        st = state(data, compression="gzip")
        head, payload = st.prepare(CAPS, 1 << 20)
        assert request(head, payload).payload == data


def test_compression_does_not_raise_the_limit() -> None:
    """The server decompresses into at most its limit: a payload over it
    is refused, even when it would fit compressed."""
    st = state(b"y" * (CAPS.limit + 1), compression="gzip", max_send=1 << 30)
    with pytest.raises(nngrpc.RpcError) as e:
        st.prepare(CAPS, 1 << 30)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED and "before compression" in e.value.details()
    # Over max_send plain, under it compressed: sent.
    st = state(b"y" * 50000, compression="gzip", max_send=20000)
    head, payload = st.prepare(CAPS, 20000)
    assert len(head) + len(payload) + 4 <= 20000


def test_over_the_servers_limit_is_refused_naming_it() -> None:
    st = state(b"z" * 200000)
    with pytest.raises(nngrpc.RpcError) as e:
        st.prepare(CAPS, 1 << 20)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED and e.value.call.attempts == 1
    assert "131072" in e.value.details() and "not sent" in e.value.details()


def test_the_size_gate_sends_plain_calls_straight() -> None:
    """A driver sends head() when caps are known and size is within their
    limit (size bounds what head() makes); anything else takes prepare()."""
    for payload, md in ((b"x", None), (b"y" * 5000, [("k", "v" * 3000)])):
        st = state(payload, md)
        assert st.size >= 4 + len(st.head()) + len(payload)
        assert st.size <= CAPS.limit and not st.special
    assert state(b"z" * 200000).size > CAPS.limit
    assert state().size > UNKNOWN.limit
    for st in (state(compression="gzip"), state(metadata={"nngrpc-accept-encoding": "gzip"})):
        assert st.special and st.size > OLD_SERVER.limit


# ---- learning from replies ----------------------------------------------------------
def test_capability_trailers_teach_the_connection_and_are_hidden() -> None:
    conn = Conn()
    st = state()
    _, call = answer(st, reply(nngrpc_accept_encoding="zstd, gzip,br",
                               nngrpc_max_message_bytes="131072", x="1"), conn, UNKNOWN)
    assert conn.caps.limit == 131072
    assert conn.caps.encodings == {"zstd", "gzip", "br"}
    assert call.trailing_metadata() == (("x", "1"),)


def test_an_ok_without_capabilities_is_an_old_server() -> None:
    conn = Conn()
    answer(state(), reply(), conn, UNKNOWN)
    assert conn.caps is OLD_SERVER
    # Not from an error without them (a queue-full answer, made before the
    # request is decoded): the next call asks again.
    conn = Conn()
    with pytest.raises(nngrpc.RpcError):
        answer(state(), reply(8), conn, UNKNOWN)
    assert conn.caps is UNKNOWN


def test_the_callers_own_question_shows_the_answer() -> None:
    st = state(metadata={"nngrpc-accept-encoding": "identity"})
    conn = Conn()
    _, call = answer(st, reply(nngrpc_accept_encoding="gzip", nngrpc_max_message_bytes="99"),
                     conn, UNKNOWN)
    assert dict(call.trailing_metadata()) == {"nngrpc-accept-encoding": "gzip",
                                              "nngrpc-max-message-bytes": "99"}
    assert conn.caps.limit == 99


def test_compressed_reply_is_decompressed_within_max_receive() -> None:
    data = b"page " * 5000
    st = state(compression="gzip")
    resp, call = answer(st, reply(payload=gzip.compress(data), nngrpc_encoding="gzip"),
                        Conn(CAPS), CAPS)
    assert resp == data and call.compression == "gzip" and call.trailing_metadata() == ()
    small = Conn(CAPS)
    small.reader = type("r", (), {"max_recv": 1000})
    with pytest.raises(nngrpc.RpcError) as e:
        answer(state(), reply(payload=gzip.compress(data), nngrpc_encoding="gzip"), small, CAPS)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(nngrpc.RpcError) as e:
        answer(state(), reply(payload=b"not gzip", nngrpc_encoding="gzip"), Conn(CAPS), CAPS)
    assert e.value.code() is StatusCode.INTERNAL


def test_bin_trailers_are_bytes() -> None:
    blob = bytes(range(7))
    _, call = answer(state(), reply(**{"a_bin": base64.b64encode(blob).decode().rstrip("="),
                                       "b_bin": base64.b64encode(blob).decode(),
                                       "c_bin": "not base64!", "d": "text"}), Conn(CAPS), CAPS)
    assert dict(call.trailing_metadata()) == {"a-bin": blob, "b-bin": blob,
                                              "c-bin": b"not base64!", "d": "text"}


# ---- after a connection lost with the limit unknown -----------------------------------
def test_probe_and_decisions_after_a_lost_connection() -> None:
    st = state(b"x" * 200000)
    head = st.probe_head(None)
    req = rpc_pb2.Request.FromString(head)
    assert req.method == "/nngrpc.health.v1.Health/Check" and req.payload == b""
    assert req.metadata["nngrpc-request-id"] == st.rid
    assert req.metadata["nngrpc-accept-encoding"] == "identity"
    conn = Conn()
    env = reply(nngrpc_accept_encoding="gzip", nngrpc_max_message_bytes="131072")
    st.probe_answered(conn, memoryview(env), 0, len(env))
    assert conn.caps.limit == 131072
    with pytest.raises(nngrpc.RpcError) as e:  # over it, and still
        st.after_probe(conn.caps, 200100, 1 << 20)
    assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED and e.value.call.attempts == 1
    assert not st.after_probe(conn.caps, 1000, 1 << 20)  # the limit does not explain it
    assert not st.after_probe(UNKNOWN, 200100, 1 << 20)  # nothing learned
    old = Conn()
    st.probe_answered(old, memoryview(reply()), 0, len(reply()))
    assert old.caps is OLD_SERVER and not st.after_probe(old.caps, 200100, 1 << 20)
    # Over it plain, within it compressed: sent again, whatever the method.
    st = state(b"c" * 120000, compression="gzip", max_send=1 << 20)
    assert st.after_probe(Caps(120050, frozenset({"gzip"})), 120100, 1 << 20)
    # ... but not when the payload itself is over (hoteld stops there).
    with pytest.raises(nngrpc.RpcError):
        st.after_probe(Caps(100000, frozenset({"gzip"})), 120100, 1 << 20)
