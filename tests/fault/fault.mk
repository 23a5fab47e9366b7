# Fault tests: hostile input, overload, kill -9 and restart, leaks, soak.
# Included by the top-level Makefile (which defines BUILD and VENV_PY).
#
#   make fault-test   tests/fault against build/bin/hoteld and the ASan build
#                     (about 2 minutes each)
#   make leak-test    LEAK_SECONDS (120) of mixed load against the ASan+UBSan
#                     hoteld, SIGTERM, no LSan/ASan/UBSan report; then
#                     VALGRIND_SECONDS (20) under valgrind memcheck on the
#                     plain build, "ERROR SUMMARY: 0 errors" (CI runs this)
#   make soak         SOAK_SECONDS (600) at 80 % of capacity, VmRSS sampled
#                     every 10 s; fails if the end is > 5 % above minute one
#   make fault-test-trixie
#                     test_hostile.py inside Debian 13 (libnng 1.10.1),
#                     against the hoteld docker/Dockerfile's build stage
#                     compiled; the libnng reaper test must pass there,
#                     strictly (tests/fault/trixie.sh; CI runs this)

LEAK_SECONDS     ?= 120
VALGRIND_SECONDS ?= 20
SOAK_SECONDS     ?= 600
FAULT_PYTEST      = $(VENV_PY) -m pytest -q -p no:cacheprovider

.PHONY: fault-test leak-test soak fault-test-trixie

fault-test: all asan
	@rc=0; \
	echo "== fault tests (hoteld)"; \
	$(FAULT_PYTEST) tests/fault --hoteld $(BUILD)/bin/hoteld || rc=1; \
	echo "== fault tests (ASan+UBSan hoteld)"; \
	$(FAULT_PYTEST) tests/fault --hoteld $(BUILD)/asan/bin/hoteld || rc=1; \
	exit $$rc

leak-test: all asan
	@log=$$(mktemp); \
	$(FAULT_PYTEST) -s tests/fault/test_leaks.py \
		--hoteld $(BUILD)/asan/bin/hoteld \
		--leak-seconds $(LEAK_SECONDS) \
		--valgrind-seconds $(VALGRIND_SECONDS) >$$log 2>&1; \
	rc=$$?; \
	cat $$log; \
	echo "== leak-test summary"; \
	grep -E '^leak-test: (build|.*ASan exit stats|valgrind|[0-9]+ s of)' $$log; \
	tail -n 1 $$log; \
	rm -f $$log; \
	exit $$rc

soak: all
	$(VENV_PY) tests/fault/soak.py --hoteld $(BUILD)/bin/hoteld \
		--seconds $(SOAK_SECONDS)

fault-test-trixie:
	@tests/fault/trixie.sh
