# nngrpc: one Makefile, fragments per part (src/engine/engine.mk,
# src/tools/tools.mk, clients/python/python.mk, ...). Everything is built
# into $(BUILD).
#
#   make            build the runtime, hoteld, generated code and build/venv
#   make deps       install the Debian packages the build and tests need
#   make run        start hoteld in the foreground on the default dataset
#   make test       unit tests, integration tests, sanitizer build tests
#   make asan-test  the integration tests against an ASan+UBSan hoteld
#   make format     clang-format the C sources (format-check: verify only)
#   make install    PREFIX=/usr/local DESTDIR= (make uninstall: the same)
#   make example-test  examples/places against a fresh install

BUILD    ?= build
# The library's version; the shared object's soname carries the major.
VERSION  := 1.0.0
SOMAJOR  := $(firstword $(subst ., ,$(VERSION)))
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow
CSTD     := -std=c11 -D_GNU_SOURCE
# Debian 12's /usr/bin/python3 sees Debian's python3-* packages; a pyenv
# python3 earlier on PATH does not, so never take python3 from PATH.
SYSPY    := /usr/bin/python3
VENV     := $(BUILD)/venv
VENV_PY  := $(VENV)/bin/python

# Sanitizer variant: same sources, objects under $(BUILD)/asan.
ifeq ($(SAN),1)
OBJ      := $(BUILD)/asan/obj
BIN      := $(BUILD)/asan/bin
TESTBIN  := $(BUILD)/asan/tests
LIBDIR   := $(BUILD)/asan/lib
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
else
OBJ      := $(BUILD)/obj
BIN      := $(BUILD)/bin
TESTBIN  := $(BUILD)/tests
LIBDIR   := $(BUILD)/lib
SANFLAGS :=
endif
GEN_C    := $(BUILD)/gen/c
GEN_PY   := $(BUILD)/gen/python

# include/ holds the public headers (<nngrpc/nngrpc.h>); src/rpc the
# library's internal ones, which hoteld (src/service) does not see: it
# uses the library as any service does.
INTERNAL   = -Isrc/rpc
ALL_CFLAGS = $(CSTD) $(WARN) $(CFLAGS) $(SANFLAGS) $(VISIBILITY) -fPIC -MMD -MP \
             -Iinclude -Isrc $(INTERNAL) -I$(GEN_C)
LDLIBS_RPC := -lnng -lprotobuf-c -lz -lzstd -lseccomp -lpthread -lm

.PHONY: all deps run test unit-tests asan asan-test example-test \
        format format-check clean FORCE
all:

# ---- protobuf code generation ---------------------------------------------
# C: protoc-c messages (.pb-c.[ch]) and our typed service glue
# (.nngrpc.[ch], from src/codegen/protoc-gen-nngrpc-c).
# The library's own: the envelope and the built-in services.
BUILTIN_PROTOS := nngrpc/health/v1/health.proto \
                  nngrpc/reflection/v1/reflection.proto
RUNTIME_PROTOS := nngrpc/v1/rpc.proto $(BUILTIN_PROTOS)
# Protos with services that hoteld serves.
SERVICE_PROTOS := nngrpc/testing/v1/testing.proto hotel/v1/hotel.proto
PROTOS         := $(RUNTIME_PROTOS) $(SERVICE_PROTOS)
PB_C     = $(PROTOS:%.proto=$(GEN_C)/%.pb-c.c)
GLUE_C   = $(BUILTIN_PROTOS:%.proto=$(GEN_C)/%.nngrpc.c) \
           $(SERVICE_PROTOS:%.proto=$(GEN_C)/%.nngrpc.c)

$(GEN_C)/%.pb-c.c $(GEN_C)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN_C)
	protoc -Iproto --c_out=$(GEN_C) $<

$(GEN_C)/%.nngrpc.c $(GEN_C)/%.nngrpc.h: proto/%.proto \
		src/codegen/protoc-gen-nngrpc-c
	@mkdir -p $(GEN_C)
	protoc -Iproto --plugin=protoc-gen-nngrpc-c=src/codegen/protoc-gen-nngrpc-c \
		--nngrpc-c_out=$(GEN_C) $<

