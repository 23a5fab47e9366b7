"""Hostile transport input: hoteld must not crash, hang or leak.

After every hostile action the server must answer a normal call correctly
(faultlib.assert_serves: Echo of random bytes on a fresh connection, and
Health SERVING), and its VmRSS must come back: each action first runs as
a warm-up round (as long as the measured one where it runs on many
threads, so that every malloc arena reaches its high-water mark), then
again, and the growth over that second round must stay under
faultlib.rss_tolerance_kib() (5 MiB plain, 40 MiB ASan; the reasons are
there).  Descriptor counts (/proc/PID/fd) must return to the
baseline once the test's connections are closed.  Against the ASan build
the final SIGTERM also runs LSan (the fixture fails on any report).

A test marked xfail is a bug, described in its reason. The one open:
libnng 1.5.2's pipe reaper wedging on connections reset mid-receive (a
race, so the mark is not strict; fixed upstream in nng 1.6). It is marked
only when the hoteld under test has a libnng older than 1.6 mapped: against
Debian 13's libnng 1.10.1 (make fault-test-trixie) it is a strict test,
and it passes. Fixed and now
plain tests: a client that never reads its replies starving every other
client; Reload from a FIFO or from /dev/zero.
"""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Dict, Iterator, List, Tuple

import pytest
from google.protobuf import descriptor_pb2

import nngrpc
from faultlib import (
    ECHO,
    FAIL,
    MiB,
    PROTO_REP,
    PROTO_REQ,
    Hoteld,
    MemoryCheck,
    RawConn,
    asan_env,
    assert_serves,
    code_of,
    envelope,
    is_asan,
    req_body,
    running_libnng_version,
    sp_frame,
    sp_header,
    spawn_hoteld,
    wait_for,
)
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.health.v1 import health_nngrpc, health_pb2
from nngrpc.reflection.v1 import reflection_nngrpc, reflection_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.v1 import rpc_pb2

MAX_MSG = 4 * MiB  # hoteld's default --max-message-bytes, set explicitly below
HOTELS = "20000"  # enough for real searches, quick to build under ASan
Code = nngrpc.StatusCode


@pytest.fixture(scope="module")
def server(hoteld_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hoteld]:
    """One hoteld for the module: default workers (32) and queue (256),
    the hotel service, --testing, 4 MiB message limit."""
    workdir = str(tmp_path_factory.mktemp("hostile"))
    h = spawn_hoteld(
        hoteld_binary,
        workdir,
        ["--hotels", HOTELS, "--max-message-bytes", str(MAX_MSG)],
    )
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def fresh(server: Hoteld) -> Iterator[Hoteld]:
    """The module's server, checked healthy before and after the test, and
    its descriptors back to where they were."""
    assert_serves(server)
    fds = server.fds()
    yield server
    assert_serves(server, what="the test")
    assert wait_for(lambda: server.fds() <= fds, 5.0), (
        "hoteld holds %d descriptors, %d before the test" % (server.fds(), fds)
    )


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def ld(field: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return key(field, 2) + varint(len(data)) + data


def nested_ld(depth: int, field: int = 99) -> bytes:
    """depth length-delimited fields, each inside the one before."""
    heads: List[bytes] = []
    n = 0
    for _ in range(depth):
        h = key(field, 2) + varint(n)
        heads.append(h)
        n += len(h)
    return b"".join(reversed(heads))


def nested_groups(depth: int, field: int = 99) -> bytes:
    """depth START_GROUP tags, then as many END_GROUP tags."""
    return key(field, 3) * depth + key(field, 4) * depth


def echo_payload(data: bytes) -> bytes:
    return testing_pb2.EchoRequest(payload=data).SerializeToString()


# ---- before and around the SP handshake ---------------------------------------
BAD_HEADERS = {
    "random-4KiB": None,  # filled per connection
    "http-get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls-client-hello": bytes.fromhex("160301020001000200") + b"\x00" * 64,
    "bad-magic": b"\x00SQ\x00" + struct.pack(">HH", PROTO_REQ, 0),
    "reserved-bits": b"\x00SP\x00" + struct.pack(">HH", PROTO_REQ, 1),
    "proto-rep": sp_header(PROTO_REP),
    "proto-pair1": sp_header(0x11),
    "proto-pub": sp_header(0x20),
    "proto-surveyor": sp_header(0x62),
    "proto-ffff": sp_header(0xFFFF),
}


@pytest.mark.parametrize("kind", sorted(BAD_HEADERS))
def test_bad_handshake_is_dropped(fresh: Hoteld, kind: str) -> None:
    """Random bytes with no SP header, a bad SP header, a wrong protocol id:
    NNG closes the connection; the server keeps serving, fds and memory
    come back."""
    rng = random.Random(kind)
    mem = MemoryCheck(fresh)

    def round_(n: int) -> None:
        for _ in range(n):
            data = BAD_HEADERS[kind]
            if data is None:
                data = rng.randbytes(4096)
            with RawConn(fresh.port) as c:
                try:
                    c.send(data)
                except (BrokenPipeError, ConnectionResetError):
                    continue  # closed before we finished: also fine
                assert c.closed_by_peer(3.0), "%s: connection not closed by hoteld" % kind

    round_(5)
    mem.warmed()
    round_(60)
    assert_serves(fresh, what=kind)
    mem.check("bad handshake " + kind)


def test_handshake_never_finished(fresh: Hoteld) -> None:
    """Connections that send half a header and stay silent (NNG drops them
    after its 10 s negotiation timeout) must not stop other clients."""
    conns = []
    try:
        for i in range(100):
            c = RawConn(fresh.port)
            c.send(b"\x00SP"[: i % 3 + 1])
            conns.append(c)
        assert_serves(fresh, what="100 half handshakes")
    finally:
        for c in conns:
            c.close()


# ---- frames after the handshake ------------------------------------------------
def test_truncated_frame_then_close(fresh: Hoteld) -> None:
    """The length says 1000, 10 bytes come, the client closes."""
    mem = MemoryCheck(fresh)

    def round_(n: int) -> None:
        for i in range(n):
            with RawConn(fresh.port) as c:
                c.handshake()
                c.send(struct.pack(">Q", 1000) + b"\x80\x00\x00\x01" + b"x" * 6)
                if i % 2:  # half of them reset instead of FIN
                    c.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )

    round_(20)
    mem.warmed()
    round_(200)
    assert_serves(fresh, what="truncated frames")
    mem.check("truncated frame then close")


