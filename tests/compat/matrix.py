#!/usr/bin/python3
"""The compatibility matrix: the last release's client and hoteld against
this tree's, every pairing, every feature.

    tests/compat/matrix.py [--build BUILD] [--old-dir DIR] [--against REV]

1. Builds the last release (the newest "Commit:" of CHANGELOG.md, or REV)
   from git in its own directory (git archive, its own Makefile, its own
   build/ and venv; nothing of this tree's build is reused), once: hoteld,
   nngrpc-health and the Python client, no tests, no sanitizers. A stamp
   file skips the build when DIR already holds that commit.
2. For each server (old, new): starts hoteld (tcp and tls+tcp listeners,
   a small request limit, the access log), a second one that requires an
   auth token, and a future-peer proxy in front of the first
   (future_proxy.py). For each client (old, new) runs probe.py with that
   client's own interpreter: every feature check, one observation each.
3. Then drains a third hoteld (SIGTERM with a call in flight) and runs the
   drain checks: the not-run trailer, failover, health while draining.
4. Compares every observation with EXPECTED (what docs/compatibility.md
   says for that pairing), prints the matrix, and exits 1 if any cell is
   not what the contract says, or a check hung.

Rows marked "*" are work still to land: their cells check today's
behaviour, and their notes say what they become when that work lands;
whoever lands it changes EXPECTED here, per pairing, as the contract says.
None is pending today: the envelope additions of issue 13 (item 5) and
the cancellation of issue 14 have landed, and their rows expect, per
pairing, what docs/compatibility.md says.

Runs under /usr/bin/python3 with the standard library (and python3-protobuf
for tools/proto_breaking.py's CHANGELOG reader); needs git, make, the
build dependencies and openssl. Bounded: every call in a probe has a
deadline, every probe run a timeout, every wait a limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)

import proto_breaking  # noqa: E402  (the one reader of CHANGELOG.md)
from future_proxy import FutureProxy  # noqa: E402

OLD, NEW = "old", "new"
PAIRS = [(OLD, OLD), (OLD, NEW), (NEW, OLD), (NEW, NEW)]  # (client, server)
LIMIT = 131072  # --max-message-bytes of the main server
PROBE_TIMEOUT = 240  # seconds for one probe run (all its checks)
# What the release's own Makefile builds for the matrix (no tests, no
# sanitizers). Paths are relative to its tree. If a release renames these,
# this is the one place to say so.
OLD_TARGETS = ["build/bin/hoteld", "build/bin/nngrpc-health", "python"]


# ---- what the contract says, per feature and pairing ------------------------------------
@dataclass
class Row:
    """A feature: the observation the contract expects in each pairing
    (one value for all, or per (client, server)), and, for rows that
    later work changes, what it becomes."""

    check: str
    expect: object  # str, or Dict[Tuple[str, str], str]
    changes: str = ""  # non-empty: marked "*", the later behaviour

    def expected(self, pair: Tuple[str, str]) -> str:
        if isinstance(self.expect, dict):
            return str(self.expect[pair])
        return str(self.expect)


def by_server(old: str, new: str) -> Dict[Tuple[str, str], str]:
    """An expectation that depends on the server's release only."""
    return {(c, s): old if s == OLD else new for c, s in PAIRS}


def by_client(old: str, new: str) -> Dict[Tuple[str, str], str]:
    """An expectation that depends on the client's release only."""
    return {(c, s): old if c == OLD else new for c, s in PAIRS}


