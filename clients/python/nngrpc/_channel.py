"""Channel: calls over a pool of SP REQ connections, one call per connection.

DESIGN
------
This is a driver of the client core (_core.py): the core builds the
request, decides retries and endpoints and decodes the reply; this module
owns the sockets, the threads' waits and the sleeps.

A call checks out an idle connection to one of the channel's endpoints (or
dials a new one), sends its request, waits in ``poll`` on that connection
until the reply or the deadline, decodes the reply (and deserializes the
response, straight from the connection's receive buffer) and puts the
connection back.  N threads sharing a channel have N calls in flight on N
connections; every wait is a blocking poll, which releases the GIL and is
interrupted by signals (Ctrl+C raises KeyboardInterrupt in the main
thread, PEP 475).  There are no background threads, and the fast path is
one poll(0) (is the pooled connection still open?), one send, one poll and
one recv (_pipe.py).

A connection whose call did not end with a reply (deadline, Ctrl+C, error)
is closed, never reused: its late reply would be read by the next call.  At
most ``max_idle_per_endpoint`` idle connections are kept per endpoint.

Request ids: every request carries metadata ``nngrpc-request-id``, the
caller's if its metadata has one, else 16 random hex digits; the server
logs it with the call, and ``Call.request_id`` / ``RpcError.request_id``
give it back.

Several endpoints (_core.EndpointSet): calls go round-robin over the
endpoints that are up.  An endpoint that failed to connect is tried last
for a growing backoff; one that answered UNAVAILABLE (draining, not
serving) is tried last for ``unavailable_backoff`` seconds; one that failed
the previous attempt of a call is tried last by its retry.

Retries (_core.CallState, _retry.py): an idempotent call (a method marked
NO_SIDE_EFFECTS or IDEMPOTENT, or ``call(..., idempotent=True)``) that
fails with UNAVAILABLE (a server answer, or a connection refused, reset or
closed before the reply) is sent again after a jittered exponential
backoff, up to ``retry.max_attempts`` in all and never past its deadline.
Other calls are sent once: a connection failure before anything was sent
only moves the call on to the next endpoint.

TLS (``tls+tcp://``, _tls.py): the same pipes over ssl.SSLSocket.

Fork: the child of a process holding a channel must not use the parent's
connections, nor ``shutdown()`` them (that would cut the parent's).  An
``os.register_at_fork`` hook makes every channel in the child drop the
inherited connections by closing only their descriptors, so the same
Channel object works in the parent and in the child (plain os.fork,
multiprocessing's fork start method, pre-forking servers).  A process
forked by C code that skips Python's fork hooks must not use channels it
inherited (there is no per-call getpid(): it is a system call).

Locking: a call takes an idle connection with ``idle.pop()`` and gives it
back with ``idle.append()``, both atomic: the fast path takes no lock.
``_lock`` guards each endpoint's set of open connections (``pipes``:
dialled, discarded, closed), ``_closed`` and, as the EndpointSet's lock,
the endpoints' state; whoever pops a connection owns it, so close() shuts
down (never closes) a connection a call holds, and the call closes it.
The lock is never held across a blocking network wait, nor while calling
into the EndpointSet (which takes it itself).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from nngrpc import _core
from nngrpc._core import (
    CLOSED_MSG,
    AttemptFailed,
    CallState,
    Endpoint,
    EndpointSet,
    MethodBase,
    dial_error,
)
from nngrpc._errors import Call, Metadata
from nngrpc._pipe import ReqPipe
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from nngrpc._sp import ProtocolError
from nngrpc._tls import context_for
from nngrpc._transport import Address, dial, parse_url

if TYPE_CHECKING:
    from nngrpc._tls import TlsConfig

#: The server's default receive limit (NNG_OPT_RECVMAXSZ): 4 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Default limit on a reply: 4 MiB of payload plus room for the envelope.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class _Endpoint(Endpoint):
    """One server address, its connections and its pool of idle ones."""

    __slots__ = ("pipes", "idle")

    def __init__(self, addr: Address) -> None:
        super().__init__(addr)
        self.pipes: Set[ReqPipe] = set()  # every open one; changed under Channel._lock
        self.idle: List[ReqPipe] = []  # LIFO; pop() and append() without the lock

    def load(self) -> int:
        return len(self.pipes) - len(self.idle)


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
        addrs = [parse_url(u) for u in urls]
        self._lock = threading.Lock()
        self._endpoints: EndpointSet[_Endpoint] = EndpointSet(
            addrs,
            _Endpoint,
            backoff=backoff,
            backoff_max=backoff_max,
            unavailable_backoff=unavailable_backoff,
            lock=self._lock,
        )
        self._tls_context, self._tls_hostname = context_for(addrs, tls)
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._max_idle = max_idle_per_endpoint
        self._connect_timeout = connect_timeout
        self._grace = deadline_grace
        self._retry = retry
        self._closed = False  # set under _lock
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
            self, method, request_serializer, response_deserializer, idempotent
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
        response.  Raises RpcError for any status but OK."""
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
        mc: UnaryUnaryMultiCallable[bytes, bytes] = UnaryUnaryMultiCallable(
            self, method, None, None, idempotent
        )
        return mc.with_call(request, timeout, metadata)

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
                self._close_idle(ep)
                for pipe in ep.pipes:  # in use by a call, which closes it
                    pipe.shutdown()
        _CHANNELS.discard(self)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<nngrpc.Channel %s>" % ", ".join(e.addr.url for e in self._endpoints)

    # ---- one call ------------------------------------------------------------------
    def _unary(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        want_call: bool,
    ) -> Tuple[Any, Optional[Call]]:
        """Runs one call of mc; returns (response, Call if want_call)."""
        st = CallState(
            self._endpoints,
            mc,
            request,
            timeout,
            metadata,
            self._retry,
            self._max_send,
            self._grace,
            want_call,
        )
        deserialize = mc._deserialize
        while True:  # one attempt per turn
            try:
                ep, pipe = self._checkout(st)
            except AttemptFailed as f:  # no endpoint took a connection
                time.sleep(st.failed(f))  # raises when there is no next attempt
                continue
            try:
                buf, start, end = pipe.call(st.head(), st.payload, st.wait_until)
            except BaseException as e:
                self._discard(ep, pipe)
                if not isinstance(e, (OSError, ProtocolError)):  # TimeoutError is one
                    raise
                failure = st.attempt_error(e, ep, self._closed)
                if not isinstance(failure, AttemptFailed):
                    raise failure from None
                time.sleep(st.failed(failure))
                continue
            try:
                result = st.answered(ep, buf, start, end, deserialize)
            finally:  # the reply is consumed: the connection goes back
                if len(ep.idle) < self._max_idle and not ep.removed:
                    ep.idle.append(pipe)
                    if self._closed:  # closed meanwhile
                        self._reclaim(ep, pipe)
                else:
                    self._discard(ep, pipe)
            if result is not None:
                return result
            time.sleep(st.delay)

    # ---- the pool ------------------------------------------------------------
    def _checkout(self, st: CallState) -> Tuple[_Endpoint, ReqPipe]:
        """Returns an endpoint and an open connection to it, which the
        caller owns until it puts it back in the pool or _discard()s it."""
        errors: List[str] = []
        candidates = self._endpoints.endpoints
        if len(candidates) != 1:
            candidates = self._endpoints.candidates(st.avoid)  # type: ignore[arg-type]
        for ep in candidates:
            while True:  # the fast path: an idle pooled connection, no lock
                if self._closed:
                    raise ValueError(CLOSED_MSG)
                try:
                    pipe = ep.idle.pop()
                except IndexError:
                    break
                if pipe.is_idle_and_open():
                    return ep, pipe
                self._discard(ep, pipe)
            pipe_or_error = self._dial(st, ep)
            if isinstance(pipe_or_error, str):
                errors.append(self._endpoints.dial_failed(ep, pipe_or_error))
                continue
            self._endpoints.dial_ok(ep)
            self._take_new(ep, pipe_or_error)
            return ep, pipe_or_error
        raise st.unreachable(errors)

    def _take_new(self, ep: _Endpoint, pipe: ReqPipe) -> None:
        """Counts in a connection just dialled (closes it and raises
        ValueError when the channel was closed meanwhile)."""
        with self._lock:
            if self._closed:
                pipe.close()
                raise ValueError(CLOSED_MSG)
            ep.pipes.add(pipe)

    def _dial(self, st: CallState, ep: _Endpoint) -> Union[ReqPipe, str]:
        """Returns new: a connection to ep, or why there is none.  Raises
        DEADLINE_EXCEEDED when the call's deadline passes meanwhile."""
        connect_by = time.monotonic() + self._connect_timeout
        if st.deadline is not None and st.deadline < connect_by:
            connect_by = st.deadline
        try:
            return dial(ep.addr, connect_by, self._max_recv, self._tls_context, self._tls_hostname)
        except TimeoutError:
            if st.deadline is not None and time.monotonic() >= st.deadline:
                raise st.expired("Deadline Exceeded while connecting to %s" % ep.addr.url) from None
            return "connect timed out"
        except (OSError, ProtocolError) as e:
            return dial_error(ep.addr, e)

    def _reclaim(self, ep: _Endpoint, pipe: ReqPipe) -> None:
        """A connection went back to the pool of a channel closed meanwhile:
        closes it, unless a call took it already (then that call owns it)."""
        with self._lock:
            try:
                ep.idle.remove(pipe)
            except ValueError:
                return
            ep.pipes.discard(pipe)
            pipe.close()

    def _discard(self, ep: _Endpoint, pipe: ReqPipe) -> None:
        # Closed under the lock, so close() never shuts down a reused fd.
        with self._lock:
            ep.pipes.discard(pipe)
            pipe.close()

    def _close_idle(self, ep: _Endpoint) -> None:
        """Closes ep's idle connections (under _lock)."""
        while True:
            try:
                pipe = ep.idle.pop()
            except IndexError:
                return
            ep.pipes.discard(pipe)
            pipe.close()

    def _update_endpoints(self, urls: Sequence[str]) -> None:
        """Makes urls the channel's endpoints (for discovery): new ones join
        the rotation, removed ones take no new call and their connections
        close once idle (see EndpointSet.update)."""
        _, removed = self._endpoints.update([parse_url(u) for u in urls])
        with self._lock:
            for ep in removed:
                self._close_idle(ep)

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections.

        Runs single-threaded, right after fork.  Only close(2) the
        inherited descriptors: shutdown() would cut the parent's
        connections too.  The parent's lock may have been held by a thread
        that does not exist here, so it is replaced, not taken.
        """
        self._lock = threading.Lock()
        self._endpoints.lock = self._lock
        for ep in self._endpoints:
            for pipe in ep.pipes:
                pipe.close()
            ep.pipes = set()
            ep.idle = []

    # ---- for tests ---------------------------------------------------------------
    def _open_fds(self) -> List[int]:
        """The descriptors of every connection this channel holds."""
        with self._lock:
            return [p.fileno() for e in self._endpoints for p in e.pipes]

    @property
    def _busy(self) -> Set[ReqPipe]:
        """The connections calls hold."""
        return {p for e in self._endpoints for p in e.pipes if p not in e.idle}


class UnaryUnaryMultiCallable(MethodBase[RequestT, ResponseT]):
    """One method of a channel: call it with a request to get the response.

    As grpc.UnaryUnaryMultiCallable: ``timeout`` is in seconds (None: no
    deadline), ``metadata`` a mapping or (key, value) pairs.  Raises
    RpcError for any status but OK.
    """

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> ResponseT:
        return self._channel._unary(self, request, timeout, metadata, False)[0]  # type: ignore[no-any-return]

    def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Tuple[ResponseT, Call]:
        """Returns (response, call): call has the status, the trailing
        metadata, the server's timings (queue_us, run_us) and the request
        id."""
        return self._channel._unary(self, request, timeout, metadata, True)  # type: ignore[no-any-return]


# ---- fork handling ---------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _core.after_fork()  # else parent and child would draw the same request ids
    for ch in list(_CHANNELS):
        ch._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
