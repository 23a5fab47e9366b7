#!/usr/bin/env python3
"""make upgrade-test: a rolling upgrade across releases on docker/stack.yml,
under load from the last release's client and this tree's, with no failed
call.

    docker/swarm/upgrade.sh    (builds the four images, then runs this)

1. deploy: the stack with the last release's hoteld image (built from git
   at that release's commit with its own docker/Dockerfile); two load
   clients join the stack's network, each ONE Channel to
   tcp://tasks.hoteld:5555 running docker/swarm/load.py: the release's
   client (its own smoke client image) and this tree's (the smoke client
   image built from this tree's wheels). Idempotent and non-idempotent
   calls, alternately.
2. upgrade: docker service update --image <this tree's hoteld> (stack.yml's
   update_config: start-first, one replica at a time); every replica
   replaced; both clients then reach the new replicas.
3. rollback: the same back to the release's image.

Both clients must have 0 failed calls, idempotent or not, in every phase,
with one exception, the loss docs/compatibility.md names: a 0.1.0
client's non-idempotent call on a connection that a 0.1.0 replica closed
as it drained (0.1.0's hoteld closes every connection at its first idle
moment, and that client cannot know the call never ran). Such a failure
counts only when its sample matches that cause (the replica of that
address got SIGTERM just before); it is printed in the phase's summary.
A table per client and phase gives the calls per replica and release and
the failed calls by idempotency; on a failure the replicas' events
(docker events: health, kill, die) and their logs around it are printed,
to say why.

Which replica answered: hoteld's Echo trailer testing-hostname (this
tree's servers) or, for a 0.1.0 server that has no such trailer, the
address the call's connection went to (load.py), matched to the replica
that had it.

Environment: NNGRPC_IMAGE, NNGRPC_CLIENT_IMAGE (this tree's images),
NNGRPC_OLD_IMAGE, NNGRPC_OLD_CLIENT_IMAGE, NNGRPC_OLD_VERSION (the release's;
upgrade.sh sets them), NNGRPC_UPGRADE_STACK (stack name, default
nngrpcupgradetest), NNGRPC_UPGRADE_ROLLBACK (0: skip phase 3),
NNGRPC_UPGRADE_ROUNDS (how many times phases 2 and 3 run, default 1),
NNGRPC_UPGRADE_THREADS (threads per load client, default 8), NNGRPC_HOTELS
(default 20000). Exit 0 only when every check passed.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from swarmlib import (KNOWN, T0, TARGET, Load, Phase, Replica, Totals, cleanup, deploy, docker,
                      healthy, log, remove_old_stack, replicas, swarm_up, totals, update_state,
                      wait_until)

STACK = os.environ.get("NNGRPC_UPGRADE_STACK", "nngrpcupgradetest")
SERVICE = STACK + "_hoteld"
NETWORK = STACK + "_nngrpc"
NEW_IMAGE = os.environ.get("NNGRPC_IMAGE", "nngrpc/hoteld:dev")
NEW_CLIENT = os.environ.get("NNGRPC_CLIENT_IMAGE", "nngrpc/smoke-client:dev")
OLD_VERSION = os.environ.get("NNGRPC_OLD_VERSION", "0.1.0")
OLD_IMAGE = os.environ.get("NNGRPC_OLD_IMAGE", "nngrpc/hoteld:" + OLD_VERSION)
OLD_CLIENT = os.environ.get("NNGRPC_OLD_CLIENT_IMAGE", "nngrpc/smoke-client:" + OLD_VERSION)
ROLLBACK = os.environ.get("NNGRPC_UPGRADE_ROLLBACK", "1") != "0"
ROUNDS = int(os.environ.get("NNGRPC_UPGRADE_ROUNDS", "1"))
THREADS = os.environ.get("NNGRPC_UPGRADE_THREADS", "8")
HOTELS = os.environ.get("NNGRPC_HOTELS", "20000")
NEW = "new"  # this tree's release label
REPLICAS = 3  # stack.yml's
LOSSES: List[int] = []  # the contract's named losses, per phase and client


def version_of(image: str) -> str:
    return OLD_VERSION if image == OLD_IMAGE else NEW if image == NEW_IMAGE else image


# ---- which replica answered ---------------------------------------------------------
# Address on the stack's network -> the containers that had it, in the
# order seen (Swarm may give a freed address to a later replica).
ADDRESSES: Dict[str, List[str]] = {}
SEEN: Set[str] = set()


def track() -> List[Replica]:
    """The running replicas, noting the network address of each one seen
    for the first time (a 0.1.0 replica is known by its address only)."""
    now = replicas(SERVICE)
    for r in now:
        if r.state == "running" and r.cid not in SEEN:
            addr = docker("inspect", "-f", '{{with index .NetworkSettings.Networks "%s"}}'
                          '{{.IPAddress}}{{end}}' % NETWORK, r.cid, check=False)
            if addr and not addr.startswith("Error"):
                ADDRESSES.setdefault(addr, []).append(r.cid)
                SEEN.add(r.cid)
    return now


def replica_of(host: str) -> Optional[Replica]:
    """host: load.py's key, a container id (the trailer) or "@address":
    a reply without the trailer, so the last replica of the release
    without it (0.1.0) that had that address."""
    if host.startswith("@"):
        old = [c for c in ADDRESSES.get(host[1:], []) if c in KNOWN
               and version_of(KNOWN[c].image) == OLD_VERSION]
        host = old[-1] if old else ""
    return KNOWN.get(host)


# ---- what happened to the replicas -----------------------------------------------------
class Events:
    """docker events of the service's containers (start, health, kill,
    die) with their times, for the timeline printed on a failure."""

    def __init__(self) -> None:
        self.lines: List[Tuple[float, str]] = []
        self.termed: Dict[str, float] = {}  # container id -> its SIGTERM
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "label=com.docker.swarm.service.name=" + SERVICE,
             "--filter", "type=container", "--format", "{{json .}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            action = ev.get("Action", "")
            if action.startswith(("exec_", "attach", "resize")):
                continue
            attrs = ev.get("Actor", {}).get("Attributes", {})
            cid = ev.get("id", "")[:12]
            what = action
            if action == "kill":
                what = "kill (signal %s)" % attrs.get("signal", "?")
            elif action == "die":
                what = "die (exit %s)" % attrs.get("exitCode", "?")
            t = ev.get("timeNano", 0) / 1e9
            with self.lock:
                self.lines.append((t, "%s %s: %s" % (
                    attrs.get("com.docker.swarm.task.name", "?").rsplit(".", 1)[0], cid, what)))
                if action == "kill" and attrs.get("signal") == "15":
                    self.termed.setdefault(cid, t)

    def around(self, t0: float, t1: float) -> List[Tuple[float, str]]:
        with self.lock:
            return [(t, text) for t, text in self.lines if t0 <= t <= t1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ---- the tables ------------------------------------------------------------------------
def client_table(phase: Phase, load: Load) -> Totals:
    t = totals(load.window(phase.t0, phase.t1))
    print("\n   %s, %s: %.1f s, %d calls" % (load.label, phase.name, phase.t1 - phase.t0, t.calls))
    print("   %-10s %-12s %-8s %9s %9s" % ("replica", "container", "release", "idem ok", "non ok"))
    by_version: Dict[str, Dict[str, int]] = {}
    rows = []
    for host, n in t.ok.items():
        r = replica_of(host)
        version = version_of(r.image) if r else "?"
        rows.append((r.name if r else "?", r.cid if r else host, version, n))
        v = by_version.setdefault(version, {"idem": 0, "non": 0})
        for k in v:
            v[k] += n.get(k, 0)
    for name, cid, version, n in sorted(rows):
        print("   %-10s %-12s %-8s %9d %9d" % (name, cid, version, n["idem"], n["non"]))
    for version, n in sorted(by_version.items()):
        print("   %-10s %-12s %-8s %9d %9d" % ("all", "", version, n["idem"], n["non"]))
    print("   failed calls: idempotent %d %s, non-idempotent %d %s" % (
        t.failed["idem"], t.codes["idem"] or "", t.failed["non"], t.codes["non"] or ""))
    print("   answered OK after more than one attempt: idempotent %d, non-idempotent %d" % (
        t.retried["idem"], t.retried["non"]))
    for e in t.errors[:8]:
        print("   error: " + e)
    return t


def calls_by_version(t: Totals) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for host, n in t.ok.items():
        r = replica_of(host)
        v = version_of(r.image) if r else "?"
        out[v] = out.get(v, 0) + n.get("idem", 0) + n.get("non", 0)
    return out


def drain_of(r: Replica) -> str:
    """How long r's hoteld drained, from its log ("SIGTERM: draining" to
    "stopped", as docker logs --timestamps stamps them), or ""."""
    stamps: Dict[str, float] = {}
    out = docker("logs", "--timestamps", r.cid, check=False, timeout=20)
    for line in out.splitlines():
        for key in ("draining", "stopped", "second signal", "drain timeout"):
            if key in line and key not in stamps:
                stamps[key] = parse_stamp(line.split(" ", 1)[0])
    if "draining" not in stamps:
        return ""
    ends = [k for k in ("stopped", "second signal", "drain timeout") if k in stamps]
    if not ends:
        return "SIGTERM, and no end logged: killed at stop_grace_period?"
    return "SIGTERM, %s %.0f ms later" % (ends[0], 1000 * (stamps[ends[0]] - stamps["draining"]))


def parse_stamp(text: str) -> float:
    """docker's RFC 3339 UTC time (nanoseconds), as seconds (to the us)."""
    return datetime.datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def diagnose(error: str, t: float, events: Events) -> Tuple[str, bool]:
    """For a failed call's sample: the known cause it matches, or "", and
    whether the contract names it (a 0.1.0 hoteld's drain)."""
    if "connection closed by the server" not in error or "last to " not in error:
        return "", False
    addr = error.rsplit("last to ", 1)[1].rstrip(")")
    with events.lock:  # report lines cover the 0.5 s before them
        drained = [(t - events.termed[c], c) for c in ADDRESSES.get(addr, [])
                   if c in events.termed and c in KNOWN and -0.2 <= t - events.termed[c] <= 1.5]
    if not drained:
        return "", False
    after, cid = min(drained)
    r = KNOWN[cid]
    what = "%s %s (%s) got SIGTERM %.1f s before (%s) and closed the connection this call " \
        "was on" % (r.name, cid, version_of(r.image), after, drain_of(r) or "?")
    if version_of(r.image) == OLD_VERSION and OLD_VERSION == "0.1.0":
        return what + ": a 0.1.0 hoteld drains by closing every connection once no call is " \
            "in progress (docs/compatibility.md, \"Draining and rolling upgrades\")", True
    return what + ": NOT what the contract says a drain of this release does", False


