"""Client interceptors, in the shape of grpcio's unary-unary ones.

    channel = nngrpc.intercept_channel(nngrpc.Channel(url), TraceContextInterceptor(), mine)

An interceptor's ``intercept_unary_unary(continuation, client_call_details,
request)`` sees the call before it goes out: it may change the method,
the metadata, the timeout (a new ClientCallDetails, e.g. with
``details._replace(...)``) and the request, then calls
``continuation(details, request)``, which runs the rest of the chain and
the call and returns an Outcome: the response or the error, never raised
(``outcome.result()`` raises it, ``outcome.exception()`` returns it,
``outcome.code()``...).  The interceptor returns that outcome (or another
Outcome).  The first interceptor given is the outermost: it sees the call
first and the outcome last.  nngrpc.aio.intercept_channel is the same for
the asyncio channel, with ``async def intercept_unary_unary`` and ``await
continuation(...)``.

Failures: an interceptor that raises an RpcError fails the call with it (a
deliberate refusal).  One that raises anything else, or returns something
that is not an outcome, fails the call with INTERNAL "interceptor <name>
failed: ..." (the exception is its __cause__), and the interceptors outside
it see that as the call's outcome.  Interceptors run outside the channel:
whatever they do, the channel's connections and state are the ones a call
without interceptors leaves.  An error the channel raises for a call that
never started (ValueError: channel closed; TypeError: bad metadata) passes
through the interceptors as an exception, as without them.
"""

from __future__ import annotations

import abc
from typing import (
    Any,
    Awaitable,
    Callable,
    Generator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from nngrpc._channel import Channel, UnaryUnaryMultiCallable
from nngrpc._errors import Call, Metadata, RpcError, TrailingMetadata
from nngrpc._status_table import StatusCode

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class ClientCallDetails(NamedTuple):
    """What an interceptor may see and change about a call.

    ``method`` is the full name ("/package.Service/Method"), ``timeout`` in
    seconds (None: no deadline), ``metadata`` as the caller gave it (a
    mapping, (key, value) pairs, or None), ``idempotent`` whether failed
    attempts may be retried, ``compression`` the call's own (None: the
    channel's).  Change it with ``details._replace(...)``.
    """

    method: str
    timeout: Optional[float]
    metadata: Optional[Metadata]
    idempotent: bool
    compression: Optional[str] = None


def _pairs(metadata: Optional[Metadata]) -> List[Tuple[str, Union[str, bytes]]]:
    """Returns metadata as (key, value) pairs, whatever its form."""
    if not metadata:
        return []
    if isinstance(metadata, Mapping):
        return list(metadata.items())
    return list(metadata)


def with_metadata(details: ClientCallDetails, key: str, value: str) -> ClientCallDetails:
    """Returns details with metadata key set to value (added, or replacing
    the caller's value for key), whatever form the caller's metadata has."""
    pairs = [(k, v) for k, v in _pairs(details.metadata) if k != key]
    pairs.append((key, value))
    return details._replace(metadata=pairs)


def metadata_value(details: ClientCallDetails, key: str) -> Optional[str]:
    """Returns the caller's metadata value for key, or None (also for a
    bytes value, of a "-bin" key)."""
    for k, v in _pairs(details.metadata):
        if k == key:
            return v if isinstance(v, str) else None
    return None


class Outcome:
    """What a call came to, as interceptors see it (grpcio's call-future):
    the response or the RpcError, and the Call (status, trailers, the
    server's timings, request id, attempts).

    ``await outcome`` (asyncio) gives the response or raises, as grpc.aio's
    calls do.
    """

    __slots__ = ("_response", "_error", "call")

    def __init__(self, response: Any, call: Call, error: Optional[RpcError] = None) -> None:
        self._response = response
        self._error = error
        #: The call's status and details (the error's call when it failed).
        self.call = call

    @classmethod
    def of_response(cls, response: Any, call: Optional[Call] = None) -> "Outcome":
        """An outcome an interceptor makes itself: an OK response."""
        return cls(response, call if call is not None else Call(StatusCode.OK))

    @classmethod
    def of_error(cls, error: RpcError) -> "Outcome":
        """An outcome an interceptor makes itself: a failed call."""
        return cls(None, error.call, error)

    def result(self, timeout: Optional[float] = None) -> Any:
        """Returns the response; raises the call's RpcError if it failed."""
        if self._error is not None:
            raise self._error
        return self._response

    def exception(self, timeout: Optional[float] = None) -> Optional[RpcError]:
        """The call's RpcError, or None when it succeeded."""
        return self._error

    def done(self) -> bool:
        return True

    def code(self) -> StatusCode:
        return self.call.code()

    def details(self) -> str:
        return self.call.details()

    def trailing_metadata(self) -> TrailingMetadata:
        return self.call.trailing_metadata()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        return self.result()

    def __repr__(self) -> str:
        return "<Outcome %s>" % self.call.code().name


class UnaryUnaryClientInterceptor(abc.ABC):
    """Base of sync interceptors (as grpc.UnaryUnaryClientInterceptor)."""

    @abc.abstractmethod
    def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Outcome],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        """Runs the call through continuation(details, request) and
        returns its Outcome (or another one)."""


