"""The deployment files agree with the image they run.

Kubernetes cannot run on the project's build machines and kubectl needs an
API server even for a client-side dry run, so this checks what can drift
without one: deploy/kubernetes/*.yaml and docker/stack.yml parse, hold the
fields production needs, and match docker/Dockerfile's runtime stage
(ports, user, drain timeout, the HEALTHCHECK command), which is read here,
not restated.

    build/venv/bin/python -m pytest tests/deploy    (make test runs it)

Needs PyYAML (Debian's python3-yaml).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml  # Debian's python3-yaml (make deps)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "kubernetes")


# ---- docker/Dockerfile ------------------------------------------------------------
class Image:
    """The runtime (last) stage of docker/Dockerfile: its USER, ENV, EXPOSE
    and HEALTHCHECK, from the file itself."""

    def __init__(self, path: str) -> None:
        with open(path) as f:
            text = f.read()
        # Join continuation lines, drop comments.
        lines: List[str] = []
        cur = ""
        for raw in text.splitlines():
            s = raw.strip()
            if not cur and (not s or s.startswith("#")):
                continue
            if s.startswith("#"):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            lines.append(cur + s)
            cur = ""
        stages: List[List[Tuple[str, str]]] = []
        for line in lines:
            op, _, rest = line.partition(" ")
            op = op.upper()
            if op == "FROM":
                stages.append([])
            if stages:
                stages[-1].append((op, rest.strip()))
        assert stages, "no FROM in " + path
        self.stage = stages[-1]
        self.base = self.stage[0][1].split()[0]

    def one(self, op: str) -> str:
        found = [rest for o, rest in self.stage if o == op]
        assert len(found) == 1, "%s: %d in the runtime stage" % (op, len(found))
        return found[0]

    @property
    def user(self) -> Tuple[int, int]:
        uid, _, gid = self.one("USER").partition(":")
        return int(uid), int(gid or uid)

    @property
    def env(self) -> Dict[str, str]:
        env: Dict[str, str] = {}
        for op, rest in self.stage:
            if op == "ENV":
                for word in shlex.split(rest):
                    k, sep, v = word.partition("=")
                    assert sep, "ENV %s: only KEY=VALUE is read here" % rest
                    env[k] = v
        return env

    @property
    def exposed(self) -> List[int]:
        return sorted(int(p.split("/")[0]) for p in self.one("EXPOSE").split())

    @property
    def healthcheck(self) -> List[str]:
        rest = self.one("HEALTHCHECK")
        cmd = rest[rest.index("CMD") + 3:].strip()
        value = json.loads(cmd)
        assert isinstance(value, list), "HEALTHCHECK CMD is not exec form: " + cmd
        return [str(v) for v in value]


@pytest.fixture(scope="module")
def image() -> Image:
    return Image(os.path.join(ROOT, "docker", "Dockerfile"))


def port_of(url_or_addr: str) -> int:
    """5555 from tcp://0.0.0.0:5555 or 0.0.0.0:8080 (first of a list)."""
    first = url_or_addr.split(",")[0]
    m = re.search(r":(\d+)$", first)
    assert m, "no port in %r" % first
    return int(m.group(1))


def seconds(value: Any) -> float:
    """A duration: a number of seconds, or compose's 15s / 1m30s / 500ms."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    assert total > 0, "not a duration: %r" % value
    return total


# ---- files --------------------------------------------------------------------
def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with the defaults (what a user gets with
    nothing set); a bare ${VAR} would be a required variable: none here."""
    bare = re.findall(r"\$\{(\w+)\}", text)
    assert not bare, "variables without a default: %s" % bare
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def load_yaml(path: str, compose: bool = False) -> List[Dict[str, Any]]:
    with open(path) as f:
        text = f.read()
    if compose:
        text = interpolate(text)
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert docs, path + " is empty"
    return docs


