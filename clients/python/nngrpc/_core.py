"""The client core: what a call sends and decides, with no I/O.

DESIGN
------
The sync Channel (_channel.py), the asyncio Channel (aio.py) and the
in-process test double (nngrpc.testing.FakeChannel) are drivers: they own
sockets, threads, event loops and sleeping.  Everything they would
otherwise each write again lives here, as plain state machines and pure
functions that never touch a socket, a clock wait or a loop:

- the request envelope (nngrpc.v1.Request), encoded by hand: the method
  field is encoded once per method, metadata and the request id once per
  call, the deadline (``timeout_us``, the time left) once per attempt, and
  the payload is never copied into a message: the head returned by
  CallState.head() is the whole envelope up to the payload's bytes, so a
  pipe sends head and payload with one scatter-gather write;
- the response envelope (nngrpc.v1.Response), decoded by hand from a
  region of the pipe's receive buffer, so the payload reaches the
  response deserializer as a memoryview, never copied on the way;
- CallState: one call's attempts, its retry decisions (_retry.py's
  RetryPolicy and backoff), the status of every outcome, the mapping of a
  failed attempt's exception to a status;
- EndpointSet: which endpoint the next attempt tries (round-robin over the
  endpoints that are up, backoff for those that refused a connection or
  answered UNAVAILABLE), and the set itself, which may change while calls
  run (update(): discovery, _discovery.py, adds and removes endpoints; a
  removed one drains: it takes no new call and its connections close once
  idle).  An endpoint that answers ``nngrpc-not-run`` (the server is
  draining or starting) is draining too: its connections are not reused
  and it is tried last for a while.  Failures ask discovery to resolve the
  names again (the ``wake`` hook);
- MethodBase: what both channels' multicallables share (serializing the
  request, choosing how the response is deserialized);
- cancellation (docs/compatibility.md, "Cancellation"): the request that
  cancels one call of a shared connection by its request id
  (``CallState.cancel_request()``), and what its answer says of the
  server (``cancel_answered()``: an old server's UNIMPLEMENTED turns them
  off on that connection, ``conn.cancels``).

A driver's call is: ``st = CallState(...)``, then attempts: take
``st.endpoints.candidates(st.avoid)``, get a connection, send
``st.head()`` and ``st.payload``, and hand the reply's envelope to
``st.answered()``, which returns the result or None (retry after
``st.delay`` seconds) or raises the call's RpcError.  An attempt that ends
without a reply goes to ``st.attempt_error()`` (which maps it to a status)
and ``st.failed()`` (retry, or raise).

Thread-safety: a CallState belongs to its call.  An EndpointSet is shared
by a channel's calls; it takes the lock its driver gives it (the sync
channel's lock; a no-op lock on an event loop) around every change.
"""

from __future__ import annotations

import binascii
import random
import struct
import sys
import time
import weakref
from base64 import b64decode, b64encode
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from google.protobuf.message import Message

from nngrpc import _compression
from nngrpc._caps import OLD_SERVER, UNKNOWN, Caps, caps_of
from nngrpc._errors import REQUEST_ID_KEY, Call, Metadata, RpcError, TrailingMetadata
from nngrpc._retry import RetryPolicy, connect_backoff, order_endpoints, retry_delay
from nngrpc._sp import MessageTooLarge, PeerClosed, ProtocolError
from nngrpc._status_table import StatusCode
from nngrpc._tls import TlsHandshakeError

if TYPE_CHECKING:
    from nngrpc._transport import Address

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: Bytes a payload may be given as.
Bytes = Union[bytes, bytearray, memoryview]
#: A response deserializer as the core calls it: it gets a memoryview of
#: the payload, valid only during the call.
ViewDeserializer = Callable[[memoryview], Any]

#: Trailing metadata a server sets when the handler never ran (it was
#: starting or draining): such a call may go to another server whatever
#: its method.
NOT_RUN_KEY = "nngrpc-not-run"

#: Capability negotiation (docs/compatibility.md): the request metadata a
#: client asks with, and the reply trailers a new server answers with.
ACCEPT_KEY = "nngrpc-accept-encoding"
LIMIT_KEY = "nngrpc-max-message-bytes"
#: Request metadata and reply trailer: the payload is compressed so.
ENCODING_KEY = "nngrpc-encoding"
#: The call a client makes to learn a connection's limit.
HEALTH_CHECK = "/nngrpc.health.v1.Health/Check"
#: Cancellation of one call on a shared connection: the runtime's method,
#: and the request metadata that names the call's request id.
CANCEL_METHOD = "/nngrpc.v1.Control/Cancel"
CANCEL_KEY = "nngrpc-cancel"
#: A cancel request's own deadline: an old server queues it like any call
#: (and answers UNIMPLEMENTED); it must not wait there for ever.
_CANCEL_TIMEOUT_US = 10_000_000
_UNIMPLEMENTED = 12

CLOSED_MSG = "Cannot invoke RPC: Channel closed!"

_OK = 0
_REQ_ID_BYTES = 4
#: The limit on a decompressed reply with no connection to say its own.
_DEFAULT_MAX_RECV = 4 * 1024 * 1024 + 64 * 1024  # the SP request id in front of every request envelope

# ---- the request envelope -----------------------------------------------------------
_ID_RNG = random.Random()  # reseeded in forked children (see after_fork)
_monotonic = time.monotonic  # one global lookup on the per-call path, not two


_BYTES = [bytes((i,)) for i in range(128)]


