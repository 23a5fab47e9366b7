"""W3C Trace Context for nngrpc calls: an interceptor that sends a
``traceparent`` with every call.

    import nngrpc
    from nngrpc.tracing import TraceContextInterceptor

    channel = nngrpc.intercept_channel(nngrpc.Channel(url), TraceContextInterceptor())

    # asyncio
    channel = nngrpc.aio.intercept_channel(nngrpc.aio.Channel(url),
                                           AsyncTraceContextInterceptor())

What is sent (https://www.w3.org/TR/trace-context/, version 00):

- the caller's own ``traceparent`` metadata, unchanged, when it is valid
  (the caller already traces, e.g. with OpenTelemetry's propagator);
- else, when ``parent`` is given and returns a valid traceparent (the
  trace the caller is in, e.g. the incoming request's), a child of it: the
  same trace id, a new parent id (this call's span), the same flags;
- else a new trace: a random 16-byte trace id, a random 8-byte parent id,
  flags ``01`` (sampled) unless ``sampled=False``.

An invalid traceparent the caller sent is replaced (the W3C rule: restart
the trace).  ``tracestate`` is the caller's business and passes untouched.
hoteld writes the trace id of each call in its access log (``trace_id``),
so a call can be found there from the trace it belongs to.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Optional, Tuple

from nngrpc import _core
from nngrpc._intercept import (
    AsyncUnaryUnaryClientInterceptor,
    ClientCallDetails,
    Outcome,
    UnaryUnaryClientInterceptor,
    metadata_value,
    with_metadata,
)

__all__ = [
    "AsyncTraceContextInterceptor",
    "TRACEPARENT_KEY",
    "TraceContextInterceptor",
    "child_traceparent",
    "new_traceparent",
    "parse_traceparent",
]

#: The metadata key W3C Trace Context uses.
TRACEPARENT_KEY = "traceparent"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: str) -> Optional[Tuple[str, str, str, str]]:
    """Returns (version, trace id, parent id, flags) of a valid traceparent
    (hex strings), or None."""
    m = _TRACEPARENT.match(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return version, trace_id, parent_id, flags


def _hex(bits: int) -> str:
    while True:
        n = _core.random_bits(bits)
        if n:
            return "%0*x" % (bits // 4, n)


def new_traceparent(sampled: bool = True) -> str:
    """Returns a traceparent starting a new trace."""
    return "00-%s-%s-%s" % (_hex(128), _hex(64), "01" if sampled else "00")


def child_traceparent(parent: str) -> Optional[str]:
    """Returns a traceparent for a call made inside the trace of parent (a
    new parent id), or None if parent is not valid."""
    parsed = parse_traceparent(parent)
    if parsed is None:
        return None
    _, trace_id, _, flags = parsed
    return "00-%s-%s-%s" % (trace_id, _hex(64), flags)


class _TraceContext:
    """What both interceptors do to a call's details."""

    def __init__(self, sampled: bool, parent: Optional[Callable[[], Optional[str]]]) -> None:
        self.sampled = sampled
        self.parent = parent

    def traceparent(self, details: ClientCallDetails) -> Optional[str]:
        """The traceparent to send, or None to send the caller's as it is."""
        mine = metadata_value(details, TRACEPARENT_KEY)
        if mine is not None and parse_traceparent(mine) is not None:
            return None
        if self.parent is not None:
            outer = self.parent()
            if outer:
                child = child_traceparent(outer)
                if child is not None:
                    return child
        return new_traceparent(self.sampled)

    def apply(self, details: ClientCallDetails) -> ClientCallDetails:
        value = self.traceparent(details)
        if value is None:
            return details
        return with_metadata(details, TRACEPARENT_KEY, value)


class TraceContextInterceptor(UnaryUnaryClientInterceptor, _TraceContext):
    """Sends a W3C ``traceparent`` with every call (see the module).

    ``sampled``: the flag of new traces.  ``parent``: a function returning
    the traceparent of the trace the caller is in (or None), e.g. read from
    the request being served.
    """

    def __init__(
        self, *, sampled: bool = True, parent: Optional[Callable[[], Optional[str]]] = None
    ) -> None:
        _TraceContext.__init__(self, sampled, parent)

    def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Outcome],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        return continuation(self.apply(client_call_details), request)


class AsyncTraceContextInterceptor(AsyncUnaryUnaryClientInterceptor, _TraceContext):
    """TraceContextInterceptor for nngrpc.aio channels."""

    def __init__(
        self, *, sampled: bool = True, parent: Optional[Callable[[], Optional[str]]] = None
    ) -> None:
        _TraceContext.__init__(self, sampled, parent)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Awaitable[Outcome]],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        return await continuation(self.apply(client_call_details), request)
