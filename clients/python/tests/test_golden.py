"""Golden test: the plugin's output for proto/nngrpc/testing/v1/testing.proto
must equal tests/golden/.  After an intended change, regenerate with

    NNGRPC_UPDATE_GOLDEN=1 build/venv/bin/python -m pytest clients/python/tests/test_golden.py
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _paths import PLUGIN, PROTO_DIR

GOLDEN = Path(__file__).parent / "golden"
OUTPUTS = ["testing_nngrpc.py", "testing_nngrpc.pyi"]


def generate(out: Path) -> None:
    subprocess.run(
        [
            "protoc",
            "-I" + PROTO_DIR,
            "--plugin=protoc-gen-nngrpc_python=" + PLUGIN,
            "--nngrpc_python_out=" + str(out),
            "nngrpc/testing/v1/testing.proto",
        ],
        check=True,
    )


@pytest.mark.parametrize("name", OUTPUTS)
def test_generated_matches_golden(tmp_path: Path, name: str) -> None:
    if shutil.which("protoc") is None:
        pytest.skip("protoc not installed")
    generate(tmp_path)
    got = (tmp_path / "nngrpc/testing/v1" / name).read_text()
    if os.environ.get("NNGRPC_UPDATE_GOLDEN"):
        (GOLDEN / name).write_text(got)
    want = (GOLDEN / name).read_text()
    diff = "".join(
        difflib.unified_diff(
            want.splitlines(True), got.splitlines(True), "golden/" + name, "generated/" + name
        )
    )
    assert not diff, "generated code differs from the golden file:\n" + diff


def test_only_files_with_services_get_stubs(tmp_path: Path) -> None:
    if shutil.which("protoc") is None:
        pytest.skip("protoc not installed")
    subprocess.run(
        ["protoc", "-I" + PROTO_DIR, "--plugin=protoc-gen-nngrpc_python=" + PLUGIN,
         "--nngrpc_python_out=" + str(tmp_path), "nngrpc/v1/rpc.proto"],
        check=True,
    )
    assert list(tmp_path.rglob("*")) == []
