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
connections; every wait is a blocking system call (recv, or poll), which
releases the GIL and is interrupted by signals (Ctrl+C raises
KeyboardInterrupt in the main thread, PEP 475).  There are no background
threads, and the fast path is one send and one recv (_pipe.py), after a
poll(0) (is the pooled connection still open?) only for a connection idle
for FRESH_S (2 ms) or more.

The C path (_speedups.c, optional): a call without metadata or
compression whose round-robin turn finds an idle pooled connection (plain
tcp or ipc, its server's capabilities known) makes its first attempt in
one C function: the request head encoded, head and payload sent in one
sendmsg, the wait in one blocking recv with the GIL released (bounded by
SO_RCVTIMEO, armed as _pipe.py arms it), the reply received into the
connection's buffer and, when it is the usual OK reply, decoded; the
response is deserialized straight from that buffer.  No CallState is made
for such a call.  Anything else that attempt meets (another reply, a
split or stale one, an error, the deadline, a signal handler's exception)
goes on in the pure-Python path below with a CallState made from what
was sent (CallState._adopt), so retries, statuses and errors are decided
in one place, the core.  A call that does not qualify takes the
pure-Python path from the start; so does every call without the module
(a pure wheel) or with NNGRPC_NO_SPEEDUPS=1.  The pure-Python path is
the reference: clients/python/tests/test_speedups.py checks that both
send the same bytes and end every outcome the same way.

A connection whose call did not end with a reply (deadline, Ctrl+C, error)
is closed, never reused: its late reply would be read by the next call.  At
most ``max_idle_per_endpoint`` idle connections are kept per endpoint, and
none longer than ``idle_timeout`` (30 s): the client closes an idle pooled
connection before the server's own idle timeout would (hoteld's
``--idle-timeout``, 120 s), so a server-side close never races a call on a
connection the client was about to reuse.

Request ids: every request carries metadata ``nngrpc-request-id``, the
caller's if its metadata has one, else 16 random hex digits; the server
logs it with the call, and ``Call.request_id`` / ``RpcError.request_id``
give it back.

Several endpoints (_core.EndpointSet): calls go round-robin over the
endpoints that are up.  An endpoint that failed to connect is tried last
for a growing backoff; one that answered UNAVAILABLE (draining, not
serving) is tried last for ``unavailable_backoff`` seconds; one that failed
the previous attempt of a call is tried last by its retry.  One that
answered ``nngrpc-not-run`` (draining) also loses its pooled connections:
the idle ones close at once, the busy ones as their calls return.

Discovery (_discovery.py): a target whose host is a DNS name is one
endpoint per address it resolves to, resolved again every
``resolve_interval`` seconds and when something fails.  The resolver runs
on a daemon thread of the channel's own (_ResolverThread, started by the
first call), never on a caller's thread: getaddrinfo cannot be
interrupted, and a call must not wait past its deadline.  Calls that find
no endpoint yet wait for the first resolution, within their deadline.  The
thread holds only a weak reference to the channel and ends with it (or
with close()).

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
into the EndpointSet (which takes it itself).  The resolver thread has a
lock of its own, never held across the resolver call nor together with
``_lock``.  In a forked child the resolver starts again (a new thread, a
new lock, no resolution under way) at the next call, with the parent's
last addresses meanwhile.
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

from nngrpc import _compression, _core
from nngrpc._caps import UNKNOWN
from nngrpc._core import (
    _REQ_ID_BYTES,
    CLOSED_MSG,
    AttemptFailed,
    CallState,
    Endpoint,
    EndpointSet,
    MethodBase,
    ViewDeserializer,
    dial_error,
    weak_hook,
)
from nngrpc._discovery import (
    DEFAULT_RESOLVE_INTERVAL,
    Discovery,
    Resolver,
    resolve_all,
    system_resolver,
)
from nngrpc._errors import Call, Metadata, RpcError
from nngrpc._pipe import Region, ReqPipe
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from nngrpc._sp import PeerClosed, ProtocolError
from nngrpc._status_table import StatusCode
from nngrpc._tls import context_for
from nngrpc._transport import Address, dial, parse_url

if TYPE_CHECKING:
    from nngrpc._tls import TlsConfig

