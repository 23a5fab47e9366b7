"""The PEP 517 build backend of the nngrpc package (pyproject.toml names it,
with backend-path), so any frontend builds a complete package:

    pip install --no-index --no-build-isolation clients/python
    pip wheel --no-index --no-build-isolation --no-deps -w build/dist clients/python

Part of the package is generated at build time, as before from the
Makefile, now by the backend itself: the runtime protos' modules
(``_pb2.py``, mypy-protobuf's ``.pyi``, the ``_nngrpc`` stubs, listed in
pyproject.toml's [tool.nngrpc-build] ``protos``) and ``_status_table.py``
(from the C runtime's include/nngrpc/status_table.h, by gen_status.py beside this
file).  The C accelerator nngrpc/_speedups.c is compiled into
``nngrpc/_speedups.abi3.so`` and the wheel tagged ``cp311-abi3-<platform>``,
or, without a compiler, Python.h or Python 3.11 (or with
NNGRPC_PURE_PYTHON=1), the wheel is the pure ``py3-none-any`` one, with a
one-line note (build_speedups.py beside this file).  Everything happens in a temporary directory: the sources are
copied there, the generated files added, the wheel written straight to
the frontend's directory.  Nothing is written into the source tree (no
build/, no .egg-info, no generated module), and no other build tool is
needed (the wheel is written by nngrpc/_wheel.py, the protos run through
nngrpc/_protoc.py, the modules ``python -m nngrpc.stubs`` uses too).

Inputs are found in the repository (the protos in ../../proto, the status
table in ../../include/nngrpc) or, in an sdist, inside it: build_sdist copies
them in, so ``pip install nngrpc-X.tar.gz`` builds anywhere protoc is.
Needs protoc (a missing protoc fails the build with one line saying so),
and uses mypy-protobuf's protoc-gen-mypy when it is there (else protoc's
own .pyi, with a note).  No editable installs: develop with ``make``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional

# Leave no bytecode cache in the source tree: none for what this module
# imports or loads, and its own (written as the frontend imported it) goes.
sys.dont_write_bytecode = True
if __spec__ is not None and __spec__.cached:
    try:
        os.remove(__spec__.cached)
        os.rmdir(os.path.dirname(__spec__.cached))
    except OSError:
        pass

import build_speedups  # noqa: E402 (after the bytecode switch)
import gen_status  # noqa: E402

#: The project directory: clients/python in the repository, or an
#: unpacked sdist.
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "nngrpc"
GENERATOR = "nngrpc_build"

#: [project] keys this backend understands; any other is an error, so a
#: key added to pyproject.toml is never silently left out of the wheel.
_PROJECT_KEYS = {
    "name", "dynamic", "description", "readme", "requires-python", "license",
    "dependencies", "optional-dependencies", "scripts",
}


class BuildError(Exception):
    """A build that cannot go on; str() is one line for the user."""


def _fail(e: Exception) -> "SystemExit":
    sys.stderr.write("nngrpc build: %s\n" % e)
    return SystemExit(1)


def _load(name: str) -> ModuleType:
    """Loads nngrpc/<name>.py by path (the package cannot be imported
    before its generated modules exist; these use only the stdlib)."""
    path = os.path.join(PROJECT, PACKAGE, name + ".py")
    spec = importlib.util.spec_from_file_location("_nngrpc_build_" + name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


_wheel = _load("_wheel")
_protoc = _load("_protoc")
#: What a build reports in one line (anything else is a bug: a traceback).
_USER_ERRORS = (BuildError, _protoc.ProtocError, _wheel.WheelError, build_speedups.CompileError,
                OSError)


def _pyproject() -> Dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise BuildError("reading pyproject.toml needs Python 3.11 or the tomli package") from None
    with open(os.path.join(PROJECT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _version() -> str:
    with open(os.path.join(PROJECT, PACKAGE, "_version.py")) as f:
        m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if m is None:
        raise BuildError("no __version__ = \"...\" line in nngrpc/_version.py")
    return m.group(1)


def _metadata() -> Any:
    """Returns the package's _wheel.Metadata, from pyproject.toml's
    [project] table and nngrpc/_version.py."""
    project = _pyproject().get("project", {})
    unknown = set(project) - _PROJECT_KEYS
    if unknown:
        raise BuildError("pyproject.toml: [project] keys this backend does not handle: %s"
                         % ", ".join(sorted(unknown)))
    if project.get("dynamic") != ["version"]:
        raise BuildError("pyproject.toml: want dynamic = [\"version\"] (it is in nngrpc/_version.py)")
    description = ""
    if "readme" in project:
        with open(os.path.join(PROJECT, project["readme"]), encoding="utf-8") as f:
            description = f.read()
    license = project.get("license", {})
    return _wheel.Metadata(
        name=project["name"],
        version=_version(),
        summary=project.get("description", ""),
        requires_python=project.get("requires-python", ""),
        requires_dist=list(project.get("dependencies", [])),
        extras={k: list(v) for k, v in project.get("optional-dependencies", {}).items()},
        scripts=dict(project.get("scripts", {})),
        description=description,
        license=license.get("text", "") if isinstance(license, Mapping) else str(license),
    )


def _settings() -> Dict[str, Any]:
    tool = _pyproject().get("tool", {}).get("nngrpc-build", {})
    for key in ("protos", "status-table"):
        if key not in tool:
            raise BuildError("pyproject.toml: [tool.nngrpc-build] needs %r" % key)
    return dict(tool)


def _inputs_root(settings: Mapping[str, Any]) -> str:
    """Returns the directory holding proto/ and the status table: the
    sdist itself, or the repository two levels up."""
    want = [os.path.join("proto", p) for p in settings["protos"]] + [settings["status-table"]]
    for root in (PROJECT, os.path.dirname(os.path.dirname(PROJECT))):
        if all(os.path.isfile(os.path.join(root, w)) for w in want):
            return root
    raise BuildError(
        "cannot find %s (in the repository beside clients/python, or in the sdist)" % ", ".join(want)
    )


def _stage(tmp: str) -> str:
    """Copies the package into tmp and generates its modules there; returns
    the directory holding the complete nngrpc/."""
    settings = _settings()
    root = _inputs_root(settings)
    tools = _protoc.find_tools()
    if tools.mypy_plugin is None:
        sys.stderr.write("nngrpc build: note: protoc-gen-mypy not found (Debian: mypy-protobuf);"
                         " the _pb2.pyi are protoc's own\n")
    stage = os.path.join(tmp, "stage")
    shutil.copytree(os.path.join(PROJECT, PACKAGE), os.path.join(stage, PACKAGE),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sources = set(_files(stage))
    generated = _protoc.generate(settings["protos"], [os.path.join(root, "proto")], stage, tools)
    with open(os.path.join(root, settings["status-table"]), encoding="utf-8") as f:
        table = gen_status.render(gen_status.parse(f.read()), settings["status-table"])
    status = os.path.join(stage, PACKAGE, "_status_table.py")
    generated.append(os.path.relpath(status, stage))
    clash = sources & set(generated)
    if clash:
        raise BuildError("generated files are also in the source tree (delete them there): %s"
                         % ", ".join(sorted(os.path.join("clients/python", c) for c in clash)))
    outside = [g for g in generated if not g.startswith(PACKAGE + "/")]
    if outside:
        raise BuildError("protos generate outside the %s package: %s" % (PACKAGE, ", ".join(outside)))
    with open(status, "w", encoding="utf-8") as f:
        f.write(table)
    return stage


def _files(root: str) -> List[str]:
    out = []
    for dirpath, _, filenames in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/") for n in filenames]
    return out


def _tag(how: "build_speedups.Plan | str") -> str:
    return _wheel.PURE if isinstance(how, str) else how.tag


def _speedups(how: "build_speedups.Plan | str", package_dir: str) -> None:
    """Compiles the accelerator into the staged package_dir, or, when how
    says why it cannot, leaves it out with one line saying so (and its
    type stub, which would tell mypy the module is there); the C source
    leaves the stage either way."""
    if isinstance(how, str):
        sys.stderr.write("nngrpc build: note: building the pure-Python wheel (%s): %s; the client"
                         " then runs slower (no nngrpc._speedups)\n" % (_wheel.PURE, how))
        os.remove(os.path.join(package_dir, build_speedups.SOURCE))
        stub = os.path.join(package_dir, "_speedups.pyi")
        if os.path.exists(stub):
            os.remove(stub)
    else:
        build_speedups.build(how, package_dir)


# ---- PEP 517 hooks -------------------------------------------------------------
def get_requires_for_build_wheel(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    return list(_pyproject().get("build-system", {}).get("requires", []))


def get_requires_for_build_sdist(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    """Writes the .dist-info directory (no protoc, no compiler run);
    returns its name."""
    try:
        files = _wheel.dist_info_files(_metadata(), GENERATOR, _tag(build_speedups.plan()))
    except _USER_ERRORS as e:
        raise _fail(e) from None
    for path, data in files.items():
        full = os.path.join(metadata_directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    return next(iter(files)).split("/", 1)[0]


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Generates, compiles the accelerator (or says in one line why not),
    then writes the wheel into wheel_directory; returns its file name."""
    try:
        metadata = _metadata()
        how = build_speedups.plan()
        with tempfile.TemporaryDirectory(prefix="nngrpc-build-") as tmp:
            stage = _stage(tmp)
            _speedups(how, os.path.join(stage, PACKAGE))
            files = _wheel.tree_files(os.path.join(stage, PACKAGE), PACKAGE + "/")
        path = _wheel.write_wheel(wheel_directory, metadata, files, GENERATOR, _tag(how))
    except _USER_ERRORS as e:
        raise _fail(e) from None
    return os.path.basename(path)


def build_sdist(sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    """Writes an sdist that builds outside the repository: the sources, this
    backend, and the inputs of the generated modules (the runtime protos
    under proto/, the status table under include/nngrpc/), in the places the
    backend looks for them.  No generated file: building it needs protoc,
    as building from the repository does."""
    try:
        metadata = _metadata()
        settings = _settings()
        root = _inputs_root(settings)
        files = _wheel.tree_files(os.path.join(PROJECT, PACKAGE), PACKAGE + "/")
        files.update(_wheel.tree_files(os.path.join(PROJECT, "buildtools"), "buildtools/"))
        for name in ("pyproject.toml", _pyproject()["project"].get("readme", "")):
            if name:
                with open(os.path.join(PROJECT, name), "rb") as f:
                    files[name] = f.read()
        for rel in [os.path.join("proto", p) for p in settings["protos"]] + [settings["status-table"]]:
            with open(os.path.join(root, rel), "rb") as f:
                files[rel.replace(os.sep, "/")] = f.read()
        path = _wheel.write_sdist(sdist_directory, metadata, files)
    except _USER_ERRORS as e:
        raise _fail(e) from None
    return os.path.basename(path)
