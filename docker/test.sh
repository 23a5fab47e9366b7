#!/usr/bin/env bash
# docker/test.sh (`make docker-test`): builds the images and tests them.
#
#  1. the health probe's own tests (fake servers, no Docker)
#  2. builds nngrpc/hoteld:dev and the smoke client image; the hoteld image
#     must stay under $MAX_IMAGE_MB
#  3. one container, as production runs it (--read-only --cap-drop ALL
#     --security-opt no-new-privileges), RPC and ops ports published on
#     127.0.0.1 (free ports Docker picks): becomes healthy through its
#     HEALTHCHECK, runs as non-root with no capabilities and cannot write
#     its root file system, answers tests/docker/test_container.py through
#     the published port, listens on the ops port (when hoteld has one),
#     and stops cleanly and quickly on `docker stop`
#  4. docker/compose.yml: three replicas healthy, each port published on
#     127.0.0.1 only and answering the host's probe; the client container
#     calls all three through one nngrpc.Channel and all three answer;
#     then, while a client keeps calling, hoteld2 is stopped (no call may
#     fail, hoteld2 gets none after it stopped, it exits 0 and stays
#     stopped), started again, and gets calls again
#  5. the Python packages in Debian 13 (Python 3.13): the smoke client image
#     has the host's wheels installed in a venv (the same file; imports,
#     the C accelerator nngrpc._speedups loads under 3.13); the `pycheck`
#     stage of docker/client.Dockerfile runs tests/integration/test_wheels.py
#     and test_mypy.py with the source tree mounted read-only, against
#     hoteld1 (build the wheels, install them in a fresh venv, make and
#     install stub wheels, call hoteld through them; mypy --strict with
#     protobuf's stubs, which Debian 12 lacks)
#  6. always (trap): removes the container and the compose project
#
# Prints "ok", "FAIL" or "skip" per check and one closing line. Exit 0 only
# when no check failed. Needs build/venv (make) and build/bin/nngrpc-health.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. docker/lib.sh

PY=${VENV_PY:-build/venv/bin/python}
PROBE=${PROBE:-build/bin/nngrpc-health}
HOTELS=${HOTELS:-20000}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-120}
HEALTHY_LIMIT=${HEALTHY_LIMIT:-60}
RUN_ID=$$
CONTAINER=nngrpc-test-$RUN_ID
PROJECT=nngrpctest$RUN_ID
COMPOSE=(docker-compose -p "$PROJECT" -f docker/compose.yml)
PYCHECK_IMAGE=${NNGRPC_PYCHECK_IMAGE:-nngrpc/pycheck:dev}
LOGDIR=$(mktemp -d)
T0=$SECONDS
passed=0 failed=0 skipped=0
failures=()

ok() {
	passed=$((passed + 1))
	echo "ok   - $*"
}
fail() {
	failed=$((failed + 1))
	failures+=("$*")
	echo "FAIL - $*"
}
skip() {
	skipped=$((skipped + 1))
	echo "skip - $*"
}
# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}
step() { printf '\n== %s  [%ds]\n' "$*" $((SECONDS - T0)); }
now() { date +%s.%N; }
elapsed() { /usr/bin/python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$1"; }

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	step "cleanup"
	docker rm -f "$CONTAINER" >/dev/null 2>&1
	"${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 >"$LOGDIR/down.log" 2>&1 ||
		cat "$LOGDIR/down.log"
	for pid in ${client_build:-} ${client:-} ${sleeper:-}; do
		kill "$pid" 2>/dev/null
	done
	left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")$(docker ps -aq --filter "name=^$CONTAINER\$")"
	if [ -z "$left" ]; then
		echo "removed the test container and the compose project $PROJECT"
	else
		echo "left behind: $left"
	fi
	rm -rf "$LOGDIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# wait_healthy CONTAINER: polls Docker's health status (bounded); prints
# the seconds it took. On failure prints the health log and the container
# log.
wait_healthy() {
	local c=$1 start status
	start=$(now)
	for _ in $(seq $((HEALTHY_LIMIT * 4))); do
		status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.Running}}' "$c" 2>/dev/null)
		case $status in
		"healthy true")
			elapsed "$start"
			return 0
			;;
		*" false" | "none "*) break ;;
		esac
		sleep 0.25
	done
	echo "container $c: health '$status' after $(elapsed "$start") s" >&2
	docker inspect -f '{{range .State.Health.Log}}probe exit {{.ExitCode}}: {{.Output}}{{end}}' "$c" >&2
	docker logs --tail 20 "$c" >&2
	return 1
}

