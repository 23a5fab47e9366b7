"""Unit tests of the nngrpc client package (helpers: _paths.py)."""
