"""The nngrpc wheels as another team uses them, from outside this tree.

In the order a user goes: pip builds the nngrpc wheel from clients/python
(the package's own PEP 517 backend generates the runtime protos' modules
and the status table) and writes nothing into the source tree; a fresh
venv outside the tree (``/usr/bin/python3 -m venv --system-site-packages``)
installs it with ``pip install --no-index``; ``python -m nngrpc.stubs``
makes the hotel API's stub wheel and, for a .proto this repository does not
have (a partner team's subset of hotel.v1, written here, in a file and
package layout of its own), another stub wheel; pip installs them; a
program in that venv calls a real hoteld through the partner's stubs.
Also: the sdist builds outside the repository into the same wheel, the
console scripts work, and a missing protoc fails the build with one line.

The nngrpc wheel carries the C accelerator, nngrpc/_speedups.abi3.so
(stable ABI, tagged cp311-abi3-<platform>): built here where a compiler
and Python.h are (make deps installs both; so does docker-test's image),
it must load in the fresh venv. NNGRPC_PURE_PYTHON=1 builds the pure
py3-none-any wheel, with one line saying so, and that wheel works too.

Runs on the host (Debian 12, Python 3.11) in ``make test`` and again in
Debian 13 (Python 3.13) in ``make docker-test``, there with the source tree
mounted read-only and $NNGRPC_TEST_TARGET naming a hoteld container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY_DIR = ROOT / "clients" / "python"
SYSPY = "/usr/bin/python3"

#: A partner team's own view of hoteld's API: the fields it reads, in its
#: own file and Python package (partner.lodging.v1), same proto package
#: and field numbers, so it speaks to hoteld on the wire.
PARTNER_PROTO = """\
syntax = "proto3";

// The booking team's subset of hotel.v1 (hoteld's API).
package hotel.v1;

// A hotel, as the booking team shows it.
message Hotel {
  uint64 id = 1;
  string name = 2;
  string city = 3;
  uint32 stars = 7;
  double rating = 9;
}

message SearchRequest {
  string query = 1;
  uint32 min_stars = 3;
  oneof page_size_present {
    uint32 page_size = 7;
  }
}

message SearchHit {
  Hotel hotel = 1;
}

message SearchResponse {
  repeated SearchHit hits = 1;
  uint64 total = 2;
}

message GetHotelRequest {
  uint64 id = 1;
}

// Hotel search, as hoteld serves it.
service HotelSearch {
  // Finds hotels.
  rpc Search(SearchRequest) returns (SearchResponse) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  // One hotel by id.
  rpc GetHotel(GetHotelRequest) returns (Hotel) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
}
"""

#: The partner's program: calls hoteld through its own stubs only.
PARTNER_PROGRAM = """\
import json
import sys

import nngrpc
from partner.lodging.v1 import lookup_nngrpc, lookup_pb2

with nngrpc.Channel(sys.argv[1]) as channel:
    hotels = lookup_nngrpc.HotelSearchStub(channel)
    found = hotels.Search(lookup_pb2.SearchRequest(query="hotel", min_stars=3, page_size=5),
                          timeout=10)
    first = hotels.GetHotel(lookup_pb2.GetHotelRequest(id=found.hits[0].hotel.id), timeout=10)
    try:
        hotels.GetHotel(lookup_pb2.GetHotelRequest(id=2**63), timeout=10)
        missing = "found"
    except nngrpc.RpcError as e:
        missing = "%s %s" % (e.code().name, e.details())
print(json.dumps({
    "total": found.total,
    "stars": [h.hotel.stars for h in found.hits],
    "first": [first.id, first.name, first.city],
    "missing": missing,
    "nngrpc": nngrpc.__file__,
}))
"""


def _env(**extra: str) -> Dict[str, str]:
    """The environment a user's shell has: no PYTHONPATH from the test
    run, bytecode writing on (so a stray .pyc in the tree would show)."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(k, None)
    env.update(extra)
    return env