EXPECTED: List[Row] = [
    Row("unary calls", "ok"),
    Row("status codes and messages", "ok, 16 codes"),
    Row("unknown method", "UNIMPLEMENTED"),
    Row("deadlines", "DEADLINE_EXCEEDED"),
    Row("metadata and request ids", "ok, logged"),
    Row("retries", "idempotent x5, other x1"),
    Row("health", "SERVING; unknown NOT_FOUND"),
    Row("reflection", "ok"),
    Row("CLI (python -m nngrpc)", "exit 0/5/0"),
    Row("health probe (nngrpc-health)", "SERVING; via future peer SERVING"),
    Row("auth", "no token UNAUTHENTICATED, token OK"),
    Row("auth: health needs no token", "SERVING"),
    Row("TLS", "ok"),
    Row("asyncio client", "50 ok, deadline DEADLINE_EXCEEDED"),
    Row("future peer: unknown fields, metadata, trailers", "ok, trailers shown"),
    Row("future peer: unknown status code", "UNKNOWN, message kept"),
    Row("not-run trailer", "UNAVAILABLE, nngrpc-not-run=1"),
    Row("failover of a non-idempotent call", "OK x2"),
    Row("health while draining", "NOT_SERVING"),
    Row("health probe while draining (nngrpc-health)", "NOT_SERVING"),
    Row("size limit, client told", "RESOURCE_EXHAUSTED x1"),
    # The new client learns a new server's limit (a Health/Check after the
    # connection is lost); with an old side it cannot, as 0.1.0.
    Row("size limit, client not told", {
        (OLD, OLD): "UNAVAILABLE x5", (OLD, NEW): "UNAVAILABLE x5",
        (NEW, OLD): "UNAVAILABLE x5", (NEW, NEW): "RESOURCE_EXHAUSTED x1, names limit"}),
    Row("size limit, learned on the connection", {
        (OLD, OLD): "UNAVAILABLE x5", (OLD, NEW): "UNAVAILABLE x5",
        (NEW, OLD): "UNAVAILABLE x5", (NEW, NEW): "RESOURCE_EXHAUSTED x1, not sent"}),
    # A new server carries 4 KiB byte for byte and cuts on a UTF-8
    # boundary; 0.1.0 cuts at 511 bytes, inside a character ("changed":
    # its last byte became "?").
    Row("long status messages", by_server("3000->511 changed, 5001->511 changed",
                                          "3000 exact, 5001->4095")),
    Row("NUL in a status message", by_server("cut at NUL", "exact")),
    Row("-bin metadata", by_client("bytes refused by client; base64 text ok",
                                   "bytes sent; base64 text ok")),
    # Testing/Echo's return_metadata: a new server sends the -bin value
    # back through its binary accessors; a new client gives it as bytes.
    Row("-bin trailers (Echo returns metadata)", {
        (OLD, OLD): "not returned", (NEW, OLD): "not returned",
        (OLD, NEW): "returned as base64 text", (NEW, NEW): "returned as bytes"}),
    Row("compression option", {
        (OLD, OLD): "no such option", (OLD, NEW): "no such option",
        (NEW, OLD): "gzip ok (reply identity); zstd per call ok (reply identity)",
        (NEW, NEW): "gzip ok (reply gzip); zstd per call ok (reply zstd)"}),
    Row("accept-encoding on the wire", {
        (OLD, OLD): "reply identity", (NEW, OLD): "reply identity",
        (OLD, NEW): "reply gzip", (NEW, NEW): "reply gzip, decoded by the client"}),
    Row("capability trailers", by_server(
        "none", "nngrpc-accept-encoding=zstd,gzip, nngrpc-max-message-bytes=131072")),
    Row("cancel by request id", by_server("UNIMPLEMENTED", "OK")),
    # A new client tells the server when a task gives up on a call (an
    # old server answers UNIMPLEMENTED, which it ignores); the connection
    # serves on either way.
    Row("asyncio task cancelled, then a call", "next call OK"),
]


