"""examples/places as an adopter builds it, out of this tree: install
nngrpc into a temporary prefix, copy the example elsewhere, build it with
its own Makefile (pkg-config nngrpc and the installed C plugin only), run
placesd, and call it with examples/places/client.py from a venv of its
own that has the nngrpc wheel and a stub wheel made from places.proto.

`make example-test` runs this file alone; `make test` runs it with
tests/lib."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, Iterator, List

import pytest

import nngrpc
import nngrpc.health

from test_install import make, make_env

GLUE = ("placesd.c", "Makefile")  # handlers + main, and the build file
GLUE_MAX_LINES = 50


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nngrpc-example-") as d:
        yield d


@pytest.fixture(scope="module")
def prefix(root: str, build_dir: str, workdir: str) -> str:
    top = os.path.join(workdir, "prefix")
    make(root, build_dir, "install", "PREFIX=" + top)
    return top


def adopter_env(prefix: str) -> Dict[str, str]:
    env = make_env()
    env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib/pkgconfig")
    return env


@pytest.fixture(scope="module")
def example(root: str, prefix: str, workdir: str) -> str:
    """The example, copied out of the tree and built there."""
    src = os.path.join(workdir, "places")
    shutil.copytree(os.path.join(root, "examples/places"), src,
                    ignore=shutil.ignore_patterns("gen", "placesd", "__pycache__"))
    p = subprocess.run(["make", "-C", src], env=adopter_env(prefix),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "/src/" not in p.stdout and "build/gen" not in p.stdout, p.stdout
    return src


@pytest.fixture(scope="module")
def client_python(build_dir: str, example: str, workdir: str) -> str:
    """The client's own venv, made as docs/adopting.md says: Debian's
    python3 (protobuf from python3-protobuf), the nngrpc wheel from
    `make wheel`, and a stub wheel of places.proto made by
    `python -m nngrpc.stubs`. Returns its python."""
    venv = os.path.join(workdir, "venv")
    py = os.path.join(venv, "bin", "python")
    wheels = glob.glob(os.path.join(build_dir, "dist", "nngrpc-*.whl"))
    assert len(wheels) == 1, "make wheel first: %s" % wheels
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
    pip = [py, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-index"]
    run(pip + wheels)
    run([py, "-m", "nngrpc.stubs", "-I", os.path.join(example, "proto"),
         "places/v1/places.proto", "--name", "places-stubs",
         "--out", os.path.join(workdir, "dist")])
    run(pip + glob.glob(os.path.join(workdir, "dist", "places_stubs-*.whl")))
    return py


def run(cmd: List[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")
    assert p.returncode == 0, "%s: exit %d\n%s%s" % (cmd, p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="module")
def placesd(example: str, workdir: str) -> Iterator[str]:
    url = "ipc://%s/placesd.sock" % workdir
    log = open(os.path.join(workdir, "placesd.log"), "w+")
    proc = subprocess.Popen([os.path.join(example, "placesd"), "--listen", url,
                             "--workers", "4", "--access-log", "all"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
            assert nngrpc.health.check(ch, timeout=10) is nngrpc.health.ServingStatus.SERVING
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.seek(0)
        text = log.read()
        log.close()
        assert "placesd ready" in text and "stopped" in text, text


def test_glue_is_50_lines_or_fewer(root: str) -> None:
    lines = {}
    for name in GLUE:
        with open(os.path.join(root, "examples/places", name)) as f:
            lines[name] = len(f.read().splitlines())
    assert sum(lines.values()) <= GLUE_MAX_LINES, lines


def test_the_client_calls_placesd(example: str, client_python: str, placesd: str) -> None:
    p = subprocess.run([client_python, os.path.join(example, "client.py"), placesd],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    # The three landmarks nearest to the centre of Paris, nearest first.
    assert [l.split("km  ")[1] for l in lines[:3]] == [
        "Notre-Dame de Paris", "Louvre", "Eiffel Tower"], p.stdout
    assert lines[3] == "Eiffel Tower to Big Ben: 341 km", p.stdout
    assert lines[4] == ('Eiffel Tower to Atlantis: NOT_FOUND: '
                        'no landmark "Eiffel Tower" or "Atlantis"'), p.stdout


def test_bad_input_gets_invalid_argument(placesd: str) -> None:
    with nngrpc.Channel(placesd) as ch:
        for latitude, limit in ((91.0, 1), (0.0, 51), (float("nan"), 1)):
            req = (_field(1, latitude) + _varint_field(3, limit))
            with pytest.raises(nngrpc.RpcError) as e:
                ch.call("/places.v1.Places/Nearest", req, timeout=5)
            assert e.value.code() is nngrpc.StatusCode.INVALID_ARGUMENT


def test_the_serve_helper_gives_placesd_the_standard_options(example: str) -> None:
    exe = os.path.join(example, "placesd")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("usage: placesd [options]")
    for flag in ("--listen", "--workers", "--auth-token-file", "--http", "--drain-timeout"):
        assert flag in p.stdout, flag
    p = subprocess.run([exe, "--workers", "0"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and p.stderr.startswith("placesd: --workers: must be")


def _field(number: int, value: float) -> bytes:
    """A double field, by hand: the test needs no stubs for bad input."""
    import struct
    return bytes([number << 3 | 1]) + struct.pack("<d", value)


def _varint_field(number: int, value: int) -> bytes:
    out = bytearray([number << 3])
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_placesd_gets_process_isolation_from_the_serve_helper(
        example: str, workdir: str) -> None:
    """--isolation process is the serve helper's: placesd's handlers run in
    worker processes with nothing in its 50 lines about it."""
    url = "ipc://%s/placesd-iso.sock" % workdir
    proc = subprocess.Popen([os.path.join(example, "placesd"), "--listen", url,
                             "--workers", "2", "--isolation", "process"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with nngrpc.Channel(url, backoff=0.01, backoff_max=0.05) as ch:
            # NOT_SERVING until the zygote has forked the workers.
            end = time.monotonic() + 30
            while (nngrpc.health.check(ch, timeout=10)
                   is not nngrpc.health.ServingStatus.SERVING):
                assert time.monotonic() < end, "placesd never turned SERVING"
                time.sleep(0.02)
            req = _field(1, 48.85) + _field(2, 2.35) + _varint_field(3, 2)
            assert len(ch.call("/places.v1.Places/Nearest", req, timeout=5)) > 10
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "isolation: process (2 workers" in out, out
