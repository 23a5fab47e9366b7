"""The Testing service through the real hoteld: what the server answers."""

from __future__ import annotations

import socket
import struct
import time

import pytest

import nngrpc
from nngrpc._transport import dial, parse_url
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.v1 import rpc_pb2

from hoteld_fixture import Server

ECHO = "/nngrpc.testing.v1.Testing/Echo"
NON_OK = [c for c in nngrpc.StatusCode if c is not nngrpc.StatusCode.OK]


@pytest.mark.parametrize("size", [0, 64, 1024 * 1024], ids=["0B", "64B", "1MiB"])
def test_echo_returns_the_payload(stub: testing_nngrpc.TestingStub, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    resp, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=payload), timeout=5.0)
    assert resp.payload == payload
    assert call.code() is nngrpc.StatusCode.OK
    assert call.details() == ""


def test_echo_with_metadata(stub: testing_nngrpc.TestingStub) -> None:
    req = testing_pb2.EchoRequest(payload=b"md")
    assert stub.Echo(req, timeout=2.0, metadata={"k": "v"}).payload == b"md"
    assert stub.Echo(req, 2.0, [("a", "1"), ("b", "2")]).payload == b"md"
    with pytest.raises(ValueError):
        stub.Echo(req, timeout=2.0, metadata=[("a", "1"), ("a", "2")])


def test_echo_names_the_host_when_asked(stub: testing_nngrpc.TestingStub) -> None:
    """Metadata testing-hostname: the trailer of that key is the server's
    host name (how tests behind DNS round-robin tell replicas apart)."""
    req = testing_pb2.EchoRequest(payload=b"who")
    resp, call = stub.Echo.with_call(req, timeout=2.0, metadata={"testing-hostname": ""})
    assert resp.payload == b"who"
    assert dict(call.trailing_metadata()) == {"testing-hostname": socket.gethostname()}
    _, call = stub.Echo.with_call(req, timeout=2.0)
    assert dict(call.trailing_metadata()) == {}


def test_server_timings_are_reported(stub: testing_nngrpc.TestingStub) -> None:
    _, call = stub.Sleep.with_call(testing_pb2.SleepRequest(ms=20), timeout=5.0)
    assert call.run_us >= 20_000
    assert call.queue_us < 1_000_000


def test_unknown_method_is_unimplemented(channel: nngrpc.Channel) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        channel.call("/nngrpc.testing.v1.Testing/NoSuchMethod", b"", timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchMethod" in e.value.details()


def test_undecodable_payload_is_internal(channel: nngrpc.Channel) -> None:
    # Field 1 (bytes) claims 5 bytes but only 2 follow: not an EchoRequest.
    with pytest.raises(nngrpc.RpcError) as e:
        channel.call(ECHO, b"\x0a\x05ab", timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.INTERNAL
    assert e.value.details(), "INTERNAL should say what failed"


def test_undecodable_envelope_is_internal(hoteld: Server) -> None:
    """A raw SP request whose body is not a Request envelope."""
    pipe = dial(parse_url(hoteld.tcp), time.monotonic() + 5, 1 << 20)
    try:
        reply = pipe.request(b"\xff\xff\xff\xff\x0f garbage", time.monotonic() + 5)
    finally:
        pipe.close()
    resp = rpc_pb2.Response.FromString(reply)
    assert nngrpc.StatusCode.from_int(resp.code) is nngrpc.StatusCode.INTERNAL
    assert resp.message


def test_frame_without_request_id_is_dropped(hoteld: Server, stub: testing_nngrpc.TestingStub) -> None:
    """A body too short for an SP request id: NNG's REP closes the pipe;
    the server keeps serving everyone else."""
    host, port = hoteld.tcp[len("tcp://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x00SP\x00\x00\x30\x00\x00" + struct.pack(">Q", 2) + b"\x01\x02")
        assert s.recv(8) == b"\x00SP\x00\x00\x31\x00\x00"
        assert s.recv(100) == b""  # closed, no reply
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"ok"), timeout=2.0).payload == b"ok"


@pytest.mark.parametrize("code", NON_OK, ids=lambda c: c.name)
def test_fail_returns_each_code(stub: testing_nngrpc.TestingStub, code: nngrpc.StatusCode) -> None:
    message = "failing with %s" % code.name
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Fail(testing_pb2.FailRequest(code=code.value_int, message=message), timeout=2.0)
    assert e.value.code() is code
    assert e.value.details() == message
    assert isinstance(e.value.trailing_metadata(), tuple)


def test_fail_with_ok_is_ok(stub: testing_nngrpc.TestingStub) -> None:
    resp, call = stub.Fail.with_call(testing_pb2.FailRequest(code=0, message="fine"), timeout=2.0)
    assert resp == testing_pb2.FailResponse()
    assert call.code() is nngrpc.StatusCode.OK


@pytest.mark.parametrize("code", [17, -1])
def test_fail_out_of_range_is_invalid_argument(stub: testing_nngrpc.TestingStub, code: int) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Fail(testing_pb2.FailRequest(code=code, message="x"), timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.INVALID_ARGUMENT


def test_sleep_past_timeout_is_deadline_exceeded(stub: testing_nngrpc.TestingStub) -> None:
    timeout = 0.2
    t0 = time.monotonic()
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Sleep(testing_pb2.SleepRequest(ms=2000), timeout=timeout)
    elapsed = time.monotonic() - t0
    assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
    assert timeout - 0.005 <= elapsed < timeout + 0.05, elapsed


def test_sleep_within_timeout_is_ok(stub: testing_nngrpc.TestingStub) -> None:
    resp = stub.Sleep(testing_pb2.SleepRequest(ms=50), timeout=2.0)
    assert 50_000 <= resp.slept_us < 1_000_000
