"""Runs protoc to make the Python modules of .proto files.

For each file: ``<name>_pb2.py`` (protoc's python_out), ``<name>_pb2.pyi``
(mypy-protobuf's protoc-gen-mypy: precise types for every message, field
and enum; protoc's own pyi_out when mypy-protobuf is missing), and for
files with services ``<name>_nngrpc.py`` and ``.pyi`` (nngrpc's plugin,
nngrpc/protoc_plugin.py).  Used by ``python -m nngrpc.stubs`` and by the
package's own build backend, so the runtime's modules and every stub
package are generated the same way.

This module imports only the standard library: the build backend loads it
by path, before the nngrpc package it belongs to is complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence

#: The nngrpc protoc plugin beside this file; it runs as a script and
#: imports only google.protobuf.
PLUGIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protoc_plugin.py")


class ProtocError(Exception):
    """protoc or a plugin is missing, or protoc failed; str() is one line
    (protoc's own messages, if any, are in .output)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class Tools:
    """The programs a generation runs."""

    protoc: str
    #: protoc-gen-mypy, or None: protoc's own (less precise) .pyi then.
    mypy_plugin: Optional[str]
    #: The Python that runs nngrpc's plugin (it needs google.protobuf).
    python: str = sys.executable


def find_tools(protoc: Optional[str] = None, python: Optional[str] = None) -> Tools:
    """Returns the tools to run: protoc (the one named, else $PROTOC, else
    protoc on PATH) and protoc-gen-mypy (on PATH, or beside the running
    Python, where a venv installs it).

    Raises ProtocError when protoc is missing.
    """
    name = protoc or os.environ.get("PROTOC") or "protoc"
    found = shutil.which(name)
    if found is None:
        where = "on PATH" if name == "protoc" else "(%s)" % name
        raise ProtocError(
            "protoc not found %s: install the protobuf compiler"
            " (Debian: apt-get install protobuf-compiler)" % where
        )
    mypy = shutil.which("protoc-gen-mypy")
    if mypy is None:
        beside = os.path.join(os.path.dirname(sys.executable), "protoc-gen-mypy")
        mypy = beside if os.access(beside, os.X_OK) else None
    return Tools(protoc=found, mypy_plugin=mypy, python=python or sys.executable)


def _plugin_wrapper(tmp: str, python: str) -> str:
    """Writes an executable that runs nngrpc's plugin with python; returns
    its path (protoc runs plugins as programs)."""
    path = os.path.join(tmp, "protoc-gen-nngrpc_python")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec '%s' '%s' \"$@\"\n" % (python.replace("'", "'\\''"),
                                                        PLUGIN_SCRIPT.replace("'", "'\\''")))
    os.chmod(path, 0o755)
    return path


def generate(
    protos: Sequence[str], proto_path: Sequence[str], out_dir: str, tools: Tools
) -> List[str]:
    """Generates the modules of protos (names relative to a proto_path
    directory, as protoc takes them) into out_dir; returns the files
    written, relative to out_dir, sorted.

    Raises ProtocError when protoc fails (its messages in .output).
    """
    if not protos:
        raise ProtocError("no .proto files given")
    os.makedirs(out_dir, exist_ok=True)
    before = set(_walk(out_dir))
    with tempfile.TemporaryDirectory(prefix="nngrpc-protoc-") as tmp:
        cmd = [tools.protoc]
        cmd += ["-I" + p for p in proto_path]
        cmd += ["--python_out=" + out_dir]
        if tools.mypy_plugin:
            cmd += ["--plugin=protoc-gen-mypy=" + tools.mypy_plugin, "--mypy_out=quiet:" + out_dir]
        else:
            cmd += ["--pyi_out=" + out_dir]
        cmd += [
            "--plugin=protoc-gen-nngrpc_python=" + _plugin_wrapper(tmp, tools.python),
            "--nngrpc_python_out=" + out_dir,
        ]
        cmd += list(protos)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout).strip()
        first = output.splitlines()[0] if output else "exit code %d" % proc.returncode
        raise ProtocError("protoc failed: " + first, output)
    return sorted(set(_walk(out_dir)) - before)


def add_packages(out_dir: str, typed: bool = True) -> List[str]:
    """Makes every directory under out_dir a regular package: writes an
    empty __init__.py where there is none (and py.typed, PEP 561, when
    typed).  Returns the files written, relative to out_dir."""
    written = []
    for dirpath, dirnames, _ in os.walk(out_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        if dirpath == out_dir:
            continue
        for name in ("__init__.py",) + (("py.typed",) if typed else ()):
            path = os.path.join(dirpath, name)
            if not os.path.exists(path):
                open(path, "w").close()
                written.append(os.path.relpath(path, out_dir).replace(os.sep, "/"))
    return sorted(written)


def _walk(root: str) -> List[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return out
