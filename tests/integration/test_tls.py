"""tls+tcp:// against hoteld's TLS listener, with certificates made by
openssl for this run: calls over TLS (sync and aio), client verification,
a wrong CA, a wrong name, and plaintext/TLS mismatches that must fail fast
with UNAVAILABLE and leave the server serving."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Iterator, List

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@dataclass
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: str) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client
    certificate, and an unrelated CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=nngrpc test CA", *ca_ext, cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2",
            "-subj", "/CN=another CA", *ca_ext, cwd=d)
    for name, ext in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ]:
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext + "basicConstraints=CA:FALSE\n")
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=nngrpc test " + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext", cwd=d)
    j = lambda n: os.path.join(d, n)  # noqa: E731
    return Pki(j("ca.pem"), j("server.pem"), j("server.key"), j("client.pem"), j("client.key"),
               j("other.pem"))


@dataclass
class TlsServer:
    server: Server
    url: str  # tls+tcp://127.0.0.1:port


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="nngrpc-pki-") as d:
        yield make_pki(d)


def start_tls(request: pytest.FixtureRequest, workdir: str, pki: Pki, verify_clients: bool) -> TlsServer:
    binary = str(request.config.getoption("--hoteld"))
    url = "tls+tcp://127.0.0.1:%d" % free_port()
    extra = ["--no-hotels", "--listen", url, "--tls-cert", pki.server_cert, "--tls-key", pki.server_key]
    if verify_clients:
        extra += ["--tls-ca", pki.ca]
    return TlsServer(start_server(binary, workdir, extra), url)


@pytest.fixture(scope="module")
def tls_hoteld(request: pytest.FixtureRequest, pki: Pki) -> Iterator[TlsServer]:
    """hoteld with a TLS listener (and its plain tcp one)."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-tls-") as workdir:
        s = start_tls(request, workdir, pki, verify_clients=False)
        try:
            yield s
        finally:
            stop_server(s.server)


