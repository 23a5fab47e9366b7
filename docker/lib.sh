# shellcheck shell=bash
# docker/lib.sh: shared by docker/build.sh and docker/test.sh (sourced,
# from the repository root).

# The classic builder: the docker CLI here has no buildx, and the
# Dockerfiles need nothing from BuildKit.
export DOCKER_BUILDKIT=0
export COMPOSE_DOCKER_CLI_BUILD=0

NNGRPC_IMAGE=${NNGRPC_IMAGE:-nngrpc/hoteld:dev}
NNGRPC_CLIENT_IMAGE=${NNGRPC_CLIENT_IMAGE:-nngrpc/smoke-client:dev}
export NNGRPC_IMAGE NNGRPC_CLIENT_IMAGE
# The Debian suites whose debian:SUITE-slim the Dockerfiles start from:
# trixie (docker/Dockerfile, docker/client.Dockerfile,
# tests/fault/trixie.Dockerfile), bookworm (docker/client.Dockerfile with
# --build-arg DEBIAN=bookworm: Python 3.11).
BASE_SUITES=${BASE_SUITES:-trixie bookworm}

# Makes `docker` work. On the project's build machines no engine runs and
# no registry is reachable: there ../shared/tools/docker-up (beside the
# repository; $DOCKER_UP overrides the path) starts one and builds the
# base image locally. It runs only when the engine does not answer or the
# base image is missing, and only where that script exists; on any other
# machine the normal engine and registry are used unchanged.
ensure_docker() {
	local up=${DOCKER_UP:-../shared/tools/docker-up}
	local engine=yes base=yes suite
	docker info >/dev/null 2>&1 || engine=no
	if [ $engine = yes ]; then
		for suite in $BASE_SUITES; do
			docker image inspect "debian:$suite-slim" >/dev/null 2>&1 || base=no
		done
	fi
	if [ $engine = yes ] && [ $base = yes ]; then
		return 0
	fi
	if [ -x "$up" ]; then
		echo "docker: engine answers: $engine, base images" \
			"($BASE_SUITES) present: $base; running $up $BASE_SUITES" >&2
		# shellcheck disable=SC2086 # one argument per suite
		"$up" $BASE_SUITES || {
			echo "docker: $up failed (it needs root)" >&2
			return 1
		}
		return 0
	fi
	if [ $engine = no ]; then
		echo "docker: no Docker engine answers ('docker info' fails) and" \
			"there is no $up to start one: start Docker (or put the" \
			"project's shared/ directory beside the repository)" >&2
		return 1
	fi
	# Engine up, base image missing: `docker build` pulls it.
	return 0
}

# build_image DOCKERFILE TAG [FLAG...]: builds from the repository root,
# quietly unless it fails (then the whole log). Prints the seconds it took.
# FLAGs (e.g. --target build, --build-arg X=Y) and $DOCKER_BUILD_FLAGS
# (e.g. --no-cache, --pull) go to docker build.
build_image() {
	local file=$1 tag=$2 log start rc
	shift 2
	log=$(mktemp)
	start=$(date +%s.%N)
	rc=0
	# shellcheck disable=SC2086 # flags, split on purpose
	docker build ${DOCKER_BUILD_FLAGS:-} "$@" -f "$file" -t "$tag" . >"$log" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		cat "$log" >&2
		rm -f "$log"
		echo "docker: building $tag from $file failed" >&2
		return $rc
	fi
	rm -f "$log"
	/usr/bin/python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$start"
}

# need_wheels: brings build/dist's wheels up to date (`make wheel`), which
# docker/client.Dockerfile installs: the host builds them (with the C
# accelerator, where a compiler and Python.h are). make's notes go to
# stderr; its listing is dropped.
need_wheels() {
	make --no-print-directory -s wheel >/dev/null || {
		echo "docker: make wheel failed (docker/client.Dockerfile installs build/dist/*.whl)" >&2
		return 1
	}
}

# image_mb TAG: the image's size in MB (10^6 bytes, as `docker images`).
image_mb() {
	docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'
}
