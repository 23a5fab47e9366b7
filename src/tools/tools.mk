# src/tools/tools.mk: the command-line tools, built by `make`. Included by
# the top Makefile, which defines OBJ, BIN, LIBDIR, SANFLAGS, LDLIBS_RPC and
# the $(OBJ)/%.o rules.
#
#   $(BIN)/nngrpc-bench    closed-loop load generator (make bench uses it)
#   $(BIN)/nngrpc-health   health probe like grpc_health_probe (the
#                          container image's HEALTHCHECK)
#
# Both link libnngrpc.a for the envelope scan (src/rpc/wire.h) and the
# status names, and the generated envelope and health messages in it;
# libnngrpc's server code is not pulled in.

TOOLS_BINS += $(BIN)/nngrpc-bench $(BIN)/nngrpc-health

NNGRPC_BENCH_OBJS  := $(OBJ)/src/tools/nngrpc-bench.o \
                      $(OBJ)/gen/nngrpc/testing/v1/testing.pb-c.o
NNGRPC_HEALTH_OBJS := $(OBJ)/src/tools/nngrpc-health.o

$(BIN)/nngrpc-bench: $(NNGRPC_BENCH_OBJS) $(LIBDIR)/libnngrpc.a
$(BIN)/nngrpc-health: $(NNGRPC_HEALTH_OBJS) $(LIBDIR)/libnngrpc.a

$(BIN)/nngrpc-bench $(BIN)/nngrpc-health:
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $(filter %.o,$^) $(LIBDIR)/libnngrpc.a \
		$(LDLIBS_RPC)

.PHONY: tools nngrpc-bench nngrpc-health
tools: $(BIN)/nngrpc-bench $(BIN)/nngrpc-health
nngrpc-bench: $(BIN)/nngrpc-bench
nngrpc-health: $(BIN)/nngrpc-health
