#!/usr/bin/env bash
# docker/swarm/upgrade.sh (`make upgrade-test`): a rolling upgrade from the
# last release (the newest "Commit:" of CHANGELOG.md) to this tree on
# docker/stack.yml, under load from both releases' clients; see
# docker/swarm/upgrade.py.
#
# Builds four images: this tree's hoteld and smoke client ($NNGRPC_IMAGE,
# $NNGRPC_CLIENT_IMAGE: the ones make docker-test and make swarm-test build,
# cached by then), and the release's, from git at its commit (git archive
# into a temporary directory) with that release's own docker/Dockerfile and
# docker/client.Dockerfile: $NNGRPC_OLD_IMAGE and $NNGRPC_OLD_CLIENT_IMAGE
# (default nngrpc/hoteld:VERSION, nngrpc/smoke-client:VERSION). A shallow
# clone lacks that commit: it then stops and says so (exit 2).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. docker/lib.sh

release=$(/usr/bin/python3 -c '
import sys
sys.path.insert(0, "tools")
import proto_breaking
with open(proto_breaking.CHANGELOG, encoding="utf-8") as f:
    print(*proto_breaking.last_release(f.read()))') || exit 2
read -r version commit <<<"$release"
if ! full=$(git rev-parse --verify -q "$commit^{commit}"); then
	echo "upgrade-test: the last release, $version, is commit $commit (CHANGELOG.md)," \
		"and this clone does not have it: a shallow clone? The test builds that" \
		"release's images from git. Fetch the history (git fetch --unshallow) or" \
		"clone without --depth." >&2
	exit 2
fi
NNGRPC_OLD_VERSION=$version
NNGRPC_OLD_IMAGE=${NNGRPC_OLD_IMAGE:-nngrpc/hoteld:$version}
NNGRPC_OLD_CLIENT_IMAGE=${NNGRPC_OLD_CLIENT_IMAGE:-nngrpc/smoke-client:$version}
export NNGRPC_OLD_VERSION NNGRPC_OLD_IMAGE NNGRPC_OLD_CLIENT_IMAGE

ensure_docker || exit 1
need_wheels || exit 1
for what in "docker/Dockerfile $NNGRPC_IMAGE" "docker/client.Dockerfile $NNGRPC_CLIENT_IMAGE"; do
	set -- $what
	secs=$(build_image "$1" "$2") || exit 1
	echo "upgrade-test: built $2 (this tree's $1) in $secs s: $(image_mb "$2") MB"
done

tree=$(mktemp -d "${TMPDIR:-/tmp}/nngrpc-release-$version.XXXXXX") || exit 1
trap 'rm -rf "$tree"' EXIT
git archive --format=tar "$full" | tar -x -C "$tree" || {
	echo "upgrade-test: git archive $full failed" >&2
	exit 1
}
for what in "docker/Dockerfile $NNGRPC_OLD_IMAGE" "docker/client.Dockerfile $NNGRPC_OLD_CLIENT_IMAGE"; do
	set -- $what
	secs=$(cd "$tree" && build_image "$1" "$2") || exit 1
	echo "upgrade-test: built $2 (release $version's $1, commit ${full:0:12}) in $secs s:" \
		"$(image_mb "$2") MB"
done
rm -rf "$tree"
trap - EXIT

exec /usr/bin/python3 docker/swarm/upgrade.py