# published HOSTPORT-LINES: every published address is on 127.0.0.1.
# shellcheck disable=SC2317 # called through check
only_loopback() { [ -n "$1" ] && ! grep -qv '^127\.0\.0\.1:' <<<"$1"; }

# listens PORT CONTAINER: something in the container listens on TCP PORT
# (/proc/net/tcp{,6}: local port in hex, state 0A = LISTEN).
listens() {
	local hex
	hex=$(printf '%04X' "$1")
	docker exec "$2" cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" {found=1} END {exit !found}'
}

# result FILE EXPR [NAME=NUMBER...]: evaluates a Python expression over the
# smoke client's RESULT line (as r), the replica URLs (u1, u2, u3),
# answers(url, t0, t1) (its answers between two Unix times) and the given
# numbers.
result() {
	local file=$1 expr=$2
	shift 2
	/usr/bin/python3 - "$file" "$expr" "$@" <<'EOF'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("RESULT ")][-1]
r = json.loads(line[len("RESULT "):])
u1, u2, u3 = ("tcp://hoteld%d:5555" % i for i in (1, 2, 3))
tl = r["timeline"]

def answers(url, t0, t1):
    """Answers from url in the timeline slots wholly inside [t0, t1]."""
    row = tl["replicas"].get(url, [])
    b, start = tl["bucket"], tl["start"]
    return sum(n for i, n in enumerate(row)
               if start + i * b >= t0 and start + (i + 1) * b <= t1)

env = dict(r=r, u1=u1, u2=u2, u3=u3, answers=answers)
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    env[k] = float(v)
sys.exit(0 if eval(sys.argv[2], env) else 1)
EOF
}

# ---------------------------------------------------------------------------
step "health probe: its own tests (no Docker)"
if [ ! -x "$PY" ] || [ ! -x "$PROBE" ]; then
	fail "need $PY and $PROBE (run make first)"
	exit 1
fi
if "$PY" -m pytest -q -p no:cacheprovider tests/docker/test_health_probe.py \
	--probe "$PROBE" >"$LOGDIR/probe.log" 2>&1; then
	ok "nngrpc-health: $(tail -n 1 "$LOGDIR/probe.log")"
else
	cat "$LOGDIR/probe.log"
	fail "nngrpc-health tests"
fi

# ---------------------------------------------------------------------------
step "docker engine and images"
ensure_docker || {
	fail "a Docker engine"
	exit 1
}
echo "docker $(docker version -f '{{.Server.Version}}'), $(docker-compose version --short)"
if secs=$(build_image docker/Dockerfile "$NNGRPC_IMAGE"); then
	mb=$(image_mb "$NNGRPC_IMAGE")
	ok "built $NNGRPC_IMAGE in ${secs} s: ${mb} MB"
	check "image size ${mb} MB <= ${MAX_IMAGE_MB} MB" \
		awk -v a="$mb" -v b="$MAX_IMAGE_MB" 'BEGIN {exit !(a <= b)}'
else
	fail "build $NNGRPC_IMAGE"
	exit 1
fi
# The client image (and its pycheck stage, the same layers up to the venv
# with the host's wheels) builds while the single container is tested.
need_wheels || fail "make wheel"
( build_image docker/client.Dockerfile "$NNGRPC_CLIENT_IMAGE" >"$LOGDIR/client-build.secs" \
	2>"$LOGDIR/client-build.log" &&
	build_image docker/client.Dockerfile "$PYCHECK_IMAGE" --target pycheck \
		>"$LOGDIR/pycheck-build.secs" 2>"$LOGDIR/client-build.log" ) &
client_build=$!

# ---------------------------------------------------------------------------
step "one container: read-only, no capabilities, ports on 127.0.0.1"
if ! docker run -d --name "$CONTAINER" \
	--read-only --cap-drop ALL --security-opt no-new-privileges \
	-p 127.0.0.1::5555 -p 127.0.0.1::8080 \
	-e NNGRPC_TESTING=1 -e NNGRPC_HOTELS="$HOTELS" \
	"$NNGRPC_IMAGE" >/dev/null; then
	fail "docker run $NNGRPC_IMAGE"
	exit 1
fi
if secs=$(wait_healthy "$CONTAINER"); then
	ok "healthy ${secs} s after start (HEALTHCHECK: nngrpc-health)"
else
	fail "container healthy within ${HEALTHY_LIMIT} s"
