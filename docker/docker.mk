# docker/docker.mk: the health probe, the container image and its tests.
# Included by the top Makefile, which defines BUILD, OBJ, BIN, GEN_C,
# ALL_CFLAGS, SANFLAGS, VENV_PY and PY_STAMP.
#
#   $(BIN)/nngrpc-health   health probe (src/tools/nngrpc-health.c), like
#                          grpc_health_probe; the image's HEALTHCHECK
#   make docker            builds the image $(NNGRPC_IMAGE) (and the smoke
#                          client image $(NNGRPC_CLIENT_IMAGE))
#   make docker-test       builds them, tests one container (smoke calls,
#                          health, non-root, read-only, no capabilities)
#                          and the compose file (3 replicas, one Channel,
#                          one replica stopped); always cleans up
#   make health-probe-test the probe's own tests, no Docker needed
#
# On the build machines of this project no engine runs and no registry is
# reachable: the scripts then run ../shared/tools/docker-up (beside the
# repository) to start one and build the base image locally. Elsewhere
# nothing of that is needed or used.

NNGRPC_IMAGE        ?= nngrpc/hoteld:dev
NNGRPC_CLIENT_IMAGE ?= nngrpc/smoke-client:dev
export NNGRPC_IMAGE NNGRPC_CLIENT_IMAGE

HEALTH_OBJS := $(OBJ)/src/tools/nngrpc-health.o \
               $(OBJ)/gen/nngrpc/v1/rpc.pb-c.o \
               $(OBJ)/gen/nngrpc/health/v1/health.pb-c.o

# Its generated headers are not all in GEN_HEADERS: name them here.
$(OBJ)/src/tools/nngrpc-health.o: $(GEN_C)/nngrpc/v1/rpc.pb-c.h \
	$(GEN_C)/nngrpc/health/v1/health.pb-c.h

$(BIN)/nngrpc-health: $(HEALTH_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $(HEALTH_OBJS) -lnng -lprotobuf-c -lpthread

TOOLS_BINS += $(BIN)/nngrpc-health

.PHONY: docker docker-test health-probe-test
docker:
	@docker/build.sh

docker-test: $(PY_STAMP) $(BIN)/nngrpc-health
	@docker/test.sh

health-probe-test: $(BIN)/nngrpc-health $(BIN)/hoteld $(PY_STAMP)
	$(VENV_PY) -m pytest -q -p no:cacheprovider tests/docker/test_health_probe.py \
		--probe $(BIN)/nngrpc-health --hoteld $(BIN)/hoteld