def _run(cmd: List[object], cwd: Path, env: Dict[str, str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


def _ok(cmd: List[object], cwd: Path, env: Dict[str, str]) -> str:
    proc = _run(cmd, cwd, env)
    assert proc.returncode == 0, "%s\n%s%s" % (" ".join(map(str, cmd)), proc.stdout, proc.stderr)
    return proc.stdout


def _tree(*dirs: Path) -> Dict[str, Tuple[int, int]]:
    """Every file under dirs: path -> (size, mtime_ns)."""
    out = {}
    for d in dirs:
        for dirpath, _, files in os.walk(d):
            for f in files:
                st = os.stat(os.path.join(dirpath, f))
                out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


def _dist_name(wheel: Path) -> str:
    """"nngrpc-0.1.0-cp311-abi3-linux_x86_64.whl" -> "nngrpc-0.1.0"."""
    return "-".join(wheel.name.split("-")[:2])


def _platform_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform()).lower()


def _pip_wheel(src: Path, out: Path, cwd: Path, **env: str) -> "subprocess.CompletedProcess[str]":
    return _run([SYSPY, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-index",
                 "--no-build-isolation", "--no-deps", "-w", out, src], cwd, _env(**env))


class Built:
    """What the module builds once: the wheel, and the tree before/after."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.dist = work / "dist"
        watched = [PY_DIR, ROOT / "proto", ROOT / "src" / "rpc"]
        before = _tree(*watched)
        proc = _pip_wheel(PY_DIR, self.dist, work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        after = _tree(*watched)
        self.changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        wheels = sorted(self.dist.glob("nngrpc-*.whl"))
        assert len(wheels) == 1, wheels
        self.wheel = wheels[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("protoc") is None:
        pytest.fail("protoc is not installed (Debian: protobuf-compiler; make deps)")
    return Built(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def venv(built: Built) -> Iterator[Path]:
    """A fresh venv outside the tree with the nngrpc wheel installed."""
    v = built.work / "venv"
    _ok([SYSPY, "-m", "venv", "--system-site-packages", v], built.work, _env())
    _ok([v / "bin" / "pip", "install", "--no-index", "--disable-pip-version-check", built.wheel],
        built.work, _env())
    yield v


def _stub_wheel(venv: Path, cwd: Path, *args: str) -> Path:
    out = _ok([venv / "bin" / "python", "-m", "nngrpc.stubs", *args], cwd, _env())
    path = cwd / out.strip().splitlines()[-1]  # as given: relative to cwd, or absolute
    assert path.is_file(), out
    return path


def test_build_writes_nothing_into_the_source_tree(built: Built) -> None:
    assert built.changed == [], "the build wrote into the source tree: %s" % built.changed


def test_nngrpc_wheel_holds_the_whole_runtime(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as zf:
        names = set(zf.namelist())
        info = _dist_name(built.wheel) + ".dist-info/"
        meta = zf.read(info + "METADATA").decode()
        tags = zf.read(info + "WHEEL").decode()
        scripts = zf.read(info + "entry_points.txt").decode()
    for module in ("v1/rpc_pb2", "testing/v1/testing_pb2", "health/v1/health_pb2",
                   "reflection/v1/reflection_pb2"):
        assert "nngrpc/%s.py" % module in names and "nngrpc/%s.pyi" % module in names, module
    for module in ("testing/v1/testing_nngrpc", "health/v1/health_nngrpc",
                   "reflection/v1/reflection_nngrpc"):
        assert "nngrpc/%s.py" % module in names and "nngrpc/%s.pyi" % module in names, module
    # Every source file of the package is in the wheel (new modules too),
    # but the accelerator's C source: the wheel has it compiled.
    sources = {p.relative_to(PY_DIR).as_posix() for p in (PY_DIR / "nngrpc").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert "nngrpc/_speedups.c" in sources
    assert sources - {"nngrpc/_speedups.c"} <= names, sorted(sources - names)
    assert not any(n.endswith(".c") for n in names), names
    assert "nngrpc/_speedups.abi3.so" in names
    assert built.wheel.name == "nngrpc-0.1.0-cp311-abi3-%s.whl" % _platform_tag()
    assert "Root-Is-Purelib: false\n" in tags
    assert "Tag: cp311-abi3-%s\n" % _platform_tag() in tags
    assert {"nngrpc/_status_table.py", "nngrpc/py.typed", "nngrpc/stubs.py"} <= names
    assert "@generated by mypy-protobuf" in zipfile.ZipFile(built.wheel).read(
        "nngrpc/v1/rpc_pb2.pyi").decode()
    assert "Requires-Dist: protobuf>=3.20\n" in meta
    assert 'Requires-Dist: prometheus-client; extra == "metrics"\n' in meta  # optional
    assert "protoc-gen-nngrpc_python = nngrpc.protoc_plugin:main" in scripts
    assert "nngrpc = nngrpc._cli:main" in scripts


def test_installed_wheel_loads_the_accelerator(built: Built, venv: Path) -> None:
    out = _ok([venv / "bin" / "python", "-c",
               "import nngrpc._speedups as s; print(s.__file__)"], built.work, _env())
    path = out.strip()
    assert path.startswith(str(venv)) and path.endswith("/nngrpc/_speedups.abi3.so"), out


def test_pure_python_wheel_on_request(built: Built, tmp_path: Path) -> None:
    """NNGRPC_PURE_PYTHON=1: the py3-none-any wheel, no compiled module, one
    line saying why (the backend's hook, as pip runs it: pip shows it only
    with -v); installed, the client works without the accelerator."""
    hook = ("import sys; sys.path.insert(0, sys.argv[1]); import nngrpc_build; "
            "print(nngrpc_build.build_wheel(sys.argv[2]))")
    proc = _run([SYSPY, "-c", hook, PY_DIR / "buildtools", tmp_path / "dist"], PY_DIR,
                _env(PYTHONDONTWRITEBYTECODE="1", NNGRPC_PURE_PYTHON="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = proc.stdout.strip()
    assert name == _dist_name(built.wheel) + "-py3-none-any.whl"
    notes = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(notes) == 1 and notes[0].startswith("nngrpc build: note: building the pure-Python"
                                                   " wheel (py3-none-any): NNGRPC_PURE_PYTHON=1"
                                                   " is set;"), proc.stderr
    assert "slower" in notes[0], notes
    with zipfile.ZipFile(tmp_path / "dist" / name) as zf:
        names = set(zf.namelist())
        tags = zf.read(_dist_name(built.wheel) + ".dist-info/WHEEL").decode()
    assert not any("_speedups" in n for n in names), names
    assert "Root-Is-Purelib: true\nTag: py3-none-any\n" in tags
    pure = tmp_path / "venv"
    _ok([SYSPY, "-m", "venv", "--system-site-packages", pure], tmp_path, _env())
    _ok([pure / "bin" / "pip", "install", "--no-index", "--disable-pip-version-check",
         tmp_path / "dist" / name], tmp_path, _env())
    out = _ok([pure / "bin" / "python", "-c",
               "import importlib.util, nngrpc, nngrpc.testing.v1.testing_nngrpc; "
               "print(importlib.util.find_spec('nngrpc._speedups'))"], tmp_path, _env())
    assert out.strip() == "None", out


def test_hotel_stub_wheel_installs_and_imports(built: Built, venv: Path) -> None:
    whl = _stub_wheel(venv, built.work, "--proto-path", ROOT / "proto", "--name", "hotel-stubs",
                      "--version", "0.1.0", "--out", built.dist, "hotel/v1/hotel.proto")
    assert whl.name == "hotel_stubs-0.1.0-py3-none-any.whl"
    names = set(zipfile.ZipFile(whl).namelist())
    assert {"hotel/__init__.py", "hotel/v1/__init__.py", "hotel/py.typed",
            "hotel/v1/hotel_pb2.py", "hotel/v1/hotel_pb2.pyi",
            "hotel/v1/hotel_nngrpc.py", "hotel/v1/hotel_nngrpc.pyi"} <= names, names
    _ok([venv / "bin" / "pip", "install", "--no-index", "--disable-pip-version-check", whl],
        built.work, _env())
    out = _ok([venv / "bin" / "python", "-c",
               "from hotel.v1 import hotel_pb2, hotel_nngrpc; import nngrpc; "
               "print(hotel_nngrpc.__file__, nngrpc.__file__)"], built.work, _env())
    assert all(str(venv) in p for p in out.split()), out


def test_partner_stub_wheel_calls_hoteld(built: Built, venv: Path, hoteld_url: str) -> None:
    """The Done-means test: stubs for a proto this repository does not have."""
    team = built.work / "partner-team"
    proto = team / "proto" / "partner" / "lodging" / "v1" / "lookup.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(PARTNER_PROTO)
    whl = _stub_wheel(venv, team, "--proto-path", "proto", "--name", "partner-lodging-stubs",
                      "--version", "2.3.1", "--out", "dist", "partner/lodging/v1/lookup.proto")
    assert whl == team / "dist" / "partner_lodging_stubs-2.3.1-py3-none-any.whl"
    _ok([venv / "bin" / "pip", "install", "--no-index", "--disable-pip-version-check", whl],
        team, _env())
    shown = _ok([venv / "bin" / "pip", "show", "partner-lodging-stubs"], team, _env())
    assert "Version: 2.3.1" in shown and "Requires: nngrpc, protobuf" in shown, shown
    program = team / "lookup.py"
    program.write_text(PARTNER_PROGRAM)
    out = json.loads(_ok([venv / "bin" / "python", program, hoteld_url], team, _env()))
    assert out["total"] > 0 and out["stars"] and min(out["stars"]) >= 3, out
    assert out["first"][0] > 0 and out["first"][1] and out["first"][2], out
    assert out["missing"].startswith("NOT_FOUND "), out
    assert out["nngrpc"].startswith(str(venv)), out


def test_console_scripts(built: Built, venv: Path, hoteld_url: str) -> None:
    listed = _ok([venv / "bin" / "nngrpc", hoteld_url, "list"], built.work, _env())
    assert "hotel.v1.HotelSearch" in listed.split(), listed
    out = built.work / "plugin-out"
    out.mkdir()
    _ok(["protoc", "-I", ROOT / "proto",
         "--plugin=protoc-gen-nngrpc_python=%s" % (venv / "bin" / "protoc-gen-nngrpc_python"),
         "--nngrpc_python_out", out, "hotel/v1/hotel.proto"], built.work, _env())
    assert "class HotelSearchStub:" in (out / "hotel" / "v1" / "hotel_nngrpc.py").read_text()


def test_sdist_builds_outside_the_repository(built: Built) -> None:
    """The sdist carries the backend and the generator's inputs (runtime
    protos, status table); built away from the repository it gives the
    same wheel, byte for byte."""
    sdist_dir = built.work / "sdist"
    hook = ("import sys; sys.path.insert(0, sys.argv[1]); import nngrpc_build; "
            "print(nngrpc_build.build_sdist(sys.argv[2]))")
    name = _ok([SYSPY, "-c", hook, PY_DIR / "buildtools", sdist_dir], built.work,
               _env(PYTHONDONTWRITEBYTECODE="1")).strip()
    assert name == _dist_name(built.wheel) + ".tar.gz"
    elsewhere = built.work / "elsewhere"
    with tarfile.open(sdist_dir / name) as tf:
        members = tf.getnames()
        # The "data" filter where Python has it (3.12+; later 3.11 too).
        tf.extractall(elsewhere, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    top = name[: -len(".tar.gz")]
    assert top + "/proto/nngrpc/v1/rpc.proto" in members
    assert top + "/include/nngrpc/status_table.h" in members
    assert top + "/nngrpc/_speedups.c" in members
    assert not any(m.endswith(("_pb2.py", "_status_table.py")) for m in members), members
    out = built.work / "dist-from-sdist"
    proc = _pip_wheel(elsewhere / top, out, elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / built.wheel.name).read_bytes() == built.wheel.read_bytes()


def test_missing_protoc_fails_with_one_line(built: Built, tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with python but no protoc
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    proc = _pip_wheel(PY_DIR, tmp_path / "out", tmp_path, PATH=str(bare))
    assert proc.returncode != 0
    lines = [l.strip() for l in (proc.stdout + proc.stderr).splitlines() if "nngrpc build:" in l]
    assert lines == ["nngrpc build: protoc not found on PATH: install the protobuf compiler"
                     " (Debian: apt-get install protobuf-compiler)"], proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
