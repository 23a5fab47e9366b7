# clients/python/python.mk: the nngrpc Python wheels, and build/venv.
# Included by the top Makefile, which defines BUILD, SYSPY, VENV and VENV_PY.
#
#   make wheel    $(PY_DIST): the nngrpc wheel (runtime, built-in services'
#                 stubs, CLI, protoc plugin, the C accelerator
#                 nngrpc/_speedups.abi3.so; built by pip through the
#                 package's own PEP 517 backend, clients/python/buildtools)
#                 and the hotel API's stub wheel (made by
#                 `python -m nngrpc.stubs`, as any team makes one)
#   $(PY_STAMP)   build/venv (Debian's python3, --system-site-packages) with
#                 both wheels installed by pip, as a user installs them
#   make python-test       the client's unit tests
#   make python-test-pure  the sync client's tests against a real hoteld
#                 again with NNGRPC_NO_SPEEDUPS=1 (the pure-Python path)
#
# The nngrpc wheel's tag is the machine's: cp311-abi3-linux_<arch> with
# the accelerator, py3-none-any without (no C compiler or Python.h, or
# NNGRPC_PURE_PYTHON=1; the backend's one-line note says which). So its
# rule's target is $(PY_WHEEL), a file naming the wheel it wrote.
#
# Nothing is generated into the source tree: the backend generates the
# runtime protos' modules and _status_table.py in a temporary directory.

PY_DIR     := clients/python
PY_DIST    := $(BUILD)/dist
PY_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' $(PY_DIR)/nngrpc/_version.py)
PY_WHEEL   := $(BUILD)/nngrpc-wheel.name
# The wheel's path, in a recipe (after $(PY_WHEEL) is made).
PY_WHEEL_FILE = $(PY_DIST)/$$(cat $(PY_WHEEL))
PY_SRCS    := $(shell find $(PY_DIR)/nngrpc $(PY_DIR)/buildtools -name __pycache__ -prune \
                -o -type f -print) $(PY_DIR)/pyproject.toml $(PY_DIR)/README.md
