#!/usr/bin/env python3
"""make swarm-test: docker/stack.yml on a one-node Docker Swarm, under load
from ONE nngrpc.Channel to tcp://tasks.hoteld:5555.

    docker/swarm/test.sh       (builds the images, then runs this)

Phases, each with a table of calls per replica and failed calls:

1. deploy: 3 replicas healthy; every replica serves calls; the one-shot
   smoke client service completes.
2. scale 3 -> 5: each new replica serves calls within 15 s of turning
   healthy (that is, of entering DNS).
3. scale 5 -> 2: no failed call, idempotent or not.
4. rolling update (docker service update --force): no failed call,
   idempotent or not.
5. kill -9 of one replica's hoteld (its PID 1): no failed idempotent call
   (non-idempotent calls in flight on it are lost: they may have run), and
   Swarm starts a replacement that turns healthy.

The load (docker/swarm/load.py) runs in a container on the stack's
attachable overlay network, in the smoke client image.  It learns which
replica answered from hoteld's Echo trailer testing-hostname (a task's
container id), so the stack runs with NNGRPC_TESTING=true.

Swarm: a node outside any swarm gets a one-node swarm (advertising
127.0.0.1) that it leaves again at the end; a node already a manager is
used as it is and stays.  The stack and its network are always removed.
Every wait is bounded; the whole run takes about 70 s.

Environment: NNGRPC_IMAGE, NNGRPC_CLIENT_IMAGE, NNGRPC_SWARM_STACK (stack
name, default nngrpcswarmtest), NNGRPC_HOTELS (default 20000).
Exit 0 only when every check passed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from swarmlib import (T0, TARGET, Load, Phase, Replica, Totals, cleanup, deploy, docker, log,
                      name_of, remove_old_stack, swarm_up, totals, update_state, wait_until)
from swarmlib import healthy as healthy_of
from swarmlib import replicas as replicas_of

STACK = os.environ.get("NNGRPC_SWARM_STACK", "nngrpcswarmtest")
SERVICE = STACK + "_hoteld"
SMOKE = STACK + "_smoke"
NETWORK = STACK + "_nngrpc"
CLIENT = STACK + "-client"
IMAGE = os.environ.get("NNGRPC_IMAGE", "nngrpc/hoteld:dev")
CLIENT_IMAGE = os.environ.get("NNGRPC_CLIENT_IMAGE", "nngrpc/smoke-client:dev")
HOTELS = os.environ.get("NNGRPC_HOTELS", "20000")
NEW_REPLICA_LIMIT = 15.0  # s from healthy to first call (the bound)


def replicas() -> List[Replica]:
    return replicas_of(SERVICE)


def healthy() -> List[Replica]:
    return healthy_of(SERVICE)


def first_answer(load: Load, host: str, after: float) -> Optional[float]:
    return load.first_answer(host, after)


# ---- phases --------------------------------------------------------------------
def table(phase: Phase, load: Load) -> Totals:
    t = totals(load.window(phase.t0, phase.t1))
    print("\n   %s: %.1f s, %d calls" % (phase.name, phase.t1 - phase.t0, t.calls))
    print("   %-10s %-12s %9s %9s  %s" % ("replica", "container", "idem ok", "non ok", "what"))
    hosts = sorted(set(t.ok) | set(phase.first_call), key=lambda h: (name_of(h), h))
    for h in hosts:
        row = t.ok.get(h, {"idem": 0, "non": 0})
        print("   %-10s %-12s %9d %9d  %s" % (name_of(h), h, row["idem"], row["non"],
                                             phase.first_call.get(h, "")))
    print("   failed calls: idempotent %d %s, non-idempotent %d %s" % (
        t.failed["idem"], t.codes["idem"] or "", t.failed["non"], t.codes["non"] or ""))
    print("   answered OK after a retry: idempotent %d, non-idempotent %d" % (
        t.retried["idem"], t.retried["non"]))
    for e in t.errors[:5]:
        print("   error: " + e)
    for n in phase.notes:
        print("   note: " + n)
    print(flush=True)
    return t


def observe(seconds: float) -> None:
    time.sleep(seconds)


def phase_deploy(load_box: List[Load]) -> Phase:
    p = Phase("1. deploy, 3 replicas")
    deploy(STACK, IMAGE, CLIENT_IMAGE, HOTELS)
    up = wait_until("3 replicas healthy", lambda: len(healthy()) == 3 and healthy(), 120)
    log("3 replicas healthy: %s" % ", ".join("%s %s" % (r.name, r.cid) for r in up))
    load = Load(CLIENT, CLIENT_IMAGE, NETWORK)
    load_box.append(load)
    wait_until("the load client's channel", load.started.is_set, 60)
    p.t0 = time.time()
    observe(6)
    p.t1 = time.time()
    t = table(p, load)
    answered = [r for r in up if t.ok.get(r.cid)]
    p.check(len(answered) == 3, "every replica serves calls through one Channel to %s: %d of 3"
            % (TARGET, len(answered)))
    p.check(t.failed == {"idem": 0, "non": 0}, "no failed call")
    smoke = wait_until("the smoke service to end", lambda: [
        s for s in docker("service", "ps", SMOKE, "--format", "{{.CurrentState}}").splitlines()
        if not s.startswith(("Running", "Starting", "Preparing", "Assigned", "Pending", "New"))], 90)
    logs = docker("service", "logs", "--raw", SMOKE, check=False)
    last = [ln for ln in logs.splitlines() if ln.startswith("smoke:")][-1:]
    p.check(smoke[0].startswith("Complete"), "one-shot smoke client service: %s; %s"
            % (smoke[0], last[0] if last else "no output"))
    return p


def phase_scale_up(load: Load) -> Phase:
    p = Phase("2. scale 3 -> 5")
    before = {r.cid for r in healthy()}
    p.t0 = time.time()
    log("docker service scale %s=5" % SERVICE)
    docker("service", "scale", "--detach", SERVICE + "=5")
    became: Dict[str, float] = {}

    def all_five() -> bool:
        for r in healthy():
            if r.cid not in before and r.cid not in became:
                became[r.cid] = time.time()
                log("%s %s healthy, %.1f s after the scale command"
                    % (r.name, r.cid, became[r.cid] - p.t0))
        return len(became) >= 2

    wait_until("5 replicas healthy", all_five, 90)
    # Until every new replica answered, or NEW_REPLICA_LIMIT after the last
    # turned healthy.
    end = max(became.values()) + NEW_REPLICA_LIMIT
    while time.time() < end and not all(first_answer(load, c, p.t0) for c in became):
        time.sleep(0.25)
    time.sleep(1.0)
    p.t1 = time.time()
    late = []
    for cid, t_healthy in sorted(became.items(), key=lambda kv: kv[1]):
        first = first_answer(load, cid, p.t0)
        if first is None:
            p.first_call[cid] = "no call within %.0f s of turning healthy" % NEW_REPLICA_LIMIT
            late.append(cid)
        else:
            p.first_call[cid] = "first call %.1f s after turning healthy" % (first - t_healthy)
            if first - t_healthy > NEW_REPLICA_LIMIT:
                late.append(cid)
    t = table(p, load)
    p.check(not late, "the 2 new replicas serve calls within %.0f s of turning healthy: %s"
            % (NEW_REPLICA_LIMIT, "; ".join("%s %s" % (name_of(c), p.first_call[c])
                                              for c in became)))
    p.check(t.failed == {"idem": 0, "non": 0}, "no failed call")
    return p


def phase_scale_down(load: Load) -> Phase:
    p = Phase("3. scale 5 -> 2")
    before = {r.cid for r in replicas()}
    p.t0 = time.time()
    log("docker service scale %s=2" % SERVICE)
    docker("service", "scale", "--detach", SERVICE + "=2")
    wait_until("2 replicas left", lambda: len(replicas()) == 2, 90)
    log("2 replicas left: %s" % ", ".join("%s %s" % (r.name, r.cid) for r in replicas()))
    observe(3)
    p.t1 = time.time()
    for cid in before - {r.cid for r in replicas()}:
        p.first_call[cid] = "removed"
    t = table(p, load)
    p.check(t.failed["idem"] == 0 and t.failed["non"] == 0,
            "no failed call, idempotent (%d) or not (%d)" % (t.failed["idem"], t.failed["non"]))
    return p


def phase_update(load: Load) -> Phase:
    p = Phase("4. rolling update")
    before = {r.cid for r in replicas()}
    p.t0 = time.time()
    log("docker service update --force %s" % SERVICE)
    docker("service", "update", "--detach", "--force", SERVICE)

    def state() -> str:
        return update_state(SERVICE)

    final = wait_until("the update to end", lambda: state() not in ("", "updating") and state(),
                       180, every=0.5)
    t_done = time.time()
    log("update: %s" % final)
    wait_until("2 replicas healthy", lambda: len(healthy()) == 2, 60)
    now = healthy()
    p.notes.append("replaced %s by %s" % (
        ", ".join(sorted(before)), ", ".join("%s %s" % (r.name, r.cid) for r in now)))
    observe(3)
    p.t1 = time.time()
    served = [r for r in now if first_answer(load, r.cid, p.t0)]
    for r in now:
        first = first_answer(load, r.cid, p.t0)
        p.first_call[r.cid] = "new: %s" % (
            "first call %.1f s after the update began" % (first - p.t0) if first
            else "no call yet")
    p.notes.append("update took %.1f s; new replicas that served calls: %d of %d"
                   % (t_done - p.t0, len(served), len(now)))
    t = table(p, load)
    p.check(final == "completed", "update state: %s" % final)
    p.check(not before & {r.cid for r in now}, "every replica was replaced")
    p.check(t.failed["idem"] == 0 and t.failed["non"] == 0,
            "no failed call, idempotent (%d) or not (%d)" % (t.failed["idem"], t.failed["non"]))
    return p


def phase_kill(load: Load) -> Phase:
    p = Phase("5. kill -9 of one replica")
    up = healthy()
    victim = up[0]
    before = {r.cid for r in up}
    p.t0 = time.time()
    log("docker kill -s KILL %s (%s: hoteld is its PID 1)" % (victim.cid, victim.name))
    docker("kill", "-s", "KILL", victim.cid)
    killed_at = time.time()

    def replaced() -> List[Replica]:
        now = healthy()
        return now if len(now) == 2 and victim.cid not in {r.cid for r in now} else []

    try:
        now = wait_until("a replacement healthy", replaced, 90)
        back = time.time() - killed_at
        new = [r for r in now if r.cid not in before]
        p.notes.append("Swarm's replacement %s healthy %.1f s after the kill"
                       % (", ".join("%s %s" % (r.name, r.cid) for r in new), back))
        restarted = True
    except TimeoutError as e:
        p.notes.append(str(e))
        restarted = False
        new = []
    exited = docker("inspect", "-f", "{{.State.ExitCode}}", victim.cid, check=False)
    observe(3)
    p.t1 = time.time()
    for r in new:
        first = first_answer(load, r.cid, p.t0)
        p.first_call[r.cid] = "replacement: %s" % (
            "first call %.1f s after the kill" % (first - killed_at) if first
            else "no call yet")
    t = table(p, load)
    p.check(t.failed["idem"] == 0, "no failed idempotent call (%d; non-idempotent: %d, allowed:"
            " they were in flight on the killed replica)" % (t.failed["idem"], t.failed["non"]))
    p.check(restarted and exited == "137",
            "Swarm restarted it: the killed container exited %s, a new one is healthy" % exited)
    return p


def main() -> int:
    def on_signal(signum: int, _: Any) -> None:
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    phases: List[Phase] = []
    load_box: List[Load] = []
    created = False
    problem = ""
    try:
        created = swarm_up()
        remove_old_stack(STACK)
        phases.append(phase_deploy(load_box))
        load = load_box[0]
        for run in (phase_scale_up, phase_scale_down, phase_update, phase_kill):
            phases.append(run(load))
    except (RuntimeError, TimeoutError, KeyboardInterrupt, subprocess.TimeoutExpired) as e:
        problem = "%s: %s" % (type(e).__name__, e)
        log("STOPPED: " + problem)
    finally:
        left = cleanup(STACK, created, load_box)
    print("\n== swarm-test summary (%.0f s)" % (time.time() - T0))
    for p in phases:
        print("%s  %s" % ("ok  " if p.passed else "FAIL", p.name))
        for ok, what in p.checks:
            if not ok:
                print("        failed: " + what)
    if problem:
        print("FAIL  stopped early: " + problem)
    if left:
        print("FAIL  left behind: " + ", ".join(left))
    passed = bool(phases) and all(p.passed for p in phases) and not problem and not left
    print("swarm-test: %s (%d of %d phases passed)" % (
        "ok" if passed else "FAIL", sum(p.passed for p in phases), 5))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
