# tests/fuzz/fuzz.mk: libFuzzer targets (clang, ASan + UBSan). Included by
# the top Makefile, which defines BUILD, CSTD, GEN_C, PB_C, GEN_HEADERS and,
# through src/engine/engine.mk, ENGINE_LIB.
#
#   make fuzz                   build, then run every target FUZZ_SECONDS
#                               (default 60) each (tests/fuzz/run-fuzz);
#                               fails if one crashes
#   make fuzz FUZZ_TARGETS=fuzz_jsonl FUZZ_SECONDS=600
#   make fuzz-build             build only: $(BUILD)/fuzz/bin/<target>
#
# Targets: fuzz_dispatch (request envelopes into nngrpc_dispatch_call),
# fuzz_payload (each method's payload in a valid envelope) and, once the
# engine is part of the build, fuzz_engine_query (hotel_search and
# hotel_suggest) and fuzz_jsonl (the JSON Lines loader, round trip).
# The dispatch targets serve hotel.v1.HotelSearch too when the engine and
# src/service/hotel_service.c are there.
#
# Everything is compiled again with clang under $(BUILD)/fuzz/obj: the gcc
# objects have no coverage instrumentation. Seeds are tests/fuzz/corpus/
# <target>; a run copies them into $(BUILD)/fuzz/corpus/<target>, where the
# grown corpus stays, and writes crash inputs to $(BUILD)/fuzz/crashes/
# <target>/ and the full output to $(BUILD)/fuzz/logs/<target>.log.
# tests/fuzz/regressions/<target> holds inputs that crashed once; every run
# replays them first. tests/fuzz/make_seeds.py rewrites the seeds;
# tests/fuzz/<target>.dict, when there, is passed as -dict.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_OBJ     := $(FUZZ_DIR)/obj
FUZZ_BIN     := $(FUZZ_DIR)/bin
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(CSTD) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -Wall -Wextra -MMD -MP -Iinclude -Isrc -Isrc/rpc -I$(GEN_C)
FUZZ_LDFLAGS := -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_LDLIBS  := -lnng -lprotobuf-c -lz -lzstd -lpthread -lm

# The engine is fuzzed once the build has it (engine.mk sets ENGINE_LIB).
FUZZ_ENGINE  := $(if $(ENGINE_LIB),$(or $(ENGINE_SRCS),$(wildcard src/engine/*.c)))
# The hotel service and what it calls besides the engine (data_dir.c: the
# confined Reload's file access).
FUZZ_HOTEL   := $(if $(FUZZ_ENGINE),$(wildcard src/service/hotel_service.c \
                                               src/service/data_dir.c))
FUZZ_ENGINE_LDLIBS := $(or $(ENGINE_LDLIBS),-ljansson -lm)

FUZZ_TARGETS ?= fuzz_dispatch fuzz_payload \
                $(if $(FUZZ_ENGINE),fuzz_engine_query fuzz_jsonl)

# libnngrpc without the server (sockets, threads) and the process around
# it (serve*.c): fuzz_rpc.c stands in for them. Then every generated message
# and all the service glue.
FUZZ_NOT_RPC  := src/rpc/server.c src/rpc/serve.c src/rpc/serve_config.c \
                 src/rpc/isolate.c src/rpc/zygote.c src/rpc/sandbox.c \
                 src/rpc/crash.c src/rpc/isoproto.c src/rpc/rotate.c
FUZZ_RPC_SRCS := $(filter-out $(FUZZ_NOT_RPC),$(wildcard src/rpc/*.c)) \
                 src/service/testing_service.c tests/fuzz/fuzz_rpc.c \
                 $(FUZZ_HOTEL)
FUZZ_GEN_SRCS := $(PB_C) $(GLUE_C)

# Object of each source: $(GEN_C)/x.c -> $(FUZZ_OBJ)/gen/x.o, x.c ->
# $(FUZZ_OBJ)/x.o.
fuzz_obj = $(patsubst $(GEN_C)/%.c,$(FUZZ_OBJ)/gen/%.o,$(filter $(GEN_C)/%,$(1))) \
           $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(filter-out $(GEN_C)/%,$(1)))

FUZZ_RPC_OBJS    := $(call fuzz_obj,$(FUZZ_RPC_SRCS) $(FUZZ_GEN_SRCS)) \
                    $(call fuzz_obj,$(if $(FUZZ_HOTEL),$(FUZZ_ENGINE)))
# fuzz_payload swaps the call arena for one malloc per allocation
# (tests/fuzz/arena_malloc.c), so ASan sees overruns inside a call's memory.
FUZZ_RPC_OBJS_MALLOC := $(filter-out $(FUZZ_OBJ)/src/rpc/arena.o,$(FUZZ_RPC_OBJS)) \
                        $(FUZZ_OBJ)/tests/fuzz/arena_malloc.o
FUZZ_ENGINE_OBJS := $(call fuzz_obj,$(FUZZ_ENGINE))
FUZZ_RPC_LDLIBS  := $(if $(FUZZ_HOTEL),$(FUZZ_ENGINE_LDLIBS)) $(FUZZ_LDLIBS)

.PHONY: fuzz fuzz-build fuzz-clean fuzz-config-force

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BIN)/%)

fuzz: fuzz-build
	@tests/fuzz/run-fuzz $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-clean:
	rm -rf $(FUZZ_DIR)

# Which optional parts a build has; fuzz_rpc.o is rebuilt when it changes.
FUZZ_CONFIG := hotel=$(if $(FUZZ_HOTEL),1,0)
$(FUZZ_DIR)/config: fuzz-config-force
	@mkdir -p $(@D)
	@echo '$(FUZZ_CONFIG)' | cmp -s - $@ || echo '$(FUZZ_CONFIG)' >$@

$(FUZZ_OBJ)/tests/fuzz/fuzz_rpc.o: $(FUZZ_DIR)/config
$(FUZZ_OBJ)/tests/fuzz/fuzz_rpc.o: FUZZ_DEFS := \
	$(if $(FUZZ_HOTEL),-DFUZZ_HOTEL_SERVICE)

$(FUZZ_OBJ)/tests/fuzz/%.o: tests/fuzz/%.c | $(GEN_HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror $(FUZZ_DEFS) -c -o $@ $<

$(FUZZ_OBJ)/src/%.o: src/%.c | $(GEN_HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_OBJ)/gen/%.o: $(GEN_C)/%.c | $(GEN_HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-unused-parameter -c -o $@ $<

$(FUZZ_BIN)/fuzz_dispatch: $(FUZZ_OBJ)/tests/fuzz/fuzz_dispatch.o \
		$(FUZZ_RPC_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_RPC_LDLIBS)

$(FUZZ_BIN)/fuzz_payload: $(FUZZ_OBJ)/tests/fuzz/fuzz_payload.o \
		$(FUZZ_RPC_OBJS_MALLOC)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_RPC_LDLIBS)

$(FUZZ_BIN)/fuzz_engine_query $(FUZZ_BIN)/fuzz_jsonl: $(FUZZ_BIN)/%: \
		$(FUZZ_OBJ)/tests/fuzz/%.o $(FUZZ_ENGINE_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_ENGINE_LDLIBS) -lpthread

-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