@pytest.fixture(scope="module")
def k8s() -> Dict[str, Dict[str, Any]]:
    """deploy/kubernetes's objects by kind (exactly one of each)."""
    objs: Dict[str, Dict[str, Any]] = {}
    names = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
    assert names, "no manifests in " + K8S
    for name in names:
        for doc in load_yaml(os.path.join(K8S, name)):
            kind = doc.get("kind")
            assert kind not in objs, "two %s objects" % kind
            objs[kind] = doc
    return objs


@pytest.fixture(scope="module")
def stack() -> Dict[str, Any]:
    return load_yaml(os.path.join(ROOT, "docker", "stack.yml"), compose=True)[0]


@pytest.fixture(scope="module")
def container(k8s: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    containers = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["hoteld"]
    return dict(containers[0])


def env_of(container: Dict[str, Any]) -> Dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", [])}


def drain_timeout(image: Image, overrides: Dict[str, str]) -> float:
    """NNGRPC_DRAIN_TIMEOUT as the container gets it: the manifest's env
    over the image's; hoteld's own default (10 s) if neither sets it."""
    value = overrides.get("NNGRPC_DRAIN_TIMEOUT", image.env.get("NNGRPC_DRAIN_TIMEOUT", "10"))
    return float(value)


# ---- the image itself -------------------------------------------------------------
def test_image_is_debian_13_non_root(image: Image) -> None:
    assert image.base == "debian:trixie-slim"
    uid, gid = image.user
    assert uid != 0 and gid != 0
    assert port_of(image.env["NNGRPC_LISTEN"]) in image.exposed
    assert port_of(image.env["NNGRPC_HTTP"]) in image.exposed


# ---- Kubernetes ---------------------------------------------------------------
def test_manifests_parse_with_the_expected_kinds(k8s: Dict[str, Dict[str, Any]]) -> None:
    assert {k: v["apiVersion"] for k, v in k8s.items()} == {
        "Deployment": "apps/v1",
        "Service": "v1",
        "PodDisruptionBudget": "policy/v1",
    }
    for obj in k8s.values():
        assert "namespace" not in obj["metadata"], "kubectl apply -n NAMESPACE chooses it"


def test_selectors_agree(k8s: Dict[str, Dict[str, Any]]) -> None:
    dep = k8s["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= labels.items()
    assert k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector


def test_deployment_rolls_one_at_a_time(k8s: Dict[str, Dict[str, Any]]) -> None:
    spec = k8s["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pdb = k8s["PodDisruptionBudget"]["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= spec["replicas"] - 1


def test_ports_are_the_images(image: Image, container: Dict[str, Any],
                              k8s: Dict[str, Dict[str, Any]]) -> None:
    env = dict(image.env, **env_of(container))
    rpc, ops = port_of(env["NNGRPC_LISTEN"]), port_of(env["NNGRPC_HTTP"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"rpc": rpc, "ops": ops}
    assert sorted(ports.values()) == image.exposed
    svc = {p["name"]: p for p in k8s["Service"]["spec"]["ports"]}
    assert svc["rpc"]["port"] == rpc and svc["rpc"]["targetPort"] in ("rpc", rpc)
    assert svc["ops"]["port"] == ops and svc["ops"]["targetPort"] in ("ops", ops)


def test_service_is_headless(k8s: Dict[str, Dict[str, Any]]) -> None:
    spec = k8s["Service"]["spec"]
    assert spec["clusterIP"] == "None"
    assert not spec.get("publishNotReadyAddresses", False)


def test_security_context_matches_the_image_user(image: Image, k8s: Dict[str, Dict[str, Any]],
                                                 container: Dict[str, Any]) -> None:
    uid, gid = image.user
    pod = k8s["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    sc = container["securityContext"]
    for ctx in (pod, sc):
        assert ctx["runAsNonRoot"] is True
        assert (ctx["runAsUser"], ctx["runAsGroup"]) == (uid, gid)
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_probes_use_the_images_healthcheck_and_readyz(image: Image,
                                                      container: Dict[str, Any]) -> None:
    assert container["startupProbe"]["exec"]["command"] == image.healthcheck
    assert container["livenessProbe"]["exec"]["command"] == image.healthcheck
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get(ready["port"], ready["port"]) == port_of(
        dict(image.env, **env_of(container))["NNGRPC_HTTP"])
    # The paths hoteld serves (src/rpc/ops_http.c).
    with open(os.path.join(ROOT, "src", "rpc", "ops_http.c")) as f:
        assert '"/readyz"' in f.read()
    # A liveness probe may not kill a pod that is only draining.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > drain_timeout(
        image, env_of(container))


def test_termination_grace_covers_prestop_and_drain(image: Image, k8s: Dict[str, Dict[str, Any]],
                                                    container: Dict[str, Any]) -> None:
    grace = k8s["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = float(pre[1]) if pre[:1] == ["sleep"] else 0.0
    drain = drain_timeout(image, env_of(container))
    assert grace > pre_s + drain, "grace %s s <= preStop %s s + drain %s s" % (grace, pre_s, drain)


def test_resources_are_set(container: Dict[str, Any]) -> None:
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) >= {"cpu", "memory"}


def test_readme_names_the_services_dns_name(k8s: Dict[str, Dict[str, Any]], image: Image) -> None:
    name = k8s["Service"]["metadata"]["name"]
    port = port_of(image.env["NNGRPC_LISTEN"])
    with open(os.path.join(K8S, "README.md")) as f:
        assert "tcp://%s.NAMESPACE.svc.cluster.local:%d" % (name, port) in f.read()


# ---- Docker Swarm -----------------------------------------------------------------
def hoteld_service(stack: Dict[str, Any]) -> Dict[str, Any]:
    return dict(stack["services"]["hoteld"])


def test_stack_runs_the_image_as_production(image: Image, stack: Dict[str, Any]) -> None:
    svc = hoteld_service(stack)
    assert svc["image"] == "nngrpc/hoteld:dev"
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert "user" not in svc or svc["user"] == "%d:%d" % image.user
    assert svc["healthcheck"]["test"] == ["CMD"] + image.healthcheck
    drain = drain_timeout(image, {k: str(v) for k, v in svc.get("environment", {}).items()})
    assert seconds(svc["stop_grace_period"]) > drain


def test_stack_deploy_settings(stack: Dict[str, Any]) -> None:
    deploy = hoteld_service(stack)["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["endpoint_mode"] == "dnsrr"
    up = deploy["update_config"]
    assert (up["order"], up["parallelism"], up["failure_action"]) == ("start-first", 1, "rollback")
    assert seconds(up["monitor"]) > 0
    assert deploy["rollback_config"]["parallelism"] == 1
    assert deploy["restart_policy"]["condition"] in ("any", "on-failure")
    for kind in ("limits", "reservations"):
        assert set(deploy["resources"][kind]) >= {"cpus", "memory"}


def test_stack_network_and_smoke_client(stack: Dict[str, Any]) -> None:
    net = stack["networks"]["nngrpc"]
    assert (net["name"], net["driver"], net["attachable"]) == ("nngrpc", "overlay", True)
    assert hoteld_service(stack)["networks"] == ["nngrpc"]
    smoke = stack["services"]["smoke"]
    assert smoke["networks"] == ["nngrpc"]
    assert smoke["deploy"]["restart_policy"]["condition"] == "none"
    assert smoke["environment"]["NNGRPC_TARGETS"] == "tcp://tasks.hoteld:%d" % port_of(
        Image(os.path.join(ROOT, "docker", "Dockerfile")).env["NNGRPC_LISTEN"])


def test_compose_healthcheck_and_grace(image: Image) -> None:
    compose = load_yaml(os.path.join(ROOT, "docker", "compose.yml"), compose=True)[0]
    for name, svc in compose["services"].items():
        if "healthcheck" not in svc:
            continue
        assert svc["healthcheck"]["test"] == ["CMD"] + image.healthcheck, name
        env: Optional[Dict[str, Any]] = svc.get("environment")
        drain = drain_timeout(image, {k: str(v) for k, v in (env or {}).items()})
        assert seconds(svc["stop_grace_period"]) > drain, name
