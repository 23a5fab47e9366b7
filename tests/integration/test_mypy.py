"""``mypy --strict`` is clean on the nngrpc package and on
examples/typed_example.py, and the example runs against a real hoteld.

mypy is Debian's python3-mypy, run as ``/usr/bin/python3 -m mypy`` (the
venv sees it through --system-site-packages too).  It checks the package
as built and staged in BUILD/python (the sources plus the generated
runtime modules), with the user protos' generated code from
BUILD/gen/python on MYPYPATH.

The configuration is written here, in full, so what is relaxed is plain:

- ``google.*``: Debian ships no type stubs for protobuf (types-protobuf is
  PyPI only), so those imports are untyped (Any).
- the generated ``*_pb2`` modules: protoc's ``.pyi`` files subclass
  ``google.protobuf.message.Message`` (Any without stubs) and have an
  unannotated ``__slots__``, both errors under --strict.  Their errors are
  ignored (``ignore_errors``), but their types are still used: fields,
  constructors and enums of messages are checked in the code that uses
  them.  protoc's output is not edited.

Nothing else is relaxed: nngrpc and the example are checked with every
--strict flag.  A control file with known type errors must fail, which
shows the checker really sees the stubs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import List

import pytest

from hoteld_fixture import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("NNGRPC_BUILD", os.path.join(ROOT, "build"))
STAGE = os.path.join(BUILD, "python")
GEN = os.path.join(BUILD, "gen", "python")
EXAMPLE = os.path.join(ROOT, "examples", "typed_example.py")
SYSPY = "/usr/bin/python3"


def _pb2_modules() -> List[str]:
    """Dotted names of every generated *_pb2 module (from its .pyi)."""
    names = []
    for top in (STAGE, GEN):
        for dirpath, _, files in os.walk(top):
            for f in files:
                if f.endswith("_pb2.pyi"):
                    rel = os.path.relpath(os.path.join(dirpath, f[:-4]), top)
                    names.append(rel.replace(os.sep, "."))
    return sorted(names)


def _config(path: str) -> str:
    pb2 = _pb2_modules()
    assert "nngrpc.v1.rpc_pb2" in pb2 and "hotel.v1.hotel_pb2" in pb2, pb2
    with open(path, "w") as f:
        f.write(textwrap.dedent("""\
            [mypy]
            strict = True
            warn_unreachable = True
            show_error_codes = True

            [mypy-google.*]
            ignore_missing_imports = True

            [mypy-%s]
            ignore_errors = True
            """) % ",".join(pb2))
    return path


def _mypy(tmp_path: "os.PathLike[str]", *targets: str) -> "subprocess.CompletedProcess[str]":
    if not os.path.isdir(os.path.join(STAGE, "nngrpc")):
        pytest.fail("no staged package in %s: run make" % STAGE)
    probe = subprocess.run([SYSPY, "-m", "mypy", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail("mypy is not installed for %s (Debian: python3-mypy; make deps)" % SYSPY)
    config = _config(os.path.join(str(tmp_path), "mypy.ini"))
    env = dict(os.environ, MYPYPATH=GEN)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [SYSPY, "-m", "mypy", "--config-file", config,
         "--cache-dir", os.path.join(str(tmp_path), "cache"),
         os.path.join(STAGE, "nngrpc"), *targets],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600,
    )


def test_mypy_strict_is_clean(tmp_path: "os.PathLike[str]") -> None:
    proc = _mypy(tmp_path, EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found"), proc.stdout


def test_mypy_sees_the_types(tmp_path: "os.PathLike[str]") -> None:
    """A control with type errors fails, each one reported."""
    bad = os.path.join(str(tmp_path), "bad_usage.py")
    with open(bad, "w") as f:
        f.write(textwrap.dedent("""\
            import nngrpc
            import nngrpc.health
            from hotel.v1 import hotel_nngrpc, hotel_pb2
            from nngrpc.reflection import ReflectionClient


            def use(ch: nngrpc.Channel) -> None:
                stub = hotel_nngrpc.HotelSearchStub(ch)
                resp = stub.Search(hotel_pb2.SearchRequest(query="x"), timeout=1.0)
                total: str = resp.total                             # line 10: int
                hotel_pb2.SearchRequest(qurey="x")                  # line 11: no such field
                status: str = nngrpc.health.check(ch)               # line 12: ServingStatus
                stub.Search(hotel_pb2.SearchRequest(), timeout="1")  # line 13: str timeout
                services: int = ReflectionClient(ch).list_services()  # line 14: List[str]
                resp2, call = stub.GetHotel.with_call(hotel_pb2.GetHotelRequest(id=1))
                us: str = call.queue_us                             # line 16: int


            def untyped(x):                                         # line 19: --strict
                return x
            """))
    proc = _mypy(tmp_path, bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {int(l.split(":")[1]) for l in proc.stdout.splitlines() if l.startswith(bad + ":")
             or l.startswith("bad_usage.py:")}
    assert lines == {10, 11, 12, 13, 14, 16, 19}, proc.stdout


def test_typed_example_runs(hoteld: Server) -> None:
    proc = subprocess.run(
        [sys.executable, EXAMPLE, "--url", hoteld.tcp],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "health: SERVING"
    assert out[1].startswith("search: ") and " hits (queued " in out[1]
    assert "hotel 2**63: missing" in out
    assert "1 us deadline: DEADLINE_EXCEEDED" in out
    assert out[-2].startswith("services: hotel.v1.HotelSearch, nngrpc.health.v1.Health")
    assert out[-1].startswith("aio: hotel=") and ", spa=" in out[-1]
    totals = [int(x.split("=")[1]) for x in out[-1][len("aio: "):].split(", ")]
    assert totals[0] > 0
