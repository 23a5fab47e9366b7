#!/usr/bin/env bash
# tests/fault/trixie.sh (`make fault-test-trixie`): tests/fault's hostile
# suite inside Debian 13, against the hoteld the production image is built
# from, with trixie's libnng (1.10.1) and protobuf-c (1.5.1).
#
#  1. builds docker/Dockerfile's `build` stage as $NNGRPC_BUILD_IMAGE: the
#     same cached layers `make docker` uses, so the image build and this
#     test share one compile of hoteld (-Werror: a warning fails it);
#  2. builds tests/fault/trixie.Dockerfile on top of it ($NNGRPC_FAULT_IMAGE:
#     pytest, build/venv, tests/);
#  3. runs test_hostile.py and test_drain.py (the drain's connection
#     closes, which need nng >= 1.6) in a container (bounded by
#     FAULT_TIMEOUT s) and passes only when pytest does and
#     test_abrupt_disconnects_do_not_leak_descriptors PASSED: no xfail there,
#     the libnng in use has the reaper fix (nng >= 1.6).
#
# Extra arguments replace the pytest arguments (default: -q -rfEsxXp
# tests/fault/test_hostile.py tests/fault/test_drain.py); the PASSED check
# then only applies when that test ran.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. docker/lib.sh

NNGRPC_BUILD_IMAGE=${NNGRPC_BUILD_IMAGE:-nngrpc/hoteld-build:dev}
NNGRPC_FAULT_IMAGE=${NNGRPC_FAULT_IMAGE:-nngrpc/fault-test:dev}
FAULT_TIMEOUT=${FAULT_TIMEOUT:-600}
CONTAINER=nngrpc-fault-trixie-$$
STRICT=tests/fault/test_hostile.py::test_abrupt_disconnects_do_not_leak_descriptors
T0=$SECONDS

log=$(mktemp)
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	docker rm -f "$CONTAINER" >/dev/null 2>&1
	rm -f "$log"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

ensure_docker || exit 1
secs=$(build_image docker/Dockerfile "$NNGRPC_BUILD_IMAGE" --target build) || exit 1
echo "fault-test-trixie: built $NNGRPC_BUILD_IMAGE (docker/Dockerfile, stage build) in $secs s"
secs=$(build_image tests/fault/trixie.Dockerfile "$NNGRPC_FAULT_IMAGE" \
	--build-arg BUILD_IMAGE="$NNGRPC_BUILD_IMAGE") || exit 1
echo "fault-test-trixie: built $NNGRPC_FAULT_IMAGE in $secs s"
printf 'fault-test-trixie: %s\n' "$(docker run --rm --entrypoint sh "$NNGRPC_BUILD_IMAGE" -c \
	'. /etc/os-release; printf "%s, " "$PRETTY_NAME"; dpkg-query -W -f "\${Package} \${Version} " libnng1 libprotobuf-c1' 2>&1)"

[ $# -gt 0 ] || set -- -q -rfEsxXp tests/fault/test_hostile.py tests/fault/test_drain.py
timeout --kill-after 10 "$FAULT_TIMEOUT" \
	docker run --rm --name "$CONTAINER" "$NNGRPC_FAULT_IMAGE" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
	echo "fault-test-trixie: FAIL: pytest exit $rc after $((SECONDS - T0)) s"
	exit 1
fi
if grep -q "$STRICT" "$log" || [[ " $* " == *" tests/fault/test_hostile.py "* ]]; then
	if ! grep -q "^PASSED $STRICT\$" "$log"; then
		echo "fault-test-trixie: FAIL: $STRICT did not pass strictly:"
		grep "$STRICT" "$log"
		exit 1
	fi
	echo "fault-test-trixie: $STRICT passed (strict: no xfail with this libnng)"
fi
echo "fault-test-trixie: ok in $((SECONDS - T0)) s"
