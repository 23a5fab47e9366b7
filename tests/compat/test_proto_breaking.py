"""Tests of tools/proto_breaking.py: crafted before/after protos, compiled by
the real protoc, each kind of breaking change caught, additions not flagged;
the git side (last release from CHANGELOG.md, accepted findings, a missing
commit) on throwaway repositories; and this repository against its last
release."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import proto_breaking as pb  # noqa: E402

# The "before" of every case: one file per package, with a bit of each kind
# of declaration (nested message and enum, map, oneof, proto3 optional,
# a service with idempotency levels).
BASE: Dict[str, str] = {
    "shop/v1/shop.proto": """
        syntax = "proto3";
        package shop.v1;
        import "shop/v1/common.proto";

        enum Color {
          COLOR_UNSPECIFIED = 0;
          COLOR_RED = 1;
          COLOR_BLUE = 2;
        }
        message Item {
          uint64 id = 1;
          string name = 2;
          repeated string tags = 3;
          Color color = 4;
          map<string, int32> stock = 5;
          oneof price {
            int64 cents = 6;
            string label = 7;
          }
          optional double weight = 8;
          Money cost = 9;
          message Part {
            string sku = 1;
            enum Kind {
              KIND_UNSPECIFIED = 0;
              KIND_SCREW = 1;
            }
            Kind kind = 2;
          }
          repeated Part parts = 10;
        }
        message GetRequest { uint64 id = 1; }
        message ListRequest { string filter = 1; }
        message ListResponse { repeated Item items = 1; }
        service Shop {
          rpc Get(GetRequest) returns (Item) {
            option idempotency_level = NO_SIDE_EFFECTS;
          }
          rpc List(ListRequest) returns (ListResponse) {
            option idempotency_level = IDEMPOTENT;
          }
          rpc Buy(GetRequest) returns (Item);
        }
        """,
    "shop/v1/common.proto": """
        syntax = "proto3";
        package shop.v1;
        message Money { int64 units = 1; string currency = 2; }
        """,
}
BASE = {name: textwrap.dedent(text) for name, text in BASE.items()}


def write_root(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def findings(tmp_path: Path, changes: Dict[str, str], base: Dict[str, str] = BASE) -> List[str]:
    """Compares BASE with BASE updated by changes (a file mapped to ""
    is deleted)."""
    old, new = tmp_path / "old", tmp_path / "new"
    write_root(old, base)
    after = dict(base)
    for name, text in changes.items():
        if text:
            after[name] = text
        else:
            del after[name]
    write_root(new, after)
    return pb.compare_roots(str(old), str(new), str(tmp_path))


def edit(old: str, new: str, file: str = "shop/v1/shop.proto") -> Dict[str, str]:
    """BASE's file with one piece of text replaced (which must be there)."""
    text = BASE[file]
    assert old in text, old
    return {file: text.replace(old, new)}


def test_unchanged_protos_give_no_finding(tmp_path: Path) -> None:
    assert findings(tmp_path, {}) == []


def test_additions_are_not_flagged(tmp_path: Path) -> None:
    added = BASE["shop/v1/shop.proto"]
    added = added.replace("repeated Part parts = 10;", "repeated Part parts = 10;\n  bool gift = 11;")
    added = added.replace("COLOR_BLUE = 2;", "COLOR_BLUE = 2;\n  COLOR_GREEN = 3;")
    added = added.replace("string label = 7;", "string label = 7;\n    bool free = 12;")
    added = added.replace("KIND_SCREW = 1;", "KIND_SCREW = 1;\n      KIND_NUT = 2;")
    added = added.replace(
        "rpc Buy(GetRequest) returns (Item);",
        "rpc Buy(GetRequest) returns (Item);\n  rpc Count(ListRequest) returns (ListResponse);",
    )
    added += "\nmessage Extra { string note = 1; }\nservice Admin { rpc Ping(GetRequest) returns (GetRequest); }\n"
    new_file = 'syntax = "proto3";\npackage shop.v2;\nmessage Order { uint64 id = 1; }\n'
    assert findings(tmp_path, {"shop/v1/shop.proto": added, "shop/v2/order.proto": new_file}) == []


