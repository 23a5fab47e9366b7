"""Token auth: ``hoteld --auth-token-file FILE`` wants the metadata
``authorization: Bearer <token>`` on every call but health checks, and
answers UNAUTHENTICATED otherwise.  Without the flag any call goes.
Through the stubs, reflection, nngrpc.health and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any, Iterator, List, Optional

import pytest
from google.protobuf import json_format

import nngrpc
import nngrpc.health
from hoteld_fixture import Server, free_port, stop_server, wait_until_healthy
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.reflection import ReflectionClient
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

TOKEN = "s3cr3t-t0ken-for-tests"
UNAUTH = nngrpc.StatusCode.UNAUTHENTICATED
TIMEOUT = 30.0


def bearer(token: str) -> List[tuple[str, str]]:
    return [("authorization", "Bearer " + token)]


@pytest.fixture(scope="module")
def token_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nngrpc-auth-token-") as d:
        path = os.path.join(d, "token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")  # a trailing newline, as editors write it
        os.chmod(path, 0o600)
        yield path


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest, token_file: str) -> Iterator[Server]:
    """hoteld --testing, 2000 hotels, with --auth-token-file."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-auth-") as workdir:
        # start_server polls with an Echo that has no token: the server
        # answers it UNAUTHENTICATED, which is not "serving", so poll
        # health ourselves instead.
        server = _start_secured(binary, workdir, token_file)
        try:
            yield server
        finally:
            stop_server(server)


def _start_secured(binary: str, workdir: str, token_file: str,
                   extra: Optional[List[str]] = None) -> Server:
    tcp = "tcp://127.0.0.1:%d" % free_port()
    ipc = "ipc://%s/hoteld.sock" % workdir
    log_path = os.path.join(workdir, "hoteld.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "--testing", "--listen", tcp, "--listen", ipc, "--hotels", "2000",
             "--auth-token-file", token_file] + (extra or []),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Server(tcp=tcp, ipc=ipc, proc=proc, log_path=log_path, workers=32)
    return wait_until_healthy(server, 120, "secured hoteld", check_timeout=5.0)


@pytest.fixture
def sch(secured: Server) -> Iterator[nngrpc.Channel]:
    with nngrpc.Channel(secured.tcp) as ch:
        yield ch


def _echo(ch: nngrpc.Channel, metadata: Optional[List[tuple[str, str]]]) -> bytes:
    stub = testing_nngrpc.TestingStub(ch)
    payload: bytes = stub.Echo(
        testing_pb2.EchoRequest(payload=b"hi"), timeout=TIMEOUT, metadata=metadata
    ).payload
    return payload


# ---- auth on --------------------------------------------------------------------------


def test_no_token_is_unauthenticated(sch: nngrpc.Channel) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        _echo(sch, None)
    assert e.value.code() is UNAUTH, e.value
    assert "authorization" in e.value.details()
    with pytest.raises(nngrpc.RpcError) as e:
        hotel_nngrpc.HotelSearchStub(sch).Search(hotel_pb2.SearchRequest(query="x"), timeout=TIMEOUT)
    assert e.value.code() is UNAUTH
    with pytest.raises(nngrpc.RpcError) as e:
        ReflectionClient(sch, timeout=TIMEOUT).list_services()
    assert e.value.code() is UNAUTH


@pytest.mark.parametrize("metadata", [
    bearer("wrong"),
    bearer(TOKEN[:-1]),
    bearer(TOKEN + "x"),
    bearer(TOKEN + "\n"),
    bearer(""),
    [("authorization", TOKEN)],
    [("authorization", "Basic " + TOKEN)],
    [("authorization", "Bearer  " + TOKEN)],
    [("Authorization-X", "Bearer " + TOKEN)],
    [("token", TOKEN)],
], ids=["wrong", "short", "long", "newline", "empty", "no-scheme", "basic",
        "two-spaces", "other-key", "token-key"])