def test_truncated_frames_left_silent(fresh: Hoteld) -> None:
    """200 connections each announce a message of the maximum size, send
    10 bytes and stay silent.  NNG has no receive timeout on a pipe; the
    server's --frame-timeout (10 s by default; test_connections.py) ends
    them, so they stay open for this test's second: others must still be
    served, and the announced 4 MiB buffers (calloc'd, never touched) must
    not become resident memory."""
    before_rss = fresh.rss()
    conns: List[RawConn] = []
    try:
        for _ in range(200):
            c = RawConn(fresh.port)
            c.handshake()
            c.send(struct.pack(">Q", MAX_MSG) + b"\x80\x00\x00\x01" + b"x" * 6)
            conns.append(c)
        time.sleep(0.2)
        for c in conns[:5]:
            assert not c.closed_by_peer(0.05), "hoteld closed a slow connection"
        assert_serves(fresh, what="200 silent partial frames")
        held = fresh.rss()
        print(
            "200 silent 4 MiB partial frames: VmRSS %d -> %d KiB, VmSize %s"
            % (before_rss, held, open("/proc/%d/status" % fresh.pid).read().split("VmSize:")[1].split("\n")[0].strip())
        )
        assert held - before_rss < 64 * 1024, "silent partial frames cost %d KiB of RSS" % (
            held - before_rss
        )
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize(
    "length",
    [MAX_MSG + 1, 2**32, 2**63, 2**64 - 1],
    ids=["max+1", "2^32", "2^63", "2^64-1"],
)
def test_oversize_frame_closes_connection(fresh: Hoteld, length: int) -> None:
    """A length over --max-message-bytes: NNG drops the connection (before
    allocating anything); the server survives."""
    mem = MemoryCheck(fresh)

    def round_(n: int) -> None:
        for _ in range(n):
            with RawConn(fresh.port) as c:
                c.handshake()
                c.send(struct.pack(">Q", length) + b"\x80\x00\x00\x01" + b"y" * 60)
                assert c.closed_by_peer(3.0), "oversize frame: connection not closed"

    round_(5)
    mem.warmed()
    round_(100)
    mem.check("oversize frame %d" % length)


def test_oversize_frame_with_its_body(fresh: Hoteld) -> None:
    """A client that really sends max+1 bytes: NNG closes after the length,
    the client sees a reset, the server survives."""
    with RawConn(fresh.port) as c:
        c.handshake()
        body = req_body(envelope(ECHO, b"z" * (MAX_MSG)), 1)
        assert len(body) > MAX_MSG
        try:
            c.send(sp_frame(body))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.closed_by_peer(3.0)


def test_frame_without_request_id(fresh: Hoteld) -> None:
    """A body shorter than the 4-byte request id: REP kicks the peer."""
    for body in (b"", b"\x80", b"\x80\x00\x00"):
        with RawConn(fresh.port) as c:
            c.handshake()
            c.send(sp_frame(body))
            assert c.closed_by_peer(3.0), "body %r: connection not closed" % body


def test_backtrace_without_end_is_dropped(fresh: Hoteld) -> None:
    """Ten hop ids without the top bit (a backtrace longer than the TTL):
    REP drops the message silently and the connection still works."""
    with RawConn(fresh.port) as c:
        c.handshake()
        c.send(sp_frame(b"\x00\x00\x00\x01" * 10 + b"junk"))
        resp = c.call(envelope(ECHO, echo_payload(b"after")), rid=77)
        assert resp.code == 0
        assert testing_pb2.EchoResponse.FromString(resp.payload).payload == b"after"