def test_comments_reserved_ranges_and_options_are_not_flagged(tmp_path: Path) -> None:
    text = BASE["shop/v1/shop.proto"].replace(
        "message GetRequest { uint64 id = 1; }",
        "// The id to get.\nmessage GetRequest {\n  uint64 id = 1 [json_name = \"id\"];\n  reserved 5 to 9;\n}",
    )
    assert findings(tmp_path, {"shop/v1/shop.proto": text}) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("  string name = 2;\n", "", ["field removed: shop.v1.Item.name = 2"]),
        ("  string name = 2;\n", "  reserved 2;\n  reserved \"name\";\n",
         ["field removed: shop.v1.Item.name = 2"]),
        ("string name = 2;", "string name = 12;", ["field renumbered: shop.v1.Item.name: 2 -> 12"]),
        ("string name = 2;", "string title = 2;", ["field renamed: shop.v1.Item = 2: name -> title"]),
        ("uint64 id = 1;\n  string name", "int64 id = 1;\n  string name",
         ["field type changed: shop.v1.Item.id = 1: uint64 -> int64"]),
        ("Money cost = 9;", "Item cost = 9;",
         ["field type changed: shop.v1.Item.cost = 9: shop.v1.Money -> shop.v1.Item"]),
        ("Color color = 4;", "int32 color = 4;",
         ["field type changed: shop.v1.Item.color = 4: shop.v1.Color -> int32"]),
        ("repeated string tags = 3;", "string tags = 3;",
         ["field label changed: shop.v1.Item.tags = 3: repeated -> singular"]),
        ("optional double weight = 8;", "double weight = 8;",
         ["field label changed: shop.v1.Item.weight = 8: optional -> singular"]),
        ("uint64 id = 1;\n  string name", "optional uint64 id = 1;\n  string name",
         ["field label changed: shop.v1.Item.id = 1: singular -> optional"]),
        ("map<string, int32> stock = 5;", "map<string, int64> stock = 5;",
         ["field type changed: shop.v1.Item.StockEntry.value = 2: int32 -> int64"]),
        ("  map<string, int32> stock = 5;\n", "", ["field removed: shop.v1.Item.stock = 5"]),
        ("    string label = 7;\n  }", "  }\n  string label = 7;",
         ["field oneof changed: shop.v1.Item.label = 7: oneof price -> none"]),
        ("string sku = 1;", "bytes sku = 1;",
         ["field type changed: shop.v1.Item.Part.sku = 1: string -> bytes"]),
    ],
)
def test_field_changes_are_caught(tmp_path: Path, old: str, new: str, expected: List[str]) -> None:
    assert findings(tmp_path, edit(old, new)) == expected


def test_message_and_enum_removals_are_caught(tmp_path: Path) -> None:
    text = BASE["shop/v1/shop.proto"]
    text = text.replace("message ListRequest { string filter = 1; }", "")
    text = text.replace("rpc List(ListRequest) returns (ListResponse) {", "rpc List(GetRequest) returns (ListResponse) {")
    text = text.replace("    enum Kind {\n      KIND_UNSPECIFIED = 0;\n      KIND_SCREW = 1;\n    }\n    Kind kind = 2;\n", "")
    assert findings(tmp_path, {"shop/v1/shop.proto": text}) == [
        "enum removed: shop.v1.Item.Part.Kind",
        "field removed: shop.v1.Item.Part.kind = 2",
        "message removed: shop.v1.ListRequest",
        "method input changed: shop.v1.Shop.List: shop.v1.ListRequest -> shop.v1.GetRequest",
    ]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("  COLOR_BLUE = 2;\n", "", ["enum value removed: shop.v1.Color.COLOR_BLUE = 2"]),
        ("COLOR_BLUE = 2;", "COLOR_BLUE = 3;", ["enum value renumbered: shop.v1.Color.COLOR_BLUE: 2 -> 3"]),
        ("COLOR_BLUE = 2;", "COLOR_AZURE = 2;", ["enum value renamed: shop.v1.Color = 2: COLOR_BLUE -> COLOR_AZURE"]),
        ("KIND_SCREW = 1;", "KIND_BOLT = 1;",
         ["enum value renamed: shop.v1.Item.Part.Kind = 1: KIND_SCREW -> KIND_BOLT"]),
    ],
)
def test_enum_value_changes_are_caught(tmp_path: Path, old: str, new: str, expected: List[str]) -> None:
    assert findings(tmp_path, edit(old, new)) == expected


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("  rpc Buy(GetRequest) returns (Item);\n", "", ["method removed: shop.v1.Shop.Buy"]),
        ("rpc Buy(GetRequest) returns (Item);", "rpc Buy(GetRequest) returns (ListResponse);",
         ["method output changed: shop.v1.Shop.Buy: shop.v1.Item -> shop.v1.ListResponse"]),
        ("rpc Buy(GetRequest) returns (Item);", "rpc Buy(ListRequest) returns (Item);",
         ["method input changed: shop.v1.Shop.Buy: shop.v1.GetRequest -> shop.v1.ListRequest"]),
        ("rpc Buy(GetRequest) returns (Item);", "rpc Buy(GetRequest) returns (stream Item);",
         ["method server streaming changed: shop.v1.Shop.Buy: False -> True"]),
        ("option idempotency_level = IDEMPOTENT;", "",
         ["method idempotency changed: shop.v1.Shop.List: IDEMPOTENT -> IDEMPOTENCY_UNKNOWN"]),
        ("option idempotency_level = NO_SIDE_EFFECTS;", "option idempotency_level = IDEMPOTENT;",
         ["method idempotency changed: shop.v1.Shop.Get: NO_SIDE_EFFECTS -> IDEMPOTENT"]),
        ("rpc Buy(GetRequest) returns (Item);",
         "rpc Buy(GetRequest) returns (Item) { option idempotency_level = IDEMPOTENT; }",
         ["method idempotency changed: shop.v1.Shop.Buy: IDEMPOTENCY_UNKNOWN -> IDEMPOTENT"]),
    ],
)
def test_method_changes_are_caught(tmp_path: Path, old: str, new: str, expected: List[str]) -> None:
    assert findings(tmp_path, edit(old, new)) == expected