def test_wrong_token_is_unauthenticated(sch: nngrpc.Channel, metadata: List[tuple[str, str]]) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        _echo(sch, metadata)
    assert e.value.code() is UNAUTH, e.value


def test_right_token_is_ok(sch: nngrpc.Channel) -> None:
    assert _echo(sch, bearer(TOKEN)) == b"hi"
    assert _echo(sch, {"authorization": "Bearer " + TOKEN}) == b"hi"
    hotels = hotel_nngrpc.HotelSearchStub(sch)
    resp = hotels.Search(hotel_pb2.SearchRequest(query="hotel"), timeout=TIMEOUT, metadata=bearer(TOKEN))
    assert resp.total > 0
    refl = ReflectionClient(sch, timeout=TIMEOUT, metadata=bearer(TOKEN))
    assert "hotel.v1.HotelSearch" in refl.list_services()
    Request, _ = refl.method_classes("hotel.v1.HotelSearch/Search")
    again = refl.multicallable("hotel.v1.HotelSearch/Search")(
        Request(query="hotel"), timeout=TIMEOUT, metadata=bearer(TOKEN)
    )
    assert again.total == resp.total
    # ... and a call with the right token does not make the next one pass.
    with pytest.raises(nngrpc.RpcError) as e:
        _echo(sch, None)
    assert e.value.code() is UNAUTH


class BearerToken(nngrpc.UnaryUnaryClientInterceptor):
    """The auth interceptor a service would write: every call carries the
    token, whatever metadata the caller gives."""

    def __init__(self, token: str) -> None:
        self.token = token

    def intercept_unary_unary(self, continuation: Any, details: nngrpc.ClientCallDetails, request: Any) -> nngrpc.Outcome:
        md = list(details.metadata.items() if isinstance(details.metadata, dict) else details.metadata or [])
        return continuation(details._replace(metadata=md + bearer(self.token)), request)


