# tests/compat/compat.mk: versions that live together (docs/compatibility.md).
# Included by the top Makefile, which defines BUILD, BIN, SYSPY and PY_STAMP.
# Both checks also run in `make test` (tests/run-all).
#
#   make compat-check    the proto breaking-change check: every .proto under
#                        proto/ against the last release of CHANGELOG.md
#   make compat-matrix   the last release's client and hoteld (built from git
#                        into $(BUILD)/compat/) against this tree's, every
#                        feature in every pairing, printed as a table

.PHONY: compat-check compat-matrix

compat-check:
	$(SYSPY) tools/proto_breaking.py

compat-matrix: $(BIN)/hoteld $(BIN)/nngrpc-health $(PY_STAMP)
	$(SYSPY) tests/compat/matrix.py --build $(BUILD)
