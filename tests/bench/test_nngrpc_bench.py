"""Smoke tests of nngrpc-bench, the C load generator: it runs for about a
second against a real hoteld --testing and its output must parse, with no
errors; errors, bad usage and an unreachable server are reported as
documented in --help."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any, Dict, List

import pytest

from nngrpc.testing.v1 import testing_pb2

ECHO = "/nngrpc.testing.v1.Testing/Echo"


def run(bench_bin: str, args: List[str], timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([bench_bin] + args, capture_output=True, text=True, timeout=timeout)


def run_json(bench_bin: str, args: List[str], want_rc: int = 0) -> Dict[str, Any]:
    p = run(bench_bin, ["--json"] + args)
    assert p.returncode == want_rc, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, dict)
    return out


def check_figures(out: Dict[str, Any]) -> None:
    assert out["tool"] == "nngrpc-bench"
    assert out["calls"] == out["ok"] + out["errors"]
    assert out["calls_per_s"] > 0
    lat = out["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"]
    # Percentiles are bucket midpoints (< 1 % off); max is exact.
    assert lat["p999"] <= lat["max"] * 1.01
    assert lat["mean"] > 0


def test_help(bench_bin: str) -> None:
    p = run(bench_bin, ["--help"])
    assert p.returncode == 0
    for opt in ("--url", "--method", "--payload-bytes", "--request-file", "--concurrency",
                "--duration", "--timeout-ms", "--raw", "--json", "Exit status"):
        assert opt in p.stdout


def test_echo_one_second(bench_bin: str, hoteld_url: str) -> None:
    out = run_json(bench_bin, ["--url", hoteld_url, "--method", ECHO, "--payload-bytes", "1000",
                               "--concurrency", "8", "--duration", "1", "--warmup", "0.1"])
    check_figures(out)
    assert out["errors"] == 0 and out["errors_by_code"] == {}
    assert out["ok"] > 10
    assert out["mode"] == "envelope" and out["method"] == ECHO
    assert out["payload_bytes"] == 1000 and out["concurrency"] == 8
    assert 0.9 < out["duration_s"] < 1.1
    assert out["server_us"]["run_mean"] >= 0


def test_text_output(bench_bin: str, hoteld_url: str) -> None:
    p = run(bench_bin, ["--url", hoteld_url, "--duration", "0.3", "--warmup", "0", "--quiet"])
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"calls\s+(\d+) ok, (\d+) errors", p.stdout)
    assert m and int(m.group(1)) > 0 and m.group(2) == "0", p.stdout
    assert re.search(r"throughput\s+[\d.]+ calls/s", p.stdout)
    assert re.search(r"latency us\s+p50 [\d.]+\s+p90 [\d.]+\s+p99 [\d.]+", p.stdout)


def test_request_file_errors_by_code(bench_bin: str, hoteld_url: str, tmp_path: Any) -> None:
    req = tmp_path / "fail.bin"
    req.write_bytes(testing_pb2.FailRequest(code=5, message="nope").SerializeToString())
    out = run_json(bench_bin, ["--url", hoteld_url, "--method", "/nngrpc.testing.v1.Testing/Fail",
                               "--request-file", str(req), "--duration", "0.3",
                               "--warmup", "0"], want_rc=3)
    assert out["ok"] == 0 and out["errors"] > 0
    assert out["errors_by_code"] == {"NOT_FOUND": out["errors"]}


def test_unknown_method(bench_bin: str, hoteld_url: str) -> None:
    out = run_json(bench_bin, ["--url", hoteld_url, "--method", "/no.Such/Method",
                               "--duration", "0.2", "--warmup", "0"], want_rc=3)
    assert set(out["errors_by_code"]) == {"UNIMPLEMENTED"}


def test_raw_echo(bench_bin: str, nng_echo_url: str) -> None:
    out = run_json(bench_bin, ["--url", nng_echo_url, "--raw", "--payload-bytes", "16384",
                               "--concurrency", "4", "--duration", "0.5", "--warmup", "0"])
    check_figures(out)
    assert out["errors"] == 0 and out["mode"] == "raw"
    assert out["request_bytes"] == 16384


def test_raw_against_envelope_server_is_bad_reply(bench_bin: str, hoteld_url: str) -> None:
    # hoteld answers a raw message with an INTERNAL envelope: not the bytes sent.
    out = run_json(bench_bin, ["--url", hoteld_url, "--raw", "--duration", "0.2",
                               "--warmup", "0"], want_rc=3)
    assert set(out["errors_by_code"]) == {"bad_reply"}


@pytest.mark.parametrize("args", [
    [],                                                   # no --url
    ["--url", "tcp://127.0.0.1:1", "--concurrency", "0"],
    ["--url", "tcp://127.0.0.1:1", "--duration", "x"],
    ["--url", "tcp://127.0.0.1:1", "--payload-bytes", "1", "--request-file", "f"],
    ["--url", "tcp://127.0.0.1:1", "--bogus"],
    ["--url", "tcp://127.0.0.1:1", "--method", "NoSlash"],
])
def test_bad_usage(bench_bin: str, args: List[str]) -> None:
    p = run(bench_bin, args)
    assert p.returncode == 2
    assert "nngrpc-bench:" in p.stderr


def test_unreachable_server(bench_bin: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run(bench_bin, ["--url", "tcp://127.0.0.1:%d" % port, "--duration", "0.2"])
    assert p.returncode == 1
    assert "cannot dial" in p.stderr
