"""nngrpc.aio: the asyncio client.

    import nngrpc.aio
    from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

    async def main() -> None:
        async with nngrpc.aio.Channel("tcp://127.0.0.1:5555") as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            resp = await stub.Echo(testing_pb2.EchoRequest(payload=b"hi"), timeout=1.0)

DESIGN
------
Calls are multiplexed: each endpoint has a few connections (at most
``max_connections_per_endpoint``, default 4), and each connection carries
any number of calls at once, matched to their replies by SP request id
(_aio_pipe.py).  A call goes to the least busy connection of its endpoint;
when that one is already busy and the pool is not full, another connection
is dialled in the background for the calls to come.  So thousands of
concurrent calls from one event loop need no thread each and only a few
sockets.  At most ``max_in_flight_per_endpoint`` calls (default 256, below
hoteld's default workers + queue) are on the wire to one endpoint; more
wait in the client, in order, within their deadlines, instead of being
refused by a full server queue with RESOURCE_EXHAUSTED.

A deadline is a timer on the loop that fails the call's future with
DEADLINE_EXCEEDED (``deadline_grace`` after the deadline sent to the
server, so the server's own answer usually comes first).  Cancelling the
awaiting task abandons the call: its entry leaves the pending table and
its slot is freed at once, and its late reply is dropped by request id.
The server is told too: a cancel request (``/nngrpc.v1.Control/Cancel``
naming the call's request id, built by the client core) goes out on the
call's own connection without waiting for its answer, so the handler can
stop and its worker is free (docs/compatibility.md, "Cancellation").  A
server that predates it answers UNIMPLEMENTED, and that connection sends
no more.

Endpoints, retries, request ids, limits and TLS behave as in the sync
nngrpc.Channel, with the same options (``max_idle_per_endpoint`` aside:
connections here are shared, not idle): both channels drive the same
client core (_core.py), which builds the requests, decodes the replies and
makes every decision; this module owns the loop's connections, timers and
sleeps.

Discovery (_discovery.py) as in the sync channel: a target whose host is
a DNS name is one endpoint per address.  A task on the channel's loop
(started by the first call) runs each resolution in the loop's default
executor (the resolver blocks; the loop never does) and updates the
endpoints; calls that find no endpoint yet wait for it, within their
deadline.  An endpoint that answered ``nngrpc-not-run`` (draining) takes
no new call on its connections: they close as their calls end.

An aio.Channel belongs to the event loop of its first call.  Using it from
another running loop raises RuntimeError; once that loop is closed the
channel forgets its connections and follows the next loop.

Fork: a forked child cannot use its parent's event loop (the epoll
instance is shared with the parent).  An ``os.register_at_fork`` hook
makes every aio.Channel in the child close(2) its inherited sockets (never
shutdown: the parent keeps using them) and forget its loop, so in the
child a new loop (``asyncio.run``) works with a fresh aio.Channel, and
with the inherited object too.  The parent is unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import socket
import time
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from nngrpc import _compression, _core
from nngrpc._caps import UNKNOWN
from nngrpc._aio_pipe import AioPipe
from nngrpc._channel import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
)
from nngrpc._core import (
    CLOSED_MSG,
    AttemptFailed,
    CallState,
    Endpoint,
    EndpointSet,
    MethodBase,
    _REQ_ID_BYTES,
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
from nngrpc._intercept import (
    AsyncUnaryUnaryClientInterceptor,
    ClientCallDetails,
    Outcome,
    run_chain_async,
)
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from nngrpc._sp import ProtocolError
from nngrpc._tls import TlsHandshakeError, context_for, describe_tls_error
from nngrpc._transport import AddrInfo, Address, parse_url, resolve

if TYPE_CHECKING:
    import ssl

    from nngrpc._tls import TlsConfig

__all__ = [
    "ClientCallDetails",
    "Channel",
    "Outcome",
    "UnaryUnaryClientInterceptor",
    "UnaryUnaryMultiCallable",
    "intercept_channel",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class _Closed(ConnectionAbortedError):
    """The channel was closed under a waiting call."""


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _send_cancel(pipe: AioPipe, st: CallState) -> None:
    """Tells the server that st's caller gave up on it, on the connection
    its request went out on; the answer is read when it comes (never
    awaited: the caller is being cancelled)."""
    if not pipe.cancels or pipe.closed:
        return
    _, fut = pipe.send(st.cancel_request(), b"")

    def answered(fut: "asyncio.Future[bytes]") -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # the connection went: so did the call
        envelope = fut.result()
        st.cancel_answered(pipe, memoryview(envelope), 0, len(envelope))

    fut.add_done_callback(answered)


class _Endpoint(Endpoint):
    """One server address: its connections and its share of calls.

    Loop thread only.  in_flight counts the calls holding one of its slots.
    """

    __slots__ = ("pipes", "dialing", "waiters", "in_flight")

    def __init__(self, addr: Address) -> None:
        super().__init__(addr)
        self.pipes: List[AioPipe] = []  # connected, not lost
        self.dialing: "Optional[asyncio.Task[AioPipe]]" = None
        self.waiters: "Deque[asyncio.Future[None]]" = collections.deque()
        self.in_flight = 0  # calls holding a slot

    def load(self) -> int:
        return self.in_flight


class Channel:
    """An asyncio client channel to one or more servers.

    ``target`` and the options are those of nngrpc.Channel (but
    ``max_idle_per_endpoint``; ``compression`` included), plus:

    - ``max_connections_per_endpoint``: connections per endpoint that the
      calls are multiplexed over (default 4).
    - ``max_in_flight_per_endpoint``: calls on the wire to one endpoint at
      once (default 256); more wait in the client.
    - ``idle_timeout``: a connection that has carried no call for this
      long (seconds, default 30) is closed before it would carry the next
      one, as the sync channel closes its idle pooled connections: below
      the server's own idle timeout, so a server-side close never races a
      call.  None: no limit.

    Use ``async with``, or ``await channel.close()``.
    """

    def __init__(
        self,
        target: Union[str, Sequence[str]],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        connect_timeout: float = 5.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        unavailable_backoff: float = 1.0,
        deadline_grace: float = 0.02,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        tls: "Optional[TlsConfig]" = None,
        max_connections_per_endpoint: int = 4,
        max_in_flight_per_endpoint: int = 256,
        idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        resolver: Optional[Resolver] = None,
        compression: Optional[str] = None,
    ) -> None:
        urls = [target] if isinstance(target, str) else list(target)
        if not urls:
            raise ValueError("Channel needs at least one endpoint URL")
        if max_connections_per_endpoint < 1 or max_in_flight_per_endpoint < 1:
            raise ValueError("connection and in-flight limits must be >= 1")
        addrs = [parse_url(u) for u in urls]
        self._targets = urls
        discovery = Discovery(addrs, resolve_interval)
        self._endpoints: EndpointSet[_Endpoint] = EndpointSet(
            discovery.addresses(),
            _Endpoint,
            backoff=backoff,
            backoff_max=backoff_max,
            unavailable_backoff=unavailable_backoff,
        )
        self._endpoints.drained = weak_hook(self._drained)
        # Discovery's state, on the loop (see _resolving); None: no names.
        self._disc = discovery if discovery.has_names else None
        self._resolver = resolver or system_resolver
        self._resolve_task: "Optional[asyncio.Task[None]]" = None
        self._resolve_wake: Optional[asyncio.Event] = None
        self._resolve_busy = False  # resolving, or handing the answer over
        self._resolution: "Optional[asyncio.Future[None]]" = None  # the next hand-over
        if self._disc is not None:
            self._endpoints.wake = weak_hook(self._wake_resolver)
        self._tls_context, self._tls_hostname = context_for(addrs, tls)
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._connect_timeout = connect_timeout
        self._grace = deadline_grace
        self._retry = retry
        self._compression = _compression.check(compression)
        self._max_conns = max_connections_per_endpoint
        self._max_in_flight = max_in_flight_per_endpoint
        self._idle_timeout = idle_timeout if idle_timeout is not None else float("inf")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        _CHANNELS.add(self)

    # ---- public API ------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], ResponseT]] = None,
        *,
        idempotent: bool = False,
    ) -> "UnaryUnaryMultiCallable[RequestT, ResponseT]":
        """Returns an awaitable callable for one method (as nngrpc.Channel's)."""
        return UnaryUnaryMultiCallable(
            self, method, request_serializer, response_deserializer, idempotent
        )

    async def call(
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
        return (
            await self.invoke(
                method, request, timeout, metadata, idempotent=idempotent, compression=compression
            )
        )[0]

    async def invoke(
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
        return await mc.with_call(request, timeout, metadata, compression=compression)

    async def close(self) -> None:
        """Closes every connection; calls in flight or waiting end with
        CANCELLED.  Calls on a closed channel raise ValueError."""
        if self._closed:
            return
        self._closed = True
        _CHANNELS.discard(self)
        if self._resolve_task is not None:
            self._resolve_task.cancel()
        if self._loop is None or self._loop.is_closed():
            self._forget_connections()  # nothing can run on that loop
            return
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError("close this nngrpc.aio.Channel from its own event loop")
        lost: List["asyncio.Future[None]"] = []
        for ep in self._endpoints:
            if ep.dialing is not None:
                ep.dialing.cancel()
            for pipe in ep.pipes:
                pipe.abort(_Closed("channel closed"))
                lost.append(pipe.lost)
            ep.pipes = []
            waiters, ep.waiters = ep.waiters, collections.deque()
            for w in waiters:
                if not w.done():
                    w.set_exception(_Closed("channel closed"))
        if lost:
            await asyncio.wait(lost, timeout=1.0)

    async def __aenter__(self) -> "Channel":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "<nngrpc.aio.Channel %s>" % ", ".join(self._targets)

    # ---- one call -----------------------------------------------------------------
    async def _unary(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        want_call: bool,
        compression: Optional[str] = None,
    ) -> Tuple[Any, Optional[Call]]:
        """Runs one call of mc; returns (response, Call if want_call)."""
        loop = self._bind()
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
        deserialize = mc._deserialize
        while True:
            try:
                result = await self._attempt(loop, st, deserialize)
                if result is not None:
                    return result
            except AttemptFailed as f:
                if f.sent and await self._learn_limit(loop, st, f):
                    st.resend()
                    continue
                st.failed(f)  # raises when there is no next attempt
            await asyncio.sleep(st.delay)

    async def _attempt(
        self,
        loop: asyncio.AbstractEventLoop,
        st: CallState,
        deserialize: _core.ViewDeserializer,
    ) -> Optional[Tuple[Any, Optional[Call]]]:
        """Sends the request once and hands the reply to st.answered().

        Raises AttemptFailed, or RpcError/ValueError for what no retry
        changes.  Holds one of the endpoint's in-flight slots meanwhile.
        """
        ep, pipe = await self._checkout(loop, st)
        sp_id = -1
        timer: Optional[asyncio.TimerHandle] = None
        sent = 0
        try:
            if pipe.paused:  # the server reads slower than we write
                if st.deadline is None:
                    await pipe.writable()
                else:
                    await asyncio.wait_for(pipe.writable(), st.deadline - time.monotonic())
            if pipe.closed:
                raise ConnectionResetError("connection lost before the request was sent")
            caps = pipe.caps
            if st.size > caps.limit:  # see CallState
                head, payload = st.prepare(caps, self._max_send)
                sp_id, fut = pipe.send(head, payload)
                if caps is UNKNOWN:
                    sent = _REQ_ID_BYTES + len(head) + len(payload)
            else:
                sp_id, fut = pipe.send(st.head(), st.payload)
            if st.wait_until is not None:
                timer = loop.call_later(st.wait_until - time.monotonic(), _expire, fut)
            envelope = await fut
        except asyncio.CancelledError:
            # The task's cancel cancels fut too; a fut with a result is a
            # reply that came first.
            if sp_id >= 0 and (fut.cancelled() or not fut.done()):
                _send_cancel(pipe, st)
            raise
        except asyncio.TimeoutError:  # not TimeoutError before 3.11
            raise st.attempt_error(TimeoutError(), ep, self._closed) from None
        except (OSError, ProtocolError) as e:  # TimeoutError too
            failure = st.attempt_error(e, ep, self._closed)
            if isinstance(failure, AttemptFailed):
                failure.sent = sent  # lost with the server's limit unknown?
            raise failure from None
        finally:
            if timer is not None:
                timer.cancel()
            if sp_id >= 0:
                pipe.pending.pop(sp_id, None)
            self._release(ep, pipe)
        return st.answered(ep, memoryview(envelope), 0, len(envelope), deserialize, pipe, caps)

    async def _learn_limit(
        self, loop: asyncio.AbstractEventLoop, st: CallState, f: AttemptFailed
    ) -> bool:
        """A connection was lost after st's request (f.sent bytes) went out
        on it, before its server said its limit: did the limit refuse it?
        Asks on the connection the next attempt would use, as the sync
        Channel does.  Raises RESOURCE_EXHAUSTED when the request is over
        the limit; returns True to send it again at once."""
        st.avoid = f.endpoint
        try:
            ep, pipe = await self._checkout(loop, st)
        except (AttemptFailed, RpcError):
            return False
        sp_id = -1
        try:
            if pipe.caps is UNKNOWN and not pipe.closed:
                deadline = time.monotonic() + self._connect_timeout
                if st.deadline is not None and st.deadline < deadline:
                    deadline = st.deadline
                sp_id, fut = pipe.send(st.probe_head(deadline), b"")
                envelope = await asyncio.wait_for(fut, deadline - time.monotonic())
                st.probe_answered(pipe, memoryview(envelope), 0, len(envelope))
        except (OSError, ProtocolError, asyncio.TimeoutError):
            pass
        finally:
            if sp_id >= 0:
                pipe.pending.pop(sp_id, None)
            self._release(ep, pipe)
        return st.after_probe(pipe.caps, f.sent, self._max_send)

    # ---- endpoints and connections ---------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        """Returns the running loop, binding the channel to it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._closed:
                raise ValueError(CLOSED_MSG)
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "this nngrpc.aio.Channel belongs to another event loop"
                    " (create one channel per loop)"
                )
            self._forget_connections()
            self._loop = loop
            if self._disc is not None:
                self._resolve_wake = asyncio.Event()
                self._resolve_task = loop.create_task(_resolving(weakref.ref(self), loop))
        return loop

    # ---- discovery ----------------------------------------------------------------
    def _wake_resolver(self) -> None:
        """EndpointSet's wake hook: brings the next resolution forward."""
        assert self._disc is not None
        self._disc.ask()
        if self._resolve_wake is not None:
            self._resolve_wake.set()

    async def _await_endpoints(self, loop: asyncio.AbstractEventLoop, st: CallState) -> None:
        """There is no endpoint yet: waits for a resolution that runs or
        may start now, within the deadline.  Raises AttemptFailed
        (UNAVAILABLE naming the hosts that do not resolve) or
        DEADLINE_EXCEEDED when there is still none."""
        disc = self._disc
        assert disc is not None
        self._wake_resolver()
        if self._resolve_busy or disc.due(time.monotonic()):
            if self._resolution is None:
                self._resolution = loop.create_future()
            timeout = None if st.deadline is None else max(st.deadline - time.monotonic(), 0.0)
            done, _ = await asyncio.wait({self._resolution}, timeout=timeout)
            if not done:
                raise st.expired("Deadline Exceeded while resolving %s" % disc.hosts)
        if not self._endpoints.endpoints:
            raise st.unresolved(disc.unresolved())

    async def _checkout(
        self, loop: asyncio.AbstractEventLoop, st: CallState
    ) -> Tuple[_Endpoint, AioPipe]:
        """Returns an endpoint and a connection to it, holding one of the
        endpoint's in-flight slots (released by _release)."""
        if self._closed:
            raise ValueError(CLOSED_MSG)
        if not self._endpoints.endpoints and self._disc is not None:
            await self._await_endpoints(loop, st)
        errors: List[str] = []
        for ep in self._endpoints.candidates(st.avoid):  # type: ignore[arg-type]
            await self._acquire(loop, ep, st)
            try:
                pipe = self._pick(loop, ep)
                if pipe is None:
                    pipe = await self._wait_dial(loop, ep, st)
            except (OSError, ProtocolError) as e:
                self._release(ep, None)
                if self._closed:
                    raise ValueError(CLOSED_MSG) from None
                errors.append("%s (%s)" % (ep.addr.url, dial_error(ep.addr, e)))
                continue
            except BaseException:
                self._release(ep, None)
                raise
            return ep, pipe
        raise st.unreachable(errors)

    async def _acquire(
        self,
        loop: asyncio.AbstractEventLoop,
        ep: _Endpoint,
        st: CallState,
    ) -> None:
        """Takes one of ep's in-flight slots, waiting in line if need be."""
        if ep.in_flight < self._max_in_flight and not ep.waiters:
            ep.in_flight += 1
            return
        fut: "asyncio.Future[None]" = loop.create_future()
        ep.waiters.append(fut)
        timer = None
        if st.deadline is not None:
            timer = loop.call_later(st.deadline - time.monotonic(), _expire, fut)
        try:
            await fut  # _release hands its slot over with set_result
        except BaseException as e:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(ep, None)  # handed a slot, but leaving: pass it on
            else:
                try:
                    ep.waiters.remove(fut)
                except ValueError:
                    pass
            if isinstance(e, TimeoutError):
                raise st.expired(
                    "Deadline Exceeded waiting for one of %d calls in flight to %s"
                    % (self._max_in_flight, ep.addr.url),
                ) from None
            if isinstance(e, _Closed):
                raise ValueError(CLOSED_MSG) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _release(self, ep: _Endpoint, pipe: Optional[AioPipe]) -> None:
        """Gives back a slot: to the first caller waiting, else to the pool.
        pipe: the connection the call used, closed when its endpoint was
        removed or is draining and it carries no call any more."""
        if pipe is not None and (ep.removed or ep.draining) and not pipe.pending:
            pipe.abort(_Closed("endpoint removed"))
        waiters = ep.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
        ep.in_flight -= 1

    def _pick(self, loop: asyncio.AbstractEventLoop, ep: _Endpoint) -> Optional[AioPipe]:
        """Returns ep's least busy connection (None if it has none).  Starts
        dialling another one when all are busy and the pool is not full."""
        best: Optional[AioPipe] = None
        load = 0
        if ep.pipes:
            self._close_idle_pipes(ep)
        for pipe in () if ep.draining else ep.pipes:  # draining: a new one
            n = len(pipe.pending)
            if best is None or n < load:
                best, load = pipe, n
        if (
            (best is None or load > 0)
            and ep.dialing is None
            and len(ep.pipes) < self._max_conns
            and (best is None or ep.retry_at <= time.monotonic())
        ):
            self._start_dial(loop, ep)
        return best

    def _close_idle_pipes(self, ep: _Endpoint) -> None:
        """Closes ep's connections that carried no call for idle_timeout:
        the client closes them, before the server would."""
        now = time.monotonic()
        for pipe in [p for p in ep.pipes if not p.pending
                     and now - p.last_active >= self._idle_timeout]:
            ep.pipes.remove(pipe)
            pipe.abort(_Closed("idle for %.0f s" % self._idle_timeout))

    def _start_dial(self, loop: asyncio.AbstractEventLoop, ep: _Endpoint) -> None:
        task = loop.create_task(self._dial(loop, ep))
        ep.dialing = task
        task.add_done_callback(lambda t: self._dial_done(loop, ep, t))

    async def _dial(self, loop: asyncio.AbstractEventLoop, ep: _Endpoint) -> AioPipe:
        try:
            return await asyncio.wait_for(
                _open_pipe(loop, ep.addr, self._max_recv, self._tls_context, self._tls_hostname),
                self._connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TimeoutError("connect timed out") from None

    def _dial_done(
        self, loop: asyncio.AbstractEventLoop, ep: _Endpoint, task: "asyncio.Task[AioPipe]"
    ) -> None:
        if ep.dialing is task:
            ep.dialing = None
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, whoever else waits
        if exc is not None:
            self._endpoints.dial_failed(ep, dial_error(ep.addr, exc))
            return
        pipe = task.result()
        if self._closed or self._loop is not loop or pipe.closed or ep.removed:
            pipe.abort(_Closed("channel closed"))
            return
        self._endpoints.dial_ok(ep)

        def lost(p: AioPipe) -> None:
            if p in ep.pipes:
                ep.pipes.remove(p)

        pipe.on_lost = lost
        ep.pipes.append(pipe)

    async def _wait_dial(
        self,
        loop: asyncio.AbstractEventLoop,
        ep: _Endpoint,
        st: CallState,
    ) -> AioPipe:
        """Waits for ep's dial (starting one if none runs); returns the new
        connection.  The dial goes on if this caller gives up."""
        task = ep.dialing
        if task is None:
            self._start_dial(loop, ep)
            task = ep.dialing
            assert task is not None
        if st.deadline is None:
            done, _ = await asyncio.wait({task})
        else:
            done, _ = await asyncio.wait({task}, timeout=st.deadline - time.monotonic())
        if not done:
            raise st.expired("Deadline Exceeded while connecting to %s" % ep.addr.url)
        if task.cancelled():
            if self._closed:
                raise ValueError(CLOSED_MSG)
            raise ConnectionAbortedError("endpoint left DNS or is draining")
        pipe = task.result()  # raises the dial's error
        if pipe.closed:
            raise ConnectionResetError("connection lost right after the handshake")
        return pipe

    def _update_endpoints(self, urls: Sequence[str]) -> None:
        """Makes urls the channel's endpoints (see _set_addresses)."""
        self._set_addresses([parse_url(u) for u in urls])

    def _set_addresses(self, addrs: Sequence[Address]) -> None:
        """Makes addrs the channel's endpoints (discovery): new ones join
        the rotation; removed ones take no new call, and their connections
        close as their last call ends (see EndpointSet.update)."""
        _, removed = self._endpoints.update(addrs)
        for ep in removed:
            self._drained(ep)

    def _drained(self, ep: _Endpoint) -> None:
        """Closes ep's connections that carry no call (it left DNS, or is
        draining); _release closes the others as their last call ends."""
        if ep.dialing is not None:
            ep.dialing.cancel()
        for pipe in list(ep.pipes):
            if not pipe.pending:
                pipe.abort(_Closed("endpoint draining"))

    def _forget_connections(self) -> None:
        """Drops every connection without touching their event loop (which
        is closed, or the parent's after a fork): close(2) the sockets."""
        for ep in self._endpoints:
            for pipe in ep.pipes:
                if pipe.sock is not None:
                    pipe.sock.close()
            ep.pipes = []
            ep.dialing = None
            ep.in_flight = 0
            ep.waiters = collections.deque()
        self._loop = None
        # The resolver task was the old loop's (or the parent's).
        self._resolve_task = None
        self._resolve_wake = None
        self._resolve_busy = False
        self._resolution = None
        if self._disc is not None:
            self._disc.after_fork()

    # ---- for tests ---------------------------------------------------------------------
    def _pending_count(self) -> int:
        """Calls on the wire, waiting for a reply, over every connection."""
        return sum(len(p.pending) for e in self._endpoints for p in e.pipes)

    def _in_flight_count(self) -> int:
        """Slots held plus callers waiting for one."""
        return sum(e.in_flight + len(e.waiters) for e in self._endpoints)

    def _connection_count(self) -> int:
        return sum(len(e.pipes) for e in self._endpoints)

    def _stale_count(self) -> int:
        """Replies dropped because their caller had stopped waiting."""
        return sum(p.stale for e in self._endpoints for p in e.pipes)


async def _resolving(ref: "weakref.ref[Channel]", loop: asyncio.AbstractEventLoop) -> None:
    """A channel's resolutions, for as long as it is bound to loop and
    alive (the task holds it only weakly, between resolutions): each runs
    the resolver in the loop's executor when Discovery says it is due,
    then updates the endpoints."""
    while True:
        ch = ref()
        if ch is None or ch._closed or ch._loop is not loop:
            return
        disc, wake, resolver = ch._disc, ch._resolve_wake, ch._resolver
        assert disc is not None and wake is not None
        del ch
        now = time.monotonic()
        if not disc.due(now):
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), max(disc.next_at() - now, 0.001))
            except asyncio.TimeoutError:
                pass
            continue
        jobs = disc.start(now)
        try:
            _resolving_set(ref, True)
            try:
                answers = await loop.run_in_executor(None, resolve_all, resolver, jobs)
            except RuntimeError:  # the executor is shut down: the loop is ending
                return
            addrs = disc.finish(answers)
            ch = ref()
            if addrs is not None and ch is not None and not ch._closed:
                ch._set_addresses(addrs)
            del ch
        finally:
            if disc.running:  # cancelled: the answer will not come here
                disc.abandon()
            _resolving_set(ref, False)


def _resolving_set(ref: "weakref.ref[Channel]", busy: bool) -> None:
    """Marks the channel's resolution under way (busy) or handed over (and
    wakes the calls waiting for it)."""
    ch = ref()
    if ch is None:
        return
    ch._resolve_busy = busy
    if not busy:
        fut, ch._resolution = ch._resolution, None
        if fut is not None and not fut.done():
            fut.set_result(None)


async def _open_pipe(
    loop: asyncio.AbstractEventLoop,
    addr: Address,
    max_recv: int,
    tls_context: "Optional[ssl.SSLContext]",
    tls_hostname: Optional[str],
) -> AioPipe:
    """Connects, runs the TLS and SP handshakes; returns new: the pipe."""

    def factory() -> AioPipe:
        return AioPipe(loop, addr.url, ipc=addr.ipc, max_recv=max_recv)

    if addr.ipc:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr.path)
            transport, pipe = await loop.create_unix_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
    else:
        sock = await _connect_tcp(loop, addr)
        try:
            if addr.tls:
                if tls_context is None:
                    raise ValueError("%s needs a TLS context" % addr.url)
                try:
                    transport, pipe = await loop.create_connection(
                        factory,
                        sock=sock,
                        ssl=tls_context,
                        server_hostname=tls_hostname or addr.tls_name,
                    )
                except OSError as e:
                    raise TlsHandshakeError(describe_tls_error(e)) from e
            else:
                transport, pipe = await loop.create_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
    pipe.sock = sock
    try:
        await pipe.ready
    except BaseException:
        transport.abort()
        raise
    return pipe


