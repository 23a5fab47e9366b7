"""Container tests (docker/test.sh runs them; `make docker-test`).

    test_container.py     a running hoteld container, through its published
                          port:  pytest tests/docker/test_container.py
                          --url tcp://127.0.0.1:PORT [--hotels N] [--testing]
    test_health_probe.py  the nngrpc-health probe against fake servers and
                          a local hoteld, no Docker:  pytest
                          tests/docker/test_health_probe.py
                          [--probe build/bin/nngrpc-health] [--hoteld ...]
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--url",
        default=os.environ.get("NNGRPC_URL"),
        help="hoteld to test (tcp://127.0.0.1:PORT), default $NNGRPC_URL",
    )
    parser.addoption(
        "--hotels",
        type=int,
        default=None,
        help="size of the server's generated dataset, to check Stats",
    )
    parser.addoption(
        "--testing",
        action="store_true",
        help="the server serves nngrpc.testing.v1.Testing (NNGRPC_TESTING=1)",
    )
    parser.addoption(
        "--probe",
        default="build/bin/nngrpc-health",
        help="nngrpc-health binary (default build/bin/nngrpc-health)",
    )
    parser.addoption(
        "--hoteld",
        default=os.environ.get("NNGRPC_HOTELD", "build/bin/hoteld"),
        help="hoteld binary for the probe's tests (default build/bin/hoteld)",
    )


@pytest.fixture(scope="session")
def url(request: pytest.FixtureRequest) -> str:
    value = request.config.getoption("--url")
    if not value:
        pytest.skip("no --url: these tests need a running server")
    return str(value)