def contract_losses(phase: Phase, load: Load, events: Events) -> int:
    """How many of load's failed calls in phase are the one loss the
    contract names: a 0.1.0 client's non-idempotent call on a connection a
    0.1.0 replica closed as it drained (docs/compatibility.md). Counted
    only where every failure of a report line has its sample (load.py
    keeps 5 per line) and each sample matches; anything else is a
    failure."""
    if not load.label.endswith(OLD_VERSION) or OLD_VERSION != "0.1.0":
        return 0
    known = 0
    for ln in load.window(phase.t0, phase.t1):
        n = sum(sum(by_code.values()) for by_code in ln["failed"].values())
        if n == 0 or n != len(ln["errors"]):
            continue
        if all(e.startswith("non: UNAVAILABLE") and diagnose(e, ln["t"], events)[1]
               for e in ln["errors"]):
            known += n
    return known


def explain(phase: Phase, loads: List[Load], events: Events) -> None:
    """On failed calls: when they failed, next to what the replicas did,
    how long each replica stopped in the phase drained, and the known
    cause a failure matches."""
    failures: List[Tuple[float, str]] = []
    causes: List[str] = []
    for load in loads:
        for ln in load.window(phase.t0, phase.t1):
            if ln["failed"]:
                failures.append((ln["t"], "%s: %s failed in the 0.5 s to here: %s" % (
                    load.label, json.dumps(ln["failed"]), "; ".join(ln["errors"]))))
                for e in ln["errors"]:
                    cause = diagnose(e, ln["t"], events)[0]
                    causes.append("%s: %s\n        cause: %s" % (
                        load.label, e, cause or "not a known one"))
    if not failures:
        return
    print("   timeline of the failures and the replicas' events:")
    lines = [(t, "   FAILED [%5.1fs] %s" % (t - T0, what)) for t, what in failures]
    lines += [(t, "          [%5.1fs] %s" % (t - T0, what))
              for t, what in events.around(phase.t0, phase.t1)]
    for _, text in sorted(lines):
        print(text)
    with events.lock:
        stopped = [KNOWN[c] for c, t in events.termed.items()
                   if phase.t0 <= t <= phase.t1 and c in KNOWN]
    for r in sorted(stopped, key=lambda r: (r.slot, r.cid)):
        print("   drain of %s %s (%s): %s" % (r.name, r.cid, version_of(r.image),
                                             drain_of(r) or "no drain logged"))
    for c in causes:
        print("   failed call: " + c)
    print()


