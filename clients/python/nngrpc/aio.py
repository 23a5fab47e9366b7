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

Endpoints, retries, request ids, limits and TLS behave as in the sync
nngrpc.Channel (see _channel.py and _retry.py), with the same options
(``max_idle_per_endpoint`` aside: connections here are shared, not idle).

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
    Generic,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from nngrpc._aio_pipe import AioPipe, Envelope
from nngrpc._channel import (
    _CLOSED_MSG,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    RequestT,
    ResponseT,
    _AttemptFailed,
    _attempt_error,
    _bytes_of,
    _dial_error,
    _identity,
    _not_run,
    _retry_delay,
    build_request,
    decode_response,
    deserialize_response,
    failed,
    serialize_request,
    tls_context_for,
)
from nngrpc._errors import Call, Metadata, RpcError
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy, connect_backoff, order_endpoints
from nngrpc._sp import MessageTooLarge, ProtocolError
from nngrpc._status_table import StatusCode
from nngrpc._tls import TlsHandshakeError, describe_tls_error
from nngrpc._transport import AddrInfo, Address, parse_url, resolve

if TYPE_CHECKING:
    import ssl

    from nngrpc._tls import TlsConfig

__all__ = ["Channel", "UnaryUnaryMultiCallable"]


class _Closed(ConnectionAbortedError):
    """The channel was closed under a waiting call."""


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Endpoint:
    """One server address: its connections and its share of calls.

    Loop thread only.
    """

    __slots__ = (
        "addr",
        "pipes",
        "dialing",
        "failures",
        "retry_at",
        "last_error",
        "in_flight",
        "waiters",
    )

    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.pipes: List[AioPipe] = []  # connected, not lost
        self.dialing: "Optional[asyncio.Task[AioPipe]]" = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.in_flight = 0  # calls holding a slot
        self.waiters: "Deque[asyncio.Future[None]]" = collections.deque()