class AsyncUnaryUnaryClientInterceptor(abc.ABC):
    """Base of asyncio interceptors (as grpc.aio.UnaryUnaryClientInterceptor);
    nngrpc.aio.UnaryUnaryClientInterceptor."""

    @abc.abstractmethod
    async def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Awaitable[Outcome]],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        """Runs the call through ``await continuation(details, request)``
        and returns its Outcome (or another one)."""


Interceptor = Union[UnaryUnaryClientInterceptor, AsyncUnaryUnaryClientInterceptor]


# ---- running a chain -----------------------------------------------------------
def _failure(interceptor: Any, what: str, cause: Optional[BaseException]) -> Outcome:
    name = type(interceptor).__name__
    if cause is not None:
        what = "%s%s: %s" % (what, type(cause).__name__, cause)
    err = RpcError.of(StatusCode.INTERNAL, "interceptor %s failed: %s" % (name, what))
    err.__cause__ = cause
    return Outcome.of_error(err)


def _checked(interceptor: Any, outcome: Any) -> Outcome:
    """Returns outcome if it is one (or quacks like one), else the INTERNAL
    outcome that says what the interceptor returned."""
    if isinstance(outcome, Outcome):
        return outcome
    if callable(getattr(outcome, "result", None)) and callable(getattr(outcome, "exception", None)):
        error = outcome.exception()
        if error is not None:
            if isinstance(error, RpcError):
                return Outcome.of_error(error)
            return _failure(interceptor, "its outcome failed with ", error)
        return Outcome.of_response(outcome.result(), getattr(outcome, "call", None))
    return _failure(
        interceptor, "returned %s, not the outcome of continuation()" % type(outcome).__name__, None
    )


def run_chain(
    interceptors: Sequence[UnaryUnaryClientInterceptor],
    invoke: Callable[[ClientCallDetails, Any], Tuple[Any, Call]],
    details: ClientCallDetails,
    request: Any,
) -> Outcome:
    """Runs details and request through interceptors, then invoke (the
    channel's call: returns (response, Call), raises RpcError)."""
    passing: List[BaseException] = []  # exceptions continuation raised, to tell them apart

    def step(i: int, d: ClientCallDetails, r: Any) -> Outcome:
        if i == len(interceptors):
            try:
                response, call = invoke(d, r)
            except RpcError as e:
                return Outcome.of_error(e)
            return Outcome(response, call)
        interceptor = interceptors[i]

        def continuation(d2: ClientCallDetails, r2: Any) -> Outcome:
            try:
                return step(i + 1, d2, r2)
            except Exception as e:
                passing.append(e)
                raise

        try:
            out = interceptor.intercept_unary_unary(continuation, d, r)
        except RpcError as e:
            return Outcome.of_error(e)
        except Exception as e:
            if any(e is p for p in passing):
                raise
            return _failure(interceptor, "", e)
        return _checked(interceptor, out)

    return step(0, details, request)


