"""Operating hoteld: /metrics counts what happened, a SIGTERM drain answers
every call in flight, configuration errors stop the start with one line.

Each test starts its own hoteld (through hoteld_fixture, so the ASan build
is checked for sanitizer reports at exit too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from typing import Dict, Iterator, List, Tuple

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, free_port, start_server, stop_server

ECHO = "/nngrpc.testing.v1.Testing/Echo"
FAIL = "/nngrpc.testing.v1.Testing/Fail"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def _binary(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--hoteld"))


@pytest.fixture
def ops_server(request: pytest.FixtureRequest) -> Iterator[Tuple[Server, str]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nngrpc-ops-") as workdir:
        server = start_server(_binary(request), workdir, [
            "--no-hotels", "--http", "127.0.0.1:%d" % port,
            "--access-log", "all", "--log-format", "json"])
        try:
            yield server, "http://127.0.0.1:%d" % port
        finally:
            stop_server(server)


def get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text: str) -> Dict[Tuple[str, str], float]:
    """Prometheus text format into {(name, labels): value}; checks every
    sample line parses and every family has HELP and TYPE."""
    out: Dict[Tuple[str, str], float] = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "unparsable metrics line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in typed or base in typed or base + "_total" in typed, name
        out[(name, labels)] = float(value)
    return out


def test_metrics_count_the_calls_made(ops_server: Tuple[Server, str]) -> None:
    server, http = ops_server
    before = parse_metrics(get(http + "/metrics")[1])
    with nngrpc.Channel(server.tcp) as ch:
        for _ in range(7):
            ch.call(ECHO, testing_pb2.EchoRequest(payload=b"x" * 100).SerializeToString())
        for _ in range(3):
            with pytest.raises(nngrpc.RpcError):
                ch.call(FAIL, testing_pb2.FailRequest(code=5, message="nope").SerializeToString())
        with pytest.raises(nngrpc.RpcError):
            ch.call("/no.Such/Method", b"")
    after = parse_metrics(get(http + "/metrics")[1])

    def delta(name: str, labels: str) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    echo_ok = '{method="%s",code="OK"}' % ECHO
    assert delta("nngrpc_calls_total", echo_ok) == 7
    assert delta("nngrpc_calls_total", '{method="%s",code="NOT_FOUND"}' % FAIL) == 3
    assert delta("nngrpc_calls_total", '{method="unknown",code="UNIMPLEMENTED"}') == 1
    # Histograms: one observation per call, cumulative buckets.
    assert delta("nngrpc_call_run_seconds_count", '{method="%s"}' % ECHO) == 7
    assert delta("nngrpc_call_queue_seconds_count", '{method="%s"}' % ECHO) == 7
    inf = after[("nngrpc_call_run_seconds_bucket", '{method="%s",le="+Inf"}' % ECHO)]
    assert inf == after[("nngrpc_call_run_seconds_count", '{method="%s"}' % ECHO)]
    # Bytes: every Echo request carried at least its 100-byte payload.
    assert delta("nngrpc_request_bytes_total", '{method="%s"}' % ECHO) >= 700
    assert delta("nngrpc_response_bytes_total", '{method="%s"}' % ECHO) >= 700
    # Gauges and process metrics are there.
    for name in ("nngrpc_queue_depth", "nngrpc_busy_workers", "nngrpc_in_flight_calls",
                 "process_resident_memory_bytes", "process_start_time_seconds"):
        assert (name, "") in after, name
    assert after[("process_resident_memory_bytes", "")] > 1e6
    assert get(http + "/healthz") == (200, "ok\n")
    assert get(http + "/readyz")[0] == 200
    assert get(http + "/nope")[0] == 404


def test_access_log_lines_are_json_with_the_request_id(ops_server: Tuple[Server, str]) -> None:
    server, _ = ops_server
    with nngrpc.Channel(server.tcp) as ch:
        ch.call(ECHO, b"", metadata={"nngrpc-request-id": "ops-test-42",
                                      "authorization": "Bearer secret"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in server.log().splitlines() if l.startswith("{")]
        hits = [l for l in lines if l.get("request_id") == "ops-test-42"]
        if hits:
            break
        time.sleep(0.02)
    assert hits, server.log()
    line = hits[0]
    assert line["msg"] == "access" and line["method"] == ECHO and line["status"] == "OK"
    assert line["peer"].startswith("127.0.0.1:")
    assert "secret" not in server.log()  # tokens and payloads never logged


def test_drain_answers_200_calls_in_flight(request: pytest.FixtureRequest) -> None:
    """200 calls of Sleep(300 ms) in flight, then SIGTERM: every one is
    answered OK; a call after that fails fast with UNAVAILABLE; exit 0."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-drain-") as workdir:
        server = start_server(_binary(request), workdir,
                              ["--no-hotels", "--workers", "256", "--queue", "256"])
        results: List[object] = []
        lock = threading.Lock()
        with nngrpc.Channel(server.tcp, retry=None) as ch:
            stub = testing_nngrpc.TestingStub(ch)

            def sleeper() -> None:
                try:
                    stub.Sleep(testing_pb2.SleepRequest(ms=300), timeout=10)
                    r: object = "OK"
                except nngrpc.RpcError as e:
                    r = e
                with lock:
                    results.append(r)

            threads = [threading.Thread(target=sleeper) for _ in range(200)]
            for t in threads:
                t.start()
            # Wait until the server has all 200 (its in-flight gauge is not
            # needed: the pool opens one connection per busy thread).
            end = time.monotonic() + 10
            while time.monotonic() < end:
                if len([p for p in os.listdir("/proc/%d/fd" % server.proc.pid)]) >= 200:
                    break
                time.sleep(0.01)
            time.sleep(0.1)
            server.proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(15)
            assert results.count("OK") == 200, [r for r in results if r != "OK"][:5]
            # The process is gone or going: a new call fails fast, never hangs.
            server.proc.wait(15)
            t0 = time.monotonic()
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call(ECHO, b"", timeout=5)
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - t0 < 1.0
        stop_server(server)  # exit 0, no sanitizer report
        assert "draining" in server.log()