#: The server's default receive limit (NNG_OPT_RECVMAXSZ): 4 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Seconds an idle pooled connection is kept: below hoteld's --idle-timeout
#: (120 s), so that the client closes it first.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Default limit on a reply: 4 MiB of payload plus room for the envelope.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024
#: A pooled connection given back less than this long ago (seconds) is
#: reused without the poll(0) that asks whether its server closed it, so a
#: caller that calls back to back makes two system calls per call, not
#: three.  A server closes an idle connection after its --idle-timeout (far
#: longer, and the channel's idle_timeout closes it first), one that
#: answered nngrpc-not-run (never reused: its endpoint is draining), or all
#: of them when it exits; only the exit can fall within 2 ms of a reply,
#: and it is a race that the poll(0) narrows but cannot close: a close a
#: moment after the poll fails the call all the same, as a lost connection
#: (retried when idempotent).
FRESH_S = 0.002
_monotonic = time.monotonic  # one global lookup on the per-call path, not two

# The C speedups (_speedups.c): the first attempt of a call without
# metadata or compression, on an idle plain (tcp or ipc) connection with
# known capabilities.  Optional: without them (a pure wheel, or
# NNGRPC_NO_SPEEDUPS=1) every call takes the pure-Python path, which is
# also the reference the C path must agree with.
try:
    if os.environ.get("NNGRPC_NO_SPEEDUPS"):
        raise ImportError("NNGRPC_NO_SPEEDUPS is set")
    from nngrpc import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]
#: What _speedups.call() returns first (enum outcome in _speedups.c).
_FAST_OK, _FAST_REPLY, _FAST_PARTIAL, _FAST_EXPIRED = 0, 1, 2, 3
_FAST_TIMEOUT, _FAST_CLOSED, _FAST_OSERROR, _FAST_NOT_FAST = 4, 5, 6, 7


def _raiser(e: BaseException) -> "Callable[[], Region]":
    """A finish() for _attempts that raises e."""

    def finish() -> "Region":
        raise e

    return finish