# ---- phases ------------------------------------------------------------------------------
def phase_deploy(loads: List[Load]) -> Phase:
    p = Phase("1. %d replicas of %s" % (REPLICAS, OLD_VERSION))
    deploy(STACK, OLD_IMAGE, NEW_CLIENT, HOTELS)
    up = wait_until("%d replicas healthy" % REPLICAS,
                    lambda: len(healthy(SERVICE)) == REPLICAS and healthy(SERVICE), 120)
    track()
    log("%d replicas healthy: %s" % (REPLICAS, ", ".join(
        "%s %s (%s)" % (r.name, r.cid, r.image) for r in up)))
    for name, image, label in ((STACK + "-old-client", OLD_CLIENT, "client %s" % OLD_VERSION),
                               (STACK + "-new-client", NEW_CLIENT, "client new")):
        log("load: %s (%s), %s threads, one Channel to %s" % (label, image, THREADS, TARGET))
        loads.append(Load(name, image, NETWORK, ["--threads", THREADS], label=label))
    for load in loads:
        wait_until("%s's channel" % load.label, load.started.is_set, 60)
    p.t0 = time.time()
    time.sleep(4)
    p.t1 = time.time()
    for load, spreads in zip(loads, (False, True)):
        t = client_table(p, load)
        answered = {r.cid for r in map(replica_of, t.ok) if r is not None}
        what = "%s: %d of %d replicas serve its calls" % (
            load.label, len(answered & {r.cid for r in up}), len(up))
        if spreads:  # this tree's client: every address of the name is an endpoint
            p.check(answered == {r.cid for r in up}, what)
        else:  # 0.1.0's: a connection goes where the name resolved when it was dialled
            p.notes.append(what)
        p.check(t.failed == {"idem": 0, "non": 0}, "%s: no failed call" % load.label)
    return p


