"""Writes wheels (PEP 427) and their core metadata.

Used by ``python -m nngrpc.stubs`` (stub wheels for a team's protos) and
by the package's own build backend (clients/python/buildtools), so both
make wheels the same way (stub wheels are pure, ``py3-none-any``; the
backend's may carry a compiled module, tagged e.g.
``cp311-abi3-linux_x86_64``): files sorted, fixed timestamps and modes (the
same inputs give the same bytes), a RECORD with every file's sha256.

This module imports only the standard library: the build backend loads it
by path, before the nngrpc package it belongs to is complete.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

#: zip's earliest date: the timestamp of every file in a wheel (and sdist),
#: unless SOURCE_DATE_EPOCH names another.
_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?$")


class WheelError(ValueError):
    """A name, version or file a wheel cannot have."""


@dataclass(frozen=True)
class Metadata:
    """The core metadata (version 2.1) of a distribution."""

    name: str
    version: str
    summary: str = ""
    requires_python: str = ""
    requires_dist: Sequence[str] = ()
    #: extra name -> its requirements (Provides-Extra and "; extra ==").
    extras: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: console script name -> "module:function".
    scripts: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    description_content_type: str = "text/markdown"
    license: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise WheelError("%r is not a valid distribution name (letters, digits, '.', '_', '-')" % self.name)
        if not _VERSION.match(self.version):
            raise WheelError("%r is not a version this tool writes (e.g. 1.2.3, 1.2.3rc1, 1.2.3.post1)" % self.version)
        for script, target in self.scripts.items():
            if not re.match(r"^[\w.-]+$", script) or not re.match(r"^[\w.]+:[\w.]+$", target):
                raise WheelError("bad console script %r = %r" % (script, target))

    def text(self) -> str:
        """Returns the METADATA (and sdist PKG-INFO) file's text."""
        lines = ["Metadata-Version: 2.1", "Name: " + self.name, "Version: " + self.version]
        if self.summary:
            lines.append("Summary: " + " ".join(self.summary.split()))
        if self.license:
            lines.append("License: " + self.license)
        if self.requires_python:
            lines.append("Requires-Python: " + self.requires_python)
        lines += ["Requires-Dist: " + r for r in self.requires_dist]
        for extra, reqs in sorted(self.extras.items()):
            lines.append("Provides-Extra: " + extra)
            lines += ['Requires-Dist: %s; extra == "%s"' % (r, extra) for r in reqs]
        if self.description:
            lines.append("Description-Content-Type: " + self.description_content_type)
            return "\n".join(lines) + "\n\n" + self.description.rstrip("\n") + "\n"
        return "\n".join(lines) + "\n"


def normalize(name: str) -> str:
    """Returns name as wheel and sdist file names spell it:
    "Hotel.Stubs-x" -> "hotel_stubs_x" (PEP 503, then '-' -> '_')."""
    return re.sub(r"[-_.]+", "_", name).lower()


#: The tag of a pure-Python wheel.
PURE = "py3-none-any"
_TAG = re.compile(r"^[a-z0-9_.]+-[a-z0-9_]+-[a-z0-9_.]+$")


def wheel_name(metadata: Metadata, tag: str = PURE) -> str:
    """Returns the file name of metadata's wheel tagged tag
    (python-abi-platform, one of each)."""
    if not _TAG.match(tag):
        raise WheelError("%r is not a wheel tag (python-abi-platform)" % tag)
    return "%s-%s-%s.whl" % (normalize(metadata.name), metadata.version, tag)


def dist_info_files(metadata: Metadata, generator: str, tag: str = PURE) -> Dict[str, bytes]:
    """Returns the .dist-info files but RECORD, by archive path. A wheel
    tagged other than PURE holds compiled code: its root goes to platlib."""
    info = "%s-%s.dist-info/" % (normalize(metadata.name), metadata.version)
    purelib = "true" if tag == PURE else "false"
    files = {
        info + "METADATA": metadata.text().encode(),
        info + "WHEEL": (
            "Wheel-Version: 1.0\nGenerator: %s\nRoot-Is-Purelib: %s\nTag: %s\n"
            % (generator, purelib, tag)
        ).encode(),
    }
    if metadata.scripts:
        body = "".join("%s = %s\n" % kv for kv in sorted(metadata.scripts.items()))
        files[info + "entry_points.txt"] = ("[console_scripts]\n" + body).encode()
    return files


def _epoch() -> int:
    """SOURCE_DATE_EPOCH when set (never before 1980: zip cannot say it)."""
    try:
        return max(int(os.environ.get("SOURCE_DATE_EPOCH", _ZIP_EPOCH)), _ZIP_EPOCH)
    except ValueError:
        return _ZIP_EPOCH


def _date_time() -> Tuple[int, int, int, int, int, int]:
    return time.gmtime(_epoch())[:6]


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or "" in parts or "." in parts or ".." in parts or "\\" in path:
        raise WheelError("bad path in wheel: %r" % path)


def write_wheel(
    out_dir: str, metadata: Metadata, files: Mapping[str, bytes], generator: str,
    tag: str = PURE,
) -> str:
    """Writes metadata's wheel tagged tag, holding files (archive path ->
    content; mode 644, a compiled module too: dlopen needs no execute bit),
    into out_dir (made if missing), replacing a wheel of the same name;
    returns the wheel's path.  Written to a temporary name first, so a failed write
    leaves no partial wheel behind."""
    info_files = dist_info_files(metadata, generator, tag)
    for path in files:
        _check_path(path)
        if path.split("/", 1)[0].endswith(".dist-info"):
            raise WheelError("%r: the .dist-info directory is written by this tool" % path)
    entries = dict(files)
    entries.update(info_files)
    record_path = next(iter(info_files)).rsplit("/", 1)[0] + "/RECORD"
    record: List[str] = [
        "%s,%s,%d" % (p, _record_hash(entries[p]), len(entries[p])) for p in sorted(entries)
    ]
    record.append(record_path + ",,")
    entries[record_path] = ("\n".join(record) + "\n").encode()

    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, wheel_name(metadata, tag))
    tmp = final + ".part"
    stamp = _date_time()
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            # Package files first, the .dist-info last (RECORD at the very end).
            for path in sorted(files) + sorted(info_files) + [record_path]:
                zi = zipfile.ZipInfo(path, date_time=stamp)
                zi.external_attr = (0o100644 & 0xFFFF) << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(zi, entries[path])
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def write_sdist(out_dir: str, metadata: Metadata, files: Mapping[str, bytes]) -> str:
    """Writes metadata's source distribution, NAME-VERSION.tar.gz holding
    files (path -> content, under a NAME-VERSION/ directory) and PKG-INFO,
    into out_dir; returns its path."""
    base = "%s-%s" % (normalize(metadata.name), metadata.version)
    entries = dict(files)
    entries["PKG-INFO"] = metadata.text().encode()
    mtime = _epoch()
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, base + ".tar.gz")
    tmp = final + ".part"
    try:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(entries):
                _check_path(path)
                ti = tarfile.TarInfo(base + "/" + path)
                ti.size, ti.mtime, ti.mode = len(entries[path]), mtime, 0o644
                tf.addfile(ti, io.BytesIO(entries[path]))
        with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=mtime, filename="") as gz:
            gz.write(raw.getvalue())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def tree_files(root: str, prefix: str = "") -> Dict[str, bytes]:
    """Returns every file under root (archive path prefix + relative path
    -> content), leaving out __pycache__ directories and compiled files."""
    out: Dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[prefix + rel] = f.read()
    return out