def speedups_enabled() -> bool:
    """True when the sync channel's calls take the C path (nngrpc._speedups
    loaded, NNGRPC_NO_SPEEDUPS unset)."""
    return _speedups is not None

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
    over the reachable ones.  A host that is a DNS name stands for every
    address it resolves to (one endpoint each), resolved again while the
    channel lives.  Nothing resolves or connects until the first call.  Use
    it as a context manager, or call close().

    Options (keyword-only):

    - ``max_message_bytes``: largest request (SP message: 4-byte request id
      plus envelope) the client sends; larger ones fail with
      RESOURCE_EXHAUSTED before anything is sent, since NNG would drop them
      silently.  Match the server's ``--max-message-bytes``.
    - ``max_receive_message_bytes``: largest reply accepted; a larger one
      fails with RESOURCE_EXHAUSTED (and its connection is closed).
    - ``max_idle_per_endpoint``: idle connections kept per endpoint.
    - ``idle_timeout``: seconds an idle pooled connection is kept (default
      30); keep it below the server's own idle timeout (hoteld's
      ``--idle-timeout``, 120), so that the client, not the server, closes
      an idle connection and no call ever meets a close.  None: no limit.
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
      system's CAs, no client certificate).  An address found by resolving
      a name is verified against that name.
    - ``resolve_interval``: seconds between two resolutions of the DNS
      names among the targets (default 1); a failure (a refused or lost
      connection, UNAVAILABLE, a draining server, no endpoint reachable)
      brings the next one forward, at most one per 0.5 s.
    - ``resolver``: the function that resolves names, ``resolver(host,
      port) -> [IP address, ...]``, raising OSError when it cannot (default:
      getaddrinfo).  It runs on the channel's resolver thread.
    - ``compression``: "gzip" or "zstd" (with the zstandard module)
      compresses requests of 1 KiB or more for servers that decode that
      encoding, and accepts replies compressed so; None or "identity"
      (the default) none.  A call's ``compression=`` overrides it.  It is
      negotiated per connection (docs/compatibility.md): a server that
      predates it gets plain requests, and the first call on a connection
      always goes uncompressed.

    The channel learns, per connection, the server's own limit on a
    request (hoteld's ``--max-message-bytes``) and refuses a larger request
    itself with RESOURCE_EXHAUSTED, as for ``max_message_bytes``; it never
    retries a call that a size limit would refuse again.

    The channel speaks NNG's SP protocol itself on Python sockets; libnng is
    never loaded, so NNG's REQ resend (NNG_OPT_REQ_RESENDTIME) does not
    apply: each attempt is sent exactly once, and only idempotent calls
    (the generated stubs know which methods are; ``call()`` takes
    ``idempotent=``) are attempted again.
    """

    #: Calls may take the C path (_fast_unary); set per channel in __init__
    #: (a subclass that replaces _unary, as FakeChannel, keeps this False).
    _fast = False

    def __init__(
        self,
        target: Union[str, Sequence[str]],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        max_idle_per_endpoint: int = 64,
        idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = 5.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        unavailable_backoff: float = 1.0,
        deadline_grace: float = 0.02,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        tls: "Optional[TlsConfig]" = None,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        resolver: Optional[Resolver] = None,
        compression: Optional[str] = None,
    ) -> None:
        urls = [target] if isinstance(target, str) else list(target)
        if not urls:
            raise ValueError("Channel needs at least one endpoint URL")
        addrs = [parse_url(u) for u in urls]
        self._targets = urls
        discovery = Discovery(addrs, resolve_interval)
        self._lock = threading.Lock()
        self._endpoints: EndpointSet[_Endpoint] = EndpointSet(
            discovery.addresses(),
            _Endpoint,
            backoff=backoff,
            backoff_max=backoff_max,
            unavailable_backoff=unavailable_backoff,
            lock=self._lock,
        )
        self._endpoints.drained = weak_hook(self._drained)
        self._resolver: Optional[_ResolverThread] = None
        if discovery.has_names:
            self._resolver = _ResolverThread(self, discovery, resolver or system_resolver)
            self._endpoints.wake = self._resolver.ask
        self._tls_context, self._tls_hostname = context_for(addrs, tls)
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._max_idle = max_idle_per_endpoint
        self._idle_timeout = idle_timeout if idle_timeout is not None else float("inf")
        self._connect_timeout = connect_timeout
        self._grace = deadline_grace
        self._retry = retry
        self._compression = _compression.check(compression)
        # Calls may take the C path (_fast_unary): the speedups are there,
        # and nothing the channel adds to every call (compression) is on.
        self._fast = _speedups is not None and self._compression is None
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
        compression: Optional[str] = None,
    ) -> bytes:
        """Calls method with a serialized request; returns the serialized
        response.  Raises RpcError for any status but OK."""
        return self.invoke(
            method, request, timeout, metadata, idempotent=idempotent, compression=compression
        )[0]

    def invoke(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        idempotent: bool = False,
        compression: Optional[str] = None,
    ) -> Tuple[bytes, Call]:
        """As call(), but returns (response bytes, Call)."""
        mc: UnaryUnaryMultiCallable[bytes, bytes] = UnaryUnaryMultiCallable(
            self, method, None, None, idempotent
        )
        return mc.with_call(request, timeout, metadata, compression=compression)

    def close(self) -> None:
        """Closes every connection; in-flight calls end with CANCELLED.

        Idle connections close now; a connection in use by a call is shut
        down (which wakes its caller) and closed as that call returns.
        The thread that resolves DNS names has ended when close() returns,
        unless a resolution is under way: that one ends on its own.
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
        if self._resolver is not None:
            self._resolver.stop(wait=_ResolverThread.STOP_WAIT)
        _CHANNELS.discard(self)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<nngrpc.Channel %s>" % ", ".join(self._targets)

    # ---- one call ------------------------------------------------------------------
    def _unary(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        want_call: bool,
        compression: Optional[str] = None,
    ) -> Tuple[Any, Optional[Call]]:
        """Runs one call of mc; returns (response, Call if want_call)."""
        if self._fast and not metadata and compression is None:
            return self._fast_unary(mc, request, timeout, want_call)
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
            compression or self._compression,
        )
        return self._attempts(st, mc._deserialize, None)

    def _attempts(
        self,
        st: CallState,
        deserialize: ViewDeserializer,
        started: Optional[Tuple[_Endpoint, ReqPipe, Callable[[], Region]]],
    ) -> Tuple[Any, Optional[Call]]:
        """Runs st's attempts until one ends the call; started: the first
        one is under way already (sent on that connection to that endpoint
        by _fast_unary; calling finish() returns its reply's envelope, or
        raises as ReqPipe.call())."""
        while True:  # one attempt per turn
            if started is not None:
                ep, pipe, finish = started
                started = None
                try:
                    buf, start, end = finish()
                except BaseException as e:
                    failure = self._attempt_failed(st, ep, pipe, e, 0)
                    if failure is not None:
                        time.sleep(st.failed(failure))  # raises when there is no next attempt
                    continue
            else:
                try:
                    ep, pipe = self._checkout(st)
                except AttemptFailed as f:  # no endpoint took a connection
                    time.sleep(st.failed(f))  # raises when there is no next attempt
                    continue
                # pipe.caps changes only in answered(), once the reply is in.
                try:
                    if st.size > pipe.caps.limit:  # see CallState
                        head, payload = st.prepare(pipe.caps, self._max_send)
                        buf, start, end = pipe.call(head, payload, st.wait_until)
                    else:
                        buf, start, end = pipe.call(st.head(), st.payload, st.wait_until)
                except BaseException as e:
                    sent = 0  # the request, if it went out with the limit unknown
                    if pipe.caps is UNKNOWN and not isinstance(e, RpcError):
                        sent = _REQ_ID_BYTES + len(head) + len(payload)
                    failure = self._attempt_failed(st, ep, pipe, e, sent)
                    if failure is not None:
                        time.sleep(st.failed(failure))  # raises when there is no next attempt
                    continue
            try:
                result = st.answered(ep, buf, start, end, deserialize, pipe, pipe.caps)
            finally:  # the reply is consumed: the connection goes back
                self._give_back(ep, pipe)
            if result is not None:
                return result
            time.sleep(st.delay)

    def _fast_unary(
        self, mc: "MethodBase[Any, Any]", request: Any, timeout: Optional[float], want_call: bool
    ) -> Tuple[Any, Optional[Call]]:
        """A call without metadata or compression, its first attempt in C
        (_speedups.call) when an idle pooled connection to the endpoint whose
        turn it is takes it: the usual OK reply costs no CallState.  Any
        other outcome goes on in _attempts() with a CallState made from what
        was sent; a call this path does not take goes there from the start
        (_general).  The checks are inline, not a function of their own: a
        Python call costs more than the rest of them."""
        eps = order = self._endpoints.endpoints
        if len(eps) > 1:  # this call's turn of the round-robin, kept if it goes on below
            eps = order = self._endpoints.candidates()
        serialize = mc._serialize
        payload: Any  # bytes when the C path takes the call
        try:
            payload = request if serialize is None else serialize(request)
        except Exception:
            payload = None  # CallState raises INTERNAL for it
        pipe = None
        if eps and type(payload) is bytes and (timeout is None or timeout > 0):
            ep = eps[0]
            try:
                pipe = ep.idle.pop()
            except IndexError:
                pass
            else:
                n = len(payload) + len(mc._field) + 64  # as CallState.size
                now = _monotonic()
                if (
                    n > pipe.caps.limit
                    or n > self._max_send
                    or pipe.tls
                    or self._closed
                    or pipe.reader.start != pipe.reader.end
                    or (now - pipe.idle_since >= FRESH_S and not self._reusable(pipe))
                ):
                    ep.idle.append(pipe)  # for the general path, which checks it again
                    if self._closed:  # meanwhile: as _give_back
                        self._reclaim(ep, pipe)
                    pipe = None
        if pipe is None:
            return self._general(mc, request, timeout, want_call, order)
        entry = next(_core._rid_entries, None) or _core._fresh_rid_entry()
        deadline = wait_until = None
        if timeout is not None:
            deadline = now + timeout
            wait_until = deadline + self._grace
        rid = pipe._rid = 0x80000000 | ((pipe._rid + 1) & 0x7FFFFFFF)
        reader = pipe.reader
        finish: Callable[[], Region]
        try:
            out = _speedups.call(
                pipe._fd, pipe.ipc, rid, mc._field, entry, payload, deadline, wait_until,
                reader.buf, reader.max_recv, pipe._armed,
            )
        except BaseException as e:  # a signal handler's (Ctrl+C)
            finish = _raiser(e)
        else:
            pipe._armed = out[-1]  # the receive timeout the C call left set
            if out[0] == _FAST_OK:
                try:
                    response = mc._deserialize(reader.view[out[3] : out[4]])
                except Exception:
                    pass  # answered() says so, with the call's status
                else:
                    self._give_back(ep, pipe)
                    if not want_call:
                        return response, None
                    rid_text = entry[-_core._RID_DIGITS :].decode()
                    return response, Call(
                        StatusCode.OK, "", (), out[5], out[6], rid_text, peer=ep.addr.url
                    )
            outcome = self._fast_outcome(pipe, rid, wait_until, out)
            if outcome is None:  # nothing was sent: as if this path was never taken
                self._give_back(ep, pipe)
                return self._general(mc, request, timeout, want_call, order)
            finish = outcome
        st = CallState(
            self._endpoints, mc, None, None, None, self._retry, self._max_send, self._grace,
            want_call, None, (payload, entry, deadline),
        )
        return self._attempts(st, mc._deserialize, (ep, pipe, finish))

    def _general(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        want_call: bool,
        order: Sequence[_Endpoint],
    ) -> Tuple[Any, Optional[Call]]:
        """A call _fast_unary does not take, on the pure-Python path, its
        first attempt in the round-robin order drawn for it."""
        st = CallState(
            self._endpoints, mc, request, timeout, None, self._retry, self._max_send,
            self._grace, want_call, self._compression,
        )
        st.order = order
        return self._attempts(st, mc._deserialize, None)

    @staticmethod
    def _fast_outcome(
        pipe: ReqPipe, rid: int, wait_until: Optional[float], out: Tuple[Any, ...]
    ) -> Optional[Callable[[], Region]]:
        """What _speedups.call's outcome out (not the usual OK reply, or one
        that did not deserialize) means for the attempt on pipe: a function
        that returns its reply's envelope or raises as ReqPipe.call() does;
        None when nothing was sent."""
        kind = out[0]
        reader = pipe.reader
        if kind == _FAST_OK or kind == _FAST_REPLY:
            reader.start = reader.end = out[2]  # consumed: nothing after it
            return lambda: (reader.view, out[1], out[2])
        if kind == _FAST_PARTIAL:  # the pipe's parser goes on with it
            reader.start, reader.end = 0, out[1]
            return lambda: pipe.receive_rest(rid, wait_until)
        if kind == _FAST_TIMEOUT:
            return _raiser(TimeoutError("deadline passed"))
        if kind == _FAST_CLOSED:
            return _raiser(PeerClosed("connection closed by the server"))
        if kind == _FAST_OSERROR:
            return _raiser(OSError(out[1], os.strerror(out[1])))
        # _FAST_NOT_FAST, or _FAST_EXPIRED: a timeout so short that it ran
        # out between here and the C head; the general path expires it too.
        return None

    def _reusable(self, pipe: ReqPipe) -> bool:
        """A pooled connection idle for FRESH_S or more is still open (its
        server neither closed it nor sent anything) and not past
        idle_timeout."""
        return _monotonic() - pipe.idle_since < self._idle_timeout and pipe.is_idle_and_open()

    def _attempt_failed(
        self, st: CallState, ep: _Endpoint, pipe: ReqPipe, e: BaseException, sent: int
    ) -> Optional[AttemptFailed]:
        """An attempt raised e before its reply.  Raises what ends the call
        (refused or out of time before anything was sent: the connection
        goes back; a deadline, a protocol error, anything but a lost
        connection: it is closed).  For a lost connection returns the
        AttemptFailed for st.failed(), or None when the request goes again
        at once: it had gone out (sent bytes) with the server's limit
        unknown, and the limit a probe learned explains the loss (see
        _learn_limit; raises RESOURCE_EXHAUSTED when it still applies)."""
        if isinstance(e, RpcError):
            self._give_back(ep, pipe)
            raise e
        self._discard(ep, pipe)
        if not isinstance(e, (OSError, ProtocolError)):  # TimeoutError is one
            raise e
        failure = st.attempt_error(e, ep, self._closed)
        if not isinstance(failure, AttemptFailed):
            raise failure from None
        if sent and self._learn_limit(st, ep, sent):
            st.resend()
            return None
        return failure

    def _give_back(self, ep: _Endpoint, pipe: ReqPipe) -> None:
        """Puts a connection that carries no call back in the pool (as the
        end of _unary's attempt does)."""
        idle = ep.idle
        if len(idle) < self._max_idle and not (ep.removed or ep.draining):
            now = pipe.idle_since = _monotonic()
            idle.append(pipe)
            if self._closed or ep.removed or ep.draining:  # meanwhile
                self._reclaim(ep, pipe)
            elif now - idle[0].idle_since >= self._idle_timeout:
                self._close_stale(ep, now)
        else:
            self._discard(ep, pipe)

    def _learn_limit(self, st: CallState, failed: _Endpoint, sent: int) -> bool:
        """A connection was lost after st's request (sent bytes) went out on
        it, before its server said its limit: did the limit refuse it?  Asks
        on the connection the next attempt would use (a Health/Check with
        nngrpc-accept-encoding, within the call's deadline and
        connect_timeout), which goes back to the pool for that attempt.
        Raises RESOURCE_EXHAUSTED when the request is over the limit; returns
        True to send it again at once (see CallState.after_probe)."""
        st.avoid = failed
        try:
            ep, pipe = self._checkout(st)
        except (AttemptFailed, RpcError):
            return False
        ok = False
        try:
            if pipe.caps is UNKNOWN:
                deadline = time.monotonic() + self._connect_timeout
                if st.deadline is not None and st.deadline < deadline:
                    deadline = st.deadline
                buf, start, end = pipe.call(st.probe_head(deadline), b"", deadline)
                st.probe_answered(pipe, buf, start, end)
            ok = True
        except (OSError, ProtocolError):
            pass
        finally:
            if ok:
                self._give_back(ep, pipe)
            else:
                self._discard(ep, pipe)
        return st.after_probe(pipe.caps, sent, self._max_send)

    # ---- the pool ------------------------------------------------------------
    def _checkout(self, st: CallState) -> Tuple[_Endpoint, ReqPipe]:
        """Returns an endpoint and an open connection to it, which the
        caller owns until it puts it back in the pool or _discard()s it."""
        candidates = self._endpoints.endpoints
        resolver = self._resolver
        if resolver is not None and (not candidates or not resolver.started):
            candidates = self._resolved_endpoints(resolver, st)
        if len(candidates) == 1 and not self._closed:  # the fast path
            ep = candidates[0]
            try:
                pipe = ep.idle.pop()
            except IndexError:  # none idle (or another call took it): dial
                pass
            else:
                idle_for = _monotonic() - pipe.idle_since
                if idle_for >= self._idle_timeout:
                    self._discard(ep, pipe)  # ours to close, not the server's
                elif idle_for < FRESH_S and pipe.reader.start == pipe.reader.end:
                    return ep, pipe  # just given back: no poll(0), see FRESH_S
                elif pipe.is_idle_and_open():
                    return ep, pipe
                else:
                    self._discard(ep, pipe)
                    self._endpoints.lost(ep)  # closed while idle: the server went?
        else:  # the order _fast_unary drew for this call, or a new turn
            candidates = st.order or self._endpoints.candidates(st.avoid)  # type: ignore[arg-type,assignment]
            st.order = None
        errors: List[str] = []
        for ep in candidates:
            while True:  # the fast path: an idle pooled connection, no lock
                if self._closed:
                    raise ValueError(CLOSED_MSG)
                try:
                    pipe = ep.idle.pop()
                except IndexError:
                    break
                idle_for = _monotonic() - pipe.idle_since
                if idle_for >= self._idle_timeout:
                    self._discard(ep, pipe)  # ours to close, not the server's
                    continue
                if idle_for < FRESH_S and pipe.reader.start == pipe.reader.end:
                    return ep, pipe  # just given back: no poll(0), see FRESH_S
                if pipe.is_idle_and_open():
                    return ep, pipe
                self._discard(ep, pipe)
                self._endpoints.lost(ep)  # closed while idle: the server went?
            pipe_or_error = self._dial(st, ep)
            if isinstance(pipe_or_error, str):
                errors.append(self._endpoints.dial_failed(ep, pipe_or_error))
                continue
            self._endpoints.dial_ok(ep)
            self._take_new(ep, pipe_or_error)
            return ep, pipe_or_error
        raise st.unreachable(errors)

    def _resolved_endpoints(self, resolver: "_ResolverThread", st: CallState) -> List[_Endpoint]:
        """Starts the resolver (first call); when there is no endpoint yet,
        waits for a resolution (within the deadline).  Returns the
        endpoints; raises AttemptFailed (UNAVAILABLE naming the hosts that
        do not resolve) or DEADLINE_EXCEEDED when there is still none."""
        resolver.start()
        if self._endpoints.endpoints:
            return self._endpoints.endpoints
        if self._closed:
            raise ValueError(CLOSED_MSG)
        if not resolver.wait(st.deadline):
            raise st.expired("Deadline Exceeded while resolving %s" % resolver.hosts)
        if self._endpoints.endpoints:
            return self._endpoints.endpoints
        raise st.unresolved(resolver.unresolved())

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

    def _close_stale(self, ep: _Endpoint, now: float) -> None:
        """Closes ep's connections idle for idle_timeout or longer, the
        oldest first (the bottom of the LIFO pool).  A call may pop the
        same list meanwhile, lock-free: whoever pops a connection owns it."""
        with self._lock:
            while True:
                try:
                    if now - ep.idle[0].idle_since < self._idle_timeout:
                        return
                    pipe = ep.idle.pop(0)
                except IndexError:
                    return
                if now - pipe.idle_since < self._idle_timeout:  # not the one looked at
                    ep.idle.append(pipe)
                    return
                ep.pipes.discard(pipe)
                pipe.close()

    def _drained(self, ep: _Endpoint) -> None:
        """EndpointSet's drained hook: ep said it is draining (not-run)."""
        with self._lock:
            self._close_idle(ep)

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
        """Makes urls the channel's endpoints (see _set_addresses)."""
        self._set_addresses([parse_url(u) for u in urls])

    def _set_addresses(self, addrs: Sequence[Address]) -> None:
        """Makes addrs the channel's endpoints (discovery): new ones join
        the rotation, removed ones take no new call and their connections
        close once idle (see EndpointSet.update)."""
        _, removed = self._endpoints.update(addrs)
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
        if self._resolver is not None:
            self._resolver.after_fork()
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


