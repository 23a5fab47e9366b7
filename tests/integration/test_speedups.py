"""The C accelerator, nngrpc._speedups, in the venv the tests run in.

`make` installs the nngrpc wheel with it (the build machine has a C
compiler and Python.h: make deps), so it must load from the installed
package, not from the source tree.  NNGRPC_NO_SPEEDUPS=1 at run time makes
the sync channel leave it unused: tests/run-all runs the sync client's
tests again that way (`make python-test-pure`), and this module, in both
runs, checks the variable reaches the channel (nngrpc._channel._speedups,
None on the pure-Python path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict

import nngrpc._channel


PROBE = """\
import nngrpc._channel as channel
import nngrpc._speedups as speedups
print(speedups.__file__)
print(getattr(channel, "_speedups", "absent") is None)
"""


def _probe(**env: str) -> "list[str]":
    clean: Dict[str, str] = {k: v for k, v in os.environ.items()
                             if k not in ("NNGRPC_NO_SPEEDUPS", "PYTHONPATH")}
    clean.update(env)
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd="/", env=clean,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def test_the_installed_accelerator_loads() -> None:
    path, _ = _probe()
    assert path.endswith("/site-packages/nngrpc/_speedups.abi3.so"), path


def test_no_speedups_reaches_the_channel() -> None:
    _, unused = _probe()
    assert unused == "False"
    _, unused = _probe(NNGRPC_NO_SPEEDUPS="1")
    assert unused == "True"


def test_this_run_is_on_the_path_it_names() -> None:
    """Under make python-test-pure the tests in this process run pure."""
    pure = os.environ.get("NNGRPC_NO_SPEEDUPS") == "1"
    assert (getattr(nngrpc._channel, "_speedups") is None) == pure