async def run_chain_async(
    interceptors: Sequence[AsyncUnaryUnaryClientInterceptor],
    invoke: Callable[[ClientCallDetails, Any], Awaitable[Tuple[Any, Call]]],
    details: ClientCallDetails,
    request: Any,
) -> Outcome:
    """run_chain for asyncio interceptors and an awaitable invoke."""
    passing: List[BaseException] = []

    async def step(i: int, d: ClientCallDetails, r: Any) -> Outcome:
        if i == len(interceptors):
            try:
                response, call = await invoke(d, r)
            except RpcError as e:
                return Outcome.of_error(e)
            return Outcome(response, call)
        interceptor = interceptors[i]

        async def continuation(d2: ClientCallDetails, r2: Any) -> Outcome:
            try:
                return await step(i + 1, d2, r2)
            except Exception as e:
                passing.append(e)
                raise

        try:
            out = await interceptor.intercept_unary_unary(continuation, d, r)
        except RpcError as e:
            return Outcome.of_error(e)
        except Exception as e:
            if any(e is p for p in passing):
                raise
            return _failure(interceptor, "", e)
        return _checked(interceptor, out)

    return await step(0, details, request)


# ---- the sync channel ------------------------------------------------------------
class InterceptedChannel(Channel):
    """A Channel whose calls go through interceptors; made by
    intercept_channel().  Closing it closes the channel it wraps."""

    def __init__(
        self, channel: Channel, interceptors: Sequence[UnaryUnaryClientInterceptor]
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
        mc: UnaryUnaryMultiCallable[bytes, bytes] = self.unary_unary(method, idempotent=idempotent)
        return mc.with_call(request, timeout, metadata, compression=compression)

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return "<nngrpc.Channel %r through %d interceptor(s)>" % (
            self._inner,
            len(self._interceptors),
        )


class InterceptedUnaryUnaryMultiCallable(UnaryUnaryMultiCallable[RequestT, ResponseT]):
    """One method of an InterceptedChannel."""

    __slots__ = ("_interceptors", "_parse")

    def __init__(
        self,
        channel: Channel,
        method: str,
        request_serializer: Optional[Callable[[RequestT], bytes]],
        response_deserializer: Optional[Callable[[bytes], ResponseT]],
        idempotent: bool,
        interceptors: Sequence[UnaryUnaryClientInterceptor],
    ) -> None:
        super().__init__(channel, method, request_serializer, response_deserializer, idempotent)
        self._interceptors = interceptors
        self._parse = response_deserializer

    def __call__(
        self,
        request: RequestT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        *,
        compression: Optional[str] = None,
    ) -> ResponseT:
        return self.with_call(request, timeout, metadata, compression=compression)[0]

    def with_call(
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
        outcome = run_chain(self._interceptors, self._invoke, details, request)
        return outcome.result(), outcome.call

    def _invoke(self, details: ClientCallDetails, request: Any) -> Tuple[Any, Call]:
        mc: UnaryUnaryMultiCallable[Any, Any] = self
        if details.method != self._method or details.idempotent != self._idempotent:
            mc = UnaryUnaryMultiCallable(
                self._channel, details.method, self._serialize, self._parse, details.idempotent
            )
        return self._channel._unary(  # type: ignore[no-any-return]
            mc, request, details.timeout, details.metadata, True, details.compression
        )


def intercept_channel(channel: Channel, *interceptors: UnaryUnaryClientInterceptor) -> Channel:
    """Returns a Channel whose calls go through interceptors, the first
    one outermost (as grpc.intercept_channel).  The stubs take it like any
    Channel; closing it closes channel."""
    for i in interceptors:
        if not callable(getattr(i, "intercept_unary_unary", None)):
            raise TypeError("%r is not a unary-unary client interceptor" % (i,))
    if isinstance(channel, InterceptedChannel):  # one flat chain, outermost first
        return InterceptedChannel(channel._inner, tuple(interceptors) + channel._interceptors)
    return InterceptedChannel(channel, interceptors)
