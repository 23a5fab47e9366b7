"""The sans-I/O client core (_core.py) and SP framing (_sp.FrameReader),
with no sockets: the hand-written envelope codec against protobuf's own,
the frame reader fed byte by byte, the endpoint set changing under calls,
and the retry decisions of CallState."""

from __future__ import annotations

import random
import struct
import time
from typing import Any, List, Optional, Tuple

import pytest

import nngrpc
from nngrpc import _core, _sp
from nngrpc._core import CallState, EndpointSet, decode_response
from nngrpc._transport import parse_url
from nngrpc.testing.v1 import testing_pb2
from nngrpc.v1 import rpc_pb2

StatusCode = nngrpc.StatusCode
RNG = random.Random(20240610)


def endpoints(*urls: str) -> EndpointSet[_core.Endpoint]:
    return EndpointSet(
        [parse_url(u) for u in urls or ("tcp://127.0.0.1:1",)],
        _core.Endpoint,
        backoff=1.0,
        backoff_max=30.0,
        unavailable_backoff=1.0,
    )


def state(
    payload: bytes = b"p",
    timeout: Optional[float] = 5.0,
    metadata: Any = None,
    *,
    eps: Optional[EndpointSet[_core.Endpoint]] = None,
    idempotent: bool = True,
    retry: Optional[nngrpc.RetryPolicy] = nngrpc.RetryPolicy(initial_backoff=0.001),
    max_send: int = 1 << 20,
    want_call: bool = True,
) -> CallState:
    mc: _core.MethodBase[bytes, bytes] = _core.MethodBase(None, "/pkg.Svc/M", None, None, idempotent)
    return CallState(eps or endpoints(), mc, payload, timeout, metadata, retry, max_send, 0.02, want_call)


def sent_request(st: CallState) -> Any:
    """What the server decodes from this attempt."""
    return rpc_pb2.Request.FromString(st.head() + bytes(st.payload))


# ---- the request envelope ----------------------------------------------------------
def test_request_envelope_decodes_as_protobuf_request() -> None:
    for size in (0, 1, 127, 128, 16383, 16384, 300_000):
        payload = RNG.randbytes(size)
        st = state(payload, timeout=2.0, metadata={"k": "v", "unicode-é": "∂"})
        req = sent_request(st)
        assert req.method == "/pkg.Svc/M" and req.payload == payload
        assert 1_900_000 < req.timeout_us <= 2_000_000
        assert dict(req.metadata) == {"k": "v", "unicode-é": "∂", "nngrpc-request-id": st.rid}
        assert len(st.rid) == 16 and int(st.rid, 16) >= 0


def test_request_size_matches_protobuf_at_the_limit() -> None:
    """The size check counts what protobuf would: a request of exactly
    max_send bytes passes, one more is RESOURCE_EXHAUSTED before sending."""
    md = {"nngrpc-request-id": "0" * 16}
    for timeout in (None, 0.5, 3000.0):
        payload = b"x" * 1000
        exact = 4 + rpc_pb2.Request(
            method="/pkg.Svc/M", payload=payload, metadata=md,
            timeout_us=0 if timeout is None else max(1, int(timeout * 1e6)),
        ).ByteSize()
        state(payload, timeout, md, max_send=exact)
        with pytest.raises(nngrpc.RpcError) as e:
            state(payload, timeout, md, max_send=exact - 1)
        assert e.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert e.value.request_id == "0" * 16


def test_metadata_rules() -> None:
    assert _core.metadata_field([("a", "1"), ("b", "2")])[0].count(b"\x1a") >= 2
    with pytest.raises(ValueError, match="given twice"):
        _core.metadata_field([("a", "1"), ("a", "2")])
    with pytest.raises(TypeError, match="must be str"):
        _core.metadata_field({"a": b"bytes"})
    # Bytes under a -bin key: unpadded base64.
    md, _, _ = _core.metadata_field({"a-bin": b"\x00\xff"})
    got = rpc_pb2.Request.FromString(md)
    assert got.metadata["a-bin"] == "AP8"
    # An empty request id is replaced by a generated one.
    md, rid, asked = _core.metadata_field({"nngrpc-request-id": ""})
    assert len(rid) == 16 and not asked
    assert _core.metadata_field({"nngrpc-accept-encoding": "gzip"})[2]
    # Ids differ from call to call.
    assert len({_core.metadata_field(None)[1] for _ in range(1000)}) == 1000