@pytest.fixture(scope="module")
def mtls_hoteld(request: pytest.FixtureRequest, pki: Pki) -> Iterator[TlsServer]:
    """hoteld whose TLS listener requires a client certificate (--tls-ca)."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-mtls-") as workdir:
        s = start_tls(request, workdir, pki, verify_clients=True)
        try:
            yield s
        finally:
            stop_server(s.server)


def echo_once(channel: nngrpc.Channel, payload: bytes = b"tls") -> bytes:
    stub = testing_nngrpc.TestingStub(channel)
    return bytes(stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=5.0).payload)


def failure(url: str, timeout: float = 5.0, **options: object) -> nngrpc.RpcError:
    with nngrpc.Channel(url, connect_timeout=2.0, **options) as ch:  # type: ignore[arg-type]
        with pytest.raises(nngrpc.RpcError) as e:
            echo_once(ch)
    return e.value


# ---- calls over TLS -------------------------------------------------------------------
def test_calls_over_tls(tls_hoteld: TlsServer, pki: Pki) -> None:
    tls = nngrpc.TlsConfig(ca_file=pki.ca)
    with nngrpc.Channel(tls_hoteld.url, tls=tls) as ch:
        assert echo_once(ch) == b"tls"
        big = os.urandom(2 * 1024 * 1024)
        assert echo_once(ch, big) == big
        stub = testing_nngrpc.TestingStub(ch)
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Fail(testing_pb2.FailRequest(code=5, message="nf"), timeout=5.0)
        assert e.value.code() is nngrpc.StatusCode.NOT_FOUND
        # Threads share the channel: a TLS connection each, reused.
        errors: List[BaseException] = []

        def loop() -> None:
            try:
                for i in range(20):
                    assert echo_once(ch, b"%d" % i) == b"%d" % i
            except BaseException as e:  # noqa: B902
                errors.append(e)

        threads = [threading.Thread(target=loop) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert len(ch._open_fds()) <= 8
    # By name: the certificate has DNS:localhost too.
    port = tls_hoteld.url.rsplit(":", 1)[1]
    with nngrpc.Channel("tls+tcp://localhost:%s" % port, tls=tls) as ch:
        assert echo_once(ch) == b"tls"


def test_aio_calls_over_tls(tls_hoteld: TlsServer, pki: Pki) -> None:
    async def main() -> None:
        async with nngrpc.aio.Channel(tls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.ca)) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            results = await asyncio.gather(
                *[stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=5.0) for i in range(200)]
            )
            assert [r.payload for r in results] == [b"%d" % i for i in range(200)]
            assert ch._connection_count() <= 4
        async with nngrpc.aio.Channel(tls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.other_ca)) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/nngrpc.testing.v1.Testing/Echo", b"", timeout=5.0)
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
            assert "certificate verify failed" in e.value.details()

    asyncio.run(asyncio.wait_for(main(), 30))


# ---- client verification ---------------------------------------------------------------
def test_client_certificate_required(mtls_hoteld: TlsServer, pki: Pki) -> None:
    good = nngrpc.TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    with nngrpc.Channel(mtls_hoteld.url, tls=good) as ch:
        assert echo_once(ch) == b"tls"

    t0 = time.monotonic()
    err = failure(mtls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.ca))
    assert time.monotonic() - t0 < 2.0
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert "TLS handshake failed" in err.details() and mtls_hoteld.url in err.details()
    assert "certificate" in err.details()

    async def aio_without_cert() -> nngrpc.RpcError:
        async with nngrpc.aio.Channel(mtls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.ca)) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/nngrpc.testing.v1.Testing/Echo", b"", timeout=5.0)
            return e.value

    err = asyncio.run(aio_without_cert())
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE and "TLS handshake failed" in err.details()

    # Still serving.
    with nngrpc.Channel(mtls_hoteld.url, tls=good) as ch:
        assert echo_once(ch) == b"tls"


# ---- failures --------------------------------------------------------------------------
def test_wrong_ca_fails_certificate_verify(tls_hoteld: TlsServer, pki: Pki) -> None:
    err = failure(tls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.other_ca))
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert "certificate verify failed" in err.details(), err.details()


def test_wrong_name_fails_certificate_verify(tls_hoteld: TlsServer, pki: Pki) -> None:
    err = failure(tls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.ca, server_hostname="other.example"))
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert "certificate verify failed" in err.details() and "other.example" in err.details()


def test_an_address_found_by_name_is_verified_against_the_name(
    tls_hoteld: TlsServer, pki: Pki
) -> None:
    """tls+tcp://NAME:PORT dials each address NAME resolves to, and the
    certificate must carry NAME.  It names 127.0.0.1 as well, so only a
    check against the name (not the address dialled) refuses wrong.test."""
    port = int(tls_hoteld.url.rsplit(":", 1)[1])
    tls = nngrpc.TlsConfig(ca_file=pki.ca)

    def to_loopback(host: str, _: int) -> List[str]:
        return ["127.0.0.1"]

    with nngrpc.Channel("tls+tcp://localhost:%d" % port, tls=tls, resolver=to_loopback) as ch:
        assert echo_once(ch) == b"tls"
        assert [e.addr.url for e in ch._endpoints] == ["tls+tcp://127.0.0.1:%d" % port]
    err = failure("tls+tcp://wrong.test:%d" % port, tls=tls, resolver=to_loopback)
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert "certificate verify failed" in err.details(), err.details()

    async def aio() -> None:
        async with nngrpc.aio.Channel("tls+tcp://localhost:%d" % port, tls=tls,
                                      resolver=to_loopback) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            assert (await stub.Echo(testing_pb2.EchoRequest(payload=b"a"), timeout=5.0)).payload == b"a"
        async with nngrpc.aio.Channel("tls+tcp://wrong.test:%d" % port, tls=tls,
                                      resolver=to_loopback, connect_timeout=2.0) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/nngrpc.testing.v1.Testing/Echo", b"", timeout=5.0)
            assert "certificate verify failed" in e.value.details(), e.value.details()

    asyncio.run(aio())


def test_plaintext_client_on_the_tls_listener_fails_fast(tls_hoteld: TlsServer, pki: Pki) -> None:
    plain_url = tls_hoteld.url.replace("tls+tcp://", "tcp://")
    t0 = time.monotonic()
    err = failure(plain_url)
    assert time.monotonic() - t0 < 2.0  # no hang: answered or bounded by connect_timeout
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert plain_url in err.details()

    async def aio_plain() -> nngrpc.RpcError:
        async with nngrpc.aio.Channel(plain_url, connect_timeout=2.0) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                await ch.call("/nngrpc.testing.v1.Testing/Echo", b"", timeout=5.0)
            return e.value

    t0 = time.monotonic()
    assert asyncio.run(aio_plain()).code() is nngrpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - t0 < 2.5
    # The server keeps serving TLS clients.
    with nngrpc.Channel(tls_hoteld.url, tls=nngrpc.TlsConfig(ca_file=pki.ca)) as ch:
        assert echo_once(ch) == b"tls"


def test_tls_client_on_a_plain_listener_fails_fast(tls_hoteld: TlsServer, pki: Pki) -> None:
    tls_url = tls_hoteld.server.tcp.replace("tcp://", "tls+tcp://")
    t0 = time.monotonic()
    err = failure(tls_url, tls=nngrpc.TlsConfig(ca_file=pki.ca))
    assert time.monotonic() - t0 < 2.0
    assert err.code() is nngrpc.StatusCode.UNAVAILABLE
    assert "does not speak TLS" in err.details(), err.details()
    with nngrpc.Channel(tls_hoteld.server.tcp) as ch:
        assert echo_once(ch) == b"tls"


def test_silent_peer_is_bounded_by_connect_timeout(pki: Pki) -> None:
    """A peer that accepts but never answers the TLS handshake."""
    import socket

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        url = "tls+tcp://127.0.0.1:%d" % lsock.getsockname()[1]
        t0 = time.monotonic()
        with nngrpc.Channel(url, tls=nngrpc.TlsConfig(ca_file=pki.ca), connect_timeout=0.3) as ch:
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/nngrpc.testing.v1.Testing/Echo", b"", timeout=5.0)
        assert 0.3 <= time.monotonic() - t0 < 1.0
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
        assert "connect timed out" in e.value.details()


def test_bad_tls_config_is_refused_early(pki: Pki) -> None:
    with pytest.raises(ValueError):
        nngrpc.TlsConfig(key_file=pki.client_key)
    with pytest.raises(OSError):
        nngrpc.Channel("tls+tcp://127.0.0.1:1", tls=nngrpc.TlsConfig(ca_file="/nonexistent/ca.pem"))
