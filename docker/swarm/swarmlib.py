"""What make swarm-test (docker/swarm/test.py) and make upgrade-test
(docker/swarm/upgrade.py) share: the docker CLI, bounded waits, a stack's
replicas, the load client (docker/swarm/load.py in a container on the
stack's network) and its report lines, a one-node swarm and the cleanup.

Runs under /usr/bin/python3 with the standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STACK_FILE = os.path.join(ROOT, "docker", "stack.yml")
TARGET = "tcp://tasks.hoteld:5555"
T0 = time.time()


def log(msg: str) -> None:
    print("[%5.1fs] %s" % (time.time() - T0, msg), flush=True)


def docker(*args: str, check: bool = True, timeout: float = 120,
           env: Optional[Dict[str, str]] = None) -> str:
    r = subprocess.run(("docker",) + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, env=env, check=False)
    out = r.stdout.decode(errors="replace").strip()
    if check and r.returncode != 0:
        raise RuntimeError("docker %s: exit %d: %s" % (" ".join(args), r.returncode, out))
    return out


def wait_until(what: str, cond: Callable[[], Any], limit: float, every: float = 0.25) -> Any:
    """Polls cond() until it returns something true (returned), at most
    limit seconds; raises TimeoutError naming what."""
    end = time.monotonic() + limit
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError("%s: not within %.0f s" % (what, limit))
        time.sleep(every)


# ---- the replicas ---------------------------------------------------------------
@dataclass
class Replica:
    cid: str  # 12 hex digits: the container's host name, the Echo trailer
    slot: str
    task: str
    state: str
    healthy: bool
    image: str = ""  # the image the service named, as docker ps shows it

    @property
    def name(self) -> str:
        return "hoteld.%s" % self.slot


KNOWN: Dict[str, Replica] = {}  # every container seen, by cid


def replicas(service: str, with_stopped: bool = False) -> List[Replica]:
    """The service's containers (running ones unless with_stopped)."""
    fmt = ('{{.ID}}\t{{.Label "com.docker.swarm.task.name"}}\t{{.State}}\t{{.Status}}'
           '\t{{.Image}}')
    args = ["ps", "--no-trunc", "--filter", "label=com.docker.swarm.service.name=" + service,
            "--format", fmt]
    if with_stopped:
        args.insert(1, "-a")
    out: List[Replica] = []
    for line in docker(*args).splitlines():
        cid, task, state, status, image = line.split("\t")
        parts = task.split(".")
        r = Replica(cid[:12], parts[1] if len(parts) > 2 else "?",
                    parts[2][:12] if len(parts) > 2 else task, state, "(healthy)" in status,
                    image.split("@")[0])
        KNOWN[r.cid] = r
        out.append(r)
    return sorted(out, key=lambda r: (r.slot, r.cid))


def healthy(service: str) -> List[Replica]:
    return [r for r in replicas(service) if r.state == "running" and r.healthy]


def name_of(host: str) -> str:
    r = KNOWN.get(host)
    return r.name if r else "?"