def test_no_time_left_fails_before_anything() -> None:
    for t in (0.0, -1.0):
        with pytest.raises(nngrpc.RpcError) as e:
            state(timeout=t)
        assert e.value.code() is StatusCode.DEADLINE_EXCEEDED and e.value.request_id


# ---- the response envelope -----------------------------------------------------------
def random_response() -> Any:
    r = rpc_pb2.Response()
    if RNG.random() < 0.5:
        r.code = RNG.choice([0, 1, 5, 14, 16, 99, -3])
    if RNG.random() < 0.5:
        r.message = "".join(RNG.choice("abcé∂ ") for _ in range(RNG.randrange(0, 40)))
    if RNG.random() < 0.8:
        r.payload = RNG.randbytes(RNG.choice([0, 1, 127, 128, 20000]))
    for _ in range(RNG.randrange(0, 4)):
        r.trailers["k%d" % RNG.randrange(10)] = "v%d" % RNG.randrange(1000)
    if RNG.random() < 0.7:
        r.queue_us = RNG.randrange(0, 1 << 40)
    if RNG.random() < 0.7:
        r.run_us = RNG.randrange(0, 1 << 20)
    return r


def test_response_decoder_agrees_with_protobuf() -> None:
    for _ in range(500):
        r = random_response()
        data = r.SerializeToString()
        pad = RNG.randrange(0, 9)
        buf = bytearray(b"\xff" * pad + data + b"\xee" * 7)  # a region of a larger buffer
        code, message, ps, pe, trailers, queue_us, run_us = decode_response(buf, pad, pad + len(data))
        assert code == r.code and message == r.message
        assert bytes(buf[ps:pe]) == r.payload
        assert trailers == tuple(sorted(r.trailers.items()))
        assert (queue_us, run_us) == (r.queue_us, r.run_us)


def test_response_decoder_skips_unknown_fields() -> None:
    known = rpc_pb2.Response(code=5, payload=b"abc").SerializeToString()
    unknown = (
        b"\x38\x96\x01"  # field 7, varint
        + b"\x41" + b"\x00" * 8  # field 8, fixed64
        + b"\x4a\x03xyz"  # field 9, bytes
        + b"\x55" + b"\x00" * 4  # field 10, fixed32
        + b"\xa2\x06\x02hi"  # field 100, bytes: a two-byte tag
    )
    code, _, ps, pe, *_ = decode_response(unknown + known, 0, len(unknown + known))
    data = unknown + known
    assert code == 5 and data[ps:pe] == b"abc"


def test_response_decoder_refuses_garbage() -> None:
    good = rpc_pb2.Response(code=5, message="m", payload=b"abc", trailers={"a": "b"}).SerializeToString()
    for cut in range(1, len(good)):
        buf = bytearray(good[:cut] + b"\x00" * 64)  # what follows in the buffer must not be read
        try:
            decode_response(buf, 0, cut)
        except _core.EnvelopeError:
            continue
        # A prefix can be a whole message (fields end at cut): then it is.
        rpc_pb2.Response.FromString(good[:cut])
    for bad in (b"\xff\xff\xff\xff\x0f garbage", b"\x0b", b"\x1a\x80"):
        with pytest.raises(_core.EnvelopeError):
            decode_response(bad, 0, len(bad))


# ---- SP frames -------------------------------------------------------------------
def frame(rid: int, body: bytes, ipc: bool = False) -> bytes:
    return _sp.encode_message(struct.pack(">I", rid) + body, ipc=ipc)


