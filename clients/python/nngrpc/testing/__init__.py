"""Test doubles: channels that run calls in-process, against Python
implementations of the services, for the unit tests of code that calls a
service (no hoteld, no C toolchain).

    from nngrpc.testing import FakeChannel
    from hotel.v1 import hotel_nngrpc, hotel_pb2

    class Hotels(hotel_nngrpc.HotelSearchServicer):
        def GetHotel(self, request, context):
            if request.id != 7:
                context.abort(nngrpc.StatusCode.NOT_FOUND, "no hotel %d" % request.id)
            return hotel_pb2.Hotel(id=7, name="Seven")

    channel = FakeChannel([Hotels()])
    code_under_test(hotel_nngrpc.HotelSearchStub(channel))   # a Channel like any other

``<Service>Servicer`` is generated next to the stubs (protoc plugin): a
method left as it is answers UNIMPLEMENTED, an unknown method name gets
UNIMPLEMENTED "unknown method", as hoteld does.

Same semantics as a real Channel, because the client side is the same
client core (_core.CallState): the request is encoded into the very
envelope a server gets (request id, metadata, deadline as ``timeout_us``,
size limits), the reply goes through the same decoding and status mapping,
retries follow the channel's RetryPolicy with the same backoff (a handler
that aborts with UNAVAILABLE is retried when the method is idempotent; a
``nngrpc-not-run`` trailer makes any call retryable), and a handler that
takes longer than the deadline makes the call fail with DEADLINE_EXCEEDED
as a real client gives up (``deadline_grace`` after the deadline).  What a
network adds is not faked: there is no connection to lose.

The handler's ``context`` (ServicerContext): ``invocation_metadata()``
(what the server would see, ``nngrpc-request-id`` included),
``time_remaining()``, ``abort(code, details)``, ``set_code`` /
``set_details``, ``set_trailing_metadata(...)``, ``request_id``,
``method``.  A handler that raises anything else fails the call with
UNKNOWN "Exception calling application: ..." (as grpcio's servers do).

FakeAsyncChannel is the nngrpc.aio twin: handlers may be ``async def``
(awaited, and cancelled when the client gives up at the deadline) or plain
functions.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from nngrpc._channel import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, Channel
from nngrpc._compression import check as check_compression
from nngrpc._core import CLOSED_MSG, CallState, Endpoint, EndpointSet, MethodBase
from nngrpc._errors import REQUEST_ID_KEY, Call, Metadata
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from nngrpc._sp import MessageTooLarge
from nngrpc._status_table import StatusCode
from nngrpc._transport import parse_url
from nngrpc.aio import Channel as AioChannel

__all__ = ["FakeAsyncChannel", "FakeChannel", "ServicerContext"]

_FAKE_URL = "ipc://nngrpc-fake-channel"


class _Abort(Exception):
    """Raised by ServicerContext.abort(); ends the handler."""


class ServicerContext:
    """What a servicer method gets besides its request (grpc.ServicerContext's
    parts that a unary handler needs)."""

    def __init__(
        self, method: str, metadata: Sequence[Tuple[str, str]], deadline: Optional[float]
    ) -> None:
        self._method = method
        self._metadata = tuple(metadata)
        self._deadline = deadline
        self._code = StatusCode.OK
        self._details = ""
        self._trailers: List[Tuple[str, str]] = []

    @property
    def method(self) -> str:
        """The full method name called, "/package.Service/Method"."""
        return self._method

    @property
    def request_id(self) -> str:
        """The call's nngrpc-request-id."""
        return dict(self._metadata).get(REQUEST_ID_KEY, "")

    def invocation_metadata(self) -> Tuple[Tuple[str, str], ...]:
        """The request metadata as (key, value) pairs, as a server sees it."""
        return self._metadata

    def time_remaining(self) -> Optional[float]:
        """Seconds until the call's deadline (never below 0), or None."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        """False once the deadline passed."""
        return self._deadline is None or time.monotonic() < self._deadline

    def peer(self) -> str:
        return "fake:"

    def abort(self, code: StatusCode, details: str) -> None:
        """Ends the call with code (not OK) and details; never returns."""
        if code is StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        self._code = code
        self._details = details
        raise _Abort(details)

    def set_code(self, code: StatusCode) -> None:
        """The call's status when the handler returns (its response is then
        dropped unless code is OK)."""
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        """Trailers sent with the answer, whatever the status."""
        pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata)
        trailers: List[Tuple[str, str]] = []
        for k, v in pairs:
            if isinstance(k, str) and k.endswith("-bin") and isinstance(v, bytes):
                v = base64.b64encode(v).rstrip(b"=").decode()  # as a server sends it
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("trailing metadata keys and values must be str (bytes for -bin keys)")
            trailers.append((k, v))
        self._trailers = trailers


# ---- the in-process server ---------------------------------------------------------
class _Method:
    __slots__ = ("servicer", "name", "request_type", "response_type")

    def __init__(self, servicer: Any, name: str, request_type: Any, response_type: Any) -> None:
        self.servicer = servicer
        self.name = name
        self.request_type = request_type
        self.response_type = response_type


def _methods(servicers: Iterable[Any]) -> Dict[str, _Method]:
    """Full method name -> how to call it, from the servicers' generated
    NNGRPC_SERVICER_METHODS tables."""
    table: Dict[str, _Method] = {}
    for servicer in servicers:
        found = False
        for cls in type(servicer).__mro__:
            methods = cls.__dict__.get("NNGRPC_SERVICER_METHODS")
            if methods is None:
                continue
            found = True
            for path, (name, req, resp) in methods.items():
                if path in table:
                    raise ValueError("two servicers implement %s" % path)
                table[path] = _Method(servicer, name, req, resp)
        if not found:
            raise TypeError(
                "%r is not a servicer: derive it from a generated <Service>Servicer class"
                % (servicer,)
            )
    return table


class _Call:
    """One request as the fake server takes it: decoded like hoteld does."""

    __slots__ = ("method", "handler", "request", "context", "error")

    def __init__(self, table: Dict[str, _Method], envelope: bytes) -> None:
        from nngrpc.v1 import rpc_pb2

        self.handler: Any = None
        self.request: Any = None
        self.error: Optional[Tuple[StatusCode, str]] = None
        req = rpc_pb2.Request.FromString(envelope)
        deadline = None
        if req.timeout_us:
            deadline = time.monotonic() + req.timeout_us / 1e6
        self.context = ServicerContext(req.method, sorted(req.metadata.items()), deadline)
        m = table.get(req.method)
        self.method = m
        if m is None:
            self.error = (StatusCode.UNIMPLEMENTED, 'unknown method "%s"' % req.method)
            return
        try:
            self.request = m.request_type.FromString(req.payload)
        except Exception:
            self.error = (
                StatusCode.INTERNAL,
                "cannot decode the request payload (%d bytes) as %s"
                % (len(req.payload), m.request_type.DESCRIPTOR.full_name),
            )
            return
        self.handler = getattr(m.servicer, m.name)

    def reply(self, response: Any, failure: Optional[BaseException], run_s: float) -> bytes:
        """Returns the Response envelope for what the handler did."""
        from nngrpc.v1 import rpc_pb2

        ctx = self.context
        code, details, payload = ctx._code, ctx._details, b""
        if self.error is not None:
            code, details = self.error
        elif failure is not None and not isinstance(failure, _Abort):
            code = StatusCode.UNKNOWN
            details = "Exception calling application: %s: %s" % (type(failure).__name__, failure)
        elif failure is None and code is StatusCode.OK:
            assert self.method is not None
            want = self.method.response_type
            if not isinstance(response, want):
                code = StatusCode.INTERNAL
                details = "handler %s returned %s, not %s" % (
                    ctx.method,
                    type(response).__name__,
                    want.DESCRIPTOR.full_name,
                )
            else:
                payload = response.SerializeToString()
        envelope: bytes = rpc_pb2.Response(
            code=code.value_int,
            message=details if code is not StatusCode.OK else "",
            payload=payload,
            trailers=dict(ctx._trailers),
            run_us=int(run_s * 1e6),
        ).SerializeToString()
        return envelope


# ---- the channels --------------------------------------------------------------------
class _Options:
    """What both fake channels take, as a real Channel does."""

    def _setup(
        self,
        servicers: Iterable[Any],
        retry: Optional[RetryPolicy],
        max_message_bytes: int,
        max_receive_message_bytes: int,
        deadline_grace: float,
    ) -> None:
        self._table = _methods(servicers)
        self._fake_endpoints: EndpointSet[Endpoint] = EndpointSet(
            [parse_url(_FAKE_URL)], Endpoint, backoff=1.0, backoff_max=30.0, unavailable_backoff=1.0
        )
        self._fake_retry = retry
        self._fake_max_send = max_message_bytes
        self._fake_max_recv = max_receive_message_bytes
        self._fake_grace = deadline_grace
        self._fake_closed = False

    def _state(self, mc: "MethodBase[Any, Any]", request: Any, timeout: Optional[float],
               metadata: Optional[Metadata], want_call: bool) -> CallState:
        if self._fake_closed:
            raise ValueError(CLOSED_MSG)
        return CallState(
            self._fake_endpoints,
            mc,
            request,
            timeout,
            metadata,
            self._fake_retry,
            self._fake_max_send,
            self._fake_grace,
            want_call,
        )

    def _envelope(self, st: CallState) -> bytes:
        """This attempt's request envelope, as a server gets it."""
        return st.envelope()

    def _answer(self, st: CallState, reply: bytes, mc: "MethodBase[Any, Any]") -> Optional[Tuple[Any, Optional[Call]]]:
        """What the client does with the reply: as a real channel would."""
        ep = st.endpoints[0]
        if st.wait_until is not None and time.monotonic() > st.wait_until:
            raise st.attempt_error(TimeoutError(), ep, False)  # gave up waiting
        if len(reply) + 4 > self._fake_max_recv:
            raise st.attempt_error(MessageTooLarge(len(reply) + 4, self._fake_max_recv), ep, False)
        return st.answered(ep, memoryview(reply), 0, len(reply), mc._deserialize)


