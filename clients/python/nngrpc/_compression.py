"""Payload encodings: gzip (zlib, always there) and zstd (the optional
``zstandard`` module: Debian's python3-zstandard, PyPI's zstandard).

What goes on the wire, and when, is the contract's (docs/compatibility.md,
"Compression"): a request's payload is compressed only on a connection
whose server advertised the encoding, a reply's only when the request
accepted it.  This module only turns bytes into bytes, with bounds: a
decompression stops past ``limit`` bytes of output, so a small compressed
reply cannot become an unbounded allocation.
"""

from __future__ import annotations

import importlib
import threading
import zlib
from typing import Any, Optional, Tuple

_zstd: Any
try:  # optional: without it the client neither offers nor accepts zstd
    _zstd = importlib.import_module("zstandard")
except ImportError:  # pragma: no cover - depends on the installation
    _zstd = None

IDENTITY = "identity"
GZIP = "gzip"
ZSTD = "zstd"

#: The encodings this client can use, most preferred first.
AVAILABLE: Tuple[str, ...] = (ZSTD, GZIP) if _zstd is not None else (GZIP,)

#: Requests smaller than this go uncompressed even when compression is on
#: (the bytes saved would not pay for the CPU); hoteld uses the same
#: threshold for replies.
MIN_BYTES = 1024

#: Compression levels: the fast end of each (what a request path can
#: afford; `make bench` measures the bytes and time they give).
GZIP_LEVEL = 1
ZSTD_LEVEL = 1

#: zstd contexts are not thread-safe: one pair per thread, made on first use.
_local = threading.local()


class DecompressError(ValueError):
    """A payload that does not decompress (corrupt, or another encoding)."""


class TooLarge(ValueError):
    """A payload that decompresses to more than the limit allows."""


def check(name: Optional[str]) -> Optional[str]:
    """Returns the encoding a ``compression=`` option names (None for none:
    None or "identity").  Raises ValueError for a name this client cannot
    use."""
    if name is None or name == IDENTITY:
        return None
    if name in AVAILABLE:
        return name
    if name == ZSTD:
        raise ValueError("compression 'zstd' needs the zstandard module (python3-zstandard)")
    raise ValueError(
        "unknown compression %r (one of: %s)" % (name, ", ".join((IDENTITY,) + AVAILABLE))
    )


def compress(name: str, data: Any) -> bytes:
    """Returns data (bytes-like) compressed with encoding name."""
    if name == GZIP:
        c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip format
        return c.compress(data) + c.flush()
    cctx = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = _zstd.ZstdCompressor(level=ZSTD_LEVEL)
    out: bytes = cctx.compress(data)
    return out


def decompress(name: str, data: Any, limit: int) -> bytes:
    """Returns data decompressed with encoding name, at most limit bytes.

    Raises TooLarge past limit, DecompressError for data that is not a
    whole, valid stream of that encoding (or an encoding not available).
    """
    if name == GZIP:
        d = zlib.decompressobj(31)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            raise DecompressError("gzip: %s" % e) from None
        if len(out) > limit:
            raise TooLarge("more than %d bytes" % limit)
        if not d.eof or d.unused_data:
            raise DecompressError("gzip: %s" % ("truncated stream" if not d.eof else "data after the stream"))
        return out
    if name == ZSTD and _zstd is not None:
        return _zstd_decompress(data, limit)
    raise DecompressError("unknown encoding %r" % (name,))


def _zstd_decompress(data: Any, limit: int) -> bytes:
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = _zstd.ZstdDecompressor()
    try:
        size = _zstd.frame_content_size(data)
    except _zstd.ZstdError as e:
        raise DecompressError("zstd: %s" % e) from None
    if size > limit:
        raise TooLarge("more than %d bytes" % limit)
    try:
        # A frame that does not say its size is bounded by max_output_size.
        out: bytes = dctx.decompress(data, max_output_size=limit if size < 0 else 0)
    except _zstd.ZstdError as e:
        if size < 0 and _zstd_over(dctx, data, limit):
            raise TooLarge("more than %d bytes" % limit) from None
        raise DecompressError("zstd: %s" % e) from None
    return out


def _zstd_over(dctx: Any, data: Any, limit: int) -> bool:
    """True when data decompresses to more than limit bytes (it failed
    with max_output_size=limit: too large, or broken?)."""
    try:
        return len(dctx.stream_reader(data).read(limit + 1)) > limit
    except _zstd.ZstdError:
        return False


def accept_list(name: Optional[str]) -> str:
    """The ``nngrpc-accept-encoding`` value of a call that compresses with
    name: that encoding alone (None: "identity", which only asks for the
    server's capabilities)."""
    return IDENTITY if name is None else name