def feed(reader: _sp.FrameReader, data: bytes, chunks: List[int]) -> List[Tuple[int, bytes]]:
    """Feeds data in pieces of the given sizes; returns the frames found
    (id, envelope), each copied out before the next receive."""
    out: List[Tuple[int, bytes]] = []
    pos = 0
    i = 0
    while pos < len(data):
        room = reader.space()
        n = min(len(room), chunks[i % len(chunks)], len(data) - pos)
        room[:n] = data[pos : pos + n]
        reader.filled(n)
        pos += n
        i += 1
        while True:
            f = reader.next()
            if f is None:
                break
            rid, start, end = f
            out.append((rid, b"" if start == _sp.OVERSIZE else bytes(reader.buf[start:end])))
    return out


@pytest.mark.parametrize("ipc", [False, True])
def test_frame_reader_any_split(ipc: bool) -> None:
    bodies = [RNG.randbytes(n) for n in (0, 1, 100, 70_000, 5, 300_000, 3)]
    data = b"".join(frame(0x80000000 + i, b, ipc) for i, b in enumerate(bodies))
    want = [(0x80000000 + i, b) for i, b in enumerate(bodies)]
    for chunks in ([1], [7], [8, 9, 13], [65536], [len(data)]):
        reader = _sp.FrameReader(ipc=ipc, max_recv=1 << 20)
        assert feed(reader, data, chunks) == want
        assert reader.unparsed() == 0
        reader.space()
        assert len(reader.buf) <= _sp.KEEP_BUFFER  # a large reply's buffer is given back


def test_frame_reader_oversize() -> None:
    data = frame(0x80000001, b"a" * 10) + frame(0x80000002, b"b" * 5000) + frame(0x80000003, b"c")
    skipping = _sp.FrameReader(ipc=False, max_recv=1000, skip_oversize=True)
    assert feed(skipping, data, [3, 100]) == [(0x80000001, b"a" * 10), (0x80000002, b""), (0x80000003, b"c")]
    strict = _sp.FrameReader(ipc=False, max_recv=1000)
    with pytest.raises(_sp.MessageTooLarge):
        feed(strict, data, [4096])


def test_frame_reader_broken_frames() -> None:
    with pytest.raises(_sp.ProtocolError, match="no request id"):
        feed(_sp.FrameReader(ipc=False, max_recv=100), b"\x00" * 7 + b"\x02xx", [64])
    with pytest.raises(_sp.ProtocolError, match="type 2"):
        feed(_sp.FrameReader(ipc=True, max_recv=100), b"\x02" + b"\x00" * 8, [64])
    r = _sp.FrameReader(ipc=False, max_recv=100)
    r.space()[:8] = b"\x00SP\x00\x00\x31\x00\x00"
    r.filled(8)
    header = r.handshake()
    assert header is not None
    _sp.check_rep(header)
    with pytest.raises(_sp.ProtocolError, match="not REP"):
        _sp.check_rep(_sp.handshake_header(0x51))


# ---- endpoints -------------------------------------------------------------------
def test_round_robin_and_backoff() -> None:
    eps = endpoints("tcp://h:1", "tcp://h:2", "tcp://h:3")
    a, b, c = eps.endpoints
    assert [eps.candidates()[0] for _ in range(4)] == [a, b, c, a]
    eps.dial_failed(b, "refused")
    assert b.retry_at > time.monotonic() and b.last_error == "refused"
    assert eps.candidates()[-1] is b  # in backoff: last
    eps.dial_ok(b)
    assert b.retry_at == 0.0 and b.failures == 0
    eps.answered_unavailable(c, "draining")
    assert eps.candidates(avoid=a)[-2:] == [c, a]
    single = endpoints("tcp://h:1")
    single.answered_unavailable(single[0], "draining")  # nowhere else to go
    assert single[0].retry_at == 0.0