class FakeChannel(Channel, _Options):
    """A Channel that runs calls in-process against servicers (instances
    of generated ``<Service>Servicer`` subclasses); see the module.

    Takes the options of a real Channel that mean something here:
    ``retry``, ``max_message_bytes``, ``max_receive_message_bytes``,
    ``deadline_grace``.  Handlers run in the calling thread.
    """

    def __init__(
        self,
        servicers: Iterable[Any],
        *,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        deadline_grace: float = 0.02,
    ) -> None:  # no Channel.__init__: there are no connections
        self._setup(servicers, retry, max_message_bytes, max_receive_message_bytes, deadline_grace)

    def _unary(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        want_call: bool,
        compression: Optional[str] = None,
    ) -> Tuple[Any, Optional[Call]]:
        check_compression(compression)  # invisible here: no wire
        st = self._state(mc, request, timeout, metadata, want_call)
        while True:
            call = _Call(self._table, self._envelope(st))
            response, failure = None, None
            start = time.monotonic()
            if call.error is None:
                try:
                    response = call.handler(call.request, call.context)
                except Exception as e:
                    failure = e
            result = self._answer(st, call.reply(response, failure, time.monotonic() - start), mc)
            if result is not None:
                return result
            time.sleep(st.delay)

    def close(self) -> None:
        """Calls after close() raise ValueError, as on a real Channel."""
        self._fake_closed = True

    def __repr__(self) -> str:
        return "<nngrpc.testing.FakeChannel %s>" % ", ".join(sorted(self._table))

    def _open_fds(self) -> List[int]:
        return []


