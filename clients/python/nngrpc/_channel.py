"""Channel: calls over a pool of SP REQ connections, one call per connection.

DESIGN
------
A call checks out an idle connection to one of the channel's endpoints (or
dials a new one), sends its request, waits in ``poll`` on that connection
until the reply or the deadline, and puts the connection back.  N threads
sharing a channel have N calls in flight on N connections; every wait is a
blocking poll, which releases the GIL and is interrupted by signals (Ctrl+C
raises KeyboardInterrupt in the main thread, PEP 475).  There are no
background threads, and the fast path is one poll(0) (is the pooled
connection still open?), one send, one poll and one recv.

A connection whose call did not end with a reply (deadline, Ctrl+C, error)
is closed, never reused: its late reply would be read by the next call.  At
most ``max_idle_per_endpoint`` idle connections are kept per endpoint.

Request ids: every request carries metadata ``nngrpc-request-id``, the
caller's if its metadata has one, else 16 random hex digits; the server
logs it with the call, and ``Call.request_id`` / ``RpcError.request_id``
give it back.

Several endpoints: calls go round-robin over the endpoints that are up.
An endpoint that failed to connect is tried last for a growing backoff; one
that answered UNAVAILABLE (draining, not serving) is tried last for
``unavailable_backoff`` seconds; one that failed the previous attempt of a
call is tried last by its retry (see _retry.py).

Retries (_retry.py): an idempotent call (a method marked NO_SIDE_EFFECTS or
IDEMPOTENT, or ``call(..., idempotent=True)``) that fails with UNAVAILABLE
(a server answer, or a connection refused, reset or closed before the
reply) is sent again after a jittered exponential backoff, up to
``retry.max_attempts`` in all and never past its deadline.  Other calls are
sent once: a connection failure before anything was sent only moves the
call on to the next endpoint.

TLS (``tls+tcp://``, _tls.py): the same pipes over ssl.SSLSocket.

Fork: the child of a process holding a channel must not use the parent's
connections, nor ``shutdown()`` them (that would cut the parent's).  An
``os.register_at_fork`` hook makes every channel in the child drop the
inherited connections by closing only their descriptors, so the same
Channel object works in the parent and in the child (plain os.fork,
multiprocessing's fork start method, pre-forking servers).  A process
forked by C code that skips Python's fork hooks must not use channels it
inherited (there is no per-call getpid(): it is a system call).

Locking: ``_lock`` guards the pools, ``_busy``, ``_rr``, ``_closed`` and the
endpoints' backoff state.  It is never held across a blocking network wait.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generic,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from google.protobuf.message import DecodeError

from nngrpc._errors import REQUEST_ID_KEY, Call, Metadata, RpcError
from nngrpc._retry import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    connect_backoff,
    order_endpoints,
)
from nngrpc._sp import MessageTooLarge, PeerClosed, ProtocolError, ReqPipe
from nngrpc._status_table import StatusCode
from nngrpc._tls import TlsHandshakeError
from nngrpc._transport import Address, dial, parse_url
from nngrpc.v1 import rpc_pb2

if TYPE_CHECKING:
    import ssl

    from nngrpc._tls import TlsConfig

#: The server's default receive limit (NNG_OPT_RECVMAXSZ): 4 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Default limit on a reply: 4 MiB of payload plus room for the envelope.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

_REQ_ID_BYTES = 4  # the SP request id in front of every request envelope

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

_CLOSED_MSG = "Cannot invoke RPC: Channel closed!"


def _identity(data: Any) -> Any:
    return data


def _bytes_of(data: Any) -> bytes:
    return bytes(data)


# ---- what the sync and asyncio channels share ----------------------------------
_ID_RNG = random.Random()  # reseeded in forked children (see the end)

# A generated request id travels as a metadata map entry appended to the
# serialized envelope: protobuf merges concatenated messages, map entries
# included, and setting the map field instead makes the C++ protobuf
# serializer several microseconds slower per call.  The entry is field 3
# (length-delimited), holding key (field 1) and value (field 2).
_RID_DIGITS = 16
_RID_ENTRY = b"\n\x11" + REQUEST_ID_KEY.encode() + b"\x12\x10"
_RID_PREFIX = b"\x1a" + bytes([len(_RID_ENTRY) + _RID_DIGITS]) + _RID_ENTRY


def build_request(
    method: str,
    request: bytes,
    timeout: Optional[float],
    metadata: Optional[Metadata],
    max_send: int,
) -> Tuple[Any, Optional[float], str, bytes]:
    """Returns (envelope message, monotonic deadline or None, request id,
    tail): the bytes to send are ``envelope.SerializeToString() + tail``
    (tail carries a generated request id; it is empty when the caller's
    metadata has one).

    Raises RpcError: DEADLINE_EXCEEDED for no time left, RESOURCE_EXHAUSTED
    for a request over max_send (NNG would drop it silently).
    """
    deadline: Optional[float] = None
    req = rpc_pb2.Request(method=method, payload=request)
    if timeout is not None:
        if timeout <= 0:
            raise RpcError.of(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        deadline = time.monotonic() + timeout
        req.timeout_us = max(1, int(timeout * 1e6))
    rid = ""
    if metadata:
        _fill_metadata(req, metadata)
        rid = req.metadata.get(REQUEST_ID_KEY, "")
    if rid:
        tail = b""
    else:  # a fresh id: 16 random hex digits (no system call)
        digits = b"%016x" % _ID_RNG.getrandbits(64)
        rid = digits.decode()
        tail = _RID_PREFIX + digits
    size = req.ByteSize() + len(tail) + _REQ_ID_BYTES
    if size > max_send:
        err = RpcError.of(
            StatusCode.RESOURCE_EXHAUSTED,
            "request message of %d bytes exceeds max_message_bytes (%d);"
            " not sent" % (size, max_send),
        )
        err.call.request_id = rid
        raise err
    return req, deadline, rid, tail


def decode_response(envelope: Any, url: str, rid: str, attempts: int) -> Tuple[bytes, Call]:
    """Returns (payload, call) of a response envelope, whatever its code;
    raises RpcError(INTERNAL) if it does not decode."""
    try:
        resp = rpc_pb2.Response.FromString(envelope)
    except DecodeError:
        raise RpcError(
            Call(
                StatusCode.INTERNAL,
                "undecodable response envelope from %s" % url,
                request_id=rid,
                attempts=attempts,
            )
        ) from None
    trailers = tuple(sorted(resp.trailers.items())) if resp.trailers else ()
    call = Call(
        StatusCode.from_int(resp.code),
        resp.message,
        trailers,
        resp.queue_us,
        resp.run_us,
        rid,
        attempts,
    )
    return resp.payload, call


def tls_context_for(
    addrs: Sequence[Address], tls: "Optional[TlsConfig]"
) -> "Tuple[Optional[ssl.SSLContext], Optional[str]]":
    """Returns (SSLContext, server_hostname) for a channel's endpoints:
    (None, None) when none is tls+tcp; TlsConfig() when tls is None."""
    if tls is None and not any(a.tls for a in addrs):
        return None, None
    if tls is None:
        from nngrpc._tls import TlsConfig

        tls = TlsConfig()
    return tls.make_context(), tls.server_hostname


def failed(code: StatusCode, details: str, rid: str) -> RpcError:
    """Returns an error made on the client side for request rid."""
    return RpcError(Call(code, details, request_id=rid))


class _AttemptFailed(Exception):
    """One attempt ended without a reply.  retryable: a connection failure
    (mapped to UNAVAILABLE) that a retry may cure."""

    def __init__(self, error: RpcError, endpoint: Optional[Any], retryable: bool) -> None:
        super().__init__(error)
        self.error = error
        self.endpoint = endpoint
        self.retryable = retryable


class _Endpoint:
    """One server address and its pool of idle connections."""

    __slots__ = ("addr", "idle", "failures", "retry_at", "last_error")

    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.idle: List[ReqPipe] = []  # guarded by Channel._lock; LIFO
        self.failures = 0  # consecutive failed dials
        self.retry_at = 0.0  # monotonic time the backoff ends
        self.last_error = ""


class Channel:
    """A thread-safe, fork-aware client channel to one or more servers.

    ``target`` is a URL (``tcp://host:port``, ``ipc:///path``,
    ``tls+tcp://host:port``) or a list of them; calls are spread round-robin
    over the reachable ones.  Nothing connects until the first call.  Use it
    as a context manager, or call close().

    Options (keyword-only):

    - ``max_message_bytes``: largest request (SP message: 4-byte request id
      plus envelope) the client sends; larger ones fail with
      RESOURCE_EXHAUSTED before anything is sent, since NNG would drop them
      silently.  Match the server's ``--max-message-bytes``.
    - ``max_receive_message_bytes``: largest reply accepted; a larger one
      fails with RESOURCE_EXHAUSTED (and its connection is closed).
    - ``max_idle_per_endpoint``: idle connections kept per endpoint.
    - ``connect_timeout``: limit on dialing plus TLS and SP handshakes
      (seconds), within the call's own deadline.
    - ``backoff`` / ``backoff_max``: an endpoint that failed to connect is
      tried last for ``backoff`` seconds, growing 1.6x per failure up to
      ``backoff_max`` (with +-20% jitter).
    - ``unavailable_backoff``: an endpoint that answered UNAVAILABLE (a
      draining server) is tried last for this long (seconds).
    - ``deadline_grace``: how long past the deadline the client keeps
      waiting (seconds), so the server's own DEADLINE_EXCEEDED (with its
      timings) usually arrives first.
    - ``retry``: the RetryPolicy for idempotent calls (default
      ``RetryPolicy()``: 5 attempts, 10 ms backoff doubling up to 1 s);
      None turns retries off.
    - ``tls``: a TlsConfig for ``tls+tcp://`` endpoints (default: the
      system's CAs, no client certificate).

    The channel speaks NNG's SP protocol itself on Python sockets; libnng is
    never loaded, so NNG's REQ resend (NNG_OPT_REQ_RESENDTIME) does not
    apply: each attempt is sent exactly once, and only idempotent calls
    (the generated stubs know which methods are; ``call()`` takes
    ``idempotent=``) are attempted again.
    """

    def __init__(
        self,
        target: Union[str, Sequence[str]],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        max_idle_per_endpoint: int = 64,
        connect_timeout: float = 5.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        unavailable_backoff: float = 1.0,
        deadline_grace: float = 0.02,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        tls: "Optional[TlsConfig]" = None,
    ) -> None:
        urls = [target] if isinstance(target, str) else list(target)
        if not urls:
            raise ValueError("Channel needs at least one endpoint URL")
        self._endpoints = [_Endpoint(parse_url(u)) for u in urls]
        self._single = len(self._endpoints) == 1
        self._tls_context, self._tls_hostname = tls_context_for(
            [e.addr for e in self._endpoints], tls
        )
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._max_idle = max_idle_per_endpoint
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._unavailable_backoff = unavailable_backoff
        self._grace = deadline_grace
        self._retry = retry
        self._lock = threading.Lock()
        self._busy: Set[ReqPipe] = set()  # checked out; guarded by _lock
        self._rr = 0  # next endpoint, round-robin; guarded by _lock
        self._closed = False  # guarded by _lock
        _CHANNELS.add(self)

    # ---- public API ----------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], ResponseT]] = None,
        *,
        idempotent: bool = False,
    ) -> "UnaryUnaryMultiCallable[RequestT, ResponseT]":
        """Returns a callable for one method ("/package.Service/Method").

        Without serializers it takes and returns bytes.  idempotent: the
        method may run twice (NO_SIDE_EFFECTS or IDEMPOTENT), so failed
        calls may be retried; the generated stubs set it.
        """
        return UnaryUnaryMultiCallable(
            self,
            method,
            request_serializer if request_serializer is not None else _bytes_of,
            response_deserializer if response_deserializer is not None else _identity,
            idempotent,
        )

    def call(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        idempotent: bool = False,
    ) -> bytes:
        """Calls method with a serialized request; returns the serialized
        response.  Raises RpcError for any status but OK.  idempotent=True
        lets the channel retry it (see Channel)."""
        return self.invoke(method, request, timeout, metadata, idempotent=idempotent)[0]

    def invoke(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        idempotent: bool = False,
    ) -> Tuple[bytes, Call]:
        """As call(), but returns (response bytes, Call)."""
        req, deadline, rid, tail = build_request(
            method, request, timeout, metadata, self._max_send
        )
        policy = self._retry if idempotent else None
        # A reply saying the handler never ran may go elsewhere even when
        # the method is not idempotent (the server was starting or draining).
        not_run_policy = self._retry
        attempt = 1
        avoid: Optional[_Endpoint] = None
        while True:
            try:
                ep, envelope = self._attempt(req, tail, deadline, rid, avoid)
            except RpcError as e:  # no retry changes it (deadline, closed)
                e.call.attempts = attempt
                raise
            except _AttemptFailed as f:
                err, avoid = f.error, f.endpoint
                delay = _retry_delay(policy, err.code(), f.retryable, attempt, deadline)
            else:
                payload, call = decode_response(envelope, ep.addr.url, rid, attempt)
                code = call.code()
                if code is StatusCode.OK:
                    return payload, call
                err = RpcError(call)
                if code is StatusCode.UNAVAILABLE:
                    self._mark_unavailable(ep, call.details())
                avoid = ep
                delay = _retry_delay(
                    not_run_policy if _not_run(call) else policy,
                    code, True, attempt, deadline,
                )
            if delay is None:
                err.call.attempts = attempt
                raise err
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        """Closes every connection; in-flight calls end with CANCELLED.

        Idle connections close now; a connection in use by a call is shut
        down (which wakes its caller) and closed as that call returns.
        Calls on a closed channel raise ValueError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for ep in self._endpoints:
                for pipe in ep.idle:
                    pipe.close()
                ep.idle.clear()
            for pipe in self._busy:
                pipe.shutdown()
        _CHANNELS.discard(self)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<nngrpc.Channel %s>" % ", ".join(e.addr.url for e in self._endpoints)

    # ---- one attempt -----------------------------------------------------------
    def _attempt(
        self,
        req: Any,
        tail: bytes,
        deadline: Optional[float],
        rid: str,
        avoid: Optional[_Endpoint],
    ) -> Tuple[_Endpoint, memoryview]:
        """Sends req once; returns (endpoint, reply envelope).

        Raises _AttemptFailed, or RpcError/ValueError for what no retry
        changes (deadline, closed channel).
        """
        ep, pipe = self._checkout(deadline, rid, avoid)
        ok = False
        try:
            wait_until: Optional[float] = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                req.timeout_us = max(1, int(left * 1e6))
                wait_until = deadline + self._grace
            envelope = pipe.request(req.SerializeToString(), wait_until, tail)
            ok = True
        except (TimeoutError, MessageTooLarge, ProtocolError, OSError) as e:
            raise _attempt_error(e, ep, rid, self._closed) from None
        finally:
            if ok:
                self._checkin(ep, pipe)
            else:
                self._discard(pipe)
        return ep, envelope

    # ---- the pool ------------------------------------------------------------
    def _candidates(self, avoid: Optional[_Endpoint]) -> List[_Endpoint]:
        """Endpoints to try, in order (see _retry.order_endpoints)."""
        with self._lock:
            if self._closed:
                raise ValueError(_CLOSED_MSG)
            if self._single:
                return self._endpoints
            start = self._rr
            self._rr = (start + 1) % len(self._endpoints)
            return order_endpoints(self._endpoints, start, time.monotonic(), avoid)

    def _take_idle(self, ep: _Endpoint) -> Optional[ReqPipe]:
        with self._lock:
            if self._closed:
                raise ValueError(_CLOSED_MSG)
            if not ep.idle:
                return None
            pipe = ep.idle.pop()
            self._busy.add(pipe)
            return pipe

    def _checkout(
        self, deadline: Optional[float], rid: str, avoid: Optional[_Endpoint]
    ) -> Tuple[_Endpoint, ReqPipe]:
        errors: List[str] = []
        for ep in self._candidates(avoid):
            while True:
                pipe = self._take_idle(ep)
                if pipe is None:
                    break
                if pipe.is_idle_and_open():
                    return ep, pipe
                self._discard(pipe)
            connect_by = time.monotonic() + self._connect_timeout
            if deadline is not None and deadline < connect_by:
                connect_by = deadline
            try:
                pipe = dial(
                    ep.addr, connect_by, self._max_recv, self._tls_context, self._tls_hostname
                )
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise failed(
                        StatusCode.DEADLINE_EXCEEDED,
                        "Deadline Exceeded while connecting to %s" % ep.addr.url,
                        rid,
                    ) from None
                errors.append(self._mark_down(ep, "connect timed out"))
                continue
            except (OSError, ProtocolError) as e:
                errors.append(self._mark_down(ep, _dial_error(ep.addr, e)))
                continue
            with self._lock:
                ep.failures = 0
                ep.retry_at = 0.0
                if self._closed:
                    pipe.close()
                    raise ValueError(_CLOSED_MSG)
                self._busy.add(pipe)
            return ep, pipe
        raise _AttemptFailed(
            failed(StatusCode.UNAVAILABLE, "failed to connect to %s" % "; ".join(errors), rid),
            None,
            True,
        )

    def _mark_down(self, ep: _Endpoint, reason: str) -> str:
        """Starts (or extends) ep's backoff; returns the error for messages."""
        with self._lock:
            ep.failures += 1
            ep.retry_at = time.monotonic() + connect_backoff(
                ep.failures, self._backoff, self._backoff_max
            )
            ep.last_error = reason
        return "%s (%s)" % (ep.addr.url, reason)

    def _mark_unavailable(self, ep: _Endpoint, reason: str) -> None:
        """ep answered UNAVAILABLE (draining): try it last for a while."""
        if self._single:
            return
        with self._lock:
            ep.retry_at = max(ep.retry_at, time.monotonic() + self._unavailable_backoff)
            ep.last_error = reason

    def _checkin(self, ep: _Endpoint, pipe: ReqPipe) -> None:
        with self._lock:
            self._busy.discard(pipe)
            if self._closed or len(ep.idle) >= self._max_idle:
                pipe.close()
            else:
                ep.idle.append(pipe)

    def _discard(self, pipe: ReqPipe) -> None:
        # Closed under the lock, so close() never shuts down a reused fd.
        with self._lock:
            self._busy.discard(pipe)
            pipe.close()

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections.

        Runs single-threaded, right after fork.  Only close(2) the
        inherited descriptors: shutdown() would cut the parent's
        connections too.  The parent's lock may have been held by a thread
        that does not exist here, so it is replaced, not taken.
        """
        self._lock = threading.Lock()
        for ep in self._endpoints:
            for pipe in ep.idle:
                pipe.close()
            ep.idle.clear()
        for pipe in self._busy:
            pipe.close()
        self._busy = set()

    def _open_fds(self) -> List[int]:
        """For tests: the descriptors of every connection this channel holds."""
        with self._lock:
            pipes = [p for e in self._endpoints for p in e.idle] + list(self._busy)
        return [p.fileno() for p in pipes]


def _attempt_error(e: BaseException, ep: Any, rid: str, closed: bool) -> BaseException:
    """Maps what a failed attempt raised to what the caller sees: an RpcError
    no retry changes (deadline, reply too large, protocol error, channel
    closed), or _AttemptFailed (connection lost: the retry policy decides).
    Shared by the sync and the asyncio channel."""
    if isinstance(e, TimeoutError):  # before OSError: it is one
        return failed(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", rid)
    if isinstance(e, MessageTooLarge):
        return failed(
            StatusCode.RESOURCE_EXHAUSTED,
            "%s (max_receive_message_bytes) from %s" % (e, ep.addr.url),
            rid,
        )
    if isinstance(e, ProtocolError):
        return failed(
            StatusCode.INTERNAL, "SP protocol error from %s: %s" % (ep.addr.url, e), rid
        )
    if closed:
        return failed(StatusCode.CANCELLED, "channel closed", rid)
    return _AttemptFailed(
        failed(
            StatusCode.UNAVAILABLE,
            "connection to %s lost during the call: %s" % (ep.addr.url, e),
            rid,
        ),
        ep,
        True,
    )


NOT_RUN_KEY = "nngrpc-not-run"


def _not_run(call: Call) -> bool:
    """True when the server says the handler never ran (it was starting or
    draining): such a call can go to another server whatever its method."""
    return any(k == NOT_RUN_KEY for k, _ in call.trailing_metadata())


def _retry_delay(
    policy: Optional[RetryPolicy],
    code: StatusCode,
    retryable: bool,
    attempt: int,
    deadline: Optional[float],
) -> Optional[float]:
    """Returns the sleep before the next attempt, or None: do not retry."""
    if (
        policy is None
        or not retryable
        or attempt >= policy.max_attempts
        or code not in policy.retryable_codes
    ):
        return None
    delay = policy.backoff(attempt)
    if deadline is not None and time.monotonic() + delay >= deadline:
        return None
    return delay


def _dial_error(addr: Address, e: BaseException) -> str:
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


def _fill_metadata(req: Any, metadata: Metadata) -> None:
    if isinstance(metadata, Mapping):
        req.metadata.update(metadata)
        return
    items: Iterable[Tuple[str, str]] = metadata
    for key, value in items:
        if key in req.metadata:
            raise ValueError("metadata key %r given twice" % key)
        req.metadata[key] = value


class UnaryUnaryMultiCallable(Generic[RequestT, ResponseT]):
    """One method of a channel: call it with a request to get the response.

    As grpc.UnaryUnaryMultiCallable: ``timeout`` is in seconds (None: no
    deadline), ``metadata`` a mapping or (key, value) pairs.  Raises
    RpcError for any status but OK.
    """

    __slots__ = ("_channel", "_method", "_serialize", "_deserialize", "_idempotent")

    def __init__(
        self,
        channel: Channel,
        method: str,
        request_serializer: Callable[[RequestT], bytes],
        response_deserializer: Callable[[bytes], ResponseT],
        idempotent: bool = False,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serialize = request_serializer
        self._deserialize = response_deserializer
        self._idempotent = idempotent

    @property
    def method(self) -> str:
        """The full method name, "/package.Service/Method"."""
        return self._method

    @property
    def idempotent(self) -> bool:
        """True if failed calls may be retried (NO_SIDE_EFFECTS or
        IDEMPOTENT method)."""
        return self._idempotent

    def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> ResponseT:
        return self.with_call(request, timeout, metadata)[0]

    def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Tuple[ResponseT, Call]:
        """Returns (response, call): call has the status, the trailing
        metadata, the server's timings (queue_us, run_us) and the request
        id."""
        data = serialize_request(self._serialize, request)
        payload, call = self._channel.invoke(
            self._method, data, timeout, metadata, idempotent=self._idempotent
        )
        return deserialize_response(self._deserialize, payload, call), call

    def __repr__(self) -> str:
        return "<UnaryUnaryMultiCallable %s>" % self._method


def serialize_request(serialize: Callable[[RequestT], bytes], request: RequestT) -> bytes:
    """Returns serialize(request); raises RpcError(INTERNAL) if it fails."""
    try:
        return serialize(request)
    except Exception as e:
        raise RpcError.of(StatusCode.INTERNAL, "Exception serializing request: %s" % e) from e


def deserialize_response(
    deserialize: Callable[[bytes], ResponseT], payload: bytes, call: Call
) -> ResponseT:
    """Returns deserialize(payload); raises RpcError(INTERNAL) if it fails."""
    try:
        return deserialize(payload)
    except Exception as e:
        raise RpcError(
            Call(
                StatusCode.INTERNAL,
                "Exception deserializing response: %s" % e,
                call.trailing_metadata(),
                call.queue_us,
                call.run_us,
                call.request_id,
                call.attempts,
            )
        ) from e


# ---- fork handling ---------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _ID_RNG.seed()  # else parent and child would draw the same request ids
    for ch in list(_CHANNELS):
        ch._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