# Protos of the unit tests only (tests/unit/proto), generated the same way.
TEST_PROTOS := kinds/v1/kinds.proto
TEST_GEN_OBJS = $(TEST_PROTOS:%.proto=$(OBJ)/gen/%.pb-c.o) \
                $(TEST_PROTOS:%.proto=$(OBJ)/gen/%.nngrpc.o)

$(GEN_C)/%.pb-c.c $(GEN_C)/%.pb-c.h: tests/unit/proto/%.proto
	@mkdir -p $(GEN_C)
	protoc -Itests/unit/proto --c_out=$(GEN_C) $<

$(GEN_C)/%.nngrpc.c $(GEN_C)/%.nngrpc.h: tests/unit/proto/%.proto \
		src/codegen/protoc-gen-nngrpc-c
	@mkdir -p $(GEN_C)
	protoc -Itests/unit/proto \
		--plugin=protoc-gen-nngrpc-c=src/codegen/protoc-gen-nngrpc-c \
		--nngrpc-c_out=$(GEN_C) $<

# Keep generated files: make would delete them as intermediates.
.SECONDARY:

# Generated headers must exist before anything that includes them compiles.
GEN_HEADERS = $(PB_C:.c=.h) $(GLUE_C:.c=.h)
# The unit tests' own: only their objects wait for them, so the library
# and hoteld build from proto/ and src/ alone (as docker/Dockerfile does).
TEST_GEN_HEADERS = $(TEST_PROTOS:%.proto=$(GEN_C)/%.pb-c.h) \
                   $(TEST_PROTOS:%.proto=$(GEN_C)/%.nngrpc.h)

