#!/usr/bin/python3
"""The breaking-change check: every .proto under proto/, now against the last
release.

    tools/proto_breaking.py                  check this tree against the
                                             last release of CHANGELOG.md
    tools/proto_breaking.py --against REV    ... against another commit
    tools/proto_breaking.py --old DIR --new DIR
                                             compare two proto roots (no git)

It compiles the FileDescriptorSet of every .proto under proto/ at the last
release (the commit on the newest release's "Commit:" line of CHANGELOG.md,
extracted with git into a temporary directory) and in the working tree,
with protoc --descriptor_set_out --include_imports, and prints one line per
change that breaks a caller: removed or renumbered fields, changed field
types, labels or oneofs, renamed fields or enum values (JSON and generated
code use the names), removed messages, enums, enum values, services or
methods, changed method input/output types, streaming or idempotency
levels, changed packages, and declarations moved to another file (the
generated modules' import paths change). Additions are not findings.

It exits 0 when every finding is accepted: listed, exactly as printed here,
in the [Unreleased] section of tests/compat/breaking-accepted.txt (the
release the change goes into; the coordinator renames that section when the
release is cut). Otherwise it exits 1 and says how to accept one. It exits 2
when it cannot run: no release in CHANGELOG.md, or its commit missing from
the clone (a shallow clone: fetch the history first).

Needs git, protoc and Debian's python3-protobuf; runs under /usr/bin/python3.
Compare is pure (descriptor sets in, lines out); the rest is I/O.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from google.protobuf import descriptor_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANGELOG = "CHANGELOG.md"
ACCEPTED = "tests/compat/breaking-accepted.txt"
PROTO_DIR = "proto"
UNRELEASED = "Unreleased"

FDP = descriptor_pb2.FieldDescriptorProto
_TYPE_NAMES = {
    v: k[len("TYPE_"):].lower()
    for k, v in FDP.Type.items()  # type: ignore[attr-defined]
}
_IDEMPOTENCY = {
    v: k for k, v in descriptor_pb2.MethodOptions.IdempotencyLevel.items()  # type: ignore[attr-defined]
}


class CheckError(Exception):
    """The check cannot run (exit 2); the message says what it needs."""


# ---- the last release ---------------------------------------------------------
_RELEASE_RE = re.compile(r"^## \[(?P<version>[^\]]+)\]")
_COMMIT_RE = re.compile(r"^Commit:\s*(?P<commit>[0-9a-f]{7,40})\s*$")


def last_release(changelog_text: str) -> Tuple[str, str]:
    """Returns (version, commit) of the newest release in CHANGELOG.md's
    text: the first "## [X.Y.Z]" heading other than [Unreleased], and the
    "Commit:" line under it."""
    version: Optional[str] = None
    for line in changelog_text.splitlines():
        m = _RELEASE_RE.match(line)
        if m:
            if version is not None:
                break  # the release had no Commit: line
            if m.group("version") != UNRELEASED:
                version = m.group("version")
            continue
        m = _COMMIT_RE.match(line)
        if m and version is not None:
            return version, m.group("commit")
    if version is None:
        raise CheckError("%s names no release (a '## [X.Y.Z]' heading)" % CHANGELOG)
    raise CheckError(
        "%s: release %s has no 'Commit: <sha>' line under its heading" % (CHANGELOG, version)
    )


# ---- accepted findings ----------------------------------------------------------
def accepted_findings(text: str, release: str = UNRELEASED) -> List[str]:
    """Returns the lines of the [release] section of breaking-accepted.txt
    (blank lines and '#' comments skipped)."""
    out: List[str] = []
    section: Optional[str] = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            section = m.group(1)
            continue
        if section == release:
            out.append(line)
    return out


# ---- building descriptor sets ---------------------------------------------------
def proto_files(root: str) -> List[str]:
    """Every .proto under root, relative to it, sorted."""
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".proto"):
                out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


def build_set(root: str, out_path: str) -> descriptor_pb2.FileDescriptorSet:
    """Compiles every .proto under root into one FileDescriptorSet (imports
    included) at out_path, and returns it; raises CheckError when protoc
    fails."""
    files = proto_files(root) if os.path.isdir(root) else []
    fds = descriptor_pb2.FileDescriptorSet()
    if not files:
        return fds
    cmd = ["protoc", "-I", root, "--include_imports", "--descriptor_set_out=" + out_path]
    try:
        r = subprocess.run(cmd + files, capture_output=True, text=True)
    except FileNotFoundError:
        raise CheckError("protoc not found: install protobuf-compiler (make deps)") from None
    if r.returncode != 0:
        raise CheckError("protoc failed on %s:\n%s" % (root, r.stderr.strip()))
    with open(out_path, "rb") as f:
        fds.ParseFromString(f.read())
    return fds


def extract_protos(repo: str, commit: str, dest: str) -> None:
    """Writes proto/ as it was at commit into dest/proto (git archive)."""
    ok = subprocess.run(
        ["git", "-C", repo, "cat-file", "-e", commit + "^{commit}"], capture_output=True
    )
    if ok.returncode != 0:
        shallow = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--is-shallow-repository"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        raise CheckError(
            "commit %s of the last release (%s) is not in this clone%s. The check compares "
            "the protos against that commit: fetch the history first "
            "(git fetch --unshallow, or a clone without --depth)."
            % (commit, CHANGELOG, " (a shallow clone)" if shallow == "true" else "")
        )
    os.makedirs(dest, exist_ok=True)
    listing = subprocess.run(
        ["git", "-C", repo, "ls-tree", "-d", "--name-only", commit, PROTO_DIR],
        capture_output=True,
        text=True,
    )
    if not listing.stdout.strip():
        return  # no proto/ at that commit: everything is an addition
    archive = subprocess.run(
        ["git", "-C", repo, "archive", "--format=tar", commit, PROTO_DIR], capture_output=True
    )
    if archive.returncode != 0:
        raise CheckError("git archive %s failed: %s" % (commit, archive.stderr.decode().strip()))
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)


# ---- the comparison (pure) --------------------------------------------------------
class _Index:
    """The declarations of a descriptor set, by full name (no leading dot),
    of the files under consideration only."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet, files: Iterable[str]) -> None:
        wanted = set(files)
        self.packages: Dict[str, str] = {}
        self.messages: Dict[str, Tuple[str, descriptor_pb2.DescriptorProto]] = {}
        self.enums: Dict[str, Tuple[str, descriptor_pb2.EnumDescriptorProto]] = {}
        self.services: Dict[str, Tuple[str, descriptor_pb2.ServiceDescriptorProto]] = {}
        for fd in fds.file:
            if fd.name not in wanted:
                continue
            self.packages[fd.name] = fd.package
            prefix = fd.package + "." if fd.package else ""
            for m in fd.message_type:
                self._add_message(fd.name, prefix + m.name, m)
            for e in fd.enum_type:
                self.enums[prefix + e.name] = (fd.name, e)
            for s in fd.service:
                self.services[prefix + s.name] = (fd.name, s)

    def _add_message(self, file: str, name: str, m: descriptor_pb2.DescriptorProto) -> None:
        self.messages[name] = (file, m)
        for nested in m.nested_type:
            self._add_message(file, name + "." + nested.name, nested)
        for e in m.enum_type:
            self.enums[name + "." + e.name] = (file, e)


