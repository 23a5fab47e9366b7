"""Health checks: is a server, or one of its services, serving?

    import nngrpc, nngrpc.health

    with nngrpc.Channel("tcp://127.0.0.1:5555") as ch:
        if nngrpc.health.check(ch) is nngrpc.health.ServingStatus.SERVING:
            ...
        nngrpc.health.check(ch, "hotel.v1.HotelSearch", timeout=1.0)

Every nngrpc server has ``nngrpc.health.v1.Health/Check``, with the message
shapes and serving states of gRPC's ``grpc.health.v1``.  The service name ""
asks about the server as a whole; a service the server does not know is
answered NOT_FOUND (raised as RpcError).  A server answers NOT_SERVING while
it starts (before its data is ready) and while it drains after SIGTERM.
Health checks never need the authorization token.

The generated code is in ``nngrpc.health.v1`` (``health_pb2``,
``health_nngrpc.HealthStub``).
"""

from __future__ import annotations

import enum
from typing import Optional

from nngrpc._channel import Channel
from nngrpc._errors import Metadata
from nngrpc.health.v1 import health_nngrpc, health_pb2

__all__ = ["DEFAULT_TIMEOUT", "SERVICE_NAME", "ServingStatus", "check"]

#: The full name of the health service.
SERVICE_NAME = "nngrpc.health.v1.Health"

#: Deadline of a check when none is given (seconds).
DEFAULT_TIMEOUT = 5.0


class ServingStatus(enum.IntEnum):
    """Serving states, numbered as in grpc.health.v1
    (``HealthCheckResponse.ServingStatus``)."""

    #: Not known (also any number this client does not know).
    UNKNOWN = 0
    #: Calls to the service are being served.
    SERVING = 1
    #: The service is starting or draining: send calls elsewhere.
    NOT_SERVING = 2
    #: Only used by Watch in gRPC; never sent by nngrpc servers.
    SERVICE_UNKNOWN = 3

    @classmethod
    def from_int(cls, number: int) -> "ServingStatus":
        """The member with this number; UNKNOWN for any other."""
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN


def check(
    channel: Channel,
    service: str = "",
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    metadata: Optional[Metadata] = None,
) -> ServingStatus:
    """Returns the serving state of ``service`` ("" for the whole server).

    Raises nngrpc.RpcError when the check itself fails: NOT_FOUND for a
    service the server does not have, UNAVAILABLE when nothing answers,
    DEADLINE_EXCEEDED after ``timeout`` seconds (None: no deadline).
    """
    stub = health_nngrpc.HealthStub(channel)
    resp = stub.Check(
        health_pb2.HealthCheckRequest(service=service),
        timeout=timeout,
        metadata=metadata,
    )
    status: int = resp.status
    return ServingStatus.from_int(status)