def test_service_removal_is_caught(tmp_path: Path) -> None:
    text = BASE["shop/v1/shop.proto"]
    text = text[: text.index("service Shop")]
    assert findings(tmp_path, {"shop/v1/shop.proto": text}) == ["service removed: shop.v1.Shop"]


def test_package_change_is_caught(tmp_path: Path) -> None:
    common = BASE["shop/v1/common.proto"].replace("package shop.v1;", "package shop.common.v1;")
    shop = BASE["shop/v1/shop.proto"].replace("Money cost = 9;", "shop.common.v1.Money cost = 9;")
    assert findings(tmp_path, {"shop/v1/common.proto": common, "shop/v1/shop.proto": shop}) == [
        "field type changed: shop.v1.Item.cost = 9: shop.v1.Money -> shop.common.v1.Money",
        "message removed: shop.v1.Money",
        "package changed: shop/v1/common.proto: shop.v1 -> shop.common.v1",
    ]


def test_declaration_moved_to_another_file_is_caught(tmp_path: Path) -> None:
    common = BASE["shop/v1/common.proto"] + "message GetRequest { uint64 id = 1; }\n"
    shop = BASE["shop/v1/shop.proto"].replace("message GetRequest { uint64 id = 1; }", "")
    assert findings(tmp_path, {"shop/v1/common.proto": common, "shop/v1/shop.proto": shop}) == [
        "message moved: shop.v1.GetRequest: shop/v1/shop.proto -> shop/v1/common.proto"
    ]


def test_removed_file_reports_each_declaration(tmp_path: Path) -> None:
    shop = BASE["shop/v1/shop.proto"].replace('import "shop/v1/common.proto";', "")
    shop = shop.replace("  Money cost = 9;\n", "")
    assert findings(tmp_path, {"shop/v1/common.proto": "", "shop/v1/shop.proto": shop}) == [
        "field removed: shop.v1.Item.cost = 9",
        "message removed: shop.v1.Money",
    ]


def test_protoc_error_is_reported(tmp_path: Path) -> None:
    with pytest.raises(pb.CheckError, match="protoc failed"):
        findings(tmp_path, {"shop/v1/common.proto": "syntax = \"proto3\";\nmessage {"})


# ---- CHANGELOG and the accepted list ----------------------------------------------
def test_last_release_is_the_newest_with_a_commit() -> None:
    text = "# Changelog\n\n## [Unreleased]\n\nCommit: 1111111\n\n## [0.2.0] - 2027-01-01\n\nCommit: abcdef0123\n\n## [0.1.0]\nCommit: 0000000\n"
    assert pb.last_release(text) == ("0.2.0", "abcdef0123")


def test_last_release_needs_a_commit_line() -> None:
    with pytest.raises(pb.CheckError, match="release 0.2.0 has no 'Commit: <sha>' line"):
        pb.last_release("## [Unreleased]\n## [0.2.0]\nno commit\n## [0.1.0]\nCommit: 0000000\n")
    with pytest.raises(pb.CheckError, match="names no release"):
        pb.last_release("## [Unreleased]\n")


def test_accepted_reads_only_its_release_section() -> None:
    text = "# comment\n[Unreleased]\nfield removed: a.B.c = 1\n\n[0.2.0]\nmethod removed: a.S.M\n"
    assert pb.accepted_findings(text) == ["field removed: a.B.c = 1"]
    assert pb.accepted_findings(text, "0.2.0") == ["method removed: a.S.M"]


