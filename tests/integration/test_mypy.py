"""``mypy --strict`` on nngrpc and the hotel stubs as a user's venv has
them (installed from the wheels), on examples/typed_example.py, and on
code that misuses the generated types, which must be rejected.

mypy is the one of the interpreter under test (``sys.executable -m mypy``:
on the host build/venv sees Debian's python3-mypy; `make docker-test` runs
this file again in Debian 13).  It checks the installed packages
(their directories in site-packages): the runtime with the generated modules, and the
stub wheel, every ``_pb2`` typed by mypy-protobuf's ``.pyi``.

protobuf's own types come from python3-typeshed's ``google-stubs``
(types-protobuf).  Debian 13's package has them.  Debian 12's lists
types-protobuf 3.20 in its metadata but ships none of its files
(google-stubs holds only cloud/ndb), so there google.protobuf is untyped:
every message class derives from Any, and mypy cannot tell one message
type from another (a SearchRequest passed to GetHotel passes).  Then, and
only then, this test relaxes what that forces (google.* imports untyped,
errors in the generated ``_pb2.pyi`` ignored) and skips the message-type
test, saying why.  With ``NNGRPC_REQUIRE_PROTOBUF_STUBS=1`` (the Debian 13
check sets it) missing stubs fail instead.  Everything else is checked
with every --strict flag in both places.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import List, Optional, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "typed_example.py")


def protobuf_stubs() -> Optional[str]:
    """The directory holding google-stubs/protobuf for this interpreter
    (what mypy finds through --python-executable), or None."""
    for d in sys.path:
        if d and os.path.isfile(os.path.join(d, "google-stubs", "protobuf", "message.pyi")):
            return d
    return None


def _package_dirs() -> List[str]:
    """The installed nngrpc and hotel packages (from the wheels)."""
    import hotel
    import nngrpc

    dirs = [os.path.dirname(m.__file__ or "") for m in (nngrpc, hotel)]
    for d in dirs:
        assert "-packages" in d, "not installed from a wheel: %s" % d
    return dirs


def _pb2_modules() -> List[str]:
    """Dotted names of the installed generated *_pb2 modules (by .pyi)."""
    names = []
    for top in _package_dirs():
        base = os.path.dirname(top)
        for dirpath, _, files in os.walk(top):
            names += [os.path.relpath(os.path.join(dirpath, f[:-4]), base).replace(os.sep, ".")
                      for f in files if f.endswith("_pb2.pyi")]
    assert "nngrpc.v1.rpc_pb2" in names and "hotel.v1.hotel_pb2" in names, names
    return sorted(names)


def _config(path: str) -> str:
    text = textwrap.dedent("""\
        [mypy]
        strict = True
        warn_unreachable = True
        show_error_codes = True
        """)
    if protobuf_stubs() is None:
        text += textwrap.dedent("""\

            # No protobuf stubs (Debian 12's python3-typeshed lacks them).
            [mypy-google.*]
            ignore_missing_imports = True

            [mypy-%s]
            ignore_errors = True
            """) % ",".join(_pb2_modules())
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module")
def mypy_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One directory (config, cache) for every run in this module."""
    probe = subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail("mypy is not installed for %s (Debian: python3-mypy; make deps)" % sys.executable)
    d = str(tmp_path_factory.mktemp("mypy"))
    _config(os.path.join(d, "mypy.ini"))
    return d


def _mypy(mypy_dir: str, *args: str) -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("MYPYPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.path.join(mypy_dir, "mypy.ini"),
         "--cache-dir", os.path.join(mypy_dir, "cache"), *args],
        cwd=mypy_dir, env=env, capture_output=True, text=True, timeout=600,
    )


def _error_lines(out: str, name: str) -> Set[int]:
    return {int(line.split(":")[1]) for line in out.splitlines()
            if line.split(":")[0].endswith(name) and ": error:" in line}


def _write(mypy_dir: str, name: str, text: str) -> str:
    path = os.path.join(mypy_dir, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def test_installed_packages_and_example_are_strict_clean(mypy_dir: str) -> None:
    good = _write(mypy_dir, "good_usage.py", """\
        import nngrpc
        from hotel.v1 import hotel_nngrpc, hotel_pb2


        def name_of(ch: nngrpc.Channel, hotel_id: int) -> str:
            stub = hotel_nngrpc.HotelSearchStub(ch)
            hotel: hotel_pb2.Hotel = stub.GetHotel(hotel_pb2.GetHotelRequest(id=hotel_id))
            found: hotel_pb2.SearchResponse = stub.Search(
                hotel_pb2.SearchRequest(query="spa", sort=hotel_pb2.SORT_RATING), timeout=1.0)
            return hotel.name + str(found.total)
        """)
    proc = _mypy(mypy_dir, *_package_dirs(), EXAMPLE, good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found"), proc.stdout


def test_misuse_is_rejected(mypy_dir: str) -> None:
    """Wrong field names and types, and wrong types of what nngrpc returns."""
    bad = _write(mypy_dir, "bad_usage.py", """\
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
            hotel_pb2.GetHotelRequest(id="7")                   # line 17: id is an int
            name: int = resp2.name                              # line 18: str


        def untyped(x):                                         # line 21: --strict
            return x
        """)
    proc = _mypy(mypy_dir, bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _error_lines(proc.stdout, "bad_usage.py") == {10, 11, 12, 13, 14, 16, 17, 18, 21}, proc.stdout
    assert 'Unexpected keyword argument "qurey" for "SearchRequest"' in proc.stdout, proc.stdout


def test_wrong_message_type_is_rejected(mypy_dir: str) -> None:
    """A SearchRequest passed to GetHotel, a response taken for another:
    needs protobuf's own types, so message classes are not Any."""
    if protobuf_stubs() is None:
        reason = ("no protobuf stubs for %s (google-stubs/protobuf: python3-typeshed in Debian 13;"
                  " Debian 12's package lacks them), so message types derive from Any"
                  % sys.executable)
        if os.environ.get("NNGRPC_REQUIRE_PROTOBUF_STUBS") == "1":
            pytest.fail(reason)
        pytest.skip(reason + "; make docker-test checks this in Debian 13")
    bad = _write(mypy_dir, "wrong_message.py", """\
        import nngrpc
        import nngrpc.aio
        from hotel.v1 import hotel_nngrpc, hotel_pb2


        def use(ch: nngrpc.Channel) -> None:
            stub = hotel_nngrpc.HotelSearchStub(ch)
            stub.GetHotel(hotel_pb2.SearchRequest(query="spa"))  # line 8
            found: hotel_pb2.SearchResponse = stub.GetHotel(hotel_pb2.GetHotelRequest(id=1))  # 9
            stub.Search(hotel_pb2.GetHotelRequest(id=1))         # line 10
            stub.Search(hotel_pb2.SearchRequest(geo=hotel_pb2.Hotel()))  # line 11


        async def use_aio(ch: nngrpc.aio.Channel) -> None:
            stub = hotel_nngrpc.HotelSearchAsyncStub(ch)
            await stub.GetHotel(hotel_pb2.SearchRequest())       # line 16
        """)
    proc = _mypy(mypy_dir, bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _error_lines(proc.stdout, "wrong_message.py") == {8, 9, 10, 11, 16}, proc.stdout
    assert 'has incompatible type "SearchRequest"; expected "GetHotelRequest"' in proc.stdout, proc.stdout


def test_typed_example_runs(hoteld_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, EXAMPLE, "--url", hoteld_url],
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