fi
rpc_ports=$(docker port "$CONTAINER" 5555/tcp)
ops_ports=$(docker port "$CONTAINER" 8080/tcp)
rpc=$(head -n 1 <<<"$rpc_ports")
check "RPC port published on 127.0.0.1 only: $(tr '\n' ' ' <<<"$rpc_ports")" only_loopback "$rpc_ports"
check "ops port published on 127.0.0.1 only: $(tr '\n' ' ' <<<"$ops_ports")" only_loopback "$ops_ports"

user=$(docker inspect -f '{{.Config.User}}' "$CONTAINER")
check "runs as a non-root user (Config.User=$user)" \
	test -n "$user" -a "${user%%:*}" != 0 -a "${user%%:*}" != root
uid=$(docker exec "$CONTAINER" id -u)
check "docker exec id -u = $uid, not 0" test "$uid" != 0
check "hoteld (PID 1) has uid $uid" \
	test "$(docker exec "$CONTAINER" awk '/^Uid:/ {print $2}' /proc/1/status)" = "$uid"
ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$CONTAINER")
check "read-only root file system (ReadonlyRootfs=$ro)" test "$ro" = true
if docker exec "$CONTAINER" sh -c 'touch /x || touch /tmp/x' 2>/dev/null; then
	fail "cannot write to / or /tmp"
else
	ok "cannot write to / or /tmp"
fi
caps=$(docker inspect -f 'CapDrop={{.HostConfig.CapDrop}} CapAdd={{.HostConfig.CapAdd}} SecurityOpt={{.HostConfig.SecurityOpt}}' "$CONTAINER")
if [[ $caps == *"CapDrop=[ALL]"* && $caps == *"CapAdd=[]"* && $caps == *no-new-privileges* ]]; then
	ok "no capabilities: $caps"
else
	fail "no capabilities: $caps"
fi
capeff=$(docker exec "$CONTAINER" awk '/^CapEff:/ {print $2}' /proc/1/status)
check "hoteld's effective capabilities: $capeff" test "$capeff" = 0000000000000000

out=$(docker exec "$CONTAINER" nngrpc-health 2>&1)
check "nngrpc-health inside the container: $out" test "$out" = "status: SERVING"
out=$("$PROBE" "tcp://$rpc" 2>&1)
check "nngrpc-health from the host through tcp://$rpc: $out" test "$out" = "status: SERVING"

if "$PY" -m pytest -q -p no:cacheprovider -rs tests/docker/test_container.py \
	--url "tcp://$rpc" --hotels "$HOTELS" --testing >"$LOGDIR/pytest.log" 2>&1; then
	ok "tests/docker/test_container.py: $(tail -n 1 "$LOGDIR/pytest.log")"
	grep '^SKIPPED' "$LOGDIR/pytest.log" | sed 's/^/       /'
else
	cat "$LOGDIR/pytest.log"
	fail "tests/docker/test_container.py"
fi