def uvarint(n: int) -> bytes:
    """Returns n (>= 0) as a protobuf varint."""
    if n < 0x80:
        return _BYTES[n]
    if n < 0x10000000:  # up to 268 s of timeout_us in four bytes, no loop
        if n < 0x4000:
            return bytes(((n & 0x7F) | 0x80, n >> 7))
        if n < 0x200000:
            return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
        return bytes(
            ((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21)
        )
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: Request.timeout_us with a varint of four bytes (2.1 to 268 s): its tag
#: and the four 7-bit groups, flagged, packed in one call (head()).
_TIMEOUT4 = struct.Struct("5B")

#: Request.payload's tag and one-byte length, for lengths below 128.
_PAYLOAD_TAGS = [bytes((0x22, i)) for i in range(128)]


def varint_size(n: int) -> int:
    """Returns how many bytes uvarint(n) takes."""
    return (n.bit_length() + 6) // 7 or 1


def _len_field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + uvarint(len(data)) + data


_METHOD_FIELDS: Dict[str, bytes] = {}


def method_field(method: str) -> bytes:
    """Returns Request.method (field 1) encoded, for method."""
    field = _METHOD_FIELDS.get(method)
    if field is None:
        field = _len_field(0x0A, method.encode())
        if len(_METHOD_FIELDS) < 4096:
            _METHOD_FIELDS[method] = field
    return field


def _md_entry(key: Any, value: Any) -> bytes:
    """Returns one Request.metadata map entry (field 3) encoded.  A "-bin"
    key's value may be bytes: it goes as unpadded base64."""
    if not isinstance(key, str) or not isinstance(value, str):
        if (
            isinstance(key, str)
            and key.endswith("-bin")
            and isinstance(value, (bytes, bytearray, memoryview))
        ):
            value = b64encode(value).rstrip(b"=").decode()
        else:
            raise TypeError(
                "metadata keys must be str, and values str (bytes for a -bin key), got %r: %r"
                % (type(key).__name__, type(value).__name__)
            )
    entry = _len_field(0x0A, key.encode()) + _len_field(0x12, value.encode())
    return _len_field(0x1A, entry)


def _entry_cached(cache: Dict[Optional[str], bytes], key: str, value: str) -> bytes:
    entry = cache.get(value)
    if entry is None:
        entry = cache[value] = _md_entry(key, value)
    return entry


_ACCEPT_ENTRIES: Dict[Optional[str], bytes] = {}
_ENCODING_ENTRIES: Dict[Optional[str], bytes] = {}


# A generated request id: 16 random hex digits, in a pre-encoded entry.
_RID_DIGITS = 16
_RID_ENTRY = b"\n\x11" + REQUEST_ID_KEY.encode() + b"\x12\x10"
_RID_PREFIX = b"\x1a" + bytes([len(_RID_ENTRY) + _RID_DIGITS]) + _RID_ENTRY
#: Fresh request-id entries are made this many at a time: one randbytes and
#: one hex() for the batch cost a call less than a formatted number each.
_RID_BATCH = 128
_rid_entries: Iterator[bytes] = iter(())  # emptied in forked children (after_fork)


def _fresh_rid_entry() -> bytes:
    """Returns a Request.metadata entry with a fresh request id (its last
    16 bytes are the id's hex digits).  Thread-safe: next() on a list
    iterator is atomic, and two threads that find the batch used up each
    make their own (ids from independent draws)."""
    global _rid_entries
    entry = next(_rid_entries, None)
    if entry is None:
        digits = _ID_RNG.randbytes(8 * _RID_BATCH).hex().encode()
        batch = [_RID_PREFIX + digits[i : i + _RID_DIGITS] for i in range(0, len(digits), 16)]
        _rid_entries = it = iter(batch)
        entry = next(it)
    return entry


def metadata_field(metadata: Optional[Metadata]) -> Tuple[bytes, str, bool]:
    """Returns (Request.metadata encoded, the call's request id, whether it
    has ``nngrpc-accept-encoding``): the request id is the caller's
    ``nngrpc-request-id`` if its metadata has a non-empty one, else a
    fresh one (16 random hex digits, added to the entries).

    Raises TypeError for keys or values that are not str (bytes for a
    "-bin" key), ValueError for a key given twice in a sequence of pairs.
    """
    rid = ""
    asked = False
    encoded = b""
    if metadata:
        parts = []
        if isinstance(metadata, Mapping):
            pairs: Any = metadata.items()
        else:
            pairs = metadata
            keys = [k for k, _ in pairs]
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                raise ValueError("metadata key %r given twice" % (dup,))
        for key, value in pairs:
            if key == REQUEST_ID_KEY:
                if not value:
                    continue
                rid = value
            elif key == ACCEPT_KEY:
                asked = True
            parts.append(_md_entry(key, value))
        encoded = b"".join(parts)
    if not rid:  # no system call: a seeded PRNG
        entry = _fresh_rid_entry()
        rid = entry[-_RID_DIGITS:].decode()
        encoded += entry
    return encoded, rid, asked


# ---- the response envelope ----------------------------------------------------------
class EnvelopeError(ValueError):
    """A response envelope that does not decode."""


#: A decoded Response: (code, message, payload start, payload end,
#: trailers, queue_us, run_us); the payload is buf[start:end].
Decoded = Tuple[int, str, int, int, TrailingMetadata, int, int]


def _varint(buf: Bytes, pos: int) -> Tuple[int, int]:
    """Returns (value, position after) of the varint at buf[pos]."""
    # Up to three bytes unrolled (lengths below 2 MiB), then the loop.
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    b = buf[pos + 1]
    if b < 0x80:
        return result | b << 7, pos + 2
    result |= (b & 0x7F) << 7
    b = buf[pos + 2]
    if b < 0x80:
        return result | b << 14, pos + 3
    result |= (b & 0x7F) << 14
    pos += 3
    shift = 21
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise EnvelopeError("varint too long")


def _skip(buf: Bytes, pos: int, tag: int) -> int:
    """Returns the position after the value of a field with this tag (an
    unknown field: protobuf's forward compatibility)."""
    kind = tag & 7
    if kind == 0:
        return _varint(buf, pos)[1]
    if kind == 1:
        return pos + 8
    if kind == 2:
        n, pos = _varint(buf, pos)
        return pos + n
    if kind == 5:
        return pos + 4
    raise EnvelopeError("unsupported wire type %d" % kind)


def _string(buf: Bytes, start: int, end: int) -> str:
    return str(buf[start:end], "utf-8", "replace")


def _map_entry(buf: Bytes, pos: int, end: int) -> Tuple[str, str]:
    """Returns (key, value) of the map entry in buf[pos:end]."""
    key = value = ""
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A or tag == 0x12:
            n, pos = _varint(buf, pos)
            text = _string(buf, pos, pos + n)
            pos += n
            if tag == 0x0A:
                key = text
            else:
                value = text
        else:
            pos = _skip(buf, pos, tag)
    if pos != end:
        raise EnvelopeError("truncated map entry")
    return key, value


def decode_response(buf: Bytes, pos: int, end: int) -> Decoded:
    """Decodes the Response envelope in buf[pos:end] (see Decoded).

    Raises EnvelopeError if it is not a Response.
    """
    # The common answer inline: OK (no code, message or trailers), as
    # hoteld writes it: queue_us and run_us (each below 2**14) when set,
    # then the payload, which ends the envelope.  Any other shape (another
    # order, larger numbers) goes to the general decoder.
    queue_us = run_us = 0
    p = pos
    try:
        if buf[p] == 0x28:
            queue_us = buf[p + 1]
            if queue_us < 0x80:
                p += 2
            elif buf[p + 2] < 0x80:
                queue_us = queue_us & 0x7F | buf[p + 2] << 7
                p += 3
        if buf[p] == 0x30:
            run_us = buf[p + 1]
            if run_us < 0x80:
                p += 2
            elif buf[p + 2] < 0x80:
                run_us = run_us & 0x7F | buf[p + 2] << 7
                p += 3
        if buf[p] == 0x1A:
            n = buf[p + 1]
            if n < 0x80:
                p += 2
            else:
                n, p = _varint(buf, p + 1)
            if p + n == end:
                return 0, "", p, end, (), queue_us, run_us
    except IndexError:
        pass
    # (A read past end only moves p past it: then p + n == end never holds.)
    return _decode_fields(buf, pos, end)


def _decode_fields(buf: Bytes, pos: int, end: int) -> Decoded:
    """decode_response for any Response, field by field."""
    code = queue_us = run_us = 0
    message = ""
    p_start = p_end = pos
    trailers: Optional[Dict[str, str]] = None
    try:
        while pos < end:
            tag = buf[pos]
            pos += 1
            if tag == 0x1A:  # payload, first: the common case
                n = buf[pos]
                pos += 1
                if n & 0x80:
                    n, pos = _varint(buf, pos - 1)
                p_start = pos
                pos += n
                p_end = pos
            elif tag == 0x28:  # queue_us (up to two bytes inline)
                queue_us = buf[pos]
                if queue_us < 0x80:
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    queue_us = queue_us & 0x7F | buf[pos + 1] << 7
                    pos += 2
                else:
                    queue_us, pos = _varint(buf, pos)
            elif tag == 0x30:  # run_us
                run_us = buf[pos]
                if run_us < 0x80:
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    run_us = run_us & 0x7F | buf[pos + 1] << 7
                    pos += 2
                else:
                    run_us, pos = _varint(buf, pos)
            elif tag == 0x08:  # code (int32: negative ones are 10 bytes)
                code, pos = _varint(buf, pos)
                code &= 0xFFFFFFFF
                if code & 0x80000000:
                    code -= 1 << 32
            elif tag == 0x12:  # message
                n, pos = _varint(buf, pos)
                message = _string(buf, pos, pos + n)
                pos += n
            elif tag == 0x22:  # a trailers entry
                n, pos = _varint(buf, pos)
                if pos + n > end:
                    raise EnvelopeError("truncated envelope")
                key, value = _map_entry(buf, pos, pos + n)
                if trailers is None:
                    trailers = {}
                trailers[key] = value
                pos += n
            else:
                if tag & 0x80:  # a field number above 15
                    tag, pos = _varint(buf, pos - 1)
                pos = _skip(buf, pos, tag)
    except IndexError:
        raise EnvelopeError("truncated envelope") from None
    if pos != end:
        raise EnvelopeError("truncated envelope")
    return (
        code,
        message,
        p_start,
        p_end,
        tuple(sorted(trailers.items())) if trailers else (),
        queue_us,
        run_us,
    )


# ---- what a connection's server supports ---------------------------------------------
#: CallState.size of a call that always goes through prepare(): past any
#: limit, OLD_SERVER's included.
_ALWAYS_PREPARE = sys.maxsize + 1


def _bin_value(value: str) -> bytes:
    """A "-bin" trailer's bytes: its base64 decoded (padded or not), or,
    when it is not base64, the bytes of its text."""
    try:
        return b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return value.encode()


# ---- endpoints ---------------------------------------------------------------------
class _NoLock:
    """The lock of an EndpointSet used from one thread (an event loop)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Endpoint:
    """One server address and its health, as the core sees it.  Drivers
    subclass it to hang their connections on it."""

    __slots__ = ("addr", "failures", "retry_at", "last_error", "removed", "draining")

    def __init__(self, addr: "Address") -> None:
        self.addr = addr
        self.failures = 0  # consecutive failed dials
        self.retry_at = 0.0  # monotonic time its backoff ends
        self.last_error = ""
        self.removed = False  # gone from the set: draining
        self.draining = False  # said nngrpc-not-run: connections not reused

    def load(self) -> int:
        """Calls in flight on this endpoint (the driver knows; for balancing
        by least in flight)."""
        return 0

    def __repr__(self) -> str:
        return "<Endpoint %s>" % self.addr.url


E = TypeVar("E", bound=Endpoint)


def _nothing(*_: object) -> None:
    return None


def weak_hook(method: Callable[..., None]) -> Callable[..., None]:
    """Returns method (a bound method) as an EndpointSet hook that does not
    keep its object alive: a channel's endpoints never hold the channel."""
    ref = weakref.WeakMethod(method)

    def hook(*args: Any) -> None:
        m = ref()
        if m is not None:
            m(*args)

    return hook


class EndpointSet(Generic[E]):
    """A channel's endpoints: which one an attempt tries, and their health.

    ``make(addr)`` makes the driver's Endpoint for an address.  Every
    change happens under ``lock`` (the driver's; replaced after a fork).
    ``endpoints`` is replaced, never changed in place, so a reader holding
    the list sees a consistent one.

    Hooks the driver sets, called without ``lock`` held and never blocking:
    ``wake()`` asks discovery to resolve the names again (an endpoint
    failed, or none answered); ``drained(ep)`` closes ep's idle connections
    (it said it is draining).  Both do nothing by default.
    """

    __slots__ = (
        "endpoints",
        "lock",
        "rr",
        "wake",
        "drained",
        "_make",
        "_backoff",
        "_backoff_max",
        "_unavailable_backoff",
    )

    def __init__(
        self,
        addrs: Sequence["Address"],
        make: Callable[["Address"], E],
        *,
        backoff: float,
        backoff_max: float,
        unavailable_backoff: float,
        lock: Optional[ContextManager[Any]] = None,
    ) -> None:
        self._make = make
        self.endpoints: List[E] = [make(a) for a in addrs]
        self.lock: ContextManager[Any] = lock if lock is not None else _NoLock()
        self.rr = 0  # where the next round-robin turn starts
        self.wake: Callable[[], None] = _nothing
        self.drained: Callable[[E], None] = _nothing
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._unavailable_backoff = unavailable_backoff

    def __iter__(self) -> Iterator[E]:
        return iter(self.endpoints)

    def __len__(self) -> int:
        return len(self.endpoints)

    def __getitem__(self, i: int) -> E:
        return self.endpoints[i]

    def candidates(self, avoid: Optional[E] = None) -> List[E]:
        """Returns the endpoints an attempt tries, in order: round-robin
        over those up, then those in backoff, soonest up first, and avoid
        (where the previous attempt failed) last."""
        eps = self.endpoints
        if len(eps) == 1:
            return eps
        with self.lock:
            eps = self.endpoints
            if not eps:
                return eps
            start = self.rr % len(eps)
            self.rr = start + 1
            return order_endpoints(eps, start, time.monotonic(), avoid)

    def dial_failed(self, ep: E, reason: str) -> str:
        """ep refused a connection: starts (or extends) its backoff.
        Returns "url (reason)" for error messages."""
        with self.lock:
            ep.failures += 1
            ep.retry_at = time.monotonic() + connect_backoff(
                ep.failures, self._backoff, self._backoff_max
            )
            ep.last_error = reason
        self.wake()
        return "%s (%s)" % (ep.addr.url, reason)

    def dial_ok(self, ep: E) -> None:
        """ep accepted a connection: its backoff ends, and so does its
        draining (it is tried again only once its time-out is over, or
        when no other endpoint could be reached)."""
        if ep.failures or ep.retry_at or ep.draining:
            with self.lock:
                ep.failures = 0
                ep.retry_at = 0.0
                ep.last_error = ""
                ep.draining = False

    def answered_unavailable(self, ep: E, reason: str) -> None:
        """ep answered UNAVAILABLE (draining, not serving): it is tried
        last for a while, when there are others."""
        self.wake()
        if len(self.endpoints) < 2:
            return
        with self.lock:
            ep.retry_at = max(ep.retry_at, time.monotonic() + self._unavailable_backoff)
            ep.last_error = reason

    def not_run(self, ep: E, reason: str) -> None:
        """ep answered that it did not run the call (``nngrpc-not-run``: it
        is draining, or starting).  It is about to close its connections,
        so none is reused: the idle ones close now (the ``drained`` hook),
        the others as their calls return.  It is tried last for
        unavailable_backoff when there are others, and the names are
        resolved again (a draining server has usually left DNS)."""
        with self.lock:
            ep.draining = True
            ep.last_error = reason
            if len(self.endpoints) > 1:
                ep.retry_at = max(ep.retry_at, time.monotonic() + self._unavailable_backoff)
        self.drained(ep)
        self.wake()

    def lost(self, ep: E) -> None:
        """A connection to ep failed under a call (closed, reset)."""
        self.wake()

    def update(self, addrs: Sequence["Address"]) -> Tuple[List[E], List[E]]:
        """Makes addrs the set (discovery: a name resolved again).

        Endpoints whose address stays keep their state and connections;
        new addresses get new endpoints; the others are marked ``removed``
        and leave the rotation at once (their calls in flight finish; the
        driver closes their connections once idle).  Returns (added,
        removed).
        """
        with self.lock:
            old: Dict["Address", E] = {}
            for ep in self.endpoints:
                old.setdefault(ep.addr, ep)
            keep: List[E] = []
            added: List[E] = []
            for addr in addrs:
                found: Optional[E] = old.pop(addr, None)
                if found is None:
                    if any(e.addr == addr for e in keep):
                        continue  # listed twice
                    found = self._make(addr)
                    added.append(found)
                keep.append(found)
            removed = [ep for ep in self.endpoints if ep.addr in old]
            for ep in removed:
                ep.removed = True
            self.endpoints = keep
            return added, removed


# ---- failures ---------------------------------------------------------------------
class AttemptFailed(Exception):
    """One attempt ended without a reply.  retryable: a connection failure
    (mapped to UNAVAILABLE) that a retry may cure; endpoint: where it
    failed (None: no endpoint could be reached)."""

    def __init__(self, error: RpcError, endpoint: Optional[Endpoint], retryable: bool) -> None:
        super().__init__(error)
        self.error = error
        self.endpoint = endpoint
        self.retryable = retryable
        #: Set by a driver to the size of the SP message it had sent on a
        #: connection whose server's limit was unknown (0: not so): the
        #: limit may be why it was lost (CallState.after_probe).
        self.sent = 0


def dial_error(addr: "Address", e: BaseException) -> str:
    """Returns why a dial failed, readably."""
    if isinstance(e, TlsHandshakeError):
        return str(e)
    if isinstance(e, PeerClosed):
        return "connection closed by the server during the handshake%s" % (
            "" if addr.tls or addr.ipc else " (a tls+tcp:// listener?)"
        )
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# ---- one call ----------------------------------------------------------------------
class CallState:
    """One unary call, from its request to its outcome; see DESIGN.

    Made with (endpoints, the multicallable, the request, timeout,
    metadata, retry policy, max_send, deadline grace, want_call,
    compression); it serializes the request.  Raises, when made: RpcError
    INTERNAL when the request does not serialize, RpcError
    DEADLINE_EXCEEDED for no time left, RESOURCE_EXHAUSTED for a request
    over max_send (NNG would drop it silently); TypeError/ValueError for
    bad metadata.

    Per connection (docs/compatibility.md): a driver sends ``head()`` and
    ``payload`` on a connection whose server's capabilities it knows
    (``conn.caps``) when ``size`` (a bound of the SP message head() makes)
    is within the server's limit; any other attempt goes through
    ``prepare(caps, max_send)``, which asks for the capabilities,
    compresses, and refuses a request over a limit.  So a driver's test is
    one comparison, ``st.size > caps.limit`` (an UNKNOWN connection's limit
    is below any size; so is any limit to a ``special`` call
    (compression, or the caller's own nngrpc-accept-encoding), whose size
    is past any limit).
    """

    # No __slots__: what most calls never change is a class default, not
    # a store per call.
    attempt = 1
    avoid: Optional[Endpoint] = None
    # The endpoints in the order the first attempt tries them, when a
    # driver drew that order already (its round-robin turn taken once).
    order: Optional[Sequence[Endpoint]] = None
    delay = 0.0
    deadline: Optional[float] = None
    wait_until: Optional[float] = None
    _last: Optional[RpcError] = None  # the previous attempt's error
    # A special call (compression, or the caller's own
    # nngrpc-accept-encoding) goes through prepare() on every attempt: its
    # size is _ALWAYS_PREPARE.
    special = False
    encoding: Optional[str] = None  # what it compresses with
    app_asked = False  # the caller's metadata has nngrpc-accept-encoding
    _compressed: Optional[bytes] = None  # the payload compressed, once
    compression = _compression.IDENTITY  # the last reply's encoding

    def __init__(
        self,
        endpoints: EndpointSet[Any],
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        retry: Optional[RetryPolicy],
        max_send: int,
        grace: float,
        want_call: bool,
        compression: Optional[str] = None,
        sent: Optional[Tuple[bytes, bytes, Optional[float]]] = None,
    ) -> None:
        # Positional arguments only: this runs once per call that the C path
        # does not take (_channel.py), and for every asyncio call.
        if sent is not None:  # the first attempt went out already
            self._adopt(endpoints, mc, sent, retry, grace, want_call)
            return
        serialize = mc._serialize
        try:
            payload = request if serialize is None else serialize(request)
        except Exception as e:
            raise RpcError.of(StatusCode.INTERNAL, "Exception serializing request: %s" % e) from e
        if type(payload) is not bytes:
            payload = _as_payload(payload, serialize is None)
        method = mc._field
        self._rid: Union[str, bytes]
        if metadata:
            md, self._rid, asked = metadata_field(metadata)
            if asked:
                self.special = self.app_asked = True
        else:  # a fresh request id (rid decodes it only if asked for)
            md = self._rid = next(_rid_entries, b"") or _fresh_rid_entry()
        n = self._request(endpoints, mc, payload, md, retry, want_call)
        if timeout is not None:
            if timeout <= 0:
                raise self.error(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self.deadline = deadline = _monotonic() + timeout
            self.wait_until = deadline + grace
        if compression is not None and _compression.check(compression) is not None:
            self.special = True  # the size is checked once compressed, in prepare()
            self.encoding = compression
            self.size = _ALWAYS_PREPARE
            return
        # Method, timeout and a generated id take little room (at most 51
        # bytes): the exact size only matters near the limit, or with the
        # caller's metadata.
        self.size = size = n + len(method) + 64
        if metadata or size > max_send:
            self._check_size(timeout, max_send)

    def _adopt(
        self,
        endpoints: EndpointSet[Any],
        mc: "MethodBase[Any, Any]",
        sent: Tuple[bytes, bytes, Optional[float]],
        retry: Optional[RetryPolicy],
        grace: float,
        want_call: bool,
    ) -> None:
        """The state of a call whose first attempt a driver's fast path
        (the sync channel's C speedups) sent already on a connection with
        known capabilities: sent is (the payload, the request-id metadata
        entry, the deadline), what that attempt's request was made of, so
        the attempts after it and the errors agree with it.  A call with
        metadata or compression never takes that path."""
        payload, entry, deadline = sent
        self._rid = entry
        n = self._request(endpoints, mc, payload, entry, retry, want_call)
        if deadline is not None:
            self.deadline = deadline
            self.wait_until = deadline + grace
        self.size = n + len(mc._field) + 64

    def _request(
        self,
        endpoints: EndpointSet[Any],
        mc: "MethodBase[Any, Any]",
        payload: Bytes,
        md: bytes,
        retry: Optional[RetryPolicy],
        want_call: bool,
    ) -> int:
        """Takes what every attempt's request is made of (md: the metadata
        entries encoded) and how the call is retried; returns the payload's
        length."""
        self.endpoints = endpoints
        self.payload = payload
        self.want_call = want_call
        self._method = mc._field
        n = len(payload)
        self._rest = md + (_PAYLOAD_TAGS[n] if n < 0x80 else b"\x22" + uvarint(n))
        self._retry = retry
        self._idempotent = mc._idempotent
        return n

    def _check_size(self, timeout: Optional[float], max_send: int) -> None:
        """Raises RESOURCE_EXHAUSTED if the first attempt's SP message is
        over max_send (NNG would drop it silently); else sets ``size`` to
        it (later attempts' deadlines only shrink)."""
        size = _REQ_ID_BYTES + len(self._method) + len(self._rest) + len(self.payload)
        if timeout is not None:
            size += 1 + varint_size(max(1, int(timeout * 1e6)))
        self.size = _ALWAYS_PREPARE if self.special else size
        if size > max_send:
            raise self.error(
                StatusCode.RESOURCE_EXHAUSTED,
                "request message of %d bytes exceeds max_message_bytes (%d); not sent"
                % (size, max_send),
            )

    @property
    def rid(self) -> str:
        """The call's request id (nngrpc-request-id)."""
        rid = self._rid
        if isinstance(rid, bytes):  # the metadata entry that carries it
            rid = self._rid = rid[-_RID_DIGITS:].decode()
        return rid

    def head(self) -> bytes:
        """Returns this attempt's envelope up to the payload's bytes (send
        it, then the payload).  Raises expired()'s error when the deadline
        passed."""
        deadline = self.deadline
        if deadline is None:
            return self._method + self._rest
        left = deadline - _monotonic()
        if left <= 0:
            raise self.expired("Deadline Exceeded")
        us = int(left * 1e6) or 1
        if 0x200000 <= us < 0x10000000:  # the common timeouts: one pack, no loop
            field = _TIMEOUT4.pack(
                0x10, us & 0x7F | 0x80, us >> 7 & 0x7F | 0x80, us >> 14 & 0x7F | 0x80, us >> 21
            )
            return self._method + field + self._rest
        return self._method + b"\x10" + uvarint(us) + self._rest

    def envelope(self) -> bytes:
        """Returns this attempt's whole envelope (head and payload joined:
        for drivers that do not stream it)."""
        return self.head() + bytes(self.payload)

    def _timeout_field(self) -> bytes:
        if self.deadline is None:
            return b""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.expired("Deadline Exceeded")
        return b"\x10" + uvarint(max(1, int(left * 1e6)))

    def prepare(self, caps: Caps, max_send: int) -> Tuple[bytes, Bytes]:
        """Returns this attempt's (envelope head, payload) on a connection
        whose server said caps (UNKNOWN: nothing yet).

        Asks for the server's capabilities (nngrpc-accept-encoding) when
        they are unknown or the call accepts a compressed reply, unless
        asking would push the request over a limit; compresses the payload
        when the call compresses and the server decodes that encoding;
        refuses a request over the server's limit, or over the channel's
        max_message_bytes (max_send) once compressed: RpcError
        RESOURCE_EXHAUSTED, never sent.  Raises expired()'s error when the
        deadline passed.
        """
        rest = self._rest
        payload: Bytes = self.payload
        n = len(payload)
        md = rest[: len(rest) - 1 - varint_size(n)]  # without the payload's tag
        encoding = self.encoding
        ask = b""
        if (caps is UNKNOWN or encoding is not None) and not self.app_asked:
            ask = _entry_cached(_ACCEPT_ENTRIES, ACCEPT_KEY, _compression.accept_list(encoding))
        if (
            encoding is not None
            and encoding in caps.encodings
            and n >= _compression.MIN_BYTES
        ):
            if self._compressed is None:
                self._compressed = _compression.compress(encoding, payload)
            if len(self._compressed) < n:
                payload = self._compressed
                md += _entry_cached(_ENCODING_ENTRIES, ENCODING_KEY, encoding)
        front = self._method + self._timeout_field()
        tail = b"\x22" + uvarint(len(payload))
        size = _REQ_ID_BYTES + len(front) + len(md) + len(ask) + len(tail) + len(payload)
        limit = max_send
        if 0 <= caps.limit < limit:
            limit = caps.limit
        if size > limit and ask:  # asking never makes a request too large
            size -= len(ask)
            ask = b""
        if payload is not self.payload and n > caps.limit:
            # The server stops decompressing at its limit too.
            raise self.error(
                StatusCode.RESOURCE_EXHAUSTED,
                "request payload of %d bytes (before compression) is over the server's"
                " limit of %d bytes (nngrpc-max-message-bytes); not sent" % (n, caps.limit),
            )
        if size > limit:
            if limit == caps.limit:
                raise self.error(
                    StatusCode.RESOURCE_EXHAUSTED,
                    "request message of %d bytes is over the server's limit of %d bytes"
                    " (nngrpc-max-message-bytes); not sent" % (size, limit),
                )
            raise self.error(
                StatusCode.RESOURCE_EXHAUSTED,
                "request message of %d bytes exceeds max_message_bytes (%d); not sent"
                % (size, limit),
            )
        return front + md + ask + tail, payload

    # ---- learning a connection's limit after it was lost -------------------------------
    def probe_head(self, deadline: Optional[float]) -> bytes:
        """The envelope of the Health/Check (service "", empty payload)
        that asks a connection's server for its capabilities, with this
        call's request id, due by deadline."""
        head = method_field(HEALTH_CHECK)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            head += b"\x10" + uvarint(max(1, int(left * 1e6)))
        return head + _md_entry(REQUEST_ID_KEY, self.rid) + _entry_cached(
            _ACCEPT_ENTRIES, ACCEPT_KEY, _compression.IDENTITY
        )

    @staticmethod
    def probe_answered(conn: Any, buf: Bytes, start: int, end: int) -> None:
        """The probe's reply, the envelope in buf[start:end]: what it says
        of the server goes to conn.caps (a reply that does not decode, or
        says nothing but OK, as in consume())."""
        try:
            code, _, _, _, trailers, _, _ = decode_response(buf, start, end)
        except EnvelopeError:
            return
        found = dict(trailers)
        caps = caps_of(found.get(LIMIT_KEY), found.get(ACCEPT_KEY))
        if caps is not None:
            conn.caps = caps
        elif code == _OK:
            conn.caps = OLD_SERVER

    def after_probe(self, caps: Caps, sent: int, max_send: int) -> bool:
        """Decides after a connection was lost once this call's request
        (sent bytes) went out on it, with its server's limit unknown; caps
        is what a probe learned on the next connection (None: nothing).

        Raises RESOURCE_EXHAUSTED when the request was over that limit and
        still is.  Returns True when it was over but fits now (compressed):
        it never reached the server, so send it again at once, whatever the
        method; False when the limit does not explain the loss (the
        ordinary retry rules decide).
        """
        if caps.limit < 0 or sent <= caps.limit:
            return False
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        self.prepare(caps, max_send)  # raises when still over the limit
        return True

    # ---- cancellation -------------------------------------------------------------
    def cancel_request(self) -> bytes:
        """The whole envelope of the request that cancels this call on the
        connection its attempt went out on (send it there, and nowhere
        else: a server honours a cancel only from the call's own
        connection).  Its reply goes to cancel_answered()."""
        return (
            method_field(CANCEL_METHOD)
            + b"\x10"
            + uvarint(_CANCEL_TIMEOUT_US)
            + _md_entry(CANCEL_KEY, self.rid)
        )

    @staticmethod
    def cancel_answered(conn: Any, buf: Bytes, start: int, end: int) -> None:
        """The reply to a cancel request, the envelope in buf[start:end]:
        UNIMPLEMENTED is a server that predates cancellation, and the
        driver sends no more cancels on conn (``conn.cancels = False``);
        any other answer changes nothing (a cancel is best effort)."""
        try:
            code = decode_response(buf, start, end)[0]
        except EnvelopeError:
            return
        if code == _UNIMPLEMENTED:
            conn.cancels = False

    def resend(self) -> None:
        """Counts a new attempt that goes at once (see after_probe)."""
        self.attempt += 1
        self.delay = 0.0

    def error(self, code: StatusCode, details: str) -> RpcError:
        """Returns an error made on the client side for this call."""
        return RpcError(Call(code, details, request_id=self.rid, attempts=self.attempt))

    def expired(self, details: str) -> RpcError:
        """The deadline passed before this attempt's request went out:
        returns DEADLINE_EXCEEDED (details), or, when this attempt is a
        retry whose backoff ended late (a busy machine), the error of the
        attempt before: a retry never extends the deadline."""
        last = self._last
        if last is None:
            return self.error(StatusCode.DEADLINE_EXCEEDED, details)
        last.call.attempts = self.attempt - 1
        return last

    # ---- outcomes ----------------------------------------------------------------
    def answered(
        self,
        ep: Endpoint,
        buf: memoryview,
        start: int,
        end: int,
        deserialize: ViewDeserializer,
        conn: Any = None,
        caps: Caps = OLD_SERVER,
    ) -> Optional[Tuple[Any, Optional[Call]]]:
        """The server answered with the envelope in buf[start:end] (a view
        of the receive buffer: the payload reaches deserialize uncopied),
        on connection conn (it has ``caps`` and ``reader.max_recv``; None: no connection, as for a test double),
        whose capabilities were caps when the request went out (UNKNOWN:
        the request asked for them).

        Returns (response, Call or None unless want_call) for OK; None when
        the call is to be tried again after ``delay`` seconds.  Raises the
        call's RpcError otherwise: the server's status, or INTERNAL for an
        envelope or payload that does not decode.
        """
        try:
            code, message, p_start, p_end, trailers, queue_us, run_us = decode_response(
                buf, start, end
            )
        except EnvelopeError:
            raise self.error(
                StatusCode.INTERNAL, "undecodable response envelope from %s" % ep.addr.url
            ) from None
        if trailers or caps is UNKNOWN:  # else nothing to learn or decompress
            trailers, encoding = self._consume(code, trailers, conn)
            if encoding is not None and code == _OK:
                buf = self._inflate(
                    ep, conn, encoding, buf[p_start:p_end], trailers, queue_us, run_us
                )
                p_start, p_end = 0, len(buf)
        if code == _OK:
            try:
                response = deserialize(buf[p_start:p_end])
            except Exception as e:
                raise RpcError(
                    Call(
                        StatusCode.INTERNAL,
                        "Exception deserializing response: %s" % e,
                        trailers,
                        queue_us,
                        run_us,
                        self.rid,
                        self.attempt,
                        peer=ep.addr.url,
                    )
                ) from e
            if not self.want_call:
                return response, None
            return response, Call(
                StatusCode.OK,
                message,
                trailers,
                queue_us,
                run_us,
                self.rid,
                self.attempt,
                self.compression,
                ep.addr.url,
            )
        status = StatusCode.from_int(code)
        err = RpcError(
            Call(status, message, trailers, queue_us, run_us, self.rid, self.attempt, peer=ep.addr.url)
        )
        not_run = any(k == NOT_RUN_KEY for k, _ in trailers)
        if not_run:
            self.endpoints.not_run(ep, message)
        elif status is StatusCode.UNAVAILABLE:
            self.endpoints.answered_unavailable(ep, message)
        self.avoid = ep
        # A reply saying the handler never ran may go elsewhere even when
        # the method is not idempotent (the server was starting or draining).
        self._again(err, self._retry if self._idempotent or not_run else None, True)
        return None

    def _consume(
        self, code: int, trailers: TrailingMetadata, conn: Any
    ) -> Tuple[TrailingMetadata, Optional[str]]:
        """Takes the reply's trailers that the client consumes (the
        capability trailers, unless the application asked for them itself,
        and nngrpc-encoding), learns from them what conn's server supports,
        and gives "-bin" values as bytes.  Returns (the trailers the
        application sees, the payload's encoding or None)."""
        shown: List[Tuple[str, Any]] = []
        found: Dict[str, Any] = {}
        keep_caps = self.app_asked
        for key, value in trailers:
            if key.startswith("nngrpc-"):
                if key == ENCODING_KEY:
                    found[key] = value
                    continue
                if key == LIMIT_KEY or key == ACCEPT_KEY:
                    found[key] = value
                    if not keep_caps:
                        continue
            elif key.endswith("-bin") and isinstance(value, str):
                value = _bin_value(value)
            shown.append((key, value))
        if conn is not None and conn.caps is UNKNOWN:
            caps = caps_of(found.get(LIMIT_KEY), found.get(ACCEPT_KEY))
            if caps is not None:
                conn.caps = caps
            elif code == _OK:  # OK always comes from the runtime: an old server
                conn.caps = OLD_SERVER
        encoding = found.get(ENCODING_KEY)
        if encoding == _compression.IDENTITY:
            encoding = None
        self.compression = encoding or _compression.IDENTITY
        return tuple(shown), encoding

    def _inflate(
        self,
        ep: Endpoint,
        conn: Any,
        encoding: str,
        view: memoryview,
        trailers: TrailingMetadata,
        queue_us: int,
        run_us: int,
    ) -> memoryview:
        """The reply payload decompressed, within the connection's
        max_receive_message_bytes; RpcError when it does not decompress
        (INTERNAL) or would grow past that (RESOURCE_EXHAUSTED)."""
        limit = conn.reader.max_recv if conn is not None else _DEFAULT_MAX_RECV
        try:
            return memoryview(_compression.decompress(encoding, view, limit))
        except _compression.TooLarge:
            code = StatusCode.RESOURCE_EXHAUSTED
            details = "reply payload from %s decompresses (%s) to more than %d bytes" % (
                ep.addr.url, encoding, limit)
            details += " (max_receive_message_bytes)"
        except _compression.DecompressError as e:
            code = StatusCode.INTERNAL
            details = "cannot decompress the reply payload from %s: %s" % (ep.addr.url, e)
        raise RpcError(
            Call(code, details, trailers, queue_us, run_us, self.rid, self.attempt, peer=ep.addr.url)
        )

    def failed(self, f: AttemptFailed) -> float:
        """An attempt ended without a reply (f, from attempt_error or a
        driver's failed dial).  Returns the sleep before the next attempt;
        raises the call's RpcError when there is none."""
        self.avoid = f.endpoint
        return self._again(f.error, self._retry if self._idempotent else None, f.retryable)

    def _again(self, err: RpcError, policy: Optional[RetryPolicy], retryable: bool) -> float:
        delay = retry_delay(policy, err.code(), retryable, self.attempt, self.deadline)
        if delay is None:
            err.call.attempts = self.attempt
            raise err
        self.attempt += 1
        self.delay = delay
        self._last = err
        return delay

    def attempt_error(self, e: BaseException, ep: Endpoint, closed: bool) -> Exception:
        """Maps what a failed attempt raised to what to raise: an RpcError
        no retry changes (deadline, reply too large, protocol error,
        channel closed), or AttemptFailed (connection lost: the retry
        policy decides)."""
        if isinstance(e, TimeoutError):  # before OSError: it is one
            return self.error(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        url = ep.addr.url
        if isinstance(e, MessageTooLarge):
            return self.error(
                StatusCode.RESOURCE_EXHAUSTED, "%s (max_receive_message_bytes) from %s" % (e, url)
            )
        if isinstance(e, ProtocolError):
            return self.error(StatusCode.INTERNAL, "SP protocol error from %s: %s" % (url, e))
        if closed:
            return self.error(StatusCode.CANCELLED, "channel closed")
        self.endpoints.lost(ep)
        return AttemptFailed(
            self.error(
                StatusCode.UNAVAILABLE, "connection to %s lost during the call: %s" % (url, e)
            ),
            ep,
            True,
        )

    def unreachable(self, errors: Sequence[str]) -> AttemptFailed:
        """No endpoint took a connection; errors: "url (reason)" each."""
        self.endpoints.wake()
        if errors:
            text = "failed to connect to %s" % "; ".join(errors)
        else:
            text = "no endpoint to connect to"
        return AttemptFailed(self.error(StatusCode.UNAVAILABLE, text), None, True)

    def unresolved(self, why: str) -> AttemptFailed:
        """There is no endpoint: the names do not resolve (why says which,
        and the resolver's error, from Discovery.unresolved())."""
        return AttemptFailed(self.error(StatusCode.UNAVAILABLE, why), None, True)


def _as_payload(data: Any, raw: bool) -> Bytes:
    """Returns a serialized request that is not bytes as the payload:
    bytearray and memoryview as they are; for the bytes API (raw), whatever
    bytes() takes; else RpcError(INTERNAL)."""
    if isinstance(data, (bytearray, memoryview)):
        return data
    if raw:
        try:
            return bytes(data)
        except Exception as e:
            raise RpcError.of(StatusCode.INTERNAL, "Exception serializing request: %s" % e) from e
    raise RpcError.of(
        StatusCode.INTERNAL, "request serializer returned %s, not bytes" % type(data).__name__
    )


# ---- multicallables -----------------------------------------------------------------
def view_deserializer(fn: Optional[Callable[[bytes], Any]]) -> ViewDeserializer:
    """Returns fn as the core calls a deserializer (with a memoryview that
    is only valid during the call).

    A protobuf message class's FromString copies what it parses, so it gets
    the view itself (no copy of the payload); None (bytes out) copies the
    view into bytes; any other function gets bytes, since it might keep
    what it is given.
    """
    if fn is None:
        return bytes
    owner = getattr(fn, "__self__", None)
    if (
        isinstance(owner, type)
        and issubclass(owner, Message)
        and getattr(fn, "__name__", "") == "FromString"
    ):
        return fn
    parse = fn

    def from_bytes(view: memoryview) -> Any:
        return parse(view.tobytes())

    return from_bytes


class MethodBase(Generic[RequestT, ResponseT]):
    """What the sync and asyncio multicallables share: one method of a
    channel, its serializers, the encoded method name."""

    __slots__ = ("_channel", "_method", "_serialize", "_deserialize", "_idempotent", "_field")

    def __init__(
        self,
        channel: Any,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], ResponseT]] = None,
        idempotent: bool = False,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serialize = request_serializer
        self._deserialize = view_deserializer(response_deserializer)
        self._idempotent = idempotent
        self._field = method_field(method)

    @property
    def method(self) -> str:
        """The full method name, "/package.Service/Method"."""
        return self._method

    @property
    def idempotent(self) -> bool:
        """True if failed calls may be retried (NO_SIDE_EFFECTS or
        IDEMPOTENT method)."""
        return self._idempotent

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self._method)


def random_bits(n: int) -> int:
    """Returns n random bits from the client's id generator (a seeded PRNG,
    no system call; reseeded in forked children)."""
    return _ID_RNG.getrandbits(n)


def after_fork() -> None:
    """In a forked child: draw other request ids than the parent."""
    global _rid_entries
    _ID_RNG.seed()
    _rid_entries = iter(())  # the parent's batch: the parent uses it too