def phase_roll(loads: List[Load], events: Events, name: str, image: str) -> Phase:
    """docker service update --image: every replica replaced by one of image,
    both clients without a failed call and on the new replicas after."""
    p = Phase(name)
    before = {r.cid for r in track()}
    p.t0 = time.time()
    log("docker service update --image %s %s" % (image, SERVICE))
    docker("service", "update", "--detach", "--no-resolve-image", "--image", image, SERVICE)

    def done() -> str:
        track()
        state = update_state(SERVICE)
        return state if state not in ("", "updating") else ""

    final = wait_until("the update to end", done, 240, every=0.5)
    t_done = time.time()
    log("update: %s, %.1f s" % (final, t_done - p.t0))

    def replaced() -> List[Replica]:
        running = track()
        ok = [r for r in running if r.image == image and r.healthy]
        return ok if len(ok) == REPLICAS and len(running) == REPLICAS else []

    now = wait_until("%d replicas of %s healthy, no other running" % (REPLICAS, image),
                     replaced, 60)
    t_all = time.time()
    time.sleep(3)  # every call now goes to a replica of image
    p.t1 = time.time()
    p.notes.append("update %s in %.1f s" % (final, t_done - p.t0))
    with events.lock:
        termed = [KNOWN[c] for c, t in events.termed.items() if p.t0 <= t and c in KNOWN]
    p.notes.append("drains: " + ", ".join("%s %s" % (version_of(r.image), drain_of(r).replace(
        "SIGTERM, ", "")) for r in sorted(termed, key=lambda r: r.slot)))
    for load in loads:
        t = client_table(p, load)
        # Report lines cover the 0.5 s before them: from the first one
        # wholly after the last other replica stopped.
        after = calls_by_version(totals(load.window(t_all + 0.5, p.t1)))
        known = contract_losses(p, load, events)
        if known:
            p.notes.append("%s: %d non-idempotent call%s lost on a connection a 0.1.0 replica "
                           "closed as it drained (the contract's one named loss)"
                           % (load.label, known, "" if known == 1 else "s"))
            LOSSES.append(known)
        p.check(t.failed["idem"] == 0 and t.failed["non"] == known,
                "%s: failed calls: idempotent %d, non-idempotent %d (of them the contract's "
                "named loss: %d)" % (load.label, t.failed["idem"], t.failed["non"], known))
        p.check(set(after) == {version_of(image)}, "%s: after the update, calls only to %s "
                "replicas: %s" % (load.label, version_of(image), after or "no call"))
    p.check(final == "completed", "update state: %s" % final)
    p.check(not before & {r.cid for r in now}, "every replica was replaced")
    explain(p, loads, events)
    return p


