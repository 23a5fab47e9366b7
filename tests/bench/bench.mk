# tests/bench/bench.mk: `make bench` (nngrpc against its anchors, side by
# side in one run; the C load generator nngrpc-bench is built by
# src/tools/tools.mk). Included by the top Makefile, which defines BUILD,
# BIN, OBJ, LIBDIR, GEN_C, VENV_PY, ALL_CFLAGS, LDLIBS_RPC and the $(OBJ)/%.o
# rule.
#
#   make bench               install the anchors' Debian packages, build
#                            everything, run the smoke tests, then every
#                            scenario (~6-10 minutes);
#                            the table goes to stdout and to
#                            build/bench/results.{md,json}
#   make bench QUICK=1       the same, shorter (< 2 minutes; CI)
#   make bench-smoke         pytest tests/bench (nngrpc-bench for 1 s)
#   make bench BENCH_ONLY=latency,loadgen   a subset of the scenarios:
#                            latency throughput sleep loadgen search rss isolation
#                            compression
#
# The anchors are built here from Debian packages (tests/bench/install-deps)
# into $(BENCH_DIR): a raw NNG echo server, a C++ gRPC sync echo server
# and its Python stubs, a libmicrohttpd echo server, the _gilhold
# extension and _cgmark (callgrind's client requests, for table 1c).

BENCH_SRC := tests/bench
BENCH_DIR := $(BUILD)/bench
# The anchors build in parallel (the C++ gRPC server is the slow one).
BENCH_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BENCH_GEN := $(BENCH_DIR)/gen

# ---- anchors ----------------------------------------------------------------
BENCH_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror
BENCH_PY_INC  = $(shell /usr/bin/python3-config --includes)

$(BENCH_DIR)/nng_echo_server: $(BENCH_SRC)/anchors/nng_echo_server.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lnng -lpthread

$(BENCH_DIR)/mhd_echo_server: $(BENCH_SRC)/anchors/mhd_echo_server.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $$(pkg-config --cflags --libs \
		libmicrohttpd)

$(BENCH_DIR)/_gilhold.so: $(BENCH_SRC)/anchors/gilhold.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -shared -fPIC $(BENCH_PY_INC) -o $@ $<

# callgrind's client requests for table 1c (valgrind's headers: the
# valgrind package, in tools/install-deps).
$(BENCH_DIR)/_cgmark.so: $(BENCH_SRC)/anchors/cgmark.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -shared -fPIC $(BENCH_PY_INC) -o $@ $<

# C++ gRPC: messages and service from bench_echo.proto, sync server.
BENCH_PROTO := $(BENCH_SRC)/anchors/bench_echo.proto
BENCH_GRPC_CC := $(BENCH_GEN)/cpp/bench_echo.pb.cc \
                 $(BENCH_GEN)/cpp/bench_echo.grpc.pb.cc

$(BENCH_GRPC_CC) &: $(BENCH_PROTO)
	@mkdir -p $(BENCH_GEN)/cpp
	protoc -I$(BENCH_SRC)/anchors --cpp_out=$(BENCH_GEN)/cpp \
		--grpc_out=$(BENCH_GEN)/cpp \
		--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin $<

BENCH_CXXFLAGS = -std=c++17 -O2 -g -Wall -Wextra -I$(BENCH_GEN)/cpp \
                 $$(pkg-config --cflags grpc++ protobuf)
BENCH_GRPC_OBJS := $(BENCH_DIR)/obj/grpc_echo_server.o \
                   $(BENCH_DIR)/obj/bench_echo.pb.o \
                   $(BENCH_DIR)/obj/bench_echo.grpc.pb.o

$(BENCH_DIR)/obj/grpc_echo_server.o: $(BENCH_SRC)/anchors/grpc_echo_server.cc \
		$(BENCH_GRPC_CC)
	@mkdir -p $(dir $@)
	g++ $(BENCH_CXXFLAGS) -c -o $@ $<

$(BENCH_DIR)/obj/%.o: $(BENCH_GEN)/cpp/%.cc $(BENCH_GRPC_CC)
	@mkdir -p $(dir $@)
	g++ $(BENCH_CXXFLAGS) -c -o $@ $<

$(BENCH_DIR)/grpc_echo_server: $(BENCH_GRPC_OBJS)
	g++ -o $@ $(BENCH_GRPC_OBJS) $$(pkg-config --libs grpc++ protobuf) \
		-lpthread

# Python stubs for grpcio (Debian's grpc_python_plugin: python3-grpc-tools
# is too old for Debian's protoc).
BENCH_GRPC_PY := $(BENCH_GEN)/py/bench_echo_pb2.py \
                 $(BENCH_GEN)/py/bench_echo_pb2_grpc.py

$(BENCH_GRPC_PY) &: $(BENCH_PROTO)
	@mkdir -p $(BENCH_GEN)/py
	protoc -I$(BENCH_SRC)/anchors --python_out=$(BENCH_GEN)/py \
		--grpc_python_out=$(BENCH_GEN)/py \
		--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin $<

BENCH_ANCHORS := $(BENCH_DIR)/nng_echo_server $(BENCH_DIR)/mhd_echo_server \
                 $(BENCH_DIR)/_gilhold.so $(BENCH_DIR)/_cgmark.so \
                 $(BENCH_DIR)/grpc_echo_server \
                 $(BENCH_GRPC_PY)

# ---- targets ----------------------------------------------------------------
.PHONY: bench bench-deps bench-build bench-smoke

bench-deps:
	@tools/install-deps
	@$(BENCH_SRC)/install-deps

bench-build: all $(BENCH_ANCHORS)

# Dependencies first (the anchors need their packages before make can
# even compute their flags), then a fresh make for the build.
bench: bench-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -j$(BENCH_JOBS) $(BENCH_ANCHORS)
	$(VENV_PY) -m pytest -q -p no:cacheprovider $(BENCH_SRC) \
		--bench-build $(BUILD)
	$(VENV_PY) $(BENCH_SRC)/run_bench.py --build $(BUILD) \
		$(if $(filter 1 yes true,$(QUICK)),--quick) \
		$(if $(BENCH_ONLY),--only $(BENCH_ONLY))

bench-smoke: bench-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -j$(BENCH_JOBS) $(BENCH_ANCHORS)
	$(VENV_PY) -m pytest -q -p no:cacheprovider $(BENCH_SRC) \
		--bench-build $(BUILD)