# What the backend generates from (pyproject.toml's [tool.nngrpc-build]).
PY_INPUTS  := include/nngrpc/status_table.h $(shell find proto/nngrpc -name '*.proto')
# The service API's protos and the name of their stub wheel.
PY_USER_PROTOS ?= $(patsubst proto/%,%,$(wildcard proto/hotel/v1/*.proto))
PY_STUBS_NAME  ?= hotel-stubs
PY_STUBS_WHEEL := $(PY_DIST)/$(subst -,_,$(PY_STUBS_NAME))-$(PY_VERSION)-py3-none-any.whl

PY_INSTALLED := $(VENV)/.nngrpc-package
PY_STAMP     := $(VENV)/.nngrpc-installed
# pip, quiet unless something fails; never an index.
PY_PIP        = $(1) -m pip --disable-pip-version-check -q

# What the build reads from the environment, kept in a file that changes
# only when it does: setting or clearing NNGRPC_PURE_PYTHON (or CC)
# rebuilds the wheel.
PY_WHEEL_ENV := $(BUILD)/nngrpc-wheel.env
$(shell mkdir -p $(BUILD) && echo 'NNGRPC_PURE_PYTHON=$(NNGRPC_PURE_PYTHON) CC=$(value CC)' \
  | cmp -s - $(PY_WHEEL_ENV) || echo 'NNGRPC_PURE_PYTHON=$(NNGRPC_PURE_PYTHON) CC=$(value CC)' \
  >$(PY_WHEEL_ENV))

# pip shows the backend's output only with -v: the log keeps it, and the
# backend's notes (a pure wheel, and why) are shown.
$(PY_WHEEL): $(PY_SRCS) $(PY_INPUTS) $(PY_WHEEL_ENV)
	@mkdir -p $(PY_DIST)
	rm -f $(PY_DIST)/nngrpc-*.whl $@
	$(SYSPY) -m pip --disable-pip-version-check -v wheel --no-index --no-build-isolation \
		--no-deps -w $(PY_DIST) $(PY_DIR) >$@.log 2>&1 || { cat $@.log; exit 1; }
	@sed -n 's/^ *\(nngrpc build: .*\)/\1/p' $@.log >&2
	cd $(PY_DIST) && ls nngrpc-$(PY_VERSION)-*.whl >$(abspath $@).tmp
	test "$$(wc -l <$@.tmp)" = 1 && mv $@.tmp $@

$(VENV_PY):
	rm -rf $(VENV)
	$(SYSPY) -m venv --system-site-packages $(VENV)

# Reinstalled on every new wheel (the version stays the same): uninstall,
# then the plain install a user runs.
$(PY_INSTALLED): $(VENV_PY) $(PY_WHEEL)
	$(call PY_PIP,$(VENV_PY)) uninstall -y nngrpc 2>/dev/null || true
	$(call PY_PIP,$(VENV_PY)) install --no-index $(PY_WHEEL_FILE)
	case $(PY_WHEEL_FILE) in *-abi3-*) cd / && $(abspath $(VENV_PY)) -c 'import nngrpc._speedups';; esac
	touch $@

$(PY_STUBS_WHEEL): $(PY_INSTALLED) $(addprefix proto/,$(PY_USER_PROTOS))
	rm -f $@
	$(VENV_PY) -m nngrpc.stubs --proto-path proto --name $(PY_STUBS_NAME) \
		--version $(PY_VERSION) --out $(PY_DIST) $(PY_USER_PROTOS) >/dev/null

$(PY_STAMP): $(PY_INSTALLED) $(PY_STUBS_WHEEL)
	@# Left by builds before the wheels: generated code on a .pth path.
	rm -rf $(BUILD)/python $(BUILD)/gen/python $(VENV)/lib/python3*/site-packages/nngrpc-gen.pth
	$(call PY_PIP,$(VENV_PY)) uninstall -y $(PY_STUBS_NAME) 2>/dev/null || true
	$(call PY_PIP,$(VENV_PY)) install --no-index $(PY_STUBS_WHEEL)
	cd / && $(abspath $(VENV_PY)) -c 'import nngrpc, nngrpc.testing.v1.testing_nngrpc, \
		nngrpc.health.v1.health_nngrpc, nngrpc.reflection.v1.reflection_nngrpc, \
		nngrpc.health, nngrpc.reflection, nngrpc.stubs; \
		from hotel.v1 import hotel_pb2, hotel_nngrpc'
	touch $@

.PHONY: python python-test python-test-pure wheel
python: $(PY_STAMP)
wheel: $(PY_WHEEL) $(PY_STUBS_WHEEL)
	@ls -l $(PY_WHEEL_FILE) $(PY_STUBS_WHEEL)

# Pure-Python unit tests of the client (no server needed).
python-test: $(PY_STAMP)
	$(VENV_PY) -m pytest -q $(PY_DIR)/tests

# The C speedups built with ASan+UBSan: tests/run-all runs the client's
# tests of the C path with it (NNGRPC_SPEEDUPS_SO, libasan preloaded).
PY_ASAN_SPEEDUPS := $(BUILD)/asan/pyext/_speedups.abi3.so
$(PY_ASAN_SPEEDUPS): $(PY_DIR)/nngrpc/_speedups.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
		-fno-sanitize-recover=undefined -Wall -Wextra -Werror -shared -fPIC \
		-I$(shell $(SYSPY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
		-o $@ $<

# The sync client's tests that make Channel calls (fake SP servers, a real
# hoteld) with NNGRPC_NO_SPEEDUPS=1: the pure-Python path, which the C
# accelerator otherwise replaces. tests/run-all names the suites (make
# test runs them too); about 60 s.
python-test-pure: $(PY_STAMP) $(BIN)/hoteld
	@tests/run-all $(BUILD) --pure-only