def test_endpoint_set_update_keeps_adds_and_drains() -> None:
    eps = endpoints("tcp://h:1", "tcp://h:2")
    a, b = eps.endpoints
    b.failures = 3
    added, removed = eps.update([parse_url("tcp://h:2"), parse_url("tcp://h:3"), parse_url("tcp://h:3")])
    assert removed == [a] and a.removed
    assert eps.endpoints[0] is b and b.failures == 3 and not b.removed  # state kept
    assert [e.addr.url for e in added] == ["tcp://h:3"] and eps.endpoints[1] is added[0]
    assert all(e is not a for _ in range(5) for e in eps.candidates())
    added, removed = eps.update([])
    assert not added and len(removed) == 2 and eps.candidates() == []
    st = state(eps=eps)
    f = st.unreachable([])
    assert f.error.code() is StatusCode.UNAVAILABLE and "no endpoint" in f.error.details()


# ---- call decisions -----------------------------------------------------------------
def reply(code: int = 0, payload: bytes = b"", trailers: Any = None, message: str = "") -> bytes:
    return rpc_pb2.Response(
        code=code, message=message, payload=payload, trailers=trailers or {}, queue_us=7, run_us=9
    ).SerializeToString()


def answer(st: CallState, data: bytes, deser: Any = None) -> Any:
    return st.answered(st.endpoints[0], memoryview(data), 0, len(data), _core.view_deserializer(deser))


def test_ok_reply_gives_response_and_call() -> None:
    st = state()
    payload = testing_pb2.EchoResponse(payload=b"hi").SerializeToString()
    resp, call = answer(st, reply(0, payload), testing_pb2.EchoResponse.FromString)
    assert resp.payload == b"hi"
    assert call.code() is StatusCode.OK and (call.queue_us, call.run_us) == (7, 9)
    assert call.request_id == st.rid and call.attempts == 1
    assert answer(state(want_call=False), reply(0, b"raw"))[0:2] == (b"raw", None)


def test_unavailable_reply_is_retried_only_when_idempotent() -> None:
    eps = endpoints("tcp://h:1", "tcp://h:2")
    st = state(eps=eps)
    assert st.answered(eps[0], memoryview(reply(14)), 0, len(reply(14)), bytes) is None
    assert 0 <= st.delay <= 0.001 and st.attempt == 2 and st.avoid is eps[0]
    assert eps[0].retry_at > time.monotonic()  # tried last for a while
    once = state(eps=eps, idempotent=False)
    with pytest.raises(nngrpc.RpcError) as e:
        answer(once, reply(14, message="draining"))
    assert e.value.code() is StatusCode.UNAVAILABLE and e.value.call.attempts == 1


def test_not_run_reply_goes_elsewhere_even_when_not_idempotent() -> None:
    st = state(idempotent=False)
    assert answer(st, reply(14, trailers={_core.NOT_RUN_KEY: "1"})) is None
    no_retry = state(idempotent=False, retry=None)
    with pytest.raises(nngrpc.RpcError):
        answer(no_retry, reply(14, trailers={_core.NOT_RUN_KEY: "1"}))


def test_attempts_run_out_and_errors_carry_the_count() -> None:
    st = state(retry=nngrpc.RetryPolicy(max_attempts=3, initial_backoff=0.0))
    assert answer(st, reply(14)) is None
    assert answer(st, reply(14)) is None
    with pytest.raises(nngrpc.RpcError) as e:
        answer(st, reply(14))
    assert e.value.call.attempts == 3 and e.value.request_id == st.rid


def test_other_codes_are_final() -> None:
    for code in (1, 3, 4, 5, 8, 12, 13, 16, 99):
        with pytest.raises(nngrpc.RpcError) as e:
            answer(state(), reply(code, message="m%d" % code))
        want = StatusCode.from_int(code)
        assert e.value.code() is want and e.value.details() == "m%d" % code


def test_undecodable_reply_and_payload_are_internal() -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        answer(state(), b"\xff\xff\xff")
    assert e.value.code() is StatusCode.INTERNAL and "undecodable" in e.value.details()
    with pytest.raises(nngrpc.RpcError) as e:
        answer(state(), reply(0, b"\xff\xff"), testing_pb2.EchoResponse.FromString)
    assert e.value.code() is StatusCode.INTERNAL and "deserializing" in e.value.details()