# ---- libnngrpc --------------------------------------------------------------
# Built with hidden visibility: only what the public headers mark NNGRPC_API
# is exported (tests/lib checks the list in src/rpc/libnngrpc.symbols).
RPC_SRCS := $(wildcard src/rpc/*.c)
RPC_OBJS := $(RPC_SRCS:%.c=$(OBJ)/%.o) \
            $(RUNTIME_PROTOS:%.proto=$(OBJ)/gen/%.pb-c.o) \
            $(BUILTIN_PROTOS:%.proto=$(OBJ)/gen/%.nngrpc.o)
PUBLIC_HEADERS := $(wildcard include/nngrpc/*.h)

$(RPC_OBJS): VISIBILITY := -fvisibility=hidden
# Objects built before with other flags (a checkout from before hidden
# visibility) are rebuilt: they depend on a file that changes with them.
RPC_FLAGS := $(OBJ)/rpc.flags
$(RPC_FLAGS): FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(CFLAGS) $(SANFLAGS) -fvisibility=hidden' | cmp -s - $@ \
		|| echo '$(CC) $(CFLAGS) $(SANFLAGS) -fvisibility=hidden' >$@
$(RPC_OBJS): $(RPC_FLAGS)

$(OBJ)/%.o: %.c | $(GEN_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OBJ)/gen/%.o: $(GEN_C)/%.c | $(GEN_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-unused-parameter -c -o $@ $<

$(LIBDIR)/libnngrpc.a: $(RPC_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# libnngrpc.so.1.0.0, with the soname libnngrpc.so.1 and the two links
# (as Debian's libraries are laid out); -z defs: every symbol it needs is
# in the libraries named here.
SONAME   := libnngrpc.so.$(SOMAJOR)
SOFILE   := libnngrpc.so.$(VERSION)

$(LIBDIR)/$(SOFILE): $(RPC_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SANFLAGS) -Wl,-soname,$(SONAME) -Wl,-z,defs -o $@ $^ \
		$(LDLIBS_RPC)

$(LIBDIR)/$(SONAME): $(LIBDIR)/$(SOFILE)
	ln -sf $(SOFILE) $@

$(LIBDIR)/libnngrpc.so: $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $@

# pkg-config file for this build tree (uninstalled: headers from include/,
# the plugin from src/codegen); `make install` writes the installed one.
nngrpc_pc = sed -e 's|@PREFIX@|$(1)|' -e 's|@INCLUDEDIR@|$(2)|' \
	-e 's|@LIBDIR@|$(3)|' -e 's|@PLUGIN@|$(4)|' -e 's|@VERSION@|$(VERSION)|' \
	src/rpc/nngrpc.pc.in

$(LIBDIR)/pkgconfig/nngrpc.pc: src/rpc/nngrpc.pc.in Makefile
	@mkdir -p $(dir $@)
	$(call nngrpc_pc,$(abspath .),$(abspath include),$(abspath $(LIBDIR)),$(abspath src/codegen/protoc-gen-nngrpc-c)) >$@

# ---- engine (src/engine/engine.mk defines ENGINE_LIB, ENGINE_TESTS) ---------
-include src/engine/engine.mk

# ---- hoteld -----------------------------------------------------------------
SERVICE_SRCS := $(wildcard src/service/*.c)
SERVICE_OBJS := $(SERVICE_SRCS:%.c=$(OBJ)/%.o) \
                $(SERVICE_PROTOS:%.proto=$(OBJ)/gen/%.pb-c.o) \
                $(SERVICE_PROTOS:%.proto=$(OBJ)/gen/%.nngrpc.o)

$(SERVICE_OBJS): INTERNAL :=

$(BIN)/hoteld: $(SERVICE_OBJS) $(LIBDIR)/libnngrpc.a $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $(SERVICE_OBJS) $(LIBDIR)/libnngrpc.a \
		$(ENGINE_LIB) $(ENGINE_LDLIBS) $(LDLIBS_RPC)

# ---- tools (src/tools/tools.mk adds TOOLS_BINS) ----------------------------
include src/tools/tools.mk

# ---- C unit tests (tests/unit/test_<module>.c, cmocka) ----------------------
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(TESTBIN)/%)

$(UNIT_SRCS:%.c=$(OBJ)/%.o) $(TEST_GEN_OBJS): | $(TEST_GEN_HEADERS)

$(TESTBIN)/test_%: $(OBJ)/tests/unit/test_%.o $(LIBDIR)/libnngrpc.a \
		$(SERVICE_PROTOS:%.proto=$(OBJ)/gen/%.pb-c.o) \
		$(SERVICE_PROTOS:%.proto=$(OBJ)/gen/%.nngrpc.o) $(TEST_GEN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $(filter %.o,$^) $(LIBDIR)/libnngrpc.a \
		-lcmocka $(LDLIBS_RPC)

# The pool of process isolation under TSan: its locks, its supervisor
# thread and the workers it forks (tests/run-all runs $(BUILD)/tsan/tests).
ISO_TSAN_TEST := $(BUILD)/tsan/tests/test_isolate
ISO_TSAN_SRCS  = tests/unit/test_isolate.c $(RPC_SRCS) \
                 $(RUNTIME_PROTOS:%.proto=$(GEN_C)/%.pb-c.c) \
                 $(BUILTIN_PROTOS:%.proto=$(GEN_C)/%.nngrpc.c) \
                 $(GEN_C)/nngrpc/testing/v1/testing.pb-c.c \
                 $(GEN_C)/nngrpc/testing/v1/testing.nngrpc.c

$(ISO_TSAN_TEST): $(ISO_TSAN_SRCS) | $(GEN_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) -O1 -g -fsanitize=thread -Wall -Wextra -Werror \
		-Wno-unused-parameter -Iinclude -Isrc -Isrc/rpc -I$(GEN_C) \
		-o $@ $(ISO_TSAN_SRCS) -lcmocka $(LDLIBS_RPC)

# ---- Python (clients/python/python.mk defines PY_STAMP) ---------------------
-include clients/python/python.mk

# ---- benchmarks, fuzzing, container, fault tests -------------------------
-include tests/bench/bench.mk
-include tests/fuzz/fuzz.mk
-include docker/docker.mk
-include tests/fault/fault.mk
-include tests/compat/compat.mk

# ---- top-level targets ------------------------------------------------------
all: $(LIBDIR)/libnngrpc.a $(LIBDIR)/libnngrpc.so $(LIBDIR)/pkgconfig/nngrpc.pc \
     $(BIN)/hoteld $(UNIT_TESTS) $(ENGINE_TESTS) $(PY_STAMP) $(TOOLS_BINS)

deps:
	@tools/install-deps

run: deps all
	@echo "hoteld: call it from Python with build/venv/bin/python examples/search.py"
	$(BIN)/hoteld $(RUN_ARGS)

test: deps all asan $(ENGINE_TSAN_TESTS) $(ISO_TSAN_TEST)
	@tests/run-all $(BUILD)

# The same binaries and unit tests, built with ASan+UBSan.
asan: $(PY_ASAN_SPEEDUPS)
	$(MAKE) SAN=1 $(BUILD)/asan/bin/hoteld unit-tests

unit-tests: $(UNIT_TESTS) $(ENGINE_TESTS)

# examples/places built out of the tree against `make install` into a
# temporary prefix, run and called (also part of make test, in tests/lib).
example-test: all
	$(VENV_PY) -m pytest -q -p no:cacheprovider tests/lib/test_example.py \
		--build $(BUILD)

asan-test: deps all asan $(ENGINE_TSAN_TESTS) $(ISO_TSAN_TEST)
	@tests/run-all $(BUILD) --asan-only

C_SOURCES = $(shell find src include tests examples clients -name '*.[ch]' \
              -not -path '*/fuzz/corpus/*' -not -path 'examples/*/gen/*')
format:
	clang-format -i $(C_SOURCES)
format-check:
	clang-format --dry-run --Werror $(C_SOURCES)

clean:
	rm -rf $(BUILD)

# ---- install ------------------------------------------------------------------
# make install PREFIX=/usr/local DESTDIR=   (and make uninstall, same flags)
#   include/nngrpc/*.h                the public headers
#   lib/libnngrpc.so.1.0.0, .so.1, .so  the shared library and its links
#   lib/libnngrpc.a                   the static library
#   lib/pkgconfig/nngrpc.pc           prefix=PREFIX; -lnngrpc -lnng
#   bin/protoc-gen-nngrpc-c           the C glue plugin
#   bin/hoteld, nngrpc-bench, nngrpc-health
# No generated header is installed: the public headers need none (the
# envelope and the built-in services are the library's own business).
# A program linked with the shared library from a PREFIX outside ld.so's
# path finds it with -Wl,-rpath,$$(pkg-config --variable=libdir nngrpc).
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_INC := $(DESTDIR)$(PREFIX)/include/nngrpc
INSTALL_LIB := $(DESTDIR)$(PREFIX)/lib
INSTALL_BIN := $(DESTDIR)$(PREFIX)/bin
INSTALL_PROGRAMS := $(BIN)/hoteld $(BIN)/nngrpc-bench $(BIN)/nngrpc-health

.PHONY: install uninstall
install: $(LIBDIR)/libnngrpc.a $(LIBDIR)/$(SOFILE) $(INSTALL_PROGRAMS)
	install -d $(INSTALL_INC) $(INSTALL_LIB)/pkgconfig $(INSTALL_BIN)
	install -m 644 $(PUBLIC_HEADERS) $(INSTALL_INC)/
	install -m 644 $(LIBDIR)/libnngrpc.a $(INSTALL_LIB)/
	install -m 755 $(LIBDIR)/$(SOFILE) $(INSTALL_LIB)/
	ln -sf $(SOFILE) $(INSTALL_LIB)/$(SONAME)
	ln -sf $(SONAME) $(INSTALL_LIB)/libnngrpc.so
	$(call nngrpc_pc,$(PREFIX),$${prefix}/include,$${prefix}/lib,$${prefix}/bin/protoc-gen-nngrpc-c) \
		>$(INSTALL_LIB)/pkgconfig/nngrpc.pc
	chmod 644 $(INSTALL_LIB)/pkgconfig/nngrpc.pc
	install -m 755 src/codegen/protoc-gen-nngrpc-c $(INSTALL_PROGRAMS) \
		$(INSTALL_BIN)/

uninstall:
	rm -f $(addprefix $(INSTALL_INC)/,$(notdir $(PUBLIC_HEADERS))) \
	      $(addprefix $(INSTALL_LIB)/,libnngrpc.a $(SOFILE) $(SONAME) \
	          libnngrpc.so pkgconfig/nngrpc.pc) \
	      $(addprefix $(INSTALL_BIN)/,protoc-gen-nngrpc-c \
	          $(notdir $(INSTALL_PROGRAMS)))
	-rmdir $(INSTALL_INC) 2>/dev/null

-include $(shell find $(BUILD)/obj $(BUILD)/asan -name '*.d' 2>/dev/null)
