"""Rotating credentials under load: the auth token file and the TLS
certificate are read again when they change (hoteld looks every second)
or on SIGHUP, with no call failing (src/rpc/rotate.h).

Tokens: the new one is accepted as soon as the file changes, the old one
for --auth-token-grace more (here 2 s), so clients move at their pace.
Certificates: new connections get the new one, open connections keep
theirs, and a set of files that does not load (a key renewed before its
certificate) keeps the old one until it does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from typing import Callable, List, Optional

import pytest

import nngrpc
import nngrpc.health
from hoteld_fixture import Server, free_port, stop_server, wait_until_healthy
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

ECHO = testing_pb2.EchoRequest(payload=b"rot")


def start(binary: str, workdir: str, url: str, args: List[str],
          tls: Optional[nngrpc.TlsConfig] = None) -> Server:
    """hoteld, polled with health checks (which need no token)."""
    log_path = os.path.join(workdir, "hoteld.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "--testing", "--no-hotels", "--listen", url] + args,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = Server(tcp=url, ipc="", proc=proc, log_path=log_path, workers=32)
    return wait_until_healthy(server, 60, "hoteld", tls=tls, check_timeout=2.0)


class Load:
    """Threads calling Echo until stopped; every failure is kept."""

    def __init__(self, call: Callable[[], None], threads: int) -> None:
        self.calls = 0
        self.failures: List[str] = []
        self._call = call
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._call()
            except nngrpc.RpcError as e:
                with self._lock:
                    self.failures.append("%s: %s" % (e.code().name, e.details()))
            with self._lock:
                self.calls += 1

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def wait_until(pred: Callable[[], bool], limit: float) -> float:
    """Seconds until pred() held (polled every 20 ms); fails past limit."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            pytest.fail("not within %.1f s" % limit)
        time.sleep(0.02)
    return time.monotonic() - t0


def write_atomically(path: str, data: bytes) -> None:
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---- the token --------------------------------------------------------------------------
def test_token_rotation_under_load(request: pytest.FixtureRequest) -> None:
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-rot-") as workdir:
        token_file = os.path.join(workdir, "token")
        write_atomically(token_file, b"token-A\n")
        url = "tcp://127.0.0.1:%d" % free_port()
        server = start(binary, workdir, url,
                       ["--auth-token-file", token_file, "--auth-token-grace", "2"])
        try:
            with nngrpc.Channel(url, retry=None) as ch:
                stub = testing_nngrpc.TestingStub(ch)
                token = {"now": "token-A"}

                def accepts(t: str) -> bool:
                    try:
                        stub.Echo(ECHO, timeout=5.0, metadata={"authorization": "Bearer " + t})
                        return True
                    except nngrpc.RpcError as e:
                        assert e.code() is nngrpc.StatusCode.UNAUTHENTICATED, e
                        return False

                load = Load(lambda: stub.Echo(ECHO, timeout=5.0, metadata={
                    "authorization": "Bearer " + token["now"]}), 4)
                try:
                    time.sleep(0.3)
                    write_atomically(token_file, b"token-B\n")
                    picked = wait_until(lambda: accepts("token-B"), 5.0)
                    time.sleep(0.3)
                    token["now"] = "token-B"  # the clients move to the new token
                    time.sleep(0.5)
                finally:
                    load.stop()
                grace = wait_until(lambda: not accepts("token-A"), 6.0)
                assert accepts("token-B")
                print("token rotation under load: %d calls, %d failed; the new token "
                      "accepted %.2f s after the file changed, the old refused %.2f s later"
                      % (load.calls, len(load.failures), picked, grace))
                assert not load.failures, load.failures[:5]
                assert load.calls > 100
                assert 1.0 <= grace + 0.8 + 0.02 <= 4.5  # the 2 s grace, from the pickup

                # SIGHUP: the file changed in place with its size, inode and
                # times as they were, so only the signal can make hoteld look.
                st = os.stat(token_file)
                with open(token_file, "r+b") as f:
                    f.write(b"token-C\n")
                os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns))
                time.sleep(1.5)
                assert not accepts("token-C"), "hoteld saw a change that was invisible"
                server.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: accepts("token-C"), 3.0)
                assert accepts("token-B")  # in its grace period now
        finally:
            stop_server(server)


# ---- the certificate --------------------------------------------------------------------
def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: str) -> None:
    """A CA and two server certificates it signed, for 127.0.0.1: server1
    and server2 (.pem, .key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=nngrpc rotation CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    for name in ("server1", "server2"):
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=nngrpc " + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", "server.ext", cwd=d)


def served_cn(port: int, ca: str) -> str:
    """The common name of the certificate a new TLS connection gets."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            cert = s.getpeercert()
    subject = dict(x[0] for x in cert["subject"])  # type: ignore[index]
    return str(subject["commonName"])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_certificate_rotation_under_load(request: pytest.FixtureRequest) -> None:
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-rot-") as workdir:
        make_pki(workdir)
        j = lambda n: os.path.join(workdir, n)  # noqa: E731
        shutil.copy(j("server1.pem"), j("cert.pem"))
        shutil.copy(j("server1.key"), j("key.pem"))
        port = free_port()
        url = "tls+tcp://127.0.0.1:%d" % port
        tls = nngrpc.TlsConfig(ca_file=j("ca.pem"))
        server = start(binary, workdir, url,
                       ["--tls-cert", j("cert.pem"), "--tls-key", j("key.pem")], tls)
        try:
            assert served_cn(port, j("ca.pem")) == "nngrpc server1"
            kept = nngrpc.Channel(url, tls=tls, retry=None, max_idle_per_endpoint=1)
            kept_stub = testing_nngrpc.TestingStub(kept)
            kept_stub.Echo(ECHO, timeout=5.0)  # a connection open across the rotation

            def fresh_call() -> None:  # a new connection, so a new handshake, each time
                with nngrpc.Channel(url, tls=tls, retry=None) as ch:
                    testing_nngrpc.TestingStub(ch).Echo(ECHO, timeout=5.0)

            load = Load(fresh_call, 3)
            kept_load = Load(lambda: kept_stub.Echo(ECHO, timeout=5.0), 1)
            try:
                time.sleep(0.3)
                # The key first: for a moment the pair does not match, and
                # hoteld keeps the old one.
                write_atomically(j("key.pem"), open(j("server2.key"), "rb").read())
                time.sleep(1.2)
                assert served_cn(port, j("ca.pem")) == "nngrpc server1"
                write_atomically(j("cert.pem"), open(j("server2.pem"), "rb").read())
                picked = wait_until(lambda: served_cn(port, j("ca.pem")) == "nngrpc server2", 5.0)
                time.sleep(0.5)
            finally:
                load.stop()
                kept_load.stop()
            kept_stub.Echo(ECHO, timeout=5.0)
            kept.close()
            log = server.log()
            print("certificate rotation under load: %d calls on new connections and %d on one "
                  "kept open, %d failed; the new certificate served %.2f s after its file "
                  "changed" % (load.calls, kept_load.calls,
                               len(load.failures) + len(kept_load.failures), picked))
            assert not load.failures and not kept_load.failures, (
                load.failures[:5] + kept_load.failures[:5])
            assert load.calls > 20 and kept_load.calls > 20
            assert "do not load" in log and "certificate reloaded" in log, log
        finally:
            stop_server(server)
