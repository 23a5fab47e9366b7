"""Unit tests of the nngrpc client package (helpers: _paths.py).

NNGRPC_SPEEDUPS_SO=path runs the tests with that build of the C speedups
(the ASan+UBSan one, in ``make test``) instead of the installed one: it
is loaded as ``nngrpc._speedups`` before the package imports it."""

import importlib.util
import os
import sys

_so = os.environ.get("NNGRPC_SPEEDUPS_SO")
if _so:
    _spec = importlib.util.spec_from_file_location("nngrpc._speedups", _so)
    assert _spec is not None and _spec.loader is not None, _so
    sys.modules["nngrpc._speedups"] = _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    import nngrpc._channel

    assert nngrpc._channel._speedups is _mod, "nngrpc was imported before this conftest"
