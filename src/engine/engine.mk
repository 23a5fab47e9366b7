# src/engine/engine.mk: the hotel search engine (libhotelengine.a), its unit
# tests, the ThreadSanitizer runs of the reload and stop tests, and the
# benchmark.
# Included by the top-level Makefile, which defines BUILD, OBJ, BIN, LIBDIR,
# CC, CSTD, WARN, CFLAGS, SANFLAGS and ALL_CFLAGS.
#
#   make build/lib/libhotelengine.a   the library
#   make engine-test                  build and run the engine unit tests
#   make engine-asan                  the same under ASan+UBSan (SAN=1)
#   make engine-tsan                  the reload and stop tests under TSan
#   make engine-bench                 index build and search timings
#                                     (BENCH_ARGS="100000 1000000")

ENGINE_SRCS   := $(wildcard src/engine/*.c)
ENGINE_HDRS   := $(wildcard src/engine/*.h)
ENGINE_OBJS   := $(ENGINE_SRCS:%.c=$(OBJ)/%.o)
ENGINE_LIB    := $(LIBDIR)/libhotelengine.a
ENGINE_LDLIBS := -ljansson -lm -lpthread

# The engine includes nothing generated, so its objects get a rule of their
# own (more specific than the top-level $(OBJ)/%.o, same recipe) without the
# order-only dependency on the protoc outputs: the engine builds even when
# the RPC side does not.
$(OBJ)/src/engine/%.o: src/engine/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OBJ)/tests/unit/engine/%.o: tests/unit/engine/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(ENGINE_LIB): $(ENGINE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- unit tests (cmocka), one binary per tests/unit/engine/test_*.c --------
# Plain builds land in $(BUILD)/tests/engine, SAN=1 builds in
# $(BUILD)/asan/tests/engine, so the two never overwrite each other.
ifeq ($(SAN),1)
ENGINE_TEST_DIR := $(BUILD)/asan/tests/engine
else
ENGINE_TEST_DIR := $(BUILD)/tests/engine
endif
ENGINE_TEST_SRCS := $(wildcard tests/unit/engine/test_*.c)
ENGINE_TESTS     := $(ENGINE_TEST_SRCS:tests/unit/engine/%.c=$(ENGINE_TEST_DIR)/%)

$(ENGINE_TEST_DIR)/%: $(OBJ)/tests/unit/engine/%.o $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) $(ENGINE_TEST_LDFLAGS) -o $@ $< $(ENGINE_LIB) \
		-lcmocka $(ENGINE_LDLIBS)

# The allocation-failure test sees the engine's malloc/calloc/realloc.
$(ENGINE_TEST_DIR)/test_engine_oom: \
	ENGINE_TEST_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

.PHONY: engine engine-test engine-asan engine-tsan engine-bench
engine: $(ENGINE_LIB) $(ENGINE_TESTS)

engine-test: $(ENGINE_TESTS)
	@set -e; for t in $(ENGINE_TESTS); do echo "== $$t"; $$t; done

engine-asan:
	$(MAKE) SAN=1 engine-test

# ---- ThreadSanitizer: the tests with threads (reload under load; a cancel
# flag set by another thread), built from source with -fsanitize=thread
# under $(BUILD)/tsan/tests, where tests/run-all finds them
ENGINE_TSAN_DIR   := $(BUILD)/tsan/tests/engine
ENGINE_TSAN_TESTS := $(ENGINE_TSAN_DIR)/test_engine_reload \
                     $(ENGINE_TSAN_DIR)/test_engine_stop

$(ENGINE_TSAN_DIR)/%: tests/unit/engine/%.c $(ENGINE_SRCS) $(ENGINE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -fsanitize=thread -fno-omit-frame-pointer \
		-Isrc -o $@ $(filter %.c,$^) -lcmocka $(ENGINE_LDLIBS)

engine-tsan: $(ENGINE_TSAN_TESTS)
	@set -e; for t in $^; do echo "== $$t (tsan)"; \
		TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" $$t; done

# (The ASan variant needs no entry: the top-level asan target builds
# $(ENGINE_TESTS) with SAN=1 and tests/run-all runs them.)
EXTRA_TEST_TARGETS += engine-tsan

# ---- benchmark ---------------------------------------------------------------
ENGINE_BENCH := $(BIN)/bench_engine
BENCH_ARGS   ?= 100000 1000000

$(ENGINE_BENCH): $(OBJ)/tests/unit/engine/bench_engine.o $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $< $(ENGINE_LIB) $(ENGINE_LDLIBS)

engine-bench: $(ENGINE_BENCH)
	$(ENGINE_BENCH) $(BENCH_ARGS)
