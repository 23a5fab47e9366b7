"""Compiles the client's C accelerator, nngrpc/_speedups.c, into the
nngrpc wheel as ``nngrpc/_speedups.abi3.so`` (used by nngrpc_build.py
beside this file; the standard library only).

The module is written against CPython's limited API at 3.11
(``Py_LIMITED_API 0x030B0000``), needs only libc and Python.h, so one
build serves every CPython from 3.11 on, on this OS and architecture: the
wheel is tagged ``cp311-abi3-<platform>`` (e.g. ``linux_x86_64``).

Where it cannot be built (not CPython on Linux, Python older than 3.11, no
C compiler, no Python.h), or ``NNGRPC_PURE_PYTHON=1`` asks so, the wheel
is the pure ``py3-none-any`` one: the client then runs its pure-Python
path, slower per call. A compiler that is there but fails is an error, not
a quiet fallback: the accelerator must compile warning-free.

The compile is reproducible as far as the compiler is: fixed flags, no
debug information, and file names relative to the package directory, so
the temporary directory's name is not in the object.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import List, Union

SOURCE = "_speedups.c"
MODULE = "_speedups.abi3.so"
#: The oldest CPython whose stable ABI the module uses (Py_LIMITED_API).
ABI_FLOOR = (3, 11)
CFLAGS = ["-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-std=c11",
          "-fvisibility=hidden"]


class CompileError(Exception):
    """The compiler ran and failed; str() is one line (its output went to
    stderr before)."""


@dataclass(frozen=True)
class Plan:
    """How to compile: the compiler's argv, Python.h's directory, and the
    wheel tag the result gets."""

    compiler: List[str]
    include: str
    tag: str


def plan() -> Union[Plan, str]:
    """Returns the Plan, or why the wheel is pure (one phrase)."""
    if os.environ.get("NNGRPC_PURE_PYTHON", "") not in ("", "0"):
        return "NNGRPC_PURE_PYTHON=%s is set" % os.environ["NNGRPC_PURE_PYTHON"]
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return "the accelerator builds for CPython on Linux only (this is %s on %s)" % (
            sys.implementation.name, sys.platform)
    if sys.version_info < ABI_FLOOR:
        return "Python %d.%d is older than %d.%d, the stable ABI the accelerator uses" % (
            sys.version_info[:2] + ABI_FLOOR)
    compiler = shlex.split(os.environ.get("CC", "") or "cc")
    if not compiler or shutil.which(compiler[0]) is None:
        return "no C compiler (%s not found; set CC)" % (compiler[0] if compiler else "$CC")
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return "no Python.h in %s (Debian: apt-get install python3-dev)" % include
    platform = re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform()).lower()
    return Plan(compiler, include, "cp%d%d-abi3-%s" % (ABI_FLOOR + (platform,)))


def build(how: Plan, package_dir: str) -> None:
    """Compiles package_dir/_speedups.c into package_dir/_speedups.abi3.so,
    then removes the .c (it ships in the sdist, not the wheel)."""
    cmd = how.compiler + CFLAGS + ["-I", how.include, "-o", MODULE, SOURCE]
    proc = subprocess.run(cmd, cwd=package_dir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise CompileError(
            "compiling nngrpc/%s failed (%s exit %d; output above); NNGRPC_PURE_PYTHON=1 builds"
            " the pure-Python wheel instead" % (SOURCE, how.compiler[0], proc.returncode))
    os.remove(os.path.join(package_dir, SOURCE))