async def _connect_tcp(loop: asyncio.AbstractEventLoop, addr: Address) -> socket.socket:
    """Returns new: a non-blocking socket connected to addr."""
    infos: List[AddrInfo]
    try:
        ip = ipaddress.ip_address(addr.host)
    except ValueError:
        infos = await loop.run_in_executor(None, resolve, addr)
    else:  # a literal address: no resolver thread
        family = int(socket.AF_INET if ip.version == 4 else socket.AF_INET6)
        infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (addr.host, addr.port))]
    errors: List[str] = []
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as e:
            sock.close()
            errors.append("%s: %s" % (sockaddr[0], e.strerror or e))
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ConnectionError("; ".join(errors) or "no address for %s" % addr.host)


class UnaryUnaryMultiCallable(MethodBase[RequestT, ResponseT]):
    """One method of an aio.Channel: ``await`` it with a request.

    ``timeout`` is in seconds (None: no deadline), ``metadata`` a mapping or
    (key, value) pairs.  Raises RpcError for any status but OK.
    """

    __slots__ = ()

    async def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> ResponseT:
        return (await self._channel._unary(self, request, timeout, metadata, False, compression))[0]  # type: ignore[no-any-return]

    async def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> Tuple[ResponseT, Call]:
        """Returns (response, call), as the sync with_call()."""
        return await self._channel._unary(self, request, timeout, metadata, True, compression)  # type: ignore[no-any-return]