def _type_of(f: descriptor_pb2.FieldDescriptorProto) -> str:
    if f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM, FDP.TYPE_GROUP):
        return f.type_name.lstrip(".")
    return _TYPE_NAMES.get(f.type, str(f.type))


def _label_of(f: descriptor_pb2.FieldDescriptorProto) -> str:
    if f.label == FDP.LABEL_REPEATED:
        return "repeated"
    if f.label == FDP.LABEL_REQUIRED:
        return "required"
    if f.proto3_optional:
        return "optional"
    return "singular"


def _oneof_of(m: descriptor_pb2.DescriptorProto, f: descriptor_pb2.FieldDescriptorProto) -> str:
    """The real oneof a field belongs to, or "none" (proto3 optional's
    synthetic oneof is the "optional" label instead)."""
    if not f.HasField("oneof_index") or f.proto3_optional:
        return "none"
    return "oneof " + m.oneof_decl[f.oneof_index].name


def _idempotency(m: descriptor_pb2.MethodDescriptorProto) -> str:
    return _IDEMPOTENCY.get(m.options.idempotency_level, str(m.options.idempotency_level))


def _compare_fields(
    name: str, old: descriptor_pb2.DescriptorProto, new: descriptor_pb2.DescriptorProto
) -> Iterator[str]:
    new_by_number = {f.number: f for f in new.field}
    new_by_name = {f.name: f for f in new.field}
    for f in sorted(old.field, key=lambda x: x.number):
        g = new_by_number.get(f.number)
        if g is None:
            moved = new_by_name.get(f.name)
            if moved is not None:
                yield "field renumbered: %s.%s: %d -> %d" % (name, f.name, f.number, moved.number)
            else:
                yield "field removed: %s.%s = %d" % (name, f.name, f.number)
            continue
        where = "%s.%s = %d" % (name, f.name, f.number)
        if g.name != f.name:
            yield "field renamed: %s = %d: %s -> %s" % (name, f.number, f.name, g.name)
        if _type_of(g) != _type_of(f):
            yield "field type changed: %s: %s -> %s" % (where, _type_of(f), _type_of(g))
        if _label_of(g) != _label_of(f):
            yield "field label changed: %s: %s -> %s" % (where, _label_of(f), _label_of(g))
        if _oneof_of(new, g) != _oneof_of(old, f):
            yield "field oneof changed: %s: %s -> %s" % (where, _oneof_of(old, f), _oneof_of(new, g))