# ---- valid SP frames, garbage envelopes ---------------------------------------
# (name, body, codes the server may answer)
GARBAGE_ENVELOPES = [
    ("wire-type-7", b"\x0f", {Code.INTERNAL}),
    ("ff-ff-ff", b"\xff\xff\xff", {Code.INTERNAL}),
    ("truncated-varint", b"\x10\xff\xff", {Code.INTERNAL}),
    ("length-overrun", b"\x0a\x64abc", {Code.INTERNAL}),
    ("length-2^63", b"\x0a" + varint(2**63) + b"abc", {Code.INTERNAL}),
    ("field-zero", b"\x00\x01", {Code.INTERNAL}),
    ("group-unclosed", b"\x0b\x0a\x01a", {Code.INTERNAL}),
    ("timeout-as-bytes", b"\x12\x03abc", {Code.INTERNAL}),
    ("method-as-varint", b"\x08\x05", {Code.INTERNAL}),
    ("empty", b"", {Code.UNIMPLEMENTED}),
    ("only-timeout", b"\x10\x01", {Code.UNIMPLEMENTED, Code.DEADLINE_EXCEEDED}),
    ("nul-in-method", ld(1, b"/a\x00b/c"), {Code.UNIMPLEMENTED}),
    ("method-not-utf8", ld(1, b"/\xff\xfe/\xc3"), {Code.UNIMPLEMENTED, Code.INTERNAL}),
    ("method-64KiB", ld(1, b"/" + b"m" * 65536), {Code.UNIMPLEMENTED}),
    ("metadata-garbage", ld(1, ECHO.encode()) + ld(3, b"\xff\xff"), {Code.INTERNAL}),
]


