"""Unit tests of the nngrpc client package (no hoteld needed).

They import the installed nngrpc (build/venv) and run the protoc plugin from
the source tree, as the build does.
"""

from __future__ import annotations

import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PY_DIR = os.path.join(ROOT, "clients", "python")
PLUGIN = os.path.join(PY_DIR, "protoc-gen-nngrpc_python")
PROTO_DIR = os.path.join(ROOT, "proto")