if listens 8080 "$CONTAINER"; then
	ops=$(head -n 1 <<<"$ops_ports")
	answers=$(/usr/bin/python3 -c '
import sys, urllib.request, urllib.error
for path in ("/healthz", "/readyz", "/metrics"):
    try:
        with urllib.request.urlopen("http://%s%s" % (sys.argv[1], path), timeout=3) as r:
            body = r.read().decode(errors="replace")
            extra = " with nngrpc_ metrics" if path == "/metrics" and "nngrpc_" in body else ""
            print("%s %d%s" % (path, r.status, extra), end="; ")
    except urllib.error.HTTPError as e:
        print("%s %d" % (path, e.code), end="; ")
    except OSError as e:
        print("%s %s" % (path, e), end="; ")
' "$ops")
	check "ops port 8080 through $ops: $answers" \
		test "$answers" = "/healthz 200; /readyz 200; /metrics 200 with nngrpc_ metrics; "
else
	skip "ops port: nothing listens on 8080 in the container (this hoteld has no NNGRPC_HTTP)"
fi

# A call in flight when `docker stop` sends SIGTERM must still be answered.
"$PY" - "tcp://$rpc" >"$LOGDIR/drain.log" 2>&1 <<'EOF' &
import sys, time
import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
with nngrpc.Channel(sys.argv[1]) as ch:
    start = time.monotonic()
    r = testing_nngrpc.TestingStub(ch).Sleep(testing_pb2.SleepRequest(ms=2000), timeout=15)
    print("a 2 s Sleep call in flight was answered OK after %.1f s" % (time.monotonic() - start))
EOF
sleeper=$!
sleep 0.5
stop_start=$(now)
docker stop -t 20 "$CONTAINER" >/dev/null
stop_secs=$(elapsed "$stop_start")
code=$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")
if wait $sleeper; then
	ok "docker stop during a call: $(cat "$LOGDIR/drain.log")"
else
	cat "$LOGDIR/drain.log"
	fail "a call in flight during docker stop is answered"
fi
if [ "$code" = 0 ] && awk -v s="$stop_secs" 'BEGIN {exit !(s < 10)}'; then
	ok "docker stop: hoteld drained and exited $code after ${stop_secs} s (SIGTERM as PID 1)"
else
	fail "docker stop: exit code $code after ${stop_secs} s (want 0, in < 10 s)"
fi
docker logs "$CONTAINER" 2>&1 | tail -n 3 | sed 's/^/       /'
docker rm -f "$CONTAINER" >/dev/null

# ---------------------------------------------------------------------------
step "compose: three replicas, one Channel"
if wait $client_build; then
	ok "built $NNGRPC_CLIENT_IMAGE in $(cat "$LOGDIR/client-build.secs") s: $(image_mb "$NNGRPC_CLIENT_IMAGE") MB, and its pycheck stage in $(cat "$LOGDIR/pycheck-build.secs") s"
else
	cat "$LOGDIR/client-build.log"
	fail "build $NNGRPC_CLIENT_IMAGE"
	exit 1
fi
unset HOTELD1_PORT HOTELD2_PORT HOTELD3_PORT # free ports, Docker's choice
export NNGRPC_HOTELS=$HOTELS
if ! "${COMPOSE[@]}" up -d hoteld1 hoteld2 hoteld3 >"$LOGDIR/up.log" 2>&1; then
	cat "$LOGDIR/up.log"
	fail "docker-compose up"
	exit 1
fi
for s in hoteld1 hoteld2 hoteld3; do
	c=$("${COMPOSE[@]}" ps -q $s)
	if secs=$(wait_healthy "$c"); then ok "$s healthy after ${secs} s"; else fail "$s healthy"; fi
	policy=$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}} ro={{.HostConfig.ReadonlyRootfs}} user={{.Config.User}}' "$c")
	check "$s: restart policy, read-only, user: $policy" test "$policy" = "unless-stopped ro=true user=10001:10001"
	port=$("${COMPOSE[@]}" port $s 5555)
	out=$("$PROBE" "tcp://$port" 2>&1)
	if [[ $port == 127.0.0.1:* && $out == "status: SERVING" ]]; then
		ok "$s published on $port, host probe: $out"
	else
		fail "$s published on $port, host probe: $out"
	fi
done

"${COMPOSE[@]}" run --rm -T client --calls 300 >"$LOGDIR/smoke.log" 2>&1
rc=$?
grep -Ev '^(RESULT|Creating)' "$LOGDIR/smoke.log" | sed 's/^/       /'
if [ $rc = 0 ] && result "$LOGDIR/smoke.log" \
	'r["errors"] == {} and all(r["replicas"][u]["calls"] > 0 for u in (u1, u2, u3))'; then
	ok "client container: 300 calls through one Channel, all three replicas answered"
else
	fail "client container: 300 calls through one Channel, all three replicas answered"
fi

