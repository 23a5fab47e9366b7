"""Fault tests: hostile input, overload, kill -9 and restart, leaks.

    build/venv/bin/python -m pytest tests/fault --hoteld build/bin/hoteld
    build/venv/bin/python -m pytest tests/fault --hoteld build/asan/bin/hoteld

Each test starts its own hoteld (faultlib.spawn_hoteld, built on
tests/integration/hoteld_fixture.py) with the flags it needs, and stops it
with the fixture's check: exit 0 on SIGTERM and no ASan/LSan/UBSan report.
The 2-minute leak run and valgrind are in test_leaks.py behind
--leak-seconds / --valgrind-seconds (make leak-test); the soak is
tests/fault/soak.py (make soak).
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption(
            "--hoteld",
            default=os.environ.get("NNGRPC_HOTELD", "build/bin/hoteld"),
            help="hoteld binary to test (default $NNGRPC_HOTELD or build/bin/hoteld)",
        )
    except ValueError:
        pass  # tests/integration's conftest added it (both suites in one run)
    parser.addoption(
        "--leak-seconds",
        type=float,
        default=float(os.environ.get("LEAK_SECONDS", "10")),
        help="length of the mixed-load leak run in test_leaks.py (make leak-test: 120)",
    )
    parser.addoption(
        "--valgrind-seconds",
        type=float,
        default=float(os.environ.get("VALGRIND_SECONDS", "0")),
        help="length of the load under valgrind memcheck (0: skip; make leak-test: 20)",
    )


@pytest.fixture(scope="session")
def hoteld_binary(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--hoteld"))


@pytest.fixture
def workdir() -> Iterator[str]:
    """A short temporary directory (ipc:// paths must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-fault-") as d:
        yield d
