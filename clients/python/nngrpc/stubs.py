"""``python -m nngrpc.stubs``: turns .proto files into a stub wheel.

    python -m nngrpc.stubs --proto-path proto --name geo-stubs \\
        --version 1.4.0 --out dist/ geo/v1/geo.proto

writes ``dist/geo_stubs-1.4.0-py3-none-any.whl`` holding, for each .proto,
``<name>_pb2.py`` and its ``.pyi`` (mypy-protobuf's types), and for each
file with services ``<name>_nngrpc.py`` and ``.pyi`` (a ``<Service>Stub``
for nngrpc.Channel and a ``<Service>AsyncStub`` for nngrpc.aio.Channel),
in regular packages (``__init__.py`` and ``py.typed`` in each directory).
The wheel depends on nngrpc (at least the version that generated it) and
protobuf, so ``pip install dist/geo_stubs-1.4.0-py3-none-any.whl`` gives a
team typed clients for another team's API, versioned like any other
dependency.  Needs protoc on PATH, and mypy-protobuf's protoc-gen-mypy for
the precise ``_pb2.pyi`` (without it protoc's own .pyi are used, and a
note says so).

The files listed are generated; the .proto files they import are found on
the --proto-path but not generated: a wheel per API, and ``--requires``
names the stub wheels of the APIs it imports (protobuf's well-known types
come with protobuf).  Two wheels must not hold the same package directory
(hotel/v1 in one wheel, hotel/v2 in another would both write
hotel/__init__.py): put one API version per package path.

Exit codes: 0 done, 1 protoc failed or a tool is missing, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional, Sequence

from nngrpc import _protoc, _wheel
from nngrpc._version import __version__

PROG = "python -m nngrpc.stubs"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate Python stubs for .proto files and package them as a wheel.",
    )
    p.add_argument("protos", nargs="+", metavar="PROTO",
                   help="a .proto file to generate, relative to a --proto-path directory")
    p.add_argument("--proto-path", "-I", action="append", required=True, metavar="DIR",
                   help="a directory protoc looks for .proto files in (repeatable)")
    p.add_argument("--name", required=True,
                   help="the wheel's distribution name, e.g. geo-stubs")
    p.add_argument("--version", default="0.1.0",
                   help="the wheel's version (default 0.1.0)")
    p.add_argument("--out", default=".", metavar="DIR",
                   help="where the wheel is written (default: the current directory)")
    p.add_argument("--requires", action="append", default=[], metavar="REQ",
                   help="another requirement of the wheel, e.g. 'common-stubs>=1.2' (repeatable)")
    p.add_argument("--summary", default=None, help="the wheel's one-line description")
    p.add_argument("--protoc", default=None, help="the protoc to run (default: $PROTOC, else protoc on PATH)")
    return p


def build(
    protos: Sequence[str],
    proto_path: Sequence[str],
    metadata: _wheel.Metadata,
    out: str,
    protoc: Optional[str] = None,
) -> str:
    """Generates protos and writes the wheel; returns its path.

    Raises _protoc.ProtocError and _wheel.WheelError.
    """
    tools = _protoc.find_tools(protoc)
    if tools.mypy_plugin is None:
        sys.stderr.write(
            "%s: note: protoc-gen-mypy not found (Debian: apt-get install mypy-protobuf);"
            " the _pb2.pyi are protoc's own\n" % PROG
        )
    with tempfile.TemporaryDirectory(prefix="nngrpc-stubs-") as tmp:
        generated = _protoc.generate(protos, proto_path, tmp, tools)
        if not any(f.endswith("_pb2.py") for f in generated):
            raise _protoc.ProtocError("protoc wrote no _pb2 module")
        _protoc.add_packages(tmp)
        files = _wheel.tree_files(tmp)
    return _wheel.write_wheel(out, metadata, files, "nngrpc.stubs " + __version__)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    for proto in args.protos:
        if os.path.isabs(proto) or not proto.endswith(".proto"):
            sys.stderr.write("%s: %s: give .proto files relative to a --proto-path directory\n"
                             % (PROG, proto))
            return 2
    try:
        metadata = _wheel.Metadata(
            name=args.name,
            version=args.version,
            summary=args.summary or "nngrpc client stubs for %s" % ", ".join(args.protos),
            requires_python=">=3.9",
            requires_dist=["nngrpc>=%s" % __version__, "protobuf>=3.20"] + list(args.requires),
        )
        path = build(args.protos, args.proto_path, metadata, args.out, args.protoc)
    except _wheel.WheelError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 2
    except _protoc.ProtocError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        if "\n" in e.output:
            sys.stderr.write(e.output + "\n")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