def test_the_repository_file_parses() -> None:
    text = (ROOT / pb.ACCEPTED).read_text()
    assert "[Unreleased]" in text.splitlines()
    for line in pb.accepted_findings(text):
        assert ": " in line, "not a finding line: %r" % line


# ---- on git repositories ----------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose first commit is release 0.1.0 of BASE."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    write_root(r / "proto", BASE)
    git(r, "add", "-A")
    git(r, "commit", "-qm", "release")
    sha = git(r, "rev-parse", "HEAD")
    (r / "CHANGELOG.md").write_text("## [Unreleased]\n\n## [0.1.0] - 2026-11-26\n\nCommit: %s\n" % sha)
    (r / "tests/compat").mkdir(parents=True)
    (r / pb.ACCEPTED).write_text("[Unreleased]\n")
    return r


def run_check(r: Path) -> "tuple[int, str]":
    out = io.StringIO()
    rc = pb.check(str(r), None, str(r / pb.ACCEPTED), out)
    return rc, out.getvalue()


def test_check_passes_when_nothing_broke(repo: Path) -> None:
    (repo / "proto/shop/v1/common.proto").write_text(
        BASE["shop/v1/common.proto"] + "message Extra { int32 n = 1; }\n"
    )
    rc, out = run_check(repo)
    assert rc == 0, out
    assert "against release 0.1.0" in out and "0 findings" in out


def test_check_fails_until_the_finding_is_accepted(repo: Path) -> None:
    path = repo / "proto/shop/v1/shop.proto"
    path.write_text(path.read_text().replace("string name = 2;", "string name = 12;"))
    rc, out = run_check(repo)
    assert rc == 1
    assert "BREAKING  field renumbered: shop.v1.Item.name: 2 -> 12" in out
    assert "under [Unreleased] in tests/compat/breaking-accepted.txt" in out
    # Accepted under another release: still not accepted for this one.
    (repo / pb.ACCEPTED).write_text("[0.1.0]\nfield renumbered: shop.v1.Item.name: 2 -> 12\n[Unreleased]\n")
    assert run_check(repo)[0] == 1
    (repo / pb.ACCEPTED).write_text("[Unreleased]\nfield renumbered: shop.v1.Item.name: 2 -> 12\n")
    rc, out = run_check(repo)
    assert rc == 0, out
    assert "accepted  field renumbered" in out and "1 findings: 1 accepted, 0 not accepted" in out


def test_stale_accepted_lines_are_noted_not_failed(repo: Path) -> None:
    (repo / pb.ACCEPTED).write_text("[Unreleased]\nmethod removed: shop.v1.Shop.Gone\n")
    rc, out = run_check(repo)
    assert rc == 0
    assert "accepted but not found (remove it?): method removed: shop.v1.Shop.Gone" in out


def test_missing_release_commit_says_what_it_needs(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "CHANGELOG.md").write_text("## [0.1.0]\n\nCommit: %s\n" % ("ab" * 20))
    rc = pb.main(["--repo", str(repo)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "commit %s of the last release (CHANGELOG.md) is not in this clone" % ("ab" * 20) in err
    assert "git fetch --unshallow" in err


def test_shallow_clone_is_named(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = repo / "proto/shop/v1/shop.proto"
    path.write_text(path.read_text() + "\nmessage Later { int32 n = 1; }\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "later")
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "file://%s" % repo, str(clone)], check=True)
    rc = pb.main(["--repo", str(clone)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "(a shallow clone)" in err and "git fetch --unshallow" in err


def test_release_without_proto_dir_flags_nothing(tmp_path: Path) -> None:
    r = tmp_path / "r"
    r.mkdir()
    git(r, "init", "-q")
    (r / "README").write_text("x\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "first")
    sha = git(r, "rev-parse", "HEAD")
    write_root(r / "proto", BASE)
    (r / "CHANGELOG.md").write_text("## [0.1.0]\nCommit: %s\n" % sha)
    out = io.StringIO()
    assert pb.check(str(r), None, str(r / "none.txt"), out) == 0, out.getvalue()


def test_this_repository_against_its_last_release() -> None:
    """The check itself, as CI runs it: every finding since the last
    release is accepted in tests/compat/breaking-accepted.txt."""
    r = subprocess.run([sys.executable, str(ROOT / "tools/proto_breaking.py")], capture_output=True,
                       text=True, cwd=str(ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