class _ResolverThread:
    """A sync channel's resolutions (_discovery.Discovery), on a daemon
    thread of their own, so that no caller ever waits on DNS past its
    deadline nor holds a lock while the resolver runs.

    The thread sleeps on ``_cv`` until the next resolution is due (or
    ask() brings it forward), runs the resolver with no lock held, and
    hands changed addresses to the channel.  It holds the channel only by
    a weak reference: it ends when the channel is closed or collected.
    close() waits for it to end unless a resolution is under way (a DNS
    call cannot be interrupted: it finishes on its own, and its answer is
    dropped); a channel that is collected stops it from the weak
    reference's callback, at once rather than at its next wake-up.
    ``_cv`` guards the Discovery and the fields below; it is never held
    with the channel's lock.  It is reentrant because that callback may run
    wherever the channel is collected, this thread included, with ``_cv``
    held.
    """

    #: How long close() waits for an idle resolver thread to end.
    STOP_WAIT = 5.0

    def __init__(self, channel: "Channel", discovery: Discovery, resolver: Resolver) -> None:
        me = weakref.ref(self)  # the callback must not keep self alive

        def channel_gone(_: object) -> None:
            resolver = me()
            if resolver is not None:
                resolver.stop()

        self._channel = weakref.ref(channel, channel_gone)
        self._disc = discovery
        self._resolver = resolver
        self._cv = threading.Condition(threading.RLock())
        self._thread: Optional[threading.Thread] = None
        self.started = False  # the thread was started (in this process)
        self._stopped = False
        self._busy = False  # resolving, or handing the answer over
        self._published = 0  # resolutions handed over
        self._jobs: List[Tuple[str, int]] = []  # the resolution under way
        self.hosts = discovery.hosts

    def start(self) -> None:
        """Starts the thread, if not yet (the channel's first call)."""
        with self._cv:
            if self.started or self._stopped:
                return
            self.started = True
            self._thread = threading.Thread(
                target=self._run, name="nngrpc-resolver %s" % self.hosts, daemon=True
            )
            self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Ends the thread (channel closed or gone).  Waits up to wait
        seconds for it to end when it is idle; a resolution under way
        finishes on its own, and its answer is dropped."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
            # Not busy now: stopped, it starts no resolution, and ends.
            thread = None if self._busy else self._thread
        if wait > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    def ask(self) -> None:
        """Brings the next resolution forward (rate-limited by Discovery)."""
        with self._cv:
            self._disc.ask()
            self._cv.notify_all()

    def wait(self, deadline: Optional[float]) -> bool:
        """Asks for a resolution and waits for it to be handed over, if one
        runs or may start now.  Returns False if the deadline passed first."""
        with self._cv:
            self._disc.ask()
            self._cv.notify_all()
            seen = self._published
            while (
                self._published == seen
                and not self._stopped
                and (self._busy or self._disc.due(time.monotonic()))
            ):
                if deadline is None:
                    self._cv.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def unresolved(self) -> str:
        with self._cv:
            return self._disc.unresolved()

    def after_fork(self) -> None:
        """In a forked child: no thread runs here, and the parent's may have
        held the lock; the next call starts a new one."""
        self._cv = threading.Condition(threading.RLock())
        self._thread = None
        self.started = False
        self._busy = False
        self._disc.after_fork()

    def _run(self) -> None:
        while self._wait_until_due():
            try:
                self._resolve_once()
            finally:
                with self._cv:
                    self._busy = False
                    self._published += 1
                    self._cv.notify_all()

    def _wait_until_due(self) -> bool:
        """Sleeps until a resolution is due, then marks it started; False
        when the thread is to end (channel closed or gone: stop())."""
        with self._cv:
            while True:
                if self._stopped:
                    return False
                now = time.monotonic()
                if self._disc.due(now):
                    self._jobs = self._disc.start(now)
                    self._busy = True
                    return True
                self._cv.wait(max(self._disc.next_at() - now, 0.001))

    def _resolve_once(self) -> None:
        """Runs the resolver (no lock held) and hands the addresses over."""
        answers = resolve_all(self._resolver, self._jobs)
        with self._cv:
            addrs = self._disc.finish(answers)
        if addrs is None or self._stopped:
            return
        channel = self._channel()
        if channel is not None:
            channel._set_addresses(addrs)


class UnaryUnaryMultiCallable(MethodBase[RequestT, ResponseT]):
    """One method of a channel: call it with a request to get the response.

    As grpc.UnaryUnaryMultiCallable: ``timeout`` is in seconds (None: no
    deadline), ``metadata`` a mapping or (key, value) pairs (bytes values
    for "-bin" keys), ``compression`` "gzip", "zstd" or "identity" for
    this call (None: the channel's).  Raises RpcError for any status but
    OK.
    """

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> ResponseT:
        channel = self._channel
        if channel._fast and not metadata and compression is None:  # _unary's, a frame sooner
            return channel._fast_unary(self, request, timeout, False)[0]  # type: ignore[no-any-return]
        return channel._unary(self, request, timeout, metadata, False, compression)[0]  # type: ignore[no-any-return]

    def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> Tuple[ResponseT, Call]:
        """Returns (response, call): call has the status, the trailing
        metadata, the server's timings (queue_us, run_us) and the request
        id."""
        return self._channel._unary(self, request, timeout, metadata, True, compression)  # type: ignore[no-any-return]


# ---- fork handling ---------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _core.after_fork()  # else parent and child would draw the same request ids
    for ch in list(_CHANNELS):
        ch._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