@pytest.mark.parametrize("name,body,codes", GARBAGE_ENVELOPES, ids=[g[0] for g in GARBAGE_ENVELOPES])
def test_nngcat_garbage_envelope(
    fresh: Hoteld, tmp_path: "os.PathLike[str]", name: str, body: bytes, codes: set
) -> None:
    """nngcat (nng's own REQ client) sends a valid SP frame whose body is
    not a valid Request: the reply is a Response that decodes, with a
    clear status (INTERNAL for what does not decode, as gRPC does)."""
    if not _have("nngcat"):
        pytest.skip("nngcat (nng-utils) not installed")
    path = os.path.join(str(tmp_path), "body.bin")
    with open(path, "wb") as f:
        f.write(body)
    out = subprocess.run(
        ["nngcat", "--req", "--dial", fresh.tcp, "--file", path, "--raw", "--recv-timeout", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    resp = rpc_pb2.Response.FromString(out.stdout)
    assert Code.from_int(resp.code) in codes, (resp.code, resp.message)
    assert resp.message, "status %d without a message" % resp.code


def test_random_envelopes_bulk(fresh: Hoteld) -> None:
    """3000 random bodies (and random mutations of a valid Echo request) on
    valid frames: every one gets a decodable Response, never a crash."""
    rng = random.Random(20261125)
    valid = envelope(ECHO, echo_payload(b"x" * 64), timeout_us=1_000_000)
    mem = MemoryCheck(fresh)
    seen: Dict[str, int] = {}

    def round_(n: int) -> None:
        with RawConn(fresh.port, timeout=5.0) as c:
            c.handshake()
            for i in range(n):
                if i % 2:
                    body = rng.randbytes(rng.randrange(0, 2048))
                else:
                    b = bytearray(valid)
                    for _ in range(rng.randrange(1, 8)):
                        b[rng.randrange(len(b))] = rng.randrange(256)
                    body = bytes(b[: rng.randrange(1, len(b) + 1)])
                resp = c.call(body, rid=i + 1)
                name = Code.from_int(resp.code).name
                seen[name] = seen.get(name, 0) + 1
                assert resp.code in (0, 3, 4, 12, 13), (resp.code, resp.message)

    round_(300)
    mem.warmed()
    round_(3000)
    print("random envelopes: %s" % seen)
    mem.check("random envelopes")


# ---- big and deep messages -----------------------------------------------------
def test_100k_metadata_entries(fresh: Hoteld) -> None:
    """A Request with 100,000 metadata entries (about 1.5 MB, inside the
    4 MiB limit): the call works and memory comes back."""
    md = {"k%06d" % i: "v" for i in range(100_000)}
    with nngrpc.Channel(fresh.tcp) as ch:
        got = testing_nngrpc.TestingStub(ch).Echo(
            testing_pb2.EchoRequest(payload=b"md"), timeout=20, metadata=md
        )
        assert got.payload == b"md"
    # The same request again and again, serialized once.
    env = envelope(ECHO, echo_payload(b"md"), 20_000_000, md)
    assert len(env) < MAX_MSG

    def round_(n: int) -> None:
        with RawConn(fresh.port, timeout=20) as c:
            c.handshake()
            for i in range(n):
                resp = c.call(env, rid=i + 1)
                assert resp.code == 0, resp.message
                assert testing_pb2.EchoResponse.FromString(resp.payload).payload == b"md"

    # Echo runs inline on NNG's threads, each with its own malloc arena:
    # warm them all up with as many calls as are measured.
    mem = MemoryCheck(fresh)
    round_(30)
    mem.warmed()
    round_(30)
    mem.check("100k metadata entries (%d bytes)" % len(env), again=lambda: round_(30))


@pytest.mark.parametrize(
    "name,request_,codes",
    [
        ("100k-same-amenity", hotel_pb2.SearchRequest(amenities=["wifi"] * 100_000), {Code.OK}),
        (
            "100k-distinct-amenities",
            hotel_pb2.SearchRequest(amenities=["a%d" % i for i in range(100_000)]),
            {Code.INVALID_ARGUMENT},
        ),
        ("query-1MiB", hotel_pb2.SearchRequest(query="spa " * 262_144), {Code.INVALID_ARGUMENT}),
        ("token-1MiB", hotel_pb2.SearchRequest(page_token="A" * MiB), {Code.INVALID_ARGUMENT}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_huge_search_requests(
    fresh: Hoteld, name: str, request_: hotel_pb2.SearchRequest, codes: set
) -> None:
    """Huge repeated and string fields in a SearchRequest: a clear status
    within a second or two, and memory comes back."""
    with nngrpc.Channel(fresh.tcp) as ch:
        stub = hotel_nngrpc.HotelSearchStub(ch)
        mem = MemoryCheck(fresh)
        t0 = time.monotonic()
        first = code_of(lambda: stub.Search(request_, timeout=10))
        took = time.monotonic() - t0
        assert getattr(Code, first) in codes, first
        assert took < 5.0, "%s took %.1f s" % (name, took)

        def round_() -> None:
            for _ in range(30):
                assert getattr(Code, code_of(lambda: stub.Search(request_, timeout=10))) in codes

        # Search runs on the 32 workers, which share up to 8 x CPUs malloc
        # arenas: about 25 calls bring most of them to their high-water mark
        # (check() repeats a round that still found a cold one).
        round_()
        mem.warmed()
        round_()
        mem.check("huge search " + name, again=round_)


def test_huge_strings_everywhere(fresh: Hoteld) -> None:
    """1 MiB strings in Suggest, Health, Reflection and Fail: clear
    statuses (ASCII, so the status messages stay valid UTF-8)."""
    big = "q" * MiB
    with nngrpc.Channel(fresh.tcp) as ch:
        hotels = hotel_nngrpc.HotelSearchStub(ch)
        health = health_nngrpc.HealthStub(ch)
        refl = reflection_nngrpc.ReflectionStub(ch)
        testing = testing_nngrpc.TestingStub(ch)
        calls = {
            "Suggest": lambda: hotels.Suggest(hotel_pb2.SuggestRequest(prefix=big, limit=5), timeout=10),
            "Health": lambda: health.Check(health_pb2.HealthCheckRequest(service=big), timeout=10),
            "Reflection": lambda: refl.FileContainingSymbol(
                reflection_pb2.FileContainingSymbolRequest(symbol=big), timeout=10
            ),
            "Fail": lambda: testing.Fail(testing_pb2.FailRequest(code=9, message=big), timeout=10),
            "GetHotel": lambda: hotels.GetHotel(hotel_pb2.GetHotelRequest(id=2**64 - 1), timeout=10),
        }
        mem = MemoryCheck(fresh)
        first = {k: code_of(f) for k, f in calls.items()}
        print("1 MiB strings: %s" % first)
        assert first["Fail"] == "FAILED_PRECONDITION"
        for k, v in first.items():
            assert v not in ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"), (k, v)
        for _ in range(5):
            assert {k: code_of(f) for k, f in calls.items()} == first
        mem.warmed()
        for _ in range(5):
            assert {k: code_of(f) for k, f in calls.items()} == first
    mem.check("1 MiB strings")


DEEP = 10_000


@pytest.mark.parametrize(
    "where",
    ["envelope", "echo-payload", "search-geo", "metadata-entry"],
)
@pytest.mark.parametrize("shape", ["nested-messages", "nested-groups"])
def test_deep_nesting(fresh: Hoteld, where: str, shape: str) -> None:
    """10,000-deep nesting of unknown fields (length-delimited fields inside
    each other, or START_GROUP tags) in the envelope, in a payload and in
    a known sub-message: protobuf-c skips unknown length-delimited fields
    without recursing and rejects groups, so the answer is OK (ignored) or
    INTERNAL (undecodable), never a stack overflow."""
    deep = nested_ld(DEEP) if shape == "nested-messages" else nested_groups(DEEP)
    if where == "envelope":
        env = envelope(ECHO, echo_payload(b"d")) + deep
    elif where == "echo-payload":
        env = envelope(ECHO, echo_payload(b"d") + deep)
    elif where == "search-geo":
        geo = hotel_pb2.GeoFilter(latitude=48.85, longitude=2.35, radius_km=5).SerializeToString()
        env = envelope("/hotel.v1.HotelSearch/Search", ld(2, geo + deep))
    else:
        env = ld(1, ECHO.encode()) + ld(3, ld(1, b"k") + ld(2, b"v") + deep) + ld(4, echo_payload(b"d"))
    with RawConn(fresh.port, timeout=10) as c:
        c.handshake()
        for i in range(20):
            resp = c.call(env, rid=i + 1)
            if shape == "nested-messages":
                assert resp.code == 0, (resp.code, resp.message)
            else:
                assert resp.code == Code.INTERNAL.value[0], (resp.code, resp.message)
                assert "cannot decode" in resp.message


def test_unknown_fields_ignored(fresh: Hoteld) -> None:
    """Unknown fields of every wire type in the envelope and in the
    payload are ignored: the call works and the payload comes back."""
    unknown = (
        key(50, 0) + varint(12345)
        + key(51, 1) + b"\x01" * 8
        + ld(52, b"unknown bytes")
        + key(53, 5) + b"\x02" * 4
        + key(536870911, 0) + varint(1)  # the largest field number
    )
    env = envelope(ECHO, echo_payload(b"kept") + unknown, timeout_us=2_000_000) + unknown
    with RawConn(fresh.port) as c:
        c.handshake()
        resp = c.call(env, rid=5)
    assert resp.code == 0, resp.message
    assert testing_pb2.EchoResponse.FromString(resp.payload).payload == b"kept"
    search = hotel_pb2.SearchRequest(query="spa", page_size=3).SerializeToString() + unknown
    with RawConn(fresh.port) as c:
        c.handshake()
        resp = c.call(envelope("/hotel.v1.HotelSearch/Search", search, 5_000_000) + unknown, rid=6)
    assert resp.code == 0, resp.message
    assert len(hotel_pb2.SearchResponse.FromString(resp.payload).hits) <= 3


# ---- every method ---------------------------------------------------------------
def list_methods(target: str) -> List[Tuple[str, str]]:
    """(full method name, input type) of every method of every service,
    from the server's reflection service."""
    out: List[Tuple[str, str]] = []
    with nngrpc.Channel(target) as ch:
        refl = reflection_nngrpc.ReflectionStub(ch)
        services = refl.ListServices(reflection_pb2.ListServicesRequest(), timeout=5).services
        for svc in services:
            fds = descriptor_pb2.FileDescriptorSet.FromString(
                refl.FileContainingSymbol(
                    reflection_pb2.FileContainingSymbolRequest(symbol=svc), timeout=5
                ).file_descriptor_set
            )
            for f in fds.file:
                for s in f.service:
                    if "%s.%s" % (f.package, s.name) != svc:
                        continue
                    for m in s.method:
                        out.append(("/%s/%s" % (svc, m.name), m.input_type.lstrip(".")))
    return out


def test_every_method_empty_and_garbage_payload(fresh: Hoteld) -> None:
    """Every method of every service the server lists (reflection) with an
    empty payload (all defaults) and with an undecodable one: a clear
    status every time (a known code, a message unless OK), never a crash.
    """
    methods = list_methods(fresh.tcp)
    services = {m.split("/")[1] for m, _ in methods}
    assert {
        "nngrpc.testing.v1.Testing",
        "hotel.v1.HotelSearch",
        "nngrpc.health.v1.Health",
        "nngrpc.reflection.v1.Reflection",
    } <= services, services
    table = []
    with nngrpc.Channel(fresh.tcp) as ch:
        for method, input_type in methods:
            for label, payload in (("empty", b""), ("garbage", b"\xff\xff\xff\xff")):
                try:
                    _, call = ch.invoke(method, payload, timeout=10)
                    code, details = call.code(), call.details()
                except nngrpc.RpcError as e:
                    code, details = e.code(), e.details()
                table.append((method, label, code.name, details))
                assert code not in (Code.UNKNOWN, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED), (
                    method, label, code, details,
                )
                if label == "garbage":
                    assert code is Code.INTERNAL and input_type in details, (method, code, details)
                else:
                    assert code is not Code.INTERNAL, (method, code, details)
                if code is not Code.OK:
                    assert details, "%s (%s payload): %s without a message" % (method, label, code)
    for row in table:
        print("%-55s %-7s %-20s %s" % row)


def test_blocking_methods_run_on_workers(hoteld_binary: str, workdir: str) -> None:
    """Sleep must run on a worker, never inline on NNG's threads: with one
    worker, two concurrent Sleep(300 ms) take 0.3 s and 0.6 s.  The
    server's new memory is not zero here (ASan's default 0xbe fill, or
    glibc's MALLOC_PERTURB_ for the plain build), as it need not be.
    (Was a bug until be8f2ed: method.m_inline was never initialised, so
    UBSan aborted at the first Search/Sleep, and with non-zero garbage the
    plain build ran Search, Suggest and Sleep on NNG's callback threads.)"""
    env = asan_env()
    env["MALLOC_PERTURB_"] = "65"  # new blocks filled with 0xbe, as ASan does
    # Admission off: the second Sleep waits 300 ms behind the first, longer
    # than CoDel's target and interval (it would be shed).
    h = spawn_hoteld(hoteld_binary, workdir, ["--hotels", "200", "--workers", "1",
                                              "--queue-target-ms", "0"], env=env)
    try:
        took: List[float] = []
        codes: List[str] = []
        with nngrpc.Channel(h.tcp, retry=None) as ch:
            stub = testing_nngrpc.TestingStub(ch)

            def sleep() -> None:
                t0 = time.monotonic()
                codes.append(code_of(lambda: stub.Sleep(testing_pb2.SleepRequest(ms=300), timeout=3)))
                took.append(time.monotonic() - t0)

            ts = [threading.Thread(target=sleep) for _ in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10)
            search = code_of(lambda: ch.call("/hotel.v1.HotelSearch/Search", b"", timeout=3))
        print("two Sleep(300 ms) on one worker: %s %s; Search: %s" % (codes, took, search))
        assert h.alive(), "hoteld died:\n" + h.log()[-3000:]
        assert codes == ["OK", "OK"] and search == "OK", (codes, search)
        assert max(took) > 0.55, "both Sleeps ran at once on one worker: %s" % took
    finally:
        if h.alive():
            h.stop()


# ---- status messages must stay valid UTF-8 ---------------------------------------
def test_long_non_ascii_status_message(fresh: Hoteld) -> None:
    """A long non-ASCII status message is cut at a character boundary.
    (Was a bug until 72380ec: nngrpc_call_error() cut at byte 511, in the
    middle of a character; Response.message is a proto3 string, so the
    Python client could not parse the reply and said INTERNAL.)"""
    with nngrpc.Channel(fresh.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Fail(testing_pb2.FailRequest(code=9, message="é" * 400), timeout=5)
    assert e.value.code() is Code.FAILED_PRECONDITION, (e.value.code(), e.value.details())
    assert e.value.details().startswith("éé")


INVALID_UTF8 = b"\xff\xfe\xc3("
ECHOED_STRINGS = [
    ("Fail.message", FAIL, key(1, 0) + varint(3) + ld(2, INVALID_UTF8)),
    ("Health.service", "/nngrpc.health.v1.Health/Check", ld(1, INVALID_UTF8)),
    (
        "FileContainingSymbol.symbol",
        "/nngrpc.reflection.v1.Reflection/FileContainingSymbol",
        ld(1, INVALID_UTF8),
    ),
    ("Search.amenities", "/hotel.v1.HotelSearch/Search", ld(5, INVALID_UTF8)),
]


@pytest.mark.parametrize("name,method,payload", ECHOED_STRINGS, ids=[e[0] for e in ECHOED_STRINGS])
def test_invalid_utf8_not_echoed(fresh: Hoteld, name: str, method: str, payload: bytes) -> None:
    """protobuf-c does not check UTF-8 in proto3 strings, and these
    handlers put the caller's string in their status message: a raw
    client's invalid UTF-8 must not come back as is (no protobuf library
    would parse the Response).  Fixed in 72380ec: invalid sequences
    become '?'."""
    with RawConn(fresh.port) as c:
        c.handshake()
        c.send(sp_frame(req_body(envelope(method, payload, 5_000_000), 9)))
        (size,) = struct.unpack(">Q", c.read_exact(8))
        body = c.read_exact(size)[4:]
    resp = rpc_pb2.Response.FromString(body)  # raises DecodeError on invalid UTF-8
    assert resp.code != 0 and resp.message, (name, resp.code, resp.message)


# ---- a client that never reads its replies -----------------------------------------
def test_client_that_never_reads(hoteld_binary: str, workdir: str) -> None:
    """A client pipelines 64 KiB Echo requests on one connection and never
    reads a reply, for up to 4 s.  Meanwhile other clients' calls (1 s
    deadline, probing every 0.25 s) must all succeed, and memory must stay
    bounded (contexts x reply size)."""
    h = spawn_hoteld(hoteld_binary, workdir, ["--no-hotels"])
    try:
        base = h.rss()
        env = envelope(ECHO, echo_payload(b"n" * 65536))
        stop = threading.Event()
        sent = [0]
        attacker_closed = [False]

        def attack() -> None:
            with RawConn(h.port, timeout=1.0) as c:
                c.handshake()
                c.sock.settimeout(0.2)
                end = time.monotonic() + 4.0
                pending = b""
                while not stop.is_set() and time.monotonic() < end and sent[0] < 20_000:
                    if not pending:
                        pending = sp_frame(req_body(env, sent[0] + 1))
                    try:
                        pending = pending[c.sock.send(pending):]
                    except socket.timeout:
                        continue  # hoteld stopped reading us: keep the pressure on
                    except OSError:
                        attacker_closed[0] = True  # hoteld dropped us: the fix
                        return
                    if not pending:
                        sent[0] += 1
                stop.wait(max(0.0, end - time.monotonic()))
                # End gracefully: finish the frame under way while reading
                # every reply, then close.  (Resetting a connection hoteld
                # is still receiving on can wedge libnng 1.5.2's pipe
                # reaper: test_abrupt_disconnects_... below.)
                drain_end = time.monotonic() + 10.0
                c.sock.setblocking(False)
                buf = bytearray()
                replies = 0
                want = sent[0] + (1 if pending else 0)
                while (pending or replies < want) and time.monotonic() < drain_end:
                    r, w, _ = select.select([c.sock], [c.sock] if pending else [], [], 0.2)
                    try:
                        if w:
                            pending = pending[c.sock.send(pending):]
                        if r:
                            data = c.sock.recv(1 << 20)
                            if not data:
                                break
                            buf += data
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        why[0] = repr(e)
                        break
                    while len(buf) >= 8:
                        (size,) = struct.unpack(">Q", buf[:8])
                        if len(buf) < 8 + size:
                            break
                        del buf[: 8 + size]
                        replies += 1
                drained[0] = time.monotonic() - drain_end + 10.0
                why[0] += " replies %d of %d, pending %d" % (replies, want, len(pending))

        drained = [0.0]
        why = [""]
        t = threading.Thread(target=attack, daemon=True)
        t.start()
        results = []
        peak = base
        with nngrpc.Channel(h.tcp, retry=None) as ch:
            stub = testing_nngrpc.TestingStub(ch)
            t_end = time.monotonic() + 4.0
            while time.monotonic() < t_end:
                time.sleep(0.25)
                t0 = time.monotonic()
                code = code_of(lambda: stub.Echo(testing_pb2.EchoRequest(payload=b"v"), timeout=1.0))
                results.append((code, round(time.monotonic() - t0, 3)))
                peak = max(peak, h.rss())
        stop.set()
        t.join(10)
        print(
            "never-reading client: %d requests sent, dropped by hoteld: %s (replies read back "
            "in %.1f s: %s); other clients: %s; VmRSS %d -> peak %d KiB"
            % (sent[0], attacker_closed[0], drained[0], why[0], results, base, peak)
        )
        contexts = 32 + 256 + 16
        assert peak - base < contexts * 2 * 65536 // 1024 + 32 * 1024
        failed = [r for r in results if r[0] != "OK"]
        assert not failed, "other clients' calls failed while one client did not read: %s" % results
        assert_serves(h, what="the non-reading client")
    finally:
        h.stop()


# ---- connections reset while hoteld is still receiving ------------------------------
# An xfail only where hoteld runs a libnng that has the bug: the mark is set
# from the version of the libnng the started hoteld has mapped, so the same
# test is a plain, strict test against nng >= 1.6 (the Debian 13 image,
# make fault-test-trixie). Not strict where it is an xfail: the race fires
# in most runs but not all, and a run where it does not fire passes.
NNG_REAPER_BUG = (
    "BUG (libnng %s; Debian 12 has 1.5.2): a TCP connection closed while hoteld is "
    "receiving on it can leave the protocol's receive aio in the tcp pipe's recvq after "
    "the pipe closed (tcptran_pipe_recv_cb runs between 'closed' and the rxaio stop). "
    "nng's single reaper thread then blocks forever in pipe_destroy -> rep0_pipe_stop -> "
    "nni_aio_stop(&p->aio_recv): from then on no closed connection is ever reaped (one "
    "descriptor leaked per connection, until EMFILE), and nng_close() after the drain "
    "never returns (serve.c's close guard then ends hoteld 5 s later). Fixed upstream in nng 1.6.0 (a1bc737b, nanomsg/nng#1636)"
)


def reset_while_sending(h: Hoteld, clients: int) -> None:
    """Each client pipelines 20 Echo requests of 64 KiB and resets the
    connection without reading: with libnng < 1.6 this wedges the reaper
    in most runs (NNG_REAPER_BUG)."""
    env = envelope(ECHO, echo_payload(b"r" * 65536))
    for _ in range(clients):
        with RawConn(h.port, timeout=0.5) as c:
            c.handshake()
            for i in range(20):
                try:
                    c.send(sp_frame(req_body(env, i + 1)))
                except OSError:
                    break
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


REAPER_GUARD_LINE = "libnng did not close the socket within"


def test_sigterm_ends_hoteld_even_with_a_stuck_reaper(hoteld_binary: str, workdir: str) -> None:
    """SIGTERM after connections were reset mid-request: hoteld exits 0
    within the drain plus serve.c's 5 s close guard, whatever libnng does.
    With libnng < 1.6 the resets wedge libnng's pipe reaper in most runs
    (nng_close() then never returns) and the guard must say so and leave;
    with a fixed libnng the guard must never fire."""
    h = spawn_hoteld(hoteld_binary, workdir, ["--no-hotels"])
    try:
        nng = running_libnng_version(h.pid)
        base = h.fds()
        reset_while_sending(h, 20)
        wedged = not wait_for(lambda: h.fds() <= base, 2.0)
        assert_serves(h, what="the reset connections")
        t0 = time.monotonic()
        h.server.proc.send_signal(signal.SIGTERM)
        try:
            h.server.proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("hoteld did not exit within 20 s of SIGTERM:\n" + h.log()[-3000:])
        took = time.monotonic() - t0
        guarded = REAPER_GUARD_LINE in h.log()
        print("libnng %s: descriptors %s; SIGTERM to exit %.2f s, close guard fired: %s"
              % (".".join(map(str, nng)), "leaked (reaper wedged)" if wedged else "back",
                 took, guarded))
        if nng >= (1, 6, 0):
            assert not guarded, "the close guard fired with libnng %s:\n%s" % (nng, h.log()[-3000:])
        elif wedged:
            assert guarded, "the reaper was wedged but the guard did not say so:\n" + h.log()[-3000:]
        h.stop()  # exit code 0 and no sanitizer report
    finally:
        if h.alive():
            h.server.proc.kill()
            h.server.proc.wait(10)


def test_abrupt_disconnects_do_not_leak_descriptors(
    hoteld_binary: str, workdir: str, request: pytest.FixtureRequest
) -> None:
    """20 clients each pipeline 20 Echo requests of 64 KiB and reset the
    connection without reading: every descriptor must come back, later
    connections too, and SIGTERM must still end hoteld."""
    h = spawn_hoteld(hoteld_binary, workdir, ["--no-hotels"])
    stopped = False
    try:
        nng = running_libnng_version(h.pid)
        print("hoteld runs libnng %s" % ".".join(map(str, nng)))
        assert nng, "cannot tell which libnng hoteld %d has mapped" % h.pid
        if nng < (1, 6, 0):
            request.applymarker(pytest.mark.xfail(
                strict=False, reason=NNG_REAPER_BUG % ".".join(map(str, nng))))
        base = h.fds()
        reset_while_sending(h, 20)
        back = wait_for(lambda: h.fds() <= base, 3.0)
        after_resets = h.fds()
        for i in range(100):
            with RawConn(h.port) as c:
                c.handshake()
                assert c.call(envelope(ECHO, echo_payload(b"ok"), 1_000_000), rid=i + 1).code == 0
        back2 = wait_for(lambda: h.fds() <= base, 3.0)
        print("hoteld fds: %d at start, %d after 20 reset clients, %d after 100 more connections"
              % (base, after_resets, h.fds()))
        assert back, "descriptors of reset connections not released: %d, %d before" % (after_resets, base)
        assert back2, "descriptors of later connections not released: %d, %d before" % (h.fds(), base)
        h.server.proc.send_signal(signal.SIGTERM)
        try:
            h.server.proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("hoteld did not exit within 15 s of SIGTERM (stuck in nng_close)")
        stopped = True
        h.stop()  # exit code and sanitizer check
    finally:
        if not stopped and h.alive():
            h.server.proc.kill()
            h.server.proc.wait(10)


# ---- connection churn --------------------------------------------------------------
def test_1000_connections_opened_and_dropped(fresh: Hoteld) -> None:
    """1000 connections in batches of 100, fast: a quarter just connect, a
    quarter handshake, a quarter send a Sleep(50 ms) and drop before the
    reply (a reply to a gone connection), a quarter make a call; half of
    all closes are resets.  The server still answers and its descriptors
    come back to the baseline."""
    base_fds = fresh.fds()
    mem = MemoryCheck(fresh)
    sleep_env = envelope("/nngrpc.testing.v1.Testing/Sleep",
                         testing_pb2.SleepRequest(ms=50).SerializeToString(), 2_000_000)
    echo_env = envelope(ECHO, echo_payload(b"c"), 2_000_000)
    peak = [0]

    def batch(n: int, start: int) -> None:
        conns: List[RawConn] = []
        try:
            for i in range(start, start + n):
                c = RawConn(fresh.port)
                conns.append(c)
                kind = i % 4
                if kind >= 1:
                    c.handshake()
                if kind == 2:
                    c.send(sp_frame(req_body(sleep_env, i)))
                elif kind == 3:
                    assert c.call(echo_env, rid=i).code == 0
            peak[0] = max(peak[0], fresh.fds())
        finally:
            for i, c in enumerate(conns):
                if i % 2:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()

    batch(100, 0)
    assert wait_for(lambda: fresh.fds() <= base_fds, 5.0)
    mem.warmed()
    t0 = time.monotonic()
    for b in range(10):
        batch(100, 1000 + b * 100)
    took = time.monotonic() - t0
    assert_serves(fresh, what="1000 connections")
    ok = wait_for(lambda: fresh.fds() <= base_fds, 5.0)
    print(
        "1000 connections in %.2f s: hoteld fds %d at start, peak %d, %d at end"
        % (took, base_fds, peak[0], fresh.fds())
    )
    assert ok, "hoteld holds %d descriptors, %d before" % (fresh.fds(), base_fds)
    mem.check("1000 connections")


# ---- Reload with a path that is not a regular file ------------------------------------
def test_reload_from_fifo(hoteld_binary: str, workdir: str) -> None:
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--hotels", "500", "--workers", "4", "--data-dir", workdir])
    fifo = os.path.join(workdir, "fifo.jsonl")
    os.mkfifo(fifo)
    try:
        with nngrpc.Channel(h.tcp, retry=None) as ch:
            hotels = hotel_nngrpc.HotelSearchStub(ch)
            first = code_of(lambda: hotels.Reload(hotel_pb2.ReloadRequest(path=fifo), timeout=1.0))
            t0 = time.monotonic()
            second = code_of(
                lambda: hotels.Reload(
                    hotel_pb2.ReloadRequest(generate=hotel_pb2.GeneratedDataset(count=100, seed=2)),
                    timeout=3.0,
                )
            )
            print("Reload(FIFO): %s; then Reload(generate): %s after %.2f s"
                  % (first, second, time.monotonic() - t0))
        assert first == "FAILED_PRECONDITION", first  # not a regular file
        assert second == "OK", "a Reload after Reload(FIFO) did not complete: %s" % second
    finally:
        # Unblock the worker stuck in fopen(): a writer that opens and closes.
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        h.stop()


def test_reload_from_dev_zero(hoteld_binary: str, workdir: str) -> None:
    """Reload from a path that is not a regular file must fail with a
    status, within its deadline, without eating memory, and keep serving
    the old dataset."""
    if is_asan(hoteld_binary):
        pytest.skip("needs RLIMIT_AS as a safety net, which ASan's shadow memory cannot run under")
    # RLIMIT_AS caps the damage while the bug is there (1.25 GiB of address space).
    h = spawn_hoteld(
        hoteld_binary,
        workdir,
        ["--hotels", "500", "--workers", "4", "--data-dir", workdir],
        wrapper=["prlimit", "--as=%d" % (1280 * MiB), "--"],
    )
    os.symlink("/dev/zero", os.path.join(workdir, "zero.jsonl"))
    killed = False
    try:
        base = h.rss()
        with nngrpc.Channel(h.tcp, retry=None) as ch:
            hotels = hotel_nngrpc.HotelSearchStub(ch)
            codes = [code_of(lambda: hotels.Reload(hotel_pb2.ReloadRequest(path=p), timeout=2.0))
                     for p in ("/dev/zero", "zero.jsonl")]
            time.sleep(0.5)
            grown = h.rss() - base
            stats = hotels.Stats(hotel_pb2.StatsRequest(), timeout=2.0)
        print("Reload(/dev/zero), Reload(a symlink to it): %s; VmRSS +%d KiB; now serving %d "
              "hotels from %s" % (codes, grown, stats.hotel_count, stats.source))
        # Outside --data-dir: refused before anything is opened.
        assert codes == ["PERMISSION_DENIED", "PERMISSION_DENIED"], codes
        assert grown < 64 * 1024, "Reload(/dev/zero) grew hoteld by %d KiB" % grown
        assert stats.hotel_count == 500, "the dataset was replaced: %s" % stats
        assert_serves(h, what="Reload(/dev/zero)")
    except BaseException:
        h.server.proc.kill()  # the worker may still read /dev/zero
        h.server.proc.wait(10)
        killed = True
        raise
    finally:
        if not killed:
            h.stop()


def _have(cmd: str) -> bool:
    return any(
        os.access(os.path.join(d, cmd), os.X_OK) for d in os.environ.get("PATH", "").split(":")
    )
