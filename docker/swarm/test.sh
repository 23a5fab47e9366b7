#!/usr/bin/env bash
# docker/swarm/test.sh (`make swarm-test`): builds the hoteld and smoke
# client images ($NNGRPC_IMAGE, $NNGRPC_CLIENT_IMAGE), then runs
# docker/swarm/test.py: docker/stack.yml on a one-node swarm, loaded from
# one Channel to tcp://tasks.hoteld:5555, phase by phase (see there).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. docker/lib.sh

ensure_docker || exit 1
need_wheels || exit 1
for what in "docker/Dockerfile $NNGRPC_IMAGE" "docker/client.Dockerfile $NNGRPC_CLIENT_IMAGE"; do
	set -- $what
	secs=$(build_image "$1" "$2") || exit 1
	echo "swarm-test: built $2 ($1) in $secs s: $(image_mb "$2") MB"
done
exec /usr/bin/python3 docker/swarm/test.py
