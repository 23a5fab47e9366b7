#!/usr/bin/env bash
# docker/build.sh [hoteld] [client]: builds the hoteld image ($NNGRPC_IMAGE,
# default nngrpc/hoteld:dev; `make docker`) and/or the smoke client image
# ($NNGRPC_CLIENT_IMAGE, default nngrpc/smoke-client:dev). Default: hoteld.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
. docker/lib.sh

[ $# -gt 0 ] || set -- hoteld
ensure_docker
for what in "$@"; do
	case $what in
	hoteld)
		secs=$(build_image docker/Dockerfile "$NNGRPC_IMAGE")
		echo "docker: built $NNGRPC_IMAGE, $(image_mb "$NNGRPC_IMAGE") MB, in ${secs} s"
		;;
	client)
		need_wheels
		secs=$(build_image docker/client.Dockerfile "$NNGRPC_CLIENT_IMAGE")
		echo "docker: built $NNGRPC_CLIENT_IMAGE, $(image_mb "$NNGRPC_CLIENT_IMAGE") MB, in ${secs} s"
		;;
	*)
		echo "usage: docker/build.sh [hoteld] [client]" >&2
		exit 2
		;;
	esac
done