# ---- interceptors --------------------------------------------------------------------
#: Base of asyncio interceptors: ``async def intercept_unary_unary(self,
#: continuation, client_call_details, request)``, ``await continuation(...)``.
UnaryUnaryClientInterceptor = AsyncUnaryUnaryClientInterceptor


class InterceptedChannel(Channel):
    """An aio.Channel whose calls go through interceptors; made by
    intercept_channel().  Closing it closes the channel it wraps."""

    def __init__(
        self, channel: Channel, interceptors: Sequence[AsyncUnaryUnaryClientInterceptor]
    ) -> None:  # no Channel.__init__: every call goes to the wrapped channel
        self._inner = channel
        self._interceptors = tuple(interceptors)

    def unary_unary(
        self,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]] = None,
        response_deserializer: Optional[Callable[[bytes], ResponseT]] = None,
        *,
        idempotent: bool = False,
    ) -> "UnaryUnaryMultiCallable[RequestT, ResponseT]":
        return InterceptedUnaryUnaryMultiCallable(
            self._inner,
            method,
            request_serializer,
            response_deserializer,
            idempotent,
            self._interceptors,
        )

    async def invoke(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        idempotent: bool = False,
        compression: Optional[str] = None,
    ) -> Tuple[bytes, Call]:
        mc: UnaryUnaryMultiCallable[bytes, bytes] = self.unary_unary(method, idempotent=idempotent)
        return await mc.with_call(request, timeout, metadata, compression=compression)

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return "<nngrpc.aio.Channel %r through %d interceptor(s)>" % (
            self._inner,
            len(self._interceptors),
        )


