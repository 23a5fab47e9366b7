"""Integration tests: the Python client against a real hoteld.

The server binary comes from ``--hoteld`` (or $NNGRPC_HOTELD, default
build/bin/hoteld), so the same tests run against the ASan build:

    build/venv/bin/python -m pytest tests/integration --hoteld build/asan/bin/hoteld

One hoteld serves the whole session, listening on tcp and ipc.  It is polled
with a real call until it answers, and at the end it must exit 0 on SIGTERM
with no sanitizer report on stderr.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc

from hoteld_fixture import Server, start_server, stop_server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hoteld",
        default=os.environ.get("NNGRPC_HOTELD", "build/bin/hoteld"),
        help="hoteld binary to test (default $NNGRPC_HOTELD or build/bin/hoteld)",
    )


@pytest.fixture(scope="session")
def hoteld(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One hoteld --testing for the session (tcp and ipc listeners)."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-it-") as workdir:
        server = start_server(binary, workdir, [])
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture(scope="session")
def hoteld_url(request: pytest.FixtureRequest) -> str:
    """The tcp:// URL of a hoteld to call: $NNGRPC_TEST_TARGET when set (a
    server run elsewhere: make docker-test sets it to a container for the
    tests it runs inside Debian 13), else the session's own hoteld."""
    url = os.environ.get("NNGRPC_TEST_TARGET")
    if url:
        return url
    server: Server = request.getfixturevalue("hoteld")
    return server.tcp


@pytest.fixture
def channel(hoteld: Server) -> Iterator[nngrpc.Channel]:
    with nngrpc.Channel(hoteld.tcp) as ch:
        yield ch


@pytest.fixture
def stub(channel: nngrpc.Channel) -> testing_nngrpc.TestingStub:
    return testing_nngrpc.TestingStub(channel)
