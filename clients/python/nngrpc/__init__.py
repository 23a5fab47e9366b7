"""nngrpc: gRPC-style calls to C services over NNG's REQ/REP protocol.

    import nngrpc
    from nngrpc.testing.v1 import testing_pb2, testing_nngrpc

    with nngrpc.Channel("tcp://127.0.0.1:5555") as ch:
        stub = testing_nngrpc.TestingStub(ch)
        resp = stub.Echo(testing_pb2.EchoRequest(payload=b"hi"), timeout=1.0)

The client speaks NNG's SP wire protocol itself on Python sockets (no
libnng in the process), so it is fork-safe, releases the GIL while it
waits, and Ctrl+C interrupts a waiting call.  ``nngrpc.aio`` is the
asyncio client (many calls multiplexed over a few connections); idempotent
calls are retried (``RetryPolicy``); ``tls+tcp://`` endpoints take a
``TlsConfig``.
"""

from nngrpc._channel import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    Channel,
    UnaryUnaryMultiCallable,
)
from nngrpc._errors import REQUEST_ID_KEY, Call, Metadata, RpcError, TrailingMetadata
from nngrpc._intercept import (
    ClientCallDetails,
    Outcome,
    UnaryUnaryClientInterceptor,
    intercept_channel,
)
from nngrpc._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from nngrpc._status_table import StatusCode
from nngrpc._tls import TlsConfig
from nngrpc._version import __version__

__all__ = [
    "Call",
    "Channel",
    "ClientCallDetails",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_RECEIVE_MESSAGE_BYTES",
    "DEFAULT_RETRY_POLICY",
    "Metadata",
    "Outcome",
    "REQUEST_ID_KEY",
    "RetryPolicy",
    "RpcError",
    "StatusCode",
    "TlsConfig",
    "TrailingMetadata",
    "UnaryUnaryClientInterceptor",
    "UnaryUnaryMultiCallable",
    "__version__",
    "intercept_channel",
]