class InterceptedUnaryUnaryMultiCallable(UnaryUnaryMultiCallable[RequestT, ResponseT]):
    """One method of an aio InterceptedChannel."""

    __slots__ = ("_interceptors", "_parse")

    def __init__(
        self,
        channel: Channel,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]],
        response_deserializer: Optional[Callable[[bytes], ResponseT]],
        idempotent: bool,
        interceptors: Sequence[AsyncUnaryUnaryClientInterceptor],
    ) -> None:
        super().__init__(channel, method, request_serializer, response_deserializer, idempotent)
        self._interceptors = interceptors
        self._parse = response_deserializer

    async def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> ResponseT:
        return (await self.with_call(request, timeout, metadata, compression=compression))[0]

    async def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> Tuple[ResponseT, Call]:
        details = ClientCallDetails(
            self._method, timeout, metadata, self._idempotent, compression
        )
        outcome = await run_chain_async(self._interceptors, self._invoke, details, request)
        return outcome.result(), outcome.call

    async def _invoke(self, details: ClientCallDetails, request: Any) -> Tuple[Any, Call]:
        mc: UnaryUnaryMultiCallable[Any, Any] = self
        if details.method != self._method or details.idempotent != self._idempotent:
            mc = UnaryUnaryMultiCallable(
                self._channel, details.method, self._serialize, self._parse, details.idempotent
            )
        return await self._channel._unary(  # type: ignore[no-any-return]
            mc, request, details.timeout, details.metadata, True, details.compression
        )


def intercept_channel(channel: Channel, *interceptors: AsyncUnaryUnaryClientInterceptor) -> Channel:
    """Returns an aio.Channel whose calls go through interceptors (async
    ones: nngrpc.aio.UnaryUnaryClientInterceptor), the first one
    outermost.  The async stubs take it like any aio.Channel; closing it
    closes channel."""
    for i in interceptors:
        if not callable(getattr(i, "intercept_unary_unary", None)):
            raise TypeError("%r is not a unary-unary client interceptor" % (i,))
    if isinstance(channel, InterceptedChannel):
        return InterceptedChannel(channel._inner, tuple(interceptors) + channel._interceptors)
    return InterceptedChannel(channel, interceptors)


# ---- fork handling -----------------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ch in list(_CHANNELS):
        ch._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)