class FakeAsyncChannel(AioChannel, _Options):
    """The nngrpc.aio twin of FakeChannel: handlers may be ``async def``."""

    def __init__(
        self,
        servicers: Iterable[Any],
        *,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY_POLICY,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        deadline_grace: float = 0.02,
    ) -> None:  # no aio.Channel.__init__: there are no connections
        self._setup(servicers, retry, max_message_bytes, max_receive_message_bytes, deadline_grace)

    async def _unary(
        self,
        mc: "MethodBase[Any, Any]",
        request: Any,
        timeout: Optional[float],
        metadata: Optional[Metadata],
        want_call: bool,
        compression: Optional[str] = None,
    ) -> Tuple[Any, Optional[Call]]:
        check_compression(compression)  # invisible here: no wire
        st = self._state(mc, request, timeout, metadata, want_call)
        while True:
            call = _Call(self._table, self._envelope(st))
            response, failure = None, None
            start = time.monotonic()
            if call.error is None:
                try:
                    response = call.handler(call.request, call.context)
                    if inspect.isawaitable(response):
                        if st.wait_until is None:
                            response = await response
                        else:  # the client gives up at the deadline: cancel
                            response = await asyncio.wait_for(
                                response, max(0.0, st.wait_until - time.monotonic())
                            )
                except asyncio.TimeoutError:
                    raise st.attempt_error(TimeoutError(), st.endpoints[0], False) from None
                except Exception as e:
                    failure = e
            result = self._answer(st, call.reply(response, failure, time.monotonic() - start), mc)
            if result is not None:
                return result
            await asyncio.sleep(st.delay)

    async def close(self) -> None:
        self._fake_closed = True

    def __repr__(self) -> str:
        return "<nngrpc.testing.FakeAsyncChannel %s>" % ", ".join(sorted(self._table))