# ---- building the old release -----------------------------------------------------------
def build_release(repo: str, commit: str, tree: str) -> str:
    """Builds commit's hoteld, nngrpc-health and client in tree (its own
    Makefile, build/ and venv); returns tree. Skipped when tree's stamp
    names the commit."""
    stamp = os.path.join(tree, ".compat-built")
    if os.path.exists(stamp) and open(stamp).read().strip() == commit:
        print("compat: release %s already built in %s" % (commit[:12], tree), flush=True)
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", commit],
                             capture_output=True)
    if archive.returncode != 0:
        sys.exit("compat: git archive %s failed: %s" % (commit, archive.stderr.decode().strip()))
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    # The outer make's flags (BUILD=..., SAN=...) must not reach the
    # release's own Makefile.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "BUILD", "SAN")}
    log = os.path.join(tree, "compat-build.log")
    t0 = time.monotonic()
    print("compat: building release %s in %s" % (commit[:12], tree), flush=True)
    with open(log, "w") as f:
        r = subprocess.run(["make", "-j2"] + OLD_TARGETS, cwd=tree, env=env, stdout=f,
                           stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.stdout.write(open(log).read()[-4000:])
        sys.exit("compat: building the release failed (exit %d); log %s" % (r.returncode, log))
    print("compat: built in %.1f s" % (time.monotonic() - t0), flush=True)
    with open(stamp, "w") as f:
        f.write(commit + "\n")
    return tree


# ---- servers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Side:
    """One version: its hoteld, nngrpc-health and Python interpreter."""

    name: str
    hoteld: str
    health: str
    python: str


@dataclass
class Hoteld:
    proc: "subprocess.Popen[bytes]"
    url: str
    log_path: str
    http: Optional[str] = None
    extra_urls: List[str] = field(default_factory=list)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


def probe_health(side: Side, url: str, timeout_ms: int = 2000) -> Tuple[int, str]:
    """Runs side's nngrpc-health against url: (exit code, output)."""
    r = subprocess.run([side.health, "--timeout-ms", str(timeout_ms), url], capture_output=True,
                       text=True, timeout=timeout_ms / 1000 + 10)
    return r.returncode, (r.stdout + r.stderr).strip()


def start_hoteld(side: Side, workdir: str, name: str, args: Sequence[str],
                 tls: Optional[Tuple[str, str]] = None, http: bool = False) -> Hoteld:
    """Starts side's hoteld on fresh ports; returns once it is SERVING (its
    dataset built), or exits the matrix with its log."""
    url = "tcp://127.0.0.1:%d" % free_port()
    cmd = [side.hoteld, "--listen", url, "--workers", "8"] + list(args)
    extra = []
    if tls is not None:
        extra.append("tls+tcp://127.0.0.1:%d" % free_port())
        cmd += ["--listen", extra[0], "--tls-cert", tls[0], "--tls-key", tls[1]]
    http_addr = None
    if http:
        http_addr = "127.0.0.1:%d" % free_port()
        cmd += ["--http", http_addr]
    log_path = os.path.join(workdir, "%s-%s.log" % (side.name, name))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    h = Hoteld(proc, url, log_path, http_addr, extra)
    deadline = time.monotonic() + 60
    while True:  # until SERVING (the dataset built), bounded
        rc, out = probe_health(side, url, 1000)
        if rc == 0:
            return h
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(h, signal.SIGKILL)
            raise SetupError("%s hoteld (%s) did not start: %s\n%s" % (side.name, name, out, h.log()))
        time.sleep(0.05)


class SetupError(Exception):
    """The matrix could not set up (a server did not start, a wait timed
    out): exit 2 with the reason."""


def stop(h: Hoteld, sig: int = signal.SIGTERM) -> None:
    """Sends sig unless h has exited; waits for it (SIGKILL after 30 s)."""
    if h.proc.poll() is None:
        h.proc.send_signal(sig)
        try:
            h.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            h.proc.kill()
            h.proc.wait()


def busy_workers(h: Hoteld) -> int:
    with urllib.request.urlopen("http://%s/metrics" % h.http, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("nngrpc_busy_workers "):
                return int(float(line.split()[1]))
    return 0


def wait_for(what: str, cond, limit: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise SetupError("timed out waiting for " + what)
        time.sleep(0.05)


def make_pki(d: str) -> Tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=nngrpc compat CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=compat server")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    j = lambda n: os.path.join(d, n)  # noqa: E731
    return j("ca.pem"), j("server.pem"), j("server.key")


# ---- running the probes -------------------------------------------------------------------
Results = Dict[Tuple[str, str], Dict[str, dict]]  # (client, server) -> check -> result


def run_probe(client: Side, cfg: dict, phase: str) -> Dict[str, dict]:
    """Runs probe.py's phase with the client's interpreter; returns its
    results by check. A hung or crashed run marks the check it was in."""
    cmd = [client.python, os.path.join(HERE, "probe.py"), json.dumps(cfg), phase]
    out: Dict[str, dict] = {}
    current = None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        lines, err, rc = r.stdout.splitlines(), r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        lines, err, rc = text.splitlines(), "probe timed out", -1
    for line in lines:
        if line.startswith("start "):
            current = line[len("start "):]
        elif line.startswith("{"):
            res = json.loads(line)
            out[res["check"]] = res
            current = None
    if current is not None:
        out[current] = {"check": current, "seen": "HUNG or crashed", "detail": err[-2000:]}
    if rc != 0 and not out:
        out["(probe)"] = {"check": "(probe)", "seen": "probe failed (exit %d)" % rc, "detail": err[-2000:]}
    return out


def run_matrix(sides: Dict[str, Side], workdir: str) -> Results:
    ca, cert, key = make_pki(workdir)
    token_file = os.path.join(workdir, "token")
    with open(token_file, "w") as f:
        f.write("compat-secret-token\n")
    results: Results = {pair: {} for pair in PAIRS}
    for sname in (OLD, NEW):
        server = sides[sname]
        with contextlib.ExitStack() as stack:
            main = stack.enter_context(running(server, workdir, "main", [
                "--testing", "--hotels", "2000", "--max-message-bytes", str(LIMIT),
                "--access-log", "all", "--log-format", "json"], tls=(cert, key)))
            auth = stack.enter_context(running(server, workdir, "auth", [
                "--testing", "--no-hotels", "--auth-token-file", token_file]))
            proxy = FutureProxy(("127.0.0.1", int(main.url.rsplit(":", 1)[1])))
            stack.callback(proxy.close)
            cfg = {"main": main.url, "tls": main.extra_urls[0], "ca": ca, "auth": auth.url,
                   "token_file": token_file, "proxy": proxy.url, "limit": LIMIT}
            for cname in (OLD, NEW):
                client = sides[cname]
                t0 = time.monotonic()
                res = run_probe(client, cfg, "main")
                res.update(c_health(client, main.url, proxy.url))
                check_logged(res, main)
                results[(cname, sname)].update(res)
                print("compat: %s client x %s server: %.1f s" % (cname, sname, time.monotonic() - t0),
                      flush=True)
            drain_phase(sides, server, workdir, main.url, results)
    return results


@contextlib.contextmanager
def running(side: Side, workdir: str, name: str, args: Sequence[str],
            tls: Optional[Tuple[str, str]] = None, http: bool = False) -> Iterator[Hoteld]:
    """A hoteld for the length of a with block; SIGTERM (then SIGKILL) after."""
    h = start_hoteld(side, workdir, name, args, tls, http)
    try:
        yield h
    finally:
        stop(h)


def c_health(client: Side, url: str, proxy_url: str) -> Dict[str, dict]:
    """The client release's nngrpc-health, direct and through the proxy."""
    seen = []
    for u in (url, proxy_url):
        rc, out = probe_health(client, u)
        seen.append("SERVING" if rc == 0 and "SERVING" in out else "exit %d: %s" % (rc, out[:80]))
    name = "health probe (nngrpc-health)"
    return {name: {"check": name, "seen": "%s; via future peer %s" % tuple(seen), "detail": None}}


def check_logged(res: Dict[str, dict], main: Hoteld) -> None:
    """Adds to the request-id observation whether the server logged both ids."""
    r = res.get("metadata and request ids")
    if r is None or not isinstance(r.get("detail"), dict):
        return
    ids = [r["detail"]["rid"], r["detail"]["generated"]]
    try:
        wait_for("the access log", lambda: all(i in main.log() for i in ids), 5.0)
        r["seen"] += ", logged"
    except SetupError:
        r["seen"] += ", not logged"


def drain_phase(sides: Dict[str, Side], server: Side, workdir: str, main_url: str,
                results: Results) -> None:
    """A hoteld draining with a call in flight: every client's drain checks."""
    with contextlib.ExitStack() as stack:
        d = stack.enter_context(running(server, workdir, "drain", [
            "--testing", "--no-hotels", "--drain-timeout", "60"], http=True))
        # Runs after the drain server has stopped (ExitStack unwinds in
        # reverse): the held call then ends by itself.
        hold = subprocess.Popen(
            [sides[NEW].python, os.path.join(HERE, "probe.py"), "--hold", d.url, "30000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(hold.wait)
        stack.callback(hold.kill)
        stack.callback(stop, d, signal.SIGTERM)  # a second signal ends the drain at once
        wait_for("the held call to run", lambda: busy_workers(d) >= 1)
        d.proc.send_signal(signal.SIGTERM)
        wait_for("the drain to start",
                 lambda: "NOT_SERVING" in probe_health(sides[NEW], d.url, 1000)[1])
        for cname in (OLD, NEW):
            client = sides[cname]
            res = run_probe(client, {"drain": d.url, "main": main_url}, "drain")
            rc, out = probe_health(client, d.url)
            name = "health probe while draining (nngrpc-health)"
            res[name] = {"check": name, "seen": "NOT_SERVING" if rc == 1 and "NOT_SERVING" in out
                         else "exit %d: %s" % (rc, out[:80]), "detail": out}
            if d.proc.poll() is not None:  # the drain ended early: nothing was tested
                res = {k: dict(v, seen="drain ended early") for k, v in res.items()}
            results[(cname, server.name)].update(res)


# ---- the table ------------------------------------------------------------------------------
def judge(results: Results) -> Tuple[Dict[Tuple[str, Tuple[str, str]], str], List[str]]:
    """Returns (cell texts by (check, pair), failures). A cell is what the
    probe saw, marked "!!" when the contract says otherwise."""
    cells = {}
    failures = []
    for row in EXPECTED:
        for pair in PAIRS:
            got = results[pair].get(row.check, {"seen": "not run", "detail": None})
            ok = got["seen"] == row.expected(pair)
            cells[(row.check, pair)] = ("" if ok else "!! ") + got["seen"]
            if not ok:
                failures.append("%s, %s client x %s server: saw %r, the contract says %r (%s)" % (
                    row.check, pair[0], pair[1], got["seen"], row.expected(pair),
                    json.dumps(got.get("detail"), default=str)[:300]))
    extra = sorted({c for r in results.values() for c in r} - {row.check for row in EXPECTED})
    for c in extra:
        failures.append("%s: a check with no row in EXPECTED" % c)
    return cells, failures


def table(cells: Dict[Tuple[str, Tuple[str, str]], str], markdown: bool = False) -> List[str]:
    """The matrix: a row per feature, a column per (client, server)."""
    heads = ["client %s, server %s" % p for p in PAIRS]
    names = [("* " if r.changes else "  ") + r.check for r in EXPECTED]
    if markdown:
        lines = ["| feature | " + " | ".join(heads) + " |", "|---" * (len(PAIRS) + 1) + "|"]
        for row, name in zip(EXPECTED, names):
            lines.append("| %s | %s |" % (name.strip(), " | ".join(cells[(row.check, p)] for p in PAIRS)))
    else:
        width = max(len(n) for n in names)
        colw = [max(len(h), *(len(cells[(r.check, p)]) for r in EXPECTED)) for h, p in zip(heads, PAIRS)]
        head = "feature".ljust(width) + " | " + " | ".join(h.ljust(w) for h, w in zip(heads, colw))
        lines = [head, "-" * len(head)]
        for row, name in zip(EXPECTED, names):
            lines.append(name.ljust(width) + " | " + " | ".join(
                cells[(row.check, p)].ljust(w) for p, w in zip(PAIRS, colw)).rstrip())
    pending = [row for row in EXPECTED if row.changes]
    if pending:
        lines.append("")
        lines.append("* checks today's behaviour; changes when the work lands:")
        for row in pending:
            lines.append("  - %s: %s" % (row.check, row.changes))
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="this tree's build directory")
    p.add_argument("--old-dir", help="where to build the release (default BUILD/compat/VERSION-COMMIT)")
    p.add_argument("--against", metavar="REV", help="a commit instead of the last release")
    p.add_argument("--json", metavar="FILE", help="also write every observation here")
    p.add_argument("--markdown", metavar="FILE", help="also write the matrix here as a Markdown table")
    args = p.parse_args(argv)

    if args.against:
        version, commit = args.against, args.against
    else:
        with open(os.path.join(ROOT, proto_breaking.CHANGELOG), encoding="utf-8") as f:
            version, commit = proto_breaking.last_release(f.read())
    full = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", "-q", commit + "^{commit}"],
                          capture_output=True, text=True).stdout.strip()
    if not full:
        print("compat: commit %s of release %s is not in this clone: the matrix builds that "
              "release from git (git fetch --unshallow, or a clone without --depth)" % (commit, version),
              file=sys.stderr)
        return 2
    build = os.path.abspath(args.build)
    old_tree = os.path.abspath(args.old_dir or os.path.join(build, "compat", "%s-%s" % (version, full[:12])))
    t0 = time.monotonic()
    build_release(ROOT, full, old_tree)
    t_build = time.monotonic() - t0
    sides = {
        OLD: Side(OLD, *(os.path.join(old_tree, "build", x) for x in
                         ("bin/hoteld", "bin/nngrpc-health", "venv/bin/python"))),
        NEW: Side(NEW, *(os.path.join(build, x) for x in
                         ("bin/hoteld", "bin/nngrpc-health", "venv/bin/python"))),
    }
    for s in sides.values():
        for path in (s.hoteld, s.health, s.python):
            if not os.access(path, os.X_OK):
                print("compat: %s is missing (build this tree first: make)" % path, file=sys.stderr)
                return 2
    workdir = tempfile.mkdtemp(prefix="nngrpc-compat-")
    try:
        results = run_matrix(sides, workdir)
    except SetupError as e:
        print("compat: %s (servers' logs in %s)" % (e, workdir), file=sys.stderr)
        return 2
    cells, failures = judge(results)
    title = "compatibility matrix: old = release %s (%s), new = this tree" % (version, full[:12])
    print()
    print(title)
    print("\n".join(table(cells)))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(title + "\n\n" + "\n".join(table(cells, markdown=True)) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"%s/%s" % k: v for k, v in results.items()}, f, indent=1, default=str)
    print()
    for failure in failures:
        print("NOT AS THE CONTRACT SAYS: " + failure)
    if failures:
        print("compat: servers' logs kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    # The last line, counted by tests/run-all like a test runner's.
    n = len(EXPECTED) * len(PAIRS)
    bad = sum(1 for c in cells.values() if c.startswith("!! "))
    print("compat matrix (cells: feature x client x server; release build %.0f s, total %.0f s): "
          "%d passed, %d failed" % (t_build, time.monotonic() - t0, n - bad, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