@pytest.mark.parametrize("args,env,message", [
    (["--workers", "0"], {}, "--workers: must be an integer from 1 to 4096, got '0'"),
    (["--queue", "x"], {}, "--queue: must be an integer"),
    (["--bogus"], {}, "unknown option '--bogus'"),
    (["--listen", "nope"], {}, "listen: 'nope' is not a URL"),
    ([], {"NNGRPC_WORKERS": "-3"}, "NNGRPC_WORKERS: must be an integer"),
    ([], {"NNGRPC_LOG_FORMAT": "xml"}, "NNGRPC_LOG_FORMAT: must be text or json"),
    (["--drain-timeout", "soon"], {}, "--drain-timeout: must be a number of seconds"),
    (["--listen", "bogus://x"], {}, "bogus://x: unsupported transport"),
])
def test_bad_configuration_is_one_line_and_exit_2(
        request: pytest.FixtureRequest, args: List[str], env: Dict[str, str], message: str) -> None:
    proc = subprocess.run([_binary(request), "--no-hotels"] + args,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("hoteld: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr


def test_port_in_use_is_one_line_and_exit_2(request: pytest.FixtureRequest,
                                            hoteld: Server) -> None:
    proc = subprocess.run([_binary(request), "--no-hotels", "--listen", hoteld.tcp],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("hoteld: ")]
    assert len(errors) == 1 and "address already in use" in errors[0], proc.stderr


def test_print_config_shows_flags_and_environment(request: pytest.FixtureRequest) -> None:
    proc = subprocess.run([_binary(request), "--print-config", "--workers", "7"],
                          env=dict(os.environ, NNGRPC_QUEUE="99", NNGRPC_WORKERS="3",
                               NNGRPC_LISTEN="tcp://127.0.0.1:1,ipc:///tmp/x.sock"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    conf = dict(l.split(" = ", 1) for l in proc.stdout.splitlines() if " = " in l)
    assert conf["workers"] == "7"  # the flag wins over NNGRPC_WORKERS
    assert conf["queue"] == "99"
    assert [l for l in proc.stdout.splitlines() if l.startswith("listen = ")] == [
        "listen = tcp://127.0.0.1:1", "listen = ipc:///tmp/x.sock"]
