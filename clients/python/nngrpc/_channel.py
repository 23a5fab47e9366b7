"""Channel: calls over a pool of SP REQ connections, one call per connection.

DESIGN
------
A call checks out an idle connection to one of the channel's endpoints (or
dials a new one), sends its request, blocks in ``recv`` on that connection
until the reply or the deadline, and puts the connection back.  N threads
sharing a channel have N calls in flight on N connections; every wait is a
blocking socket call, which releases the GIL and is interrupted by signals
(Ctrl+C raises KeyboardInterrupt in the main thread, PEP 475).  There are no
background threads.

A connection whose call did not end with a reply (deadline, Ctrl+C, error)
is closed, never reused: its late reply would be read by the next call.  At
most ``max_idle_per_endpoint`` idle connections are kept per endpoint.

Several endpoints: calls go round-robin over the endpoints that are up; an
endpoint that failed to connect is skipped for a backoff period (tried only
when no other endpoint works).

Fork: the child of a process holding a channel must not use the parent's
connections, nor ``shutdown()`` them (that would cut the parent's).  After
``os.fork()`` the child's channels drop every inherited connection by
closing only its descriptor, and start with an empty pool.

Locking: ``_lock`` guards the pools, ``_busy``, ``_rr``, ``_closed`` and the
endpoints' backoff state.  It is never held across a blocking network wait.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import weakref
from typing import (
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

from nngrpc._errors import Call, Metadata, RpcError
from nngrpc._sp import MessageTooLarge, ProtocolError, ReqPipe
from nngrpc._status_table import StatusCode
from nngrpc._transport import Address, dial, parse_url
from nngrpc.v1 import rpc_pb2

#: The server's default receive limit (NNG_OPT_RECVMAXSZ): 4 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Default limit on a reply: 4 MiB of payload plus room for the envelope.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

_REQ_ID_BYTES = 4  # the SP request id in front of every request envelope

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def _identity(data: Any) -> Any:
    return data


def _bytes_of(data: Any) -> bytes:
    return bytes(data)


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

    ``target`` is a URL (``tcp://host:port``, ``ipc:///path``) or a list of
    them; calls are spread round-robin over the reachable ones.  Nothing
    connects until the first call.  Use it as a context manager, or call
    close().

    Options (keyword-only):

    - ``max_message_bytes``: largest request (SP message: 4-byte request id
      plus envelope) the client sends; larger ones fail with
      RESOURCE_EXHAUSTED before anything is sent, since NNG would drop them
      silently.  Match the server's ``--max-message-bytes``.
    - ``max_receive_message_bytes``: largest reply accepted; a larger one
      fails with RESOURCE_EXHAUSTED (and its connection is closed).
    - ``max_idle_per_endpoint``: idle connections kept per endpoint.
    - ``connect_timeout``: limit on dialing plus SP handshake (seconds),
      within the call's own deadline.
    - ``backoff`` / ``backoff_max``: an endpoint that failed to connect is
      skipped for ``backoff`` seconds, growing 1.6x per failure up to
      ``backoff_max`` (with +-20% jitter).
    - ``deadline_grace``: how long past the deadline the client keeps
      waiting (seconds), so the server's own DEADLINE_EXCEEDED (with its
      timings) usually arrives first.

    The channel speaks NNG's SP protocol itself on Python sockets; libnng is
    never loaded, so NNG's REQ resend (NNG_OPT_REQ_RESENDTIME) does not
    apply: a request is sent exactly once.  Retrying is left to the caller
    (the generated stubs' NNGRPC_METHODS table says which methods are
    idempotent).
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
        deadline_grace: float = 0.02,
    ) -> None:
        urls = [target] if isinstance(target, str) else list(target)
        if not urls:
            raise ValueError("Channel needs at least one endpoint URL")
        self._endpoints = [_Endpoint(parse_url(u)) for u in urls]
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._max_idle = max_idle_per_endpoint
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._grace = deadline_grace
        self._lock = threading.Lock()
        self._busy: Set[ReqPipe] = set()  # checked out; guarded by _lock
        self._rr = 0  # next endpoint, round-robin; guarded by _lock
        self._closed = False  # guarded by _lock
        self._pid = os.getpid()
        _CHANNELS.add(self)

    # ---- public API ----------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], ResponseT]] = None,
    ) -> "UnaryUnaryMultiCallable[RequestT, ResponseT]":
        """Returns a callable for one method ("/package.Service/Method").

        Without serializers it takes and returns bytes.
        """
        return UnaryUnaryMultiCallable(
            self,
            method,
            request_serializer if request_serializer is not None else _bytes_of,
            response_deserializer if response_deserializer is not None else _identity,
        )

    def call(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> bytes:
        """Calls method with a serialized request; returns the serialized
        response.  Raises RpcError for any status but OK."""
        return self.invoke(method, request, timeout, metadata)[0]

    def invoke(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Tuple[bytes, Call]:
        """As call(), but returns (response bytes, Call)."""
        if self._pid != os.getpid():
            _reset_after_fork_once()
        deadline: Optional[float] = None
        req = rpc_pb2.Request(method=method, payload=request)
        if timeout is not None:
            if timeout <= 0:
                raise RpcError.of(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            deadline = time.monotonic() + timeout
            req.timeout_us = max(1, int(timeout * 1e6))
        if metadata:
            _fill_metadata(req, metadata)
        size = req.ByteSize() + _REQ_ID_BYTES
        if size > self._max_send:
            raise RpcError.of(
                StatusCode.RESOURCE_EXHAUSTED,
                "request message of %d bytes exceeds max_message_bytes (%d);"
                " not sent" % (size, self._max_send),
            )
        ep, pipe = self._checkout(deadline)
        ok = False
        try:
            wait_until: Optional[float] = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                req.timeout_us = max(1, int(left * 1e6))
                wait_until = deadline + self._grace
            envelope = pipe.request(req.SerializeToString(), wait_until)
            ok = True
        except TimeoutError:
            raise RpcError.of(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except MessageTooLarge as e:
            raise RpcError.of(
                StatusCode.RESOURCE_EXHAUSTED,
                "%s (max_receive_message_bytes) from %s" % (e, ep.addr.url),
            ) from None
        except ProtocolError as e:
            raise RpcError.of(
                StatusCode.INTERNAL, "SP protocol error from %s: %s" % (ep.addr.url, e)
            ) from None
        except OSError as e:
            if self._closed:
                raise RpcError.of(StatusCode.CANCELLED, "channel closed") from None
            raise RpcError.of(
                StatusCode.UNAVAILABLE,
                "connection to %s lost during the call: %s" % (ep.addr.url, e),
            ) from None
        finally:
            if ok:
                self._checkin(ep, pipe)
            else:
                self._discard(pipe)
        try:
            resp = rpc_pb2.Response.FromString(envelope)
        except DecodeError:
            raise RpcError.of(
                StatusCode.INTERNAL,
                "undecodable response envelope from %s" % ep.addr.url,
            ) from None
        code = StatusCode.from_int(resp.code)
        trailers = tuple(sorted(resp.trailers.items())) if resp.trailers else ()
        call = Call(code, resp.message, trailers, resp.queue_us, resp.run_us)
        if code is not StatusCode.OK:
            raise RpcError(call)
        return resp.payload, call

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
                try:
                    pipe.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        _CHANNELS.discard(self)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<nngrpc.Channel %s>" % ", ".join(e.addr.url for e in self._endpoints)

    # ---- the pool ------------------------------------------------------------
    def _candidates(self) -> List[_Endpoint]:
        """Endpoints to try, in order: the ones up, round-robin from the
        next one, then the ones in backoff, soonest first."""
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise ValueError("Cannot invoke RPC: Channel closed!")
            eps = self._endpoints
            n = len(eps)
            start = self._rr
            self._rr = (start + 1) % n
            ring = [eps[(start + i) % n] for i in range(n)]
        up = [e for e in ring if e.retry_at <= now]
        if len(up) == n:
            return up
        down = sorted((e for e in ring if e.retry_at > now), key=lambda e: e.retry_at)
        return up + down

    def _take_idle(self, ep: _Endpoint) -> Optional[ReqPipe]:
        with self._lock:
            if self._closed:
                raise ValueError("Cannot invoke RPC: Channel closed!")
            if not ep.idle:
                return None
            pipe = ep.idle.pop()
            self._busy.add(pipe)
            return pipe

    def _checkout(self, deadline: Optional[float]) -> Tuple[_Endpoint, ReqPipe]:
        errors: List[str] = []
        for ep in self._candidates():
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
                pipe = dial(ep.addr, connect_by, self._max_recv)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise RpcError.of(
                        StatusCode.DEADLINE_EXCEEDED,
                        "Deadline Exceeded while connecting to %s" % ep.addr.url,
                    ) from None
                errors.append(self._mark_down(ep, "connect timed out"))
                continue
            except (OSError, ProtocolError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                errors.append(self._mark_down(ep, reason or type(e).__name__))
                continue
            with self._lock:
                ep.failures = 0
                ep.retry_at = 0.0
                if self._closed:
                    pipe.close()
                    raise ValueError("Cannot invoke RPC: Channel closed!")
                self._busy.add(pipe)
            return ep, pipe
        raise RpcError.of(
            StatusCode.UNAVAILABLE, "failed to connect to %s" % "; ".join(errors)
        )

    def _mark_down(self, ep: _Endpoint, reason: str) -> str:
        """Starts (or extends) ep's backoff; returns the error for messages."""
        with self._lock:
            ep.failures += 1
            delay = min(self._backoff * 1.6 ** (ep.failures - 1), self._backoff_max)
            ep.retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)
            ep.last_error = reason
        return "%s (%s)" % (ep.addr.url, reason)

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

        Runs single-threaded (right after fork) or under _FORK_LOCK.  Only
        close(2) the inherited descriptors: shutdown() would cut the
        parent's connections too.  The parent's lock may have been held
        by a thread that does not exist here, so it is replaced, not taken.
        """
        self._lock = threading.Lock()
        for ep in self._endpoints:
            for pipe in ep.idle:
                pipe.close()
            ep.idle.clear()
        for pipe in self._busy:
            pipe.close()
        self._busy = set()
        self._pid = os.getpid()

    def _open_fds(self) -> List[int]:
        """For tests: the descriptors of every connection this channel holds."""
        with self._lock:
            pipes = [p for e in self._endpoints for p in e.idle] + list(self._busy)
        return [p.fileno() for p in pipes]


def _fill_metadata(req: rpc_pb2.Request, metadata: Metadata) -> None:
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

    __slots__ = ("_channel", "_method", "_serialize", "_deserialize")

    def __init__(
        self,
        channel: Channel,
        method: str,
        request_serializer: Callable[[RequestT], bytes],
        response_deserializer: Callable[[bytes], ResponseT],
    ) -> None:
        self._channel = channel
        self._method = method
        self._serialize = request_serializer
        self._deserialize = response_deserializer

    @property
    def method(self) -> str:
        """The full method name, "/package.Service/Method"."""
        return self._method

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
        metadata and the server's timings (queue_us, run_us)."""
        try:
            data = self._serialize(request)
        except Exception as e:
            raise RpcError.of(
                StatusCode.INTERNAL, "Exception serializing request: %s" % e
            ) from e
        payload, call = self._channel.invoke(self._method, data, timeout, metadata)
        try:
            response = self._deserialize(payload)
        except Exception as e:
            raise RpcError(
                Call(
                    StatusCode.INTERNAL,
                    "Exception deserializing response: %s" % e,
                    call.trailing_metadata(),
                    call.queue_us,
                    call.run_us,
                )
            ) from e
        return response, call

    def __repr__(self) -> str:
        return "<UnaryUnaryMultiCallable %s>" % self._method


# ---- fork handling ---------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()
_FORK_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()
    for ch in list(_CHANNELS):
        ch._reset_after_fork()


def _reset_after_fork_once() -> None:
    """Fallback for a fork that bypassed os.register_at_fork hooks."""
    with _FORK_LOCK:
        pid = os.getpid()
        for ch in list(_CHANNELS):
            if ch._pid != pid:
                ch._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