step "Python 3.13 (Debian 13): the wheels, stub wheels, mypy --strict"
out=$(docker run --rm --entrypoint python3 "$NNGRPC_CLIENT_IMAGE" -c '
import sys, nngrpc, nngrpc._speedups
from hotel.v1 import hotel_nngrpc
print("Python %d.%d" % sys.version_info[:2], nngrpc.__file__, hotel_nngrpc.__file__,
      nngrpc._speedups.__file__)' 2>&1)
check "client image: import nngrpc, nngrpc._speedups, hotel.v1.hotel_nngrpc from the wheels: $out" \
	grep -Eq '^Python 3.13 /opt/nngrpc/venv/.*/site-packages/nngrpc/__init__.py .* /opt/nngrpc/venv/[^ ]*/nngrpc/_speedups.abi3.so$' <<<"$out"
host=$(cd build/dist && sha256sum nngrpc-*.whl)
image=$(docker run --rm --entrypoint sh -w /opt/nngrpc/wheels "$NNGRPC_CLIENT_IMAGE" -c 'sha256sum nngrpc-*.whl')
check "client image installed the host's wheel: $image" test "$host" = "$image"
if docker run --rm --network "${PROJECT}_default" -v "$PWD:/src:ro" -w /src \
	-e NNGRPC_TEST_TARGET=tcp://hoteld1:5555 -e NNGRPC_REQUIRE_PROTOBUF_STUBS=1 \
	"$PYCHECK_IMAGE" python3 -m pytest -q -p no:cacheprovider -rs \
	-W ignore::DeprecationWarning \
	tests/integration/test_wheels.py tests/integration/test_mypy.py >"$LOGDIR/pycheck.log" 2>&1; then
	ok "test_wheels.py, test_mypy.py under $(docker run --rm --entrypoint python3 "$PYCHECK_IMAGE" -V): $(tail -n 1 "$LOGDIR/pycheck.log")"
else
	cat "$LOGDIR/pycheck.log"
	fail "test_wheels.py, test_mypy.py in Debian 13"
fi

step "compose: stop hoteld2, then start it, while a client calls through the one Channel"
# The client calls until it is told to stop (SIGTERM), at most 90 s.
"${COMPOSE[@]}" run --rm -T client --duration 90 --interval 0.01 --threads 4 \
	--report-every 1 --min-replicas 3 >"$LOGDIR/failover.log" 2>&1 &
client=$!
for _ in $(seq 120); do
	grep -q 'through one Channel' "$LOGDIR/failover.log" && break
	sleep 0.25
done
sleep 3
t_stop=$(now)
"${COMPOSE[@]}" stop -t 15 hoteld2 >/dev/null 2>&1
t_stopped=$(now)
echo "       t=+0.0 s: docker-compose stop hoteld2 (took $(elapsed "$t_stop") s)"
sleep 3
c2=$("${COMPOSE[@]}" ps -q hoteld2)
state2=$(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c2")
check "hoteld2 drained, exited 0 and stays stopped (unless-stopped): $state2" \
	test "$state2" = "exited exit=0"
t_start=$(now)
echo "       t=+$(/usr/bin/python3 -c "print('%.1f' % ($t_start - $t_stopped))") s: docker-compose start hoteld2"
"${COMPOSE[@]}" start hoteld2 >/dev/null 2>&1
if secs=$(wait_healthy "$c2"); then
	echo "       hoteld2 healthy again ${secs} s after docker-compose start"
fi
# Until the client's per-second report shows hoteld2 answering again
# (bounded), then 2 s more, then stop the client.
seen=$(wc -l <"$LOGDIR/failover.log")
for _ in $(seq 60); do
	tail -n +$((seen + 1)) "$LOGDIR/failover.log" | grep -q 'hoteld2:5555=[1-9]' && break
	sleep 0.5
done
sleep 2
client_c=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
	--filter "label=com.docker.compose.service=client")
[ -n "$client_c" ] && docker kill -s TERM "$client_c" >/dev/null
wait $client
rc=$?
grep -Ev '^(RESULT|Creating)' "$LOGDIR/failover.log" | sed 's/^/       /'
if [ $rc = 0 ] && result "$LOGDIR/failover.log" 'r["errors"] == {} and r["ok"] > 0'; then
	ok "no call failed while hoteld2 stopped and came back"
else
	fail "no call failed while hoteld2 stopped and came back"
fi
if grep -q 'sent again after' "$LOGDIR/failover.log"; then
	echo "note - calls answered UNAVAILABLE while hoteld2 drained were sent again by the" \
		"smoke client (NO_SIDE_EFFECTS methods): nngrpc.Channel does not retry them itself"
fi
check "hoteld1 and hoteld3 kept answering while hoteld2 was stopped" \
	result "$LOGDIR/failover.log" \
	'all(answers(u, t_stopped, t_start) > 0 for u in (u1, u3))' \
	t_stopped="$t_stopped" t_start="$t_start"
check "hoteld2 answered before its stop, none while stopped" \
	result "$LOGDIR/failover.log" \
	'answers(u2, 0, t_stop) > 0 and answers(u2, t_stopped, t_start) == 0' \
	t_stop="$t_stop" t_stopped="$t_stopped" t_start="$t_start"
check "hoteld2 answered calls again after its restart" \
	result "$LOGDIR/failover.log" 'r["replicas"][u2]["last_ok"] > t_start' t_start="$t_start"

# ---------------------------------------------------------------------------
step "summary"
echo "docker-test: $passed passed, $failed failed, $skipped skipped in $((SECONDS - T0)) s"
if [ $failed -gt 0 ]; then
	printf 'failed: %s\n' "${failures[@]}"
	exit 1
fi
exit 0