def _compare_enum(
    name: str, old: descriptor_pb2.EnumDescriptorProto, new: descriptor_pb2.EnumDescriptorProto
) -> Iterator[str]:
    new_by_number: Dict[int, str] = {}
    for v in new.value:
        new_by_number.setdefault(v.number, v.name)
    new_by_name = {v.name: v.number for v in new.value}
    for v in sorted(old.value, key=lambda x: (x.number, x.name)):
        if v.name in new_by_name and new_by_name[v.name] != v.number:
            yield "enum value renumbered: %s.%s: %d -> %d" % (
                name, v.name, v.number, new_by_name[v.name])
        elif v.name not in new_by_name:
            if v.number in new_by_number:
                yield "enum value renamed: %s = %d: %s -> %s" % (
                    name, v.number, v.name, new_by_number[v.number])
            else:
                yield "enum value removed: %s.%s = %d" % (name, v.name, v.number)


def _compare_service(
    name: str,
    old: descriptor_pb2.ServiceDescriptorProto,
    new: descriptor_pb2.ServiceDescriptorProto,
) -> Iterator[str]:
    new_methods = {m.name: m for m in new.method}
    for m in old.method:
        full = "%s.%s" % (name, m.name)
        n = new_methods.get(m.name)
        if n is None:
            yield "method removed: %s" % full
            continue
        for what, a, b in (
            ("input", m.input_type.lstrip("."), n.input_type.lstrip(".")),
            ("output", m.output_type.lstrip("."), n.output_type.lstrip(".")),
            ("client streaming", str(m.client_streaming), str(n.client_streaming)),
            ("server streaming", str(m.server_streaming), str(n.server_streaming)),
            ("idempotency", _idempotency(m), _idempotency(n)),
        ):
            if a != b:
                yield "method %s changed: %s: %s -> %s" % (what, full, a, b)