def test_an_interceptor_adds_the_token(secured: Server) -> None:
    seen: List[nngrpc.StatusCode] = []

    class Observe(nngrpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> nngrpc.Outcome:
            out = continuation(details, request)
            seen.append(out.code())
            return out

    with nngrpc.Channel(secured.tcp) as base:
        good = nngrpc.intercept_channel(base, Observe(), BearerToken(TOKEN))
        assert _echo(good, None) == b"hi"
        assert _echo(good, [("k", "v")]) == b"hi"
        hotels = hotel_nngrpc.HotelSearchStub(good)
        assert hotels.Search(hotel_pb2.SearchRequest(query="hotel"), timeout=TIMEOUT).total > 0
        with pytest.raises(nngrpc.RpcError) as e:
            _echo(nngrpc.intercept_channel(base, Observe(), BearerToken("wrong")), None)
        assert e.value.code() is UNAUTH
        assert seen == [nngrpc.StatusCode.OK] * 3 + [UNAUTH]
        with pytest.raises(nngrpc.RpcError):
            _echo(base, None)  # the channel under it carries no token of its own


def test_health_is_open_without_a_token(sch: nngrpc.Channel) -> None:
    serving = nngrpc.health.ServingStatus.SERVING
    assert nngrpc.health.check(sch, timeout=TIMEOUT) is serving
    assert nngrpc.health.check(sch, "hotel.v1.HotelSearch", timeout=TIMEOUT) is serving
    assert nngrpc.health.check(sch, metadata=bearer("wrong"), timeout=TIMEOUT) is serving
    with pytest.raises(nngrpc.RpcError) as e:
        nngrpc.health.check(sch, "nope.v1.Nope", timeout=TIMEOUT)
    assert e.value.code() is nngrpc.StatusCode.NOT_FOUND


def test_ipc_needs_the_token_too(secured: Server) -> None:
    with nngrpc.Channel(secured.ipc) as ch:
        with pytest.raises(nngrpc.RpcError) as e:
            _echo(ch, None)
        assert e.value.code() is UNAUTH
        assert _echo(ch, bearer(TOKEN)) == b"hi"


def _cli(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "nngrpc", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )


def test_cli_with_and_without_the_token(secured: Server, token_file: str, tmp_path: "os.PathLike[str]") -> None:
    url = secured.tcp
    p = _cli(url, "list")
    assert p.returncode == 16, p
    assert p.stderr.startswith("ERROR: UNAUTHENTICATED: "), p.stderr
    p = _cli(url, "call", "nngrpc.testing.v1.Testing/Echo", "{}")
    assert p.returncode == 16, p
    p = _cli("--token", "wrong", url, "list")
    assert p.returncode == 16, p
    for opts in (["--token", TOKEN], ["--token-file", token_file],
                 ["--metadata", "authorization=Bearer " + TOKEN],
                 ["-H", "authorization: Bearer " + TOKEN]):
        p = _cli(*opts, url, "list")
        assert p.returncode == 0, (opts, p)
        assert "hotel.v1.HotelSearch" in p.stdout.split()
        p = _cli(url, "call", "nngrpc.testing.v1.Testing/Echo", '{"payload": "aGk="}', *opts)
        assert p.returncode == 0, (opts, p)
        assert '"aGk="' in p.stdout
    # Health needs no token.
    p = _cli(url, "health")
    assert (p.returncode, p.stdout.strip()) == (0, "SERVING"), p
    # A missing or empty token file is a usage error.
    p = _cli("--token-file", os.path.join(str(tmp_path), "absent"), url, "list")
    assert p.returncode == 3 and "ERROR: INVALID_ARGUMENT: " in p.stderr, p
    empty = os.path.join(str(tmp_path), "empty")
    open(empty, "w").close()
    p = _cli("--token-file", empty, url, "list")
    assert p.returncode == 3, p
    # Both ways at once is ambiguous.
    p = _cli("--token", TOKEN, "-H", "authorization=Bearer " + TOKEN, url, "list")
    assert p.returncode == 3, p


# ---- auth off (the session's server) -------------------------------------------------------


def test_no_auth_needs_no_token(hoteld: Server, channel: nngrpc.Channel) -> None:
    assert _echo(channel, None) == b"hi"
    # A token nobody asked for is ignored.
    assert _echo(channel, bearer("anything")) == b"hi"
    assert "hotel.v1.HotelSearch" in ReflectionClient(channel, timeout=TIMEOUT).list_services()
    p = _cli(hoteld.tcp, "list")
    assert p.returncode == 0 and "hotel.v1.HotelSearch" in p.stdout.split(), p


def test_reload_is_behind_the_token(request: pytest.FixtureRequest, token_file: str) -> None:
    """Reload reads under --data-dir only, and only for a caller with the
    token."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-auth-") as workdir:
        data = os.path.join(workdir, "data")
        os.mkdir(data)
        hotel = hotel_pb2.Hotel(id=7, name="Seven", city="C", country="D", stars=3)
        with open(os.path.join(data, "h.jsonl"), "w") as f:
            f.write(json_format.MessageToJson(hotel, indent=None) + "\n")
        server = _start_secured(binary, workdir, token_file, ["--data-dir", data])
        try:
            with nngrpc.Channel(server.tcp) as ch:
                stub = hotel_nngrpc.HotelSearchStub(ch)
                req = hotel_pb2.ReloadRequest(path="h.jsonl")
                for md in (None, {"authorization": "Bearer wrong"}):
                    with pytest.raises(nngrpc.RpcError) as e:
                        stub.Reload(req, timeout=10.0, metadata=md)
                    assert e.value.code() == nngrpc.StatusCode.UNAUTHENTICATED
                st = stub.Reload(req, timeout=10.0, metadata=bearer(TOKEN)).stats
                assert st.hotel_count == 1
        finally:
            stop_server(server)
