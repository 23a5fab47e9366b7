"""Library tests: libnngrpc as another program sees it, from the build tree
(``--build``, default build) and from an install into a temporary prefix.

    build/venv/bin/python -m pytest tests/lib --build build
"""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--build",
        default=os.environ.get("NNGRPC_BUILD", "build"),
        help="the build tree to test (default $NNGRPC_BUILD or build)",
    )


@pytest.fixture(scope="session")
def build_dir(request: pytest.FixtureRequest) -> str:
    return os.path.abspath(str(request.config.getoption("--build")))


@pytest.fixture(scope="session")
def root() -> str:
    return ROOT
