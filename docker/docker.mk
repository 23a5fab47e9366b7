# docker/docker.mk: the container image and its tests. Included by the top
# Makefile, which defines BUILD, OBJ, BIN, GEN_C, ALL_CFLAGS, SANFLAGS,
# VENV_PY and PY_STAMP; the health probe $(BIN)/nngrpc-health, the image's
# HEALTHCHECK, is built by src/tools/tools.mk.
#
#   make docker            builds the image $(NNGRPC_IMAGE) (and the smoke
#                          client image $(NNGRPC_CLIENT_IMAGE))
#   make docker-test       builds them, tests one container (smoke calls,
#                          health, non-root, read-only, no capabilities)
#                          and the compose file (3 replicas, one Channel,
#                          one replica stopped); always cleans up
#   make health-probe-test the probe's own tests, no Docker needed
#   make swarm-test        docker/stack.yml on a one-node swarm, loaded from
#                          one Channel to tcp://tasks.hoteld:5555: deploy,
#                          scale 3->5, 5->2, rolling update, kill -9; a table
#                          per phase (docker/swarm/test.py, about 70 s)
#   make upgrade-test      a rolling upgrade on that stack from the last
#                          release's hoteld image (built from git at its
#                          CHANGELOG commit) to this tree's and back, under
#                          load from both releases' clients: 0 failed calls
#                          but the one loss docs/compatibility.md names
#                          (docker/swarm/upgrade.py, about 85 s)
#
# On the build machines of this project no engine runs and no registry is
# reachable: the scripts then run ../shared/tools/docker-up (beside the
# repository) to start one and build the base image locally. Elsewhere
# nothing of that is needed or used.

NNGRPC_IMAGE        ?= nngrpc/hoteld:dev
NNGRPC_CLIENT_IMAGE ?= nngrpc/smoke-client:dev
export NNGRPC_IMAGE NNGRPC_CLIENT_IMAGE

.PHONY: docker docker-test health-probe-test swarm-test upgrade-test
docker:
	@docker/build.sh

docker-test: $(PY_STAMP) $(BIN)/nngrpc-health
	@docker/test.sh

swarm-test:
	@docker/swarm/test.sh

upgrade-test:
	@docker/swarm/upgrade.sh

health-probe-test: $(BIN)/nngrpc-health $(BIN)/hoteld $(PY_STAMP)
	$(VENV_PY) -m pytest -q -p no:cacheprovider tests/docker/test_health_probe.py \
		--probe $(BIN)/nngrpc-health --hoteld $(BIN)/hoteld