def compare(
    old: descriptor_pb2.FileDescriptorSet,
    new: descriptor_pb2.FileDescriptorSet,
    old_files: Sequence[str],
    new_files: Sequence[str],
) -> List[str]:
    """Returns the breaking changes from old to new, one line each, sorted.

    old_files/new_files: the files to consider (the .proto files under
    proto/, not the imports protoc added)."""
    a, b = _Index(old, old_files), _Index(new, new_files)
    out: List[str] = []
    for file, pkg in a.packages.items():
        if file in b.packages and b.packages[file] != pkg:
            out.append("package changed: %s: %s -> %s" % (file, pkg or "(none)", b.packages[file] or "(none)"))
    for kind, olds, news in (
        ("message", a.messages, b.messages),
        ("enum", a.enums, b.enums),
        ("service", a.services, b.services),
    ):
        for name, (file, decl) in olds.items():
            if kind == "message" and decl.options.map_entry:  # type: ignore[union-attr]
                if name in news:
                    out.extend(_compare_fields(name, decl, news[name][1]))  # type: ignore[arg-type]
                continue  # a removed map field is reported as the field
            if name not in news:
                out.append("%s removed: %s" % (kind, name))
                continue
            new_file, new_decl = news[name]
            if new_file != file:
                out.append("%s moved: %s: %s -> %s" % (kind, name, file, new_file))
            if kind == "message":
                out.extend(_compare_fields(name, decl, new_decl))  # type: ignore[arg-type]
            elif kind == "enum":
                out.extend(_compare_enum(name, decl, new_decl))  # type: ignore[arg-type]
            else:
                out.extend(_compare_service(name, decl, new_decl))  # type: ignore[arg-type]
    return sorted(set(out))


def compare_roots(old_root: str, new_root: str, tmp: str) -> List[str]:
    """Compiles both proto roots and compares them."""
    old_set = build_set(old_root, os.path.join(tmp, "old.pb"))
    new_set = build_set(new_root, os.path.join(tmp, "new.pb"))
    return compare(old_set, new_set, proto_files(old_root), proto_files(new_root))


# ---- main ---------------------------------------------------------------------
def check(repo: str, against: Optional[str], accepted_path: str, out=sys.stdout) -> int:
    """The whole check on a repository; returns the exit code."""
    if against is None:
        with open(os.path.join(repo, CHANGELOG), encoding="utf-8") as f:
            version, commit = last_release(f.read())
        label = "release %s (%s)" % (version, commit[:12])
    else:
        commit, label = against, against
    with tempfile.TemporaryDirectory(prefix="proto-breaking-") as tmp:
        extract_protos(repo, commit, os.path.join(tmp, "old"))
        old_root = os.path.join(tmp, "old", PROTO_DIR)
        findings = compare_roots(old_root, os.path.join(repo, PROTO_DIR), tmp)
    accepted: List[str] = []
    if os.path.exists(accepted_path):
        with open(accepted_path, encoding="utf-8") as f:
            accepted = accepted_findings(f.read())
    pending = [x for x in findings if x not in accepted]
    stale = [x for x in accepted if x not in findings]
    print("proto breaking-change check: %s/ against %s" % (PROTO_DIR, label), file=out)
    for x in findings:
        print("%s  %s" % ("accepted" if x in accepted else "BREAKING", x), file=out)
    for x in stale:
        print("note: accepted but not found (remove it?): %s" % x, file=out)
    print(
        "%d findings: %d accepted, %d not accepted" % (len(findings), len(findings) - len(pending), len(pending)),
        file=out,
    )
    if pending:
        print(
            "\nIf a change is intended, add its line (the text after BREAKING) under [%s] in %s,\n"
            "and say what callers must do in CHANGELOG.md's [%s] section under Breaking.\n"
            "Otherwise keep the old field, method or value (deprecate it) and add a new one."
            % (UNRELEASED, os.path.relpath(accepted_path, repo), UNRELEASED),
            file=out,
        )
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=ROOT, help="repository root (default: this checkout)")
    p.add_argument("--against", metavar="REV", help="compare with this commit, not the last release")
    p.add_argument("--accepted", metavar="FILE", help="accepted findings (default %s)" % ACCEPTED)
    p.add_argument("--old", metavar="DIR", help="compare proto root DIR (with --new), no git")
    p.add_argument("--new", metavar="DIR", help="the newer proto root for --old")
    args = p.parse_args(argv)
    try:
        if args.old or args.new:
            if not (args.old and args.new):
                p.error("--old and --new go together")
            with tempfile.TemporaryDirectory(prefix="proto-breaking-") as tmp:
                for line in compare_roots(args.old, args.new, tmp):
                    print(line)
            return 0
        accepted = args.accepted or os.path.join(args.repo, ACCEPTED)
        return check(args.repo, args.against, accepted)
    except CheckError as e:
        print("proto breaking-change check cannot run: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
