"""make install and make uninstall, then a program built the way an
adopter builds one: only the installed headers, `pkg-config nngrpc`, and
the shared or the static library; it must serve a real health check."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from typing import Dict, Iterator, List

import pytest

import nngrpc
import nngrpc.health

EXPECTED = sorted([
    "bin/hoteld",
    "bin/nngrpc-bench",
    "bin/nngrpc-health",
    "bin/protoc-gen-nngrpc-c",
    "include/nngrpc/clock.h",
    "include/nngrpc/export.h",
    "include/nngrpc/log.h",
    "include/nngrpc/metrics.h",
    "include/nngrpc/nngrpc.h",
    "include/nngrpc/serve.h",
    "include/nngrpc/status.h",
    "include/nngrpc/status_table.h",
    "lib/libnngrpc.a",
    "lib/libnngrpc.so",
    "lib/libnngrpc.so.1",
    "lib/libnngrpc.so.1.0.0",
    "lib/pkgconfig/nngrpc.pc",
])


def make_env() -> Dict[str, str]:
    """The environment for a nested make: none of an outer make's flags
    (its jobserver is not ours)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(root: str, build_dir: str, *args: str) -> None:
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", root,
                        "BUILD=" + build_dir, *args],
                       env=make_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, "make %s: exit %d\n%s%s" % (
        " ".join(args), p.returncode, p.stdout, p.stderr)


def files_under(top: str) -> List[str]:
    out = []
    for d, _, names in os.walk(top):
        out += [os.path.relpath(os.path.join(d, n), top) for n in names]
    return sorted(out)


@pytest.fixture(scope="module")
def prefix(root: str, build_dir: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nngrpc-prefix-") as top:
        make(root, build_dir, "install", "PREFIX=" + top)
        yield top


def pkg_config(prefix: str, *args: str) -> List[str]:
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib/pkgconfig"))
    out = subprocess.run(["pkg-config", *args, "nngrpc"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return shlex.split(out)


def test_install_lays_out_these_files(prefix: str) -> None:
    assert files_under(prefix) == EXPECTED


def test_shared_library_links(prefix: str) -> None:
    lib = os.path.join(prefix, "lib")
    assert os.readlink(os.path.join(lib, "libnngrpc.so")) == "libnngrpc.so.1"
    assert os.readlink(os.path.join(lib, "libnngrpc.so.1")) == "libnngrpc.so.1.0.0"
    assert not os.path.islink(os.path.join(lib, "libnngrpc.so.1.0.0"))


def test_pkg_config_has_real_paths(prefix: str) -> None:
    assert pkg_config(prefix, "--cflags") == ["-I%s/include" % prefix]
    libs = pkg_config(prefix, "--libs")
    assert libs[:3] == ["-L%s/lib" % prefix, "-lnngrpc", "-lnng"], libs
    assert "-lprotobuf-c" in libs  # Requires: libprotobuf-c
    assert pkg_config(prefix, "--variable=protoc_gen_nngrpc_c") == [
        "%s/bin/protoc-gen-nngrpc-c" % prefix]
    with open(os.path.join(prefix, "lib/pkgconfig/nngrpc.pc")) as f:
        pc = f.read()
    assert "src/" not in pc and "build/" not in pc and "gen" not in pc.split("Cflags")[1]


def build_and_serve(root: str, prefix: str, tmp: str, static: bool) -> None:
    """Builds tests/lib/minimal_server.c against the install, runs it on an
    ipc:// URL and checks health through the Python client."""
    exe = os.path.join(tmp, "minimal_server")
    cflags = pkg_config(prefix, "--cflags")
    if static:
        libs = [os.path.join(prefix, "lib/libnngrpc.a") if a == "-lnngrpc" else a
                for a in pkg_config(prefix, "--static", "--libs")]
    else:
        libs = pkg_config(prefix, "--libs") + ["-Wl,-rpath," + os.path.join(prefix, "lib")]
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", *cflags, "-o", exe,
                    os.path.join(root, "tests/lib/minimal_server.c"), *libs], check=True)
    needed = subprocess.run(["readelf", "-d", exe], check=True, capture_output=True,
                            text=True).stdout
    assert ("libnngrpc.so.1" in needed) is not static, needed
    url = "ipc://%s/s.sock" % tmp
    proc = subprocess.Popen([exe, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready OK\n"
        with nngrpc.Channel(url) as ch:
            assert nngrpc.health.check(ch, timeout=5) is nngrpc.health.ServingStatus.SERVING
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(10) == 0


def test_a_program_builds_against_the_shared_library(root: str, prefix: str) -> None:
    with tempfile.TemporaryDirectory(prefix="nngrpc-adopter-") as tmp:
        build_and_serve(root, prefix, tmp, static=False)


def test_a_program_builds_against_the_static_library(root: str, prefix: str) -> None:
    with tempfile.TemporaryDirectory(prefix="nngrpc-adopter-") as tmp:
        build_and_serve(root, prefix, tmp, static=True)


def test_destdir_install_and_uninstall(root: str, build_dir: str) -> None:
    """DESTDIR stages the same files under PREFIX; uninstall removes every
    one of them, and include/nngrpc, and nothing else."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-destdir-") as stage:
        os.makedirs(os.path.join(stage, "usr/local/lib/other"))
        make(root, build_dir, "install", "PREFIX=/usr/local", "DESTDIR=" + stage)
        assert files_under(os.path.join(stage, "usr/local")) == EXPECTED
        with open(os.path.join(stage, "usr/local/lib/pkgconfig/nngrpc.pc")) as f:
            assert f.readline() == "prefix=/usr/local\n"
        make(root, build_dir, "uninstall", "PREFIX=/usr/local", "DESTDIR=" + stage)
        assert files_under(stage) == []
        assert not os.path.exists(os.path.join(stage, "usr/local/include/nngrpc"))
        assert os.path.isdir(os.path.join(stage, "usr/local/lib/other"))
