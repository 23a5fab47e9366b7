"""The exported dynamic symbols of libnngrpc.so are its ABI: exactly the
list in src/rpc/libnngrpc.symbols, exactly what the public headers mark
NNGRPC_API, and only nngrpc_* names (nothing internal, nothing generated:
the library is built with -fvisibility=hidden)."""

from __future__ import annotations

import glob
import os
import re
import subprocess
from typing import Set

import pytest


def exported(path: str) -> Set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", path],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def listed(root: str) -> Set[str]:
    with open(os.path.join(root, "src/rpc/libnngrpc.symbols")) as f:
        return {l.strip() for l in f if l.strip() and not l.startswith("#")}


def declared(root: str) -> Set[str]:
    """Names the public headers declare with NNGRPC_API."""
    names = set()
    for path in glob.glob(os.path.join(root, "include/nngrpc/*.h")):
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"NNGRPC_API\s+[^;(]*?\b(nngrpc_\w+)\s*\(", text):
            names.add(m.group(1))
    return names


@pytest.fixture(scope="module")
def library(build_dir: str) -> str:
    path = os.path.join(build_dir, "lib", "libnngrpc.so")
    if not os.path.exists(path):
        pytest.fail("%s is not built (make)" % path)
    return path


def test_exports_are_the_list(library: str, root: str) -> None:
    got, want = exported(library), listed(root)
    assert got == want, "exported but not listed: %s; listed but not exported: %s" % (
        sorted(got - want), sorted(want - got))


def test_only_public_names_are_exported(library: str) -> None:
    names = exported(library)
    assert names, "nothing exported"
    bad = sorted(n for n in names if not n.startswith("nngrpc_") or n.startswith("nngrpc__"))
    assert not bad, "exported names that are not nngrpc_* API: %s" % bad


def test_the_list_is_what_the_headers_declare(root: str) -> None:
    want, decl = listed(root), declared(root)
    assert want == decl, "listed, not declared NNGRPC_API: %s; declared, not listed: %s" % (
        sorted(want - decl), sorted(decl - want))


def test_soname_carries_the_major_version(library: str) -> None:
    out = subprocess.run(["readelf", "-d", library], check=True,
                         capture_output=True, text=True).stdout
    sonames = re.findall(r"\(SONAME\).*\[(.*)\]", out)
    assert sonames == ["libnngrpc.so.1"], out
    assert os.path.realpath(library).endswith("libnngrpc.so.1.0.0")
