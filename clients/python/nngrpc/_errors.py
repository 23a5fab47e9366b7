"""RpcError and Call: the outcome of one call, as grpcio shows it."""

from __future__ import annotations

from typing import Mapping, Sequence, Tuple, Union

from nngrpc._status_table import StatusCode

#: Request metadata: a mapping or a sequence of (key, value) pairs.  Values
#: are str; a key ending in "-bin" may have bytes (sent base64-encoded).
Metadata = Union[
    Mapping[str, Union[str, bytes]], Sequence[Tuple[str, Union[str, bytes]]]
]

#: Trailing metadata as returned: (key, value) pairs, sorted by key; the
#: value of a key ending in "-bin" is bytes, of any other key str.
TrailingMetadata = Tuple[Tuple[str, Union[str, bytes]], ...]


#: The request metadata key that carries a call's request id.  The channel
#: sets it to a fresh random id unless the caller's metadata has one; the
#: server logs it with the call.
REQUEST_ID_KEY = "nngrpc-request-id"


class Call:
    """The status and server timings of one finished call.

    ``queue_us`` and ``run_us`` are the server's own times (microseconds
    waiting in its queue, and running the handler); both are 0 when the
    answer did not come from the server (e.g. a client-side deadline).
    ``request_id`` is the call's ``nngrpc-request-id`` metadata (the
    caller's, or the one the channel generated), the key to the server's
    log lines about it; ``attempts`` is how many times the request was sent
    (or tried to be: more than 1 only when the channel retried it).
    ``compression`` is the encoding the reply's payload came in
    ("identity" unless the call asked for compression and the server
    compressed it); the client has decompressed it already.
    """

    __slots__ = (
        "_code",
        "_details",
        "_trailers",
        "queue_us",
        "run_us",
        "request_id",
        "attempts",
        "compression",
        "_peer",
    )

    def __init__(
        self,
        code: StatusCode,
        details: str = "",
        trailing_metadata: TrailingMetadata = (),
        queue_us: int = 0,
        run_us: int = 0,
        request_id: str = "",
        attempts: int = 1,
        compression: str = "identity",
        peer: str = "",
    ) -> None:
        self._code = code
        self._details = details
        self._trailers = trailing_metadata
        self.queue_us = queue_us
        self.run_us = run_us
        self.request_id = request_id
        self.attempts = attempts
        self.compression = compression
        self._peer = peer

    def code(self) -> StatusCode:
        """The status code of the call."""
        return self._code

    def details(self) -> str:
        """The status message (empty on success)."""
        return self._details

    def peer(self) -> str:
        """The server that answered, as the endpoint's URL
        (``tcp://10.0.1.7:5555``, ``ipc:///run/hoteld.sock``: for a target
        whose host is a DNS name, the address it resolved to); "" when no
        server answered (the client made the status: a deadline, no
        connection).  grpc's ``Call.peer()``, in nngrpc's URL form."""
        return self._peer

    def trailing_metadata(self) -> TrailingMetadata:
        """The trailers the handler set, as (key, value) pairs ("-bin"
        values as bytes)."""
        return self._trailers

    def __repr__(self) -> str:
        return "<Call %s %r queue_us=%d run_us=%d request_id=%s>" % (
            self._code.name,
            self._details,
            self.queue_us,
            self.run_us,
            self.request_id or "-",
        )


class RpcError(Exception):
    """A call ended with a status other than OK.

    Like grpc.RpcError it has ``code()``, ``details()`` and
    ``trailing_metadata()``; ``call`` holds the whole outcome (with the
    server's timings when the server answered).
    """

    def __init__(self, call: Call) -> None:
        super().__init__(call.code(), call.details())
        self.call = call

    @classmethod
    def of(cls, code: StatusCode, details: str) -> "RpcError":
        """Returns an error made on the client side (no server timings)."""
        return cls(Call(code, details))

    def code(self) -> StatusCode:
        """The status code."""
        return self.call.code()

    def details(self) -> str:
        """The status message."""
        return self.call.details()

    def peer(self) -> str:
        """The server that answered, as the endpoint's URL
        (``tcp://10.0.1.7:5555``, ``ipc:///run/hoteld.sock``: for a target
        whose host is a DNS name, the address it resolved to); "" when no
        server answered (the client made the status: a deadline, no
        connection): ``call.peer()``."""
        return self.call.peer()

    def trailing_metadata(self) -> TrailingMetadata:
        """The trailers the handler set, as (key, value) pairs."""
        return self.call.trailing_metadata()

    @property
    def request_id(self) -> str:
        """The call's request id (``nngrpc-request-id``), as the server
        logged it; empty for an error raised before a request was built."""
        return self.call.request_id

    def __str__(self) -> str:
        return "%s: %s" % (self.call.code().name, self.call.details())

    def __repr__(self) -> str:
        return "<RpcError %s %r>" % (self.call.code().name, self.call.details())