def test_attempt_errors_map_to_statuses() -> None:
    st = state()
    ep = st.endpoints[0]
    assert st.attempt_error(TimeoutError(), ep, False).code() is StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    big = st.attempt_error(_sp.MessageTooLarge(10, 5), ep, False)
    assert big.code() is StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert st.attempt_error(_sp.ProtocolError("x"), ep, False).code() is StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert st.attempt_error(ConnectionResetError(), ep, True).code() is StatusCode.CANCELLED  # type: ignore[attr-defined]
    lost = st.attempt_error(ConnectionResetError("reset"), ep, False)
    assert isinstance(lost, _core.AttemptFailed) and lost.retryable and lost.endpoint is ep
    assert st.failed(lost) >= 0 and st.attempt == 2
    no_time = state(timeout=0.05, retry=nngrpc.RetryPolicy(initial_backoff=10.0, max_backoff=10.0))
    with pytest.raises(nngrpc.RpcError):  # the backoff would end past the deadline
        for _ in range(50):  # a draw below 50 ms is possible: bounded
            no_time.failed(no_time.attempt_error(ConnectionResetError(), ep, False))


def test_head_has_the_time_left() -> None:
    st = state(timeout=1.0)
    first = sent_request(st).timeout_us
    time.sleep(0.02)
    assert sent_request(st).timeout_us <= first - 19_000
    st.deadline = time.monotonic() - 1
    with pytest.raises(nngrpc.RpcError) as e:
        st.head()
    assert e.value.code() is StatusCode.DEADLINE_EXCEEDED


def test_a_retry_that_starts_late_raises_the_error_before() -> None:
    """A backoff that ends past the deadline (a busy machine): the call
    fails with the previous attempt's error, not DEADLINE_EXCEEDED (a
    retry never extends the deadline)."""
    st = state(timeout=0.2)
    assert answer(st, reply(14, message="draining")) is None  # retry planned
    st.deadline = time.monotonic() - 0.001  # ... and the sleep overslept
    with pytest.raises(nngrpc.RpcError) as e:
        st.head()
    assert (e.value.code(), e.value.details(), e.value.call.attempts) == (
        StatusCode.UNAVAILABLE, "draining", 1)
    assert state(timeout=5.0).expired("x").code() is StatusCode.DEADLINE_EXCEEDED


def test_deserializer_choice() -> None:
    assert _core.view_deserializer(None) is bytes
    fs = testing_pb2.EchoResponse.FromString
    assert _core.view_deserializer(fs) is fs  # parses the view, copies nothing
    kept: List[Any] = []
    custom = _core.view_deserializer(lambda b: kept.append(b) or b)
    buf = bytearray(b"abc")
    custom(memoryview(buf))
    buf[0] = ord("z")
    assert kept == [b"abc"] and type(kept[0]) is bytes  # a copy: safe to keep


# ---- cancellation (docs/compatibility.md, "Cancellation") -------------------------
def test_cancel_request_names_the_call_and_old_servers_turn_it_off() -> None:
    class Conn:
        cancels = True

    st = state(metadata=[("nngrpc-request-id", "rid-7")])
    req = rpc_pb2.Request.FromString(st.cancel_request())
    assert req.method == _core.CANCEL_METHOD
    assert dict(req.metadata) == {_core.CANCEL_KEY: "rid-7"}
    assert 0 < req.timeout_us <= 10_000_000 and req.payload == b""
    conn = Conn()
    ok = rpc_pb2.Response(code=0).SerializeToString()
    st.cancel_answered(conn, ok, 0, len(ok))
    assert conn.cancels
    st.cancel_answered(conn, b"\xff", 0, 1)  # undecodable: changes nothing
    assert conn.cancels
    old = rpc_pb2.Response(code=12, message="unknown method").SerializeToString()
    st.cancel_answered(conn, old, 0, len(old))
    assert not conn.cancels
