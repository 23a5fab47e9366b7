"""StatusCode, generated from include/nngrpc/status_table.h."""

from __future__ import annotations

import importlib.util
import os

import pytest

import nngrpc
from _paths import PY_DIR, ROOT

GRPC_NAMES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
]


def load_gen_status():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_status", os.path.join(PY_DIR, "buildtools", "gen_status.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_members_are_grpcs() -> None:
    assert [c.name for c in nngrpc.StatusCode] == GRPC_NAMES
    assert [c.value_int for c in nngrpc.StatusCode] == list(range(17))
    assert nngrpc.StatusCode.NOT_FOUND.value == (5, "not found")
    assert nngrpc.StatusCode.INTERNAL.description == "internal error"


def test_from_int() -> None:
    for c in nngrpc.StatusCode:
        assert nngrpc.StatusCode.from_int(c.value_int) is c
    assert nngrpc.StatusCode.from_int(17) is nngrpc.StatusCode.UNKNOWN
    assert nngrpc.StatusCode.from_int(-1) is nngrpc.StatusCode.UNKNOWN


def test_installed_table_matches_the_header() -> None:
    gen = load_gen_status()
    with open(os.path.join(ROOT, "include/nngrpc/status_table.h")) as f:
        entries = gen.parse(f.read())
    assert [(c.name, c.value_int, c.description) for c in nngrpc.StatusCode] == entries


def test_parse_rejects_bad_tables() -> None:
    gen = load_gen_status()
    with pytest.raises(ValueError):
        gen.parse("nothing here")
    with pytest.raises(ValueError):
        gen.parse('XX(OK, 0, "ok")\nXX(UNKNOWN, 0, "dup")')
    assert gen.parse('\tXX(OK, 0, "ok") \\\n\tXX(UNKNOWN, 2, "unknown error")') == [
        ("OK", 0, "ok"),
        ("UNKNOWN", 2, "unknown error"),
    ]


def test_rpc_error() -> None:
    e = nngrpc.RpcError.of(nngrpc.StatusCode.NOT_FOUND, "nope")
    assert e.code() is nngrpc.StatusCode.NOT_FOUND
    assert e.details() == "nope"
    assert e.trailing_metadata() == ()
    assert str(e) == "NOT_FOUND: nope"