class Channel:
    """An asyncio client channel to one or more servers.

    ``target`` and the options are those of nngrpc.Channel (but
    ``max_idle_per_endpoint``), plus:

    - ``max_connections_per_endpoint``: connections per endpoint that the
      calls are multiplexed over (default 4).
    - ``max_in_flight_per_endpoint``: calls on the wire to one endpoint at
      once (default 256); more wait in the client.

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
    ) -> None:
        urls = [target] if isinstance(target, str) else list(target)
        if not urls:
            raise ValueError("Channel needs at least one endpoint URL")
        if max_connections_per_endpoint < 1 or max_in_flight_per_endpoint < 1:
            raise ValueError("connection and in-flight limits must be >= 1")
        self._endpoints = [_Endpoint(parse_url(u)) for u in urls]
        self._tls_context, self._tls_hostname = tls_context_for(
            [e.addr for e in self._endpoints], tls
        )
        self._max_send = max_message_bytes
        self._max_recv = max_receive_message_bytes
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._unavailable_backoff = unavailable_backoff
        self._grace = deadline_grace
        self._retry = retry
        self._max_conns = max_connections_per_endpoint
        self._max_in_flight = max_in_flight_per_endpoint
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._rr = 0
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
            self,
            method,
            request_serializer if request_serializer is not None else _bytes_of,
            response_deserializer if response_deserializer is not None else _identity,
            idempotent,
        )

    async def call(
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
        return (await self.invoke(method, request, timeout, metadata, idempotent=idempotent))[0]

    async def invoke(
        self,
        method: str,
        request: bytes,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        idempotent: bool = False,
    ) -> Tuple[bytes, Call]:
        """As call(), but returns (response bytes, Call)."""
        loop = self._bind()
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
                ep, envelope = await self._attempt(loop, req, tail, deadline, rid, avoid)
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
            await asyncio.sleep(delay)
            attempt += 1

    async def close(self) -> None:
        """Closes every connection; calls in flight or waiting end with
        CANCELLED.  Calls on a closed channel raise ValueError."""
        if self._closed:
            return
        self._closed = True
        _CHANNELS.discard(self)
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
        return "<nngrpc.aio.Channel %s>" % ", ".join(e.addr.url for e in self._endpoints)

    # ---- one attempt -------------------------------------------------------------
    async def _attempt(
        self,
        loop: asyncio.AbstractEventLoop,
        req: Any,
        tail: bytes,
        deadline: Optional[float],
        rid: str,
        avoid: Optional[_Endpoint],
    ) -> Tuple[_Endpoint, Envelope]:
        """Sends req once; returns (endpoint, reply envelope).

        Raises _AttemptFailed, or RpcError/ValueError for what no retry
        changes.  Holds one of the endpoint's in-flight slots meanwhile.
        """
        ep, pipe = await self._checkout(loop, deadline, rid, avoid)
        sp_id = -1
        timer: Optional[asyncio.TimerHandle] = None
        try:
            if pipe.paused:  # the server reads slower than we write
                if deadline is None:
                    await pipe.writable()
                else:
                    await asyncio.wait_for(pipe.writable(), deadline - time.monotonic())
            if pipe.closed:
                raise ConnectionResetError("connection lost before the request was sent")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                req.timeout_us = max(1, int(left * 1e6))
            sp_id, fut = pipe.send(req.SerializeToString(), tail)
            if deadline is not None:
                timer = loop.call_later(deadline + self._grace - time.monotonic(), _expire, fut)
            return ep, await fut
        except (TimeoutError, asyncio.TimeoutError):  # distinct before 3.11
            raise failed(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", rid) from None
        except (MessageTooLarge, ProtocolError, OSError) as e:
            raise _attempt_error(e, ep, rid, self._closed) from None
        finally:
            if timer is not None:
                timer.cancel()
            if sp_id >= 0:
                pipe.pending.pop(sp_id, None)
            self._release(ep)

    # ---- endpoints and connections ---------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        """Returns the running loop, binding the channel to it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._closed:
                raise ValueError(_CLOSED_MSG)
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "this nngrpc.aio.Channel belongs to another event loop"
                    " (create one channel per loop)"
                )
            self._forget_connections()
            self._loop = loop
        return loop

    async def _checkout(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: Optional[float],
        rid: str,
        avoid: Optional[_Endpoint],
    ) -> Tuple[_Endpoint, AioPipe]:
        """Returns an endpoint and a connection to it, holding one of the
        endpoint's in-flight slots (released by _release)."""
        if self._closed:
            raise ValueError(_CLOSED_MSG)
        eps = self._endpoints
        if len(eps) == 1:
            candidates: List[_Endpoint] = eps
        else:
            start = self._rr
            self._rr = (start + 1) % len(eps)
            candidates = order_endpoints(eps, start, time.monotonic(), avoid)
        errors: List[str] = []
        for ep in candidates:
            await self._acquire(loop, ep, deadline, rid)
            try:
                pipe = self._pick(loop, ep)
                if pipe is None:
                    pipe = await self._wait_dial(loop, ep, deadline, rid)
            except (OSError, ProtocolError) as e:
                self._release(ep)
                if self._closed:
                    raise ValueError(_CLOSED_MSG) from None
                errors.append("%s (%s)" % (ep.addr.url, _dial_error(ep.addr, e)))
                continue
            except BaseException:
                self._release(ep)
                raise
            return ep, pipe
        raise _AttemptFailed(
            failed(StatusCode.UNAVAILABLE, "failed to connect to %s" % "; ".join(errors), rid),
            None,
            True,
        )

    async def _acquire(
        self,
        loop: asyncio.AbstractEventLoop,
        ep: _Endpoint,
        deadline: Optional[float],
        rid: str,
    ) -> None:
        """Takes one of ep's in-flight slots, waiting in line if need be."""
        if ep.in_flight < self._max_in_flight and not ep.waiters:
            ep.in_flight += 1
            return
        fut: "asyncio.Future[None]" = loop.create_future()
        ep.waiters.append(fut)
        timer = None
        if deadline is not None:
            timer = loop.call_later(deadline - time.monotonic(), _expire, fut)
        try:
            await fut  # _release hands its slot over with set_result
        except BaseException as e:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(ep)  # handed a slot, but leaving: pass it on
            else:
                try:
                    ep.waiters.remove(fut)
                except ValueError:
                    pass
            if isinstance(e, TimeoutError):
                raise failed(
                    StatusCode.DEADLINE_EXCEEDED,
                    "Deadline Exceeded waiting for one of %d calls in flight to %s"
                    % (self._max_in_flight, ep.addr.url),
                    rid,
                ) from None
            if isinstance(e, _Closed):
                raise ValueError(_CLOSED_MSG) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _release(self, ep: _Endpoint) -> None:
        """Gives back a slot: to the first caller waiting, else to the pool."""
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
        for pipe in ep.pipes:
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
            ep.failures += 1
            ep.retry_at = time.monotonic() + connect_backoff(
                ep.failures, self._backoff, self._backoff_max
            )
            ep.last_error = _dial_error(ep.addr, exc)
            return
        pipe = task.result()
        if self._closed or self._loop is not loop or pipe.closed:
            pipe.abort(_Closed("channel closed"))
            return
        ep.failures = 0
        ep.retry_at = 0.0
        ep.last_error = ""

        def lost(p: AioPipe) -> None:
            if p in ep.pipes:
                ep.pipes.remove(p)

        pipe.on_lost = lost
        ep.pipes.append(pipe)

    async def _wait_dial(
        self,
        loop: asyncio.AbstractEventLoop,
        ep: _Endpoint,
        deadline: Optional[float],
        rid: str,
    ) -> AioPipe:
        """Waits for ep's dial (starting one if none runs); returns the new
        connection.  The dial goes on if this caller gives up."""
        task = ep.dialing
        if task is None:
            self._start_dial(loop, ep)
            task = ep.dialing
            assert task is not None
        if deadline is None:
            done, _ = await asyncio.wait({task})
        else:
            done, _ = await asyncio.wait({task}, timeout=deadline - time.monotonic())
        if not done:
            raise failed(
                StatusCode.DEADLINE_EXCEEDED,
                "Deadline Exceeded while connecting to %s" % ep.addr.url,
                rid,
            )
        if task.cancelled():
            raise ValueError(_CLOSED_MSG)
        pipe = task.result()  # raises the dial's error
        if pipe.closed:
            raise ConnectionResetError("connection lost right after the handshake")
        return pipe

    def _mark_unavailable(self, ep: _Endpoint, reason: str) -> None:
        if len(self._endpoints) > 1:
            ep.retry_at = max(ep.retry_at, time.monotonic() + self._unavailable_backoff)
            ep.last_error = reason

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
                        server_hostname=tls_hostname or addr.host,
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


class UnaryUnaryMultiCallable(Generic[RequestT, ResponseT]):
    """One method of an aio.Channel: ``await`` it with a request.

    ``timeout`` is in seconds (None: no deadline), ``metadata`` a mapping or
    (key, value) pairs.  Raises RpcError for any status but OK.
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
        """True if failed calls may be retried."""
        return self._idempotent

    async def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> ResponseT:
        return (await self.with_call(request, timeout, metadata))[0]

    async def with_call(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Tuple[ResponseT, Call]:
        """Returns (response, call), as the sync with_call()."""
        data = serialize_request(self._serialize, request)
        payload, call = await self._channel.invoke(
            self._method, data, timeout, metadata, idempotent=self._idempotent
        )
        return deserialize_response(self._deserialize, payload, call), call

    def __repr__(self) -> str:
        return "<aio.UnaryUnaryMultiCallable %s>" % self._method


# ---- fork handling -----------------------------------------------------------------
_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ch in list(_CHANNELS):
        ch._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)
