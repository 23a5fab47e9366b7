# clients/python/python.mk: the nngrpc Python package and generated code.
# Included by the top Makefile, which defines BUILD, SYSPY, VENV, VENV_PY
# and GEN_PY.
#
#   $(PY_STAMP)   build/venv with nngrpc installed (runtime protos and stubs
#                 generated inside the package) and the user-service protos
#                 generated into $(GEN_PY), on the venv's path via a .pth.
#
# The package is staged in $(PY_STAGE) (a copy of clients/python plus the
# generated modules) and pip-installed from there, so the source tree never
# holds generated files.

PY_DIR      := clients/python
PY_STAGE    := $(BUILD)/python
PY_PLUGIN   := $(PY_DIR)/protoc-gen-nngrpc_python
PY_SRCS     := $(shell find $(PY_DIR)/nngrpc -name '*.py' -o -name 'py.typed') \
               $(PY_DIR)/pyproject.toml $(PY_DIR)/gen_status.py $(PY_PLUGIN)
# Protos whose code lives inside the nngrpc package (proto package
# nngrpc.v1 -> Python package nngrpc.v1): the envelope, the diagnostics
# service and the built-in health and reflection services (their Python
# packages' __init__.py, with nngrpc.health.check and the reflection
# client, are in the source tree).
PY_RUNTIME_PROTOS := nngrpc/v1/rpc.proto nngrpc/testing/v1/testing.proto \
                     nngrpc/health/v1/health.proto \
                     nngrpc/reflection/v1/reflection.proto
# User-service protos, generated into $(GEN_PY) (may not exist yet).
PY_USER_PROTOS ?= $(patsubst proto/%,%,$(wildcard proto/hotel/v1/*.proto))
PY_PROTOC    = protoc -Iproto --python_out=$(1) --pyi_out=$(1) \
               --plugin=protoc-gen-nngrpc_python=$(PY_PLUGIN) \
               --nngrpc_python_out=$(1)

PY_INSTALLED := $(VENV)/.nngrpc-package
PY_STAMP     := $(VENV)/.nngrpc-installed

$(VENV_PY):
	rm -rf $(VENV)
	$(SYSPY) -m venv --system-site-packages $(VENV)

# The nngrpc package, with rpc_pb2, testing_pb2 + stubs and _status_table.
$(PY_INSTALLED): $(VENV_PY) $(PY_SRCS) src/rpc/status_table.h \
		$(addprefix proto/,$(PY_RUNTIME_PROTOS))
	rm -rf $(PY_STAGE)
	mkdir -p $(PY_STAGE)
	cp -R $(PY_DIR)/pyproject.toml $(PY_DIR)/nngrpc $(PY_STAGE)/
	find $(PY_STAGE) -name __pycache__ -prune -exec rm -rf {} +
	$(call PY_PROTOC,$(PY_STAGE)) $(PY_RUNTIME_PROTOS)
	$(SYSPY) $(PY_DIR)/gen_status.py src/rpc/status_table.h \
		$(PY_STAGE)/nngrpc/_status_table.py
	$(VENV_PY) -m pip install --quiet --no-index --no-build-isolation \
		--no-deps --force-reinstall $(PY_STAGE)
	touch $@

# User-service protos into $(GEN_PY), plus a .pth so the venv finds them.
$(PY_STAMP): $(PY_INSTALLED) $(PY_PLUGIN) $(addprefix proto/,$(PY_USER_PROTOS))
	rm -rf $(GEN_PY)
	mkdir -p $(GEN_PY)
	$(if $(strip $(PY_USER_PROTOS)),$(call PY_PROTOC,$(GEN_PY)) $(PY_USER_PROTOS))
	find $(GEN_PY) -mindepth 1 -type d -exec touch {}/__init__.py \;
	$(VENV_PY) -c 'import sysconfig, sys; \
		open(sysconfig.get_paths()["purelib"] + "/nngrpc-gen.pth", "w").write(sys.argv[1] + "\n")' \
		$(abspath $(GEN_PY))
	$(VENV_PY) -c 'import nngrpc, nngrpc.testing.v1.testing_nngrpc, \
		nngrpc.health.v1.health_nngrpc, nngrpc.reflection.v1.reflection_nngrpc, \
		nngrpc.health, nngrpc.reflection'
	touch $@

.PHONY: python python-test
python: $(PY_STAMP)

# Pure-Python unit tests of the client (no server needed).
python-test: $(PY_STAMP)
	$(VENV_PY) -m pytest -q $(PY_DIR)/tests