@dataclass
class Phase:
    name: str
    t0: float = 0.0
    t1: float = 0.0
    checks: List[Tuple[bool, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    first_call: Dict[str, str] = field(default_factory=dict)

    def check(self, ok: bool, what: str) -> bool:
        self.checks.append((ok, what))
        print("%s - %s" % ("ok  " if ok else "FAIL", what), flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks)


# ---- the load client -----------------------------------------------------------
class Load:
    """docker/swarm/load.py in a container (name) of image on network; its
    per-interval report lines, as they come. The image's python3 must
    import nngrpc (the smoke client images of every release do)."""

    def __init__(self, name: str, image: str, network: str, args: Sequence[str] = (),
                 label: str = "client") -> None:
        self.name = name
        self.label = label
        self.lines: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            ["docker", "run", "--rm", "--name", name, "--network", network,
             "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "-v", os.path.join(HERE, "load.py") + ":/opt/swarm/load.py:ro",
             "--entrypoint", "python3", image, "/opt/swarm/load.py",
             "--target", TARGET] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.other: List[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode(errors="replace").rstrip()
            try:
                line = json.loads(text)
            except ValueError:
                self.other.append(text)
                print("       %s: %s" % (self.label, text), flush=True)
                continue
            if "start" in line:
                self.started.set()
                continue
            with self.lock:
                self.lines.append(line)

    def window(self, t0: float, t1: float) -> List[Dict[str, Any]]:
        with self.lock:
            return [ln for ln in self.lines if t0 < ln["t"] <= t1]

    def first_answer(self, host: str, after: float) -> Optional[float]:
        with self.lock:
            for ln in self.lines:
                if ln["t"] > after and ln["ok"].get(host):
                    return float(ln["t"])
        return None

    def stop(self) -> int:
        docker("stop", "-t", "15", self.name, check=False, timeout=30)
        try:
            return self.proc.wait(30)
        finally:
            self.reader.join(5)


@dataclass
class Totals:
    ok: Dict[str, Dict[str, int]]
    failed: Dict[str, int]
    codes: Dict[str, Dict[str, int]]
    retried: Dict[str, int]
    errors: List[str]

    @property
    def calls(self) -> int:
        return sum(sum(v.values()) for v in self.ok.values()) + sum(self.failed.values())


def totals(lines: List[Dict[str, Any]]) -> Totals:
    """Adds up load.py's report lines."""
    ok: Dict[str, Dict[str, int]] = {}
    failed = {"idem": 0, "non": 0}
    codes: Dict[str, Dict[str, int]] = {"idem": {}, "non": {}}
    retried = {"idem": 0, "non": 0}
    errors: List[str] = []
    for ln in lines:
        for host, kinds in ln["ok"].items():
            row = ok.setdefault(host, {"idem": 0, "non": 0})
            for k, n in kinds.items():
                row[k] += n
        for k, by_code in ln["failed"].items():
            for code, n in by_code.items():
                failed[k] += n
                codes[k][code] = codes[k].get(code, 0) + n
        for k, n in ln["retried"].items():
            retried[k] += n
        errors.extend(ln["errors"])
    return Totals(ok, failed, codes, retried, errors)


# ---- swarm, stack and cleanup ------------------------------------------------------
def swarm_up() -> bool:
    """Makes this engine a swarm manager; True if it created the swarm."""
    state = docker("info", "-f", "{{.Swarm.LocalNodeState}}")
    if state == "active":
        if docker("info", "-f", "{{.Swarm.ControlAvailable}}") != "true":
            raise RuntimeError("this engine is a swarm worker, not a manager: run on a manager")
        log("swarm: already active here (manager); it stays after the test")
        return False
    if state != "inactive":
        raise RuntimeError("swarm state %r: neither inactive nor active" % state)
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    log("swarm: docker swarm init --advertise-addr 127.0.0.1 (left again at the end)")
    return True


def stack_gone(stack: str) -> bool:
    return not docker("ps", "-aq", "--filter", "label=com.docker.stack.namespace=" + stack)


def remove_old_stack(stack: str) -> None:
    """Removes a stack of this name left from an earlier run."""
    if docker("stack", "ls", "--format", "{{.Name}}").split().count(stack):
        log("removing a stack %s left from an earlier run" % stack)
        docker("stack", "rm", stack)
        wait_until("the old stack gone", lambda: stack_gone(stack), 60, every=0.5)


def deploy(stack: str, image: str, client_image: str, hotels: str) -> None:
    """docker stack deploy of docker/stack.yml as stack, the diagnostics
    service on (load.py calls Echo)."""
    env = dict(os.environ, NNGRPC_IMAGE=image, NNGRPC_CLIENT_IMAGE=client_image,
               NNGRPC_NETWORK=stack + "_nngrpc", NNGRPC_HOTELS=hotels, NNGRPC_TESTING="true")
    log("docker stack deploy -c docker/stack.yml %s (hoteld image %s)" % (stack, image))
    docker("stack", "deploy", "--resolve-image", "never", "-c", STACK_FILE, stack, env=env)


def update_state(service: str) -> str:
    return docker("service", "inspect", "-f",
                  "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", service)


def cleanup(stack: str, created_swarm: bool, loads: Sequence[Load]) -> List[str]:
    """Stops the load clients, removes the stack and its network, leaves a
    swarm this run created. Returns what it could not remove."""
    network = stack + "_nngrpc"
    left = []
    log("cleanup")
    for load in loads:
        load.stop()
        docker("rm", "-f", load.name, check=False)
    docker("stack", "rm", stack, check=False)
    try:
        wait_until("the stack's containers gone", lambda: stack_gone(stack), 60, every=0.5)
    except TimeoutError as e:
        left.append(str(e))
    try:
        wait_until("the network %s gone" % network, lambda: docker(
            "network", "inspect", network, check=False).startswith(("[]", "Error")), 30, every=0.5)
    except TimeoutError:
        docker("network", "rm", network, check=False)
        if not docker("network", "inspect", network, check=False).startswith(("[]", "Error")):
            left.append("network " + network)
    if created_swarm:
        docker("swarm", "leave", "--force", check=False, timeout=60)
        if docker("info", "-f", "{{.Swarm.LocalNodeState}}") != "inactive":
            left.append("the swarm")
    log("removed the stack %s and its network%s%s" % (
        stack, ", left the swarm" if created_swarm else "",
        "; LEFT BEHIND: " + ", ".join(left) if left else ""))
    return left
