"""The envelope additions (docs/compatibility.md) end to end: hoteld and
the Python client, each side also against what the other side sends by
hand.

- capability trailers: asked for, on replies of every code; not sent
  unasked; what the client learns from them, per connection;
- the request size limit: learned from the trailers, or after a lost
  connection with a Health/Check; refused unsent, never retried;
- compression: requests (gzip, zstd) decoded by hoteld within its limit,
  unknown encodings, broken streams; replies compressed above the
  threshold when accepted; the client's options, sync and asyncio;
- -bin metadata and trailers as bytes (Testing/Echo's return_metadata);
- status messages of 4 KiB and with NUL bytes (Testing/Fail's
  message_bytes).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import zstandard

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.v1 import rpc_pb2

from hoteld_fixture import Server, start_server, stop_server

ECHO = "/nngrpc.testing.v1.Testing/Echo"
FAIL = "/nngrpc.testing.v1.Testing/Fail"
LIMIT = 131072
CAPS = {"nngrpc-accept-encoding": "zstd,gzip", "nngrpc-max-message-bytes": str(LIMIT)}


@pytest.fixture(scope="module")
def small(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A hoteld --testing with a 128 KiB request limit."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-env-") as workdir:
        server = start_server(binary, workdir, ["--max-message-bytes", str(LIMIT)])
        try:
            yield server
        finally:
            stop_server(server)


def echo(data: bytes) -> bytes:
    return testing_pb2.EchoRequest(payload=data).SerializeToString()


def reserved(call: nngrpc.Call) -> Dict[str, Any]:
    return {k: v for k, v in call.trailing_metadata() if k.startswith("nngrpc-")}


def raw(url: str, method: str, body: bytes, metadata: List[Tuple[str, str]]) -> nngrpc.Call:
    """One call with the application's own reserved metadata (the client
    passes it on as given, and shows what the server answers)."""
    with nngrpc.Channel(url, retry=None) as ch:
        try:
            return ch.invoke(method, body, timeout=5.0, metadata=metadata)[1]
        except nngrpc.RpcError as e:
            return e.call


# ---- capability trailers (hoteld) ------------------------------------------------
def test_capability_trailers_only_when_asked(small: Server) -> None:
    asked = raw(small.tcp, ECHO, echo(b"x"), [("nngrpc-accept-encoding", "identity")])
    assert asked.code() is nngrpc.StatusCode.OK and reserved(asked) == CAPS
    unasked = raw(small.tcp, ECHO, echo(b"x"), [])
    assert reserved(unasked) == {}


@pytest.mark.parametrize("method, body, code", [
    ("/no.such/Method", b"", nngrpc.StatusCode.UNIMPLEMENTED),
    (FAIL, testing_pb2.FailRequest(code=5, message="m").SerializeToString(), nngrpc.StatusCode.NOT_FOUND),
    (ECHO, b"\xff\xff", nngrpc.StatusCode.INTERNAL),
])
def test_capability_trailers_on_every_code(small: Server, method: str, body: bytes,
                                           code: nngrpc.StatusCode) -> None:
    call = raw(small.tcp, method, body, [("nngrpc-accept-encoding", "gzip")])
    assert call.code() is code and reserved(call) == CAPS
    # (Deadline passed in the queue, and a refusing interceptor: the unit
    # tests of dispatch, tests/unit/test_dispatch.c.)


# ---- compressed requests (hoteld) -------------------------------------------------
@pytest.mark.parametrize("name, compress", [
    ("gzip", gzip.compress),
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    # zstd without the size in its frame header, as a stream writes it
    ("zstd", lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b)),
])
def test_compressed_request_is_decoded(small: Server, name: str, compress: Any) -> None:
    data = b"abc" * 30000  # 90 KB: under the limit, and well compressed
    with nngrpc.Channel(small.tcp) as ch:
        payload, call = ch.invoke(ECHO, compress(echo(data)), timeout=5.0,
                                  metadata=[("nngrpc-encoding", name)])
    assert testing_pb2.EchoResponse.FromString(payload).payload == data


def test_compressed_request_past_the_limit_is_refused(small: Server) -> None:
    bomb = gzip.compress(echo(b"\0" * (LIMIT + 1)))  # a few hundred bytes
    call = raw(small.tcp, ECHO, bomb, [("nngrpc-encoding", "gzip")])
    assert call.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(LIMIT) in call.details()
    zbomb = zstandard.ZstdCompressor(write_content_size=False).compress(echo(b"\0" * 10 * LIMIT))
    call = raw(small.tcp, ECHO, zbomb, [("nngrpc-encoding", "zstd")])
    assert call.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("name, body", [
    ("gzip", b"not gzip at all"),
    ("gzip", gzip.compress(b"x" * 5000)[:-10]),  # cut short
    ("gzip", gzip.compress(b"x") + b"trailing"),
    ("zstd", b"not zstd"),
    ("zstd", zstandard.ZstdCompressor().compress(b"x" * 5000)[:-3]),
])
def test_broken_compressed_request_is_internal(small: Server, name: str, body: bytes) -> None:
    call = raw(small.tcp, ECHO, body, [("nngrpc-encoding", name)])
    assert call.code() is nngrpc.StatusCode.INTERNAL and "decompress" in call.details()


def sp_call(url: str, req: Any) -> Any:
    """One request envelope over a bare SP socket (no client in the way:
    what hoteld sends is what comes back); the Response."""
    host, port = url[len("tcp://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x00SP\x00\x00\x30\x00\x00")
        body = struct.pack(">I", 0x80000001) + req.SerializeToString()
        s.sendall(struct.pack(">Q", len(body)) + body)
        got = b""
        while len(got) < 8 + 8 or len(got) < 16 + struct.unpack(">Q", got[8:16])[0]:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            got += chunk
    return rpc_pb2.Response.FromString(got[16 + 4:])


def test_unknown_request_encoding_is_not_run(small: Server) -> None:
    """UNIMPLEMENTED, not run, and the capability trailers even unasked."""
    r = sp_call(small.tcp, rpc_pb2.Request(method=ECHO, payload=echo(b"x"),
                                           metadata={"nngrpc-encoding": "br"}))
    assert r.code == nngrpc.StatusCode.UNIMPLEMENTED.value_int and '"br"' in r.message
    assert dict(r.trailers) == dict(CAPS, **{"nngrpc-not-run": "1"})
    # Unasked and plain: nothing new.
    r = sp_call(small.tcp, rpc_pb2.Request(method=ECHO, payload=echo(b"x")))
    assert r.code == 0 and dict(r.trailers) == {}


# ---- compressed replies (hoteld and the client) ----------------------------------
@pytest.mark.parametrize("size, data, compressed", [
    (100, b"x", False),  # under the threshold
    (5000, b"x", True),
    (5000, None, False),  # random bytes: compression would not help
])
def test_reply_compressed_when_accepted_and_worth_it(small: Server, size: int, data: Any,
                                                    compressed: bool) -> None:
    body = os.urandom(size) if data is None else data * size
    with nngrpc.Channel(small.tcp, compression="gzip") as ch:
        r, call = testing_nngrpc.TestingStub(ch).Echo.with_call(
            testing_pb2.EchoRequest(payload=body), timeout=5.0)
    assert r.payload == body
    assert call.compression == ("gzip" if compressed else "identity")
    assert reserved(call) == {}  # consumed by the client


def test_client_compression_sync_and_per_call(small: Server) -> None:
    data = b"compress me " * 5000
    with nngrpc.Channel(small.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for name in ("gzip", "zstd", "identity"):
            r, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=data), timeout=5.0,
                                          compression=name)
            assert r.payload == data and call.compression == name
        r, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=data), timeout=5.0)
        assert call.compression == "identity"  # the channel's: none
    with pytest.raises(ValueError, match="unknown compression"):
        nngrpc.Channel(small.tcp, compression="brotli")


def test_client_compression_asyncio(small: Server) -> None:
    data = b"compress me " * 5000

    async def main() -> List[str]:
        async with nngrpc.aio.Channel(small.tcp, compression="zstd") as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            calls = await asyncio.gather(*(
                stub.Echo.with_call(testing_pb2.EchoRequest(payload=data), timeout=5.0)
                for _ in range(20)))
            assert all(r.payload == data for r, _ in calls)
            return [c.compression for _, c in calls]

    assert set(asyncio.run(main())) == {"zstd"}


def test_decompressed_reply_within_max_receive(small: Server) -> None:
    """A reply that fits compressed but not decompressed is refused."""
    data = b"z" * 60000
    with nngrpc.Channel(small.tcp, compression="gzip", max_receive_message_bytes=20000) as ch:
        with pytest.raises(nngrpc.RpcError) as e:
            testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(payload=data), timeout=5.0)
    assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_receive_message_bytes" in e.value.details()


# ---- the size limit (the client) --------------------------------------------------
def test_limit_learned_on_the_connection_refuses_unsent(small: Server) -> None:
    with nngrpc.Channel(small.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        stub.Echo(testing_pb2.EchoRequest(payload=b"first"), timeout=5.0)
        fds = ch._open_fds()
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Echo(testing_pb2.EchoRequest(payload=b"x" * LIMIT), timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(LIMIT) in e.value.details() and "not sent" in e.value.details()
        assert e.value.call.attempts == 1 and ch._open_fds() == fds
        # Exactly at the limit goes through (the learned limit is the
        # server's own, counted on the same SP message).
        stub.Echo(testing_pb2.EchoRequest(payload=b"x" * (LIMIT - 200)), timeout=5.0)


@pytest.mark.parametrize("idempotent", [True, False])
def test_limit_learned_after_the_connection_is_lost(small: Server, idempotent: bool) -> None:
    """The first call of a connection is over the limit: the server drops
    the connection; the client asks Health/Check and fails the call
    RESOURCE_EXHAUSTED at once, whatever the method, never retried."""
    with nngrpc.Channel(small.tcp) as ch:
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            ch.invoke(ECHO, echo(b"x" * (LIMIT + 1000)), timeout=5.0, idempotent=idempotent)
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(LIMIT) in e.value.details() and e.value.call.attempts == 1
        assert time.monotonic() - t0 < 2.0
        # The probed connection is kept, knowing the limit.
        assert ch.call(ECHO, echo(b"ok"), timeout=5.0)


def test_limit_learned_asyncio(small: Server) -> None:
    async def main() -> Tuple[nngrpc.StatusCode, int, str]:
        async with nngrpc.aio.Channel(small.tcp) as ch:
            try:
                await ch.invoke(ECHO, echo(b"x" * (LIMIT + 1000)), timeout=5.0, idempotent=True)
            except nngrpc.RpcError as e:
                return e.code(), e.call.attempts, e.details()
            raise AssertionError("sent")

    code, attempts, details = asyncio.run(main())
    assert code is nngrpc.StatusCode.RESOURCE_EXHAUSTED and attempts == 1 and str(LIMIT) in details


def test_compression_makes_a_large_request_fit(small: Server) -> None:
    """Over the SP limit uncompressed, under it compressed (and the payload
    under the limit too: hoteld stops decompressing there)."""
    data = b"y" * (LIMIT - 1000)
    message = testing_pb2.EchoRequest(payload=data)
    with nngrpc.Channel(small.tcp, compression="gzip", max_message_bytes=LIMIT // 2) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        stub.Echo(testing_pb2.EchoRequest(payload=b"learn"), timeout=5.0)
        assert stub.Echo(message, timeout=5.0).payload == data
        with pytest.raises(nngrpc.RpcError) as e:  # the payload itself is over
            stub.Echo(testing_pb2.EchoRequest(payload=b"y" * (LIMIT + 1)), timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED


# ---- -bin metadata and trailers ---------------------------------------------------
def test_bin_metadata_round_trip(small: Server) -> None:
    blob = bytes(range(256)) + b"\0\0"
    with nngrpc.Channel(small.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        _, call = stub.Echo.with_call(
            testing_pb2.EchoRequest(return_metadata=["a-bin", "b-bin", "c-bin", "text"]),
            timeout=5.0,
            metadata=[("a-bin", blob),
                      ("b-bin", base64.b64encode(b"\x01\x02").decode()),  # padded text
                      ("c-bin", "not base64!"),  # not sent back
                      ("text", "plain")])
    got = dict(call.trailing_metadata())
    assert got == {"a-bin": blob, "b-bin": b"\x01\x02", "text": "plain"}


def test_bin_metadata_needs_a_bin_key(small: Server) -> None:
    with nngrpc.Channel(small.tcp) as ch:
        with pytest.raises(TypeError, match="-bin"):
            ch.call(ECHO, b"", timeout=5.0, metadata=[("plain", b"bytes")])  # type: ignore[list-item]


# ---- status messages ---------------------------------------------------------------
def test_status_messages_4k_and_nul(small: Server) -> None:
    with nngrpc.Channel(small.tcp, retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for msg, want in [("é" * 2048, "é" * 2048),  # 4096 bytes
                          ("é" * 2049, "é" * 2048),  # cut on a boundary
                          ("x" * 4095 + "é", "x" * 4095)]:
            with pytest.raises(nngrpc.RpcError) as e:
                stub.Fail(testing_pb2.FailRequest(code=9, message=msg), timeout=5.0)
            assert e.value.details() == want
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Fail(testing_pb2.FailRequest(code=9, message_bytes=b"a\0b\xffc"), timeout=5.0)
        assert e.value.details() == "a\0b?c"


# ---- the CLI -----------------------------------------------------------------------
def test_cli_bin_metadata_and_compression(small: Server) -> None:
    req = '{"payload": "%s", "returnMetadata": ["k-bin"]}' % base64.b64encode(b"x" * 3000).decode()
    r = subprocess.run(
        [sys.executable, "-m", "nngrpc", small.tcp, "call", "nngrpc.testing.v1.Testing/Echo",
         req, "-v", "-H", "k-bin=AP8", "--compression", "gzip"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "trailer: k-bin: AP8=" in r.stderr  # bytes 00 ff, shown in base64
    assert "compression: gzip" in r.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "nngrpc", small.tcp, "call", "nngrpc.testing.v1.Testing/Echo",
         "{}", "-H", "k-bin=not base64!"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "base64" in bad.stderr


# ---- in process isolation --------------------------------------------------------
def test_additions_in_process_isolation(request: pytest.FixtureRequest) -> None:
    """Handlers in worker processes (--isolation process): the worker
    decompresses the request, its status message (NUL and all) and -bin
    trailers come back through the front end, which compresses the reply."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-env-") as workdir:
        server = start_server(binary, workdir, ["--isolation", "process", "--workers", "2",
                                                "--max-message-bytes", str(LIMIT)])
        try:
            with nngrpc.Channel(server.tcp, retry=None, compression="zstd") as ch:
                stub = testing_nngrpc.TestingStub(ch)
                data = b"isolated " * 2000
                for _ in range(2):  # the second request goes compressed
                    r, call = stub.Echo.with_call(
                        testing_pb2.EchoRequest(payload=data, return_metadata=["k-bin"]),
                        timeout=10.0, metadata=[("k-bin", b"\x00\x01")])
                    assert r.payload == data and call.compression == "zstd"
                    assert dict(call.trailing_metadata()) == {"k-bin": b"\x00\x01"}
                for msg in (b"a\0b", "é".encode() * 2049):
                    with pytest.raises(nngrpc.RpcError) as e:
                        stub.Fail(testing_pb2.FailRequest(code=9, message_bytes=msg), timeout=10.0)
                    assert e.value.details().encode() == msg[:4096]
                with pytest.raises(nngrpc.RpcError) as e:
                    stub.Echo(testing_pb2.EchoRequest(payload=b"x" * LIMIT), timeout=10.0)
                assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            stop_server(server)