def main() -> int:
    def on_signal(signum: int, _: Any) -> None:
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    log("upgrade-test: %s (%s, %s) -> this tree (%s, %s)" % (
        OLD_VERSION, OLD_IMAGE, OLD_CLIENT, NEW_IMAGE, NEW_CLIENT))
    phases: List[Phase] = []
    loads: List[Load] = []
    events: Optional[Events] = None
    created = False
    problem = ""
    try:
        created = swarm_up()
        remove_old_stack(STACK)
        events = Events()
        phases.append(phase_deploy(loads))
        for i in range(ROUNDS):
            n = "" if ROUNDS == 1 else ", round %d" % (i + 1)
            phases.append(phase_roll(loads, events, "2. upgrade %s -> new%s" % (OLD_VERSION, n),
                                     NEW_IMAGE))
            if ROLLBACK:
                phases.append(phase_roll(loads, events, "3. rollback new -> %s%s"
                                         % (OLD_VERSION, n), OLD_IMAGE))
    except (RuntimeError, TimeoutError, KeyboardInterrupt, subprocess.TimeoutExpired) as e:
        problem = "%s: %s" % (type(e).__name__, e)
        log("STOPPED: " + problem)
    finally:
        left = cleanup(STACK, created, loads)
        if events is not None:
            events.stop()
    print("\n== upgrade-test summary (%.0f s)" % (time.time() - T0))
    for p in phases:
        print("%s  %s%s" % ("ok  " if p.passed else "FAIL", p.name,
                            " (%s)" % "; ".join(p.notes) if p.notes else ""))
        for ok, what in p.checks:
            if not ok:
                print("        failed: " + what)
    if problem:
        print("FAIL  stopped early: " + problem)
    if left:
        print("FAIL  left behind: " + ", ".join(left))
    want = 1 + ROUNDS * (2 if ROLLBACK else 1)
    passed = len(phases) == want and all(p.passed for p in phases) and not problem and not left
    if LOSSES:
        print("note  %d non-idempotent call%s of the %s client lost as %s replicas drained: "
              "the loss docs/compatibility.md names for that release's hoteld" % (
                  sum(LOSSES), "" if sum(LOSSES) == 1 else "s", OLD_VERSION, OLD_VERSION))
    print("upgrade-test: %s (%d of %d phases passed)" % (
        "ok" if passed else "FAIL", sum(p.passed for p in phases), want))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
