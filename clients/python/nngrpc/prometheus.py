"""Client-side Prometheus metrics for nngrpc calls, as an interceptor.

    import nngrpc
    from nngrpc.prometheus import PrometheusInterceptor

    channel = nngrpc.intercept_channel(nngrpc.Channel(url), PrometheusInterceptor())
    # prometheus_client.start_http_server(9100), or your framework's /metrics

Needs ``prometheus_client`` (Debian: python3-prometheus-client); ``import
nngrpc`` never imports it, only this module does.  Metrics (the names are
the defaults, ``namespace="nngrpc"``):

- ``nngrpc_client_calls_total{method, code}``: calls finished, by full
  method name and status code name (``OK``, ``UNAVAILABLE``...);
- ``nngrpc_client_call_duration_seconds{method}``: a histogram of the
  time each call took, retries and backoff included, as the caller waited.

Interceptors sharing a registry share the metrics (prometheus_client
refuses to register a name twice): making several is fine.  A call that
fails before it is sent (a closed channel's ValueError) is not counted.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple

try:
    import prometheus_client
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(
        "nngrpc.prometheus needs prometheus_client"
        " (Debian: apt-get install python3-prometheus-client)"
    ) from e

from nngrpc._intercept import (
    AsyncUnaryUnaryClientInterceptor,
    ClientCallDetails,
    Outcome,
    UnaryUnaryClientInterceptor,
)

__all__ = ["AsyncPrometheusInterceptor", "DEFAULT_BUCKETS", "PrometheusInterceptor"]

#: Latency buckets (seconds): 100 us to 10 s, for calls that take tens of
#: microseconds on a LAN and seconds when they wait on a busy server.
DEFAULT_BUCKETS: Tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

_LOCK = threading.Lock()
# registry -> namespace -> (calls counter, duration histogram)
_METRICS: "weakref.WeakKeyDictionary[Any, Dict[str, Tuple[Any, Any]]]" = weakref.WeakKeyDictionary()


def _metrics(registry: Any, namespace: str, buckets: Sequence[float]) -> Tuple[Any, Any]:
    """Returns the collectors for registry, registering them once."""
    with _LOCK:
        mine = _METRICS.setdefault(registry, {})
        found = mine.get(namespace)
        if found is None:
            calls = prometheus_client.Counter(
                "client_calls",
                "nngrpc calls finished by this client, by method and status code.",
                ["method", "code"],
                namespace=namespace,
                registry=registry,
            )
            duration = prometheus_client.Histogram(
                "client_call_duration_seconds",
                "Time nngrpc calls took, as their callers waited (retries included).",
                ["method"],
                namespace=namespace,
                registry=registry,
                buckets=tuple(buckets),
            )
            found = mine[namespace] = (calls, duration)
        return found


class _Metrics:
    """What both interceptors record."""

    def __init__(
        self, registry: Optional[Any], namespace: str, buckets: Sequence[float]
    ) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        self.calls, self.duration = _metrics(reg, namespace, buckets)

    def record(self, method: str, outcome: Outcome, seconds: float) -> None:
        self.calls.labels(method, outcome.code().name).inc()
        self.duration.labels(method).observe(seconds)


class PrometheusInterceptor(UnaryUnaryClientInterceptor, _Metrics):
    """Counts calls by method and code and times them (see the module).

    ``registry``: a prometheus_client CollectorRegistry (default: the
    global one); ``namespace``: the metric name prefix; ``buckets``: the
    latency histogram's upper bounds in seconds.
    """

    def __init__(
        self,
        registry: Optional[Any] = None,
        *,
        namespace: str = "nngrpc",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        _Metrics.__init__(self, registry, namespace, buckets)

    def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Outcome],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        start = time.perf_counter()
        outcome = continuation(client_call_details, request)
        self.record(client_call_details.method, outcome, time.perf_counter() - start)
        return outcome


class AsyncPrometheusInterceptor(AsyncUnaryUnaryClientInterceptor, _Metrics):
    """PrometheusInterceptor for nngrpc.aio channels."""

    def __init__(
        self,
        registry: Optional[Any] = None,
        *,
        namespace: str = "nngrpc",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        _Metrics.__init__(self, registry, namespace, buckets)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Awaitable[Outcome]],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Outcome:
        start = time.perf_counter()
        outcome = await continuation(client_call_details, request)
        self.record(client_call_details.method, outcome, time.perf_counter() - start)
        return outcome
