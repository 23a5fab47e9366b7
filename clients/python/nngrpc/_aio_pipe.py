"""One multiplexed SP REQ connection on an asyncio event loop.

DESIGN
------
SP's REQ/REP framing puts a request id in front of every request, and the
REP side copies it in front of the reply.  NNG's REP socket with receive
contexts (hoteld's) reads the next request from a pipe while earlier ones
still run, and sends each reply on the pipe its request came from, in
whatever order the calls finish.  So one connection can carry many calls
at once: AioPipe keeps a table ``pending`` of request id -> future, writes
each request as it comes (asyncio's transport buffers and flushes), and
parses replies as bytes arrive (data_received), resolving the future of
each reply's id.  A reply whose id is not pending (its caller was
cancelled or gave up at its deadline) is counted in ``stale`` and dropped;
the caller removes its own entry when it stops waiting, so the table never
holds abandoned calls.

An oversize reply fails only its own call: the pipe reads its request id,
then skips its body.  A connection that breaks fails every pending call
with ConnectionError (PeerClosed at EOF); a peer that breaks the protocol
fails them with ProtocolError and the connection is aborted.

Only the event loop's thread touches an AioPipe.  The socket under the
transport is kept in ``sock`` so a forked child can close(2) its copy
without going through the parent's loop (see aio.py).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Dict, List, Optional, Union

from nngrpc._sp import (
    JOIN_MAX,
    PROTO_REP,
    PROTO_REQ,
    MessageTooLarge,
    PeerClosed,
    ProtocolError,
    _ID,
    _IPC_LEN,
    _TCP_LEN,
    first_request_id,
    handshake_header,
    next_request_id,
    parse_handshake,
    request_head,
)

#: What a pending call's future resolves to: the reply envelope.
Envelope = Union[bytes, bytearray]


class AioPipe(asyncio.Protocol):
    """An SP REQ connection carrying many calls at once (one loop only)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, url: str, *, ipc: bool, max_recv: int
    ) -> None:
        self.loop = loop
        self.url = url
        self.ipc = ipc
        self.max_recv = max_recv
        self.transport: Optional[asyncio.Transport] = None
        self.sock: Optional[socket.socket] = None  # set by the dialer
        #: request id -> future of its reply envelope
        self.pending: Dict[int, "asyncio.Future[Envelope]"] = {}
        self.ready: "asyncio.Future[None]" = loop.create_future()  # SP handshake
        self.lost: "asyncio.Future[None]" = loop.create_future()  # connection_lost ran
        self.closed = False
        self.stale = 0  # replies nobody waited for any more
        self.on_lost: Optional[Callable[["AioPipe"], None]] = None
        self._rid = first_request_id()
        self._buf = bytearray()
        self._head = 9 if ipc else 8
        self._handshaken = False
        self._skip = 0  # bytes of an oversize reply still to drop
        self._error: Optional[BaseException] = None  # why we aborted
        self._paused = False
        self._writable: List["asyncio.Future[None]"] = []

    # ---- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(handshake_header(PROTO_REQ))

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        try:
            used = self._parse(buf)
        except ProtocolError as e:
            self.abort(e)
            return
        if used:
            del buf[:used]

    def eof_received(self) -> bool:
        return False  # close; connection_lost fails what is pending

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        error = self._error or exc
        if not self.ready.done():
            self.ready.set_exception(self._failure(error))
            self.ready.exception()  # the dialer may be gone: mark retrieved
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._failure(error))
        self._wake_writers()
        if not self.lost.done():
            self.lost.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    # ---- calls -----------------------------------------------------------------
    def send(self, envelope: bytes, tail: bytes = b"") -> "tuple[int, asyncio.Future[Envelope]]":
        """Writes one request (envelope + tail, as _sp.ReqPipe.send_request);
        returns (request id, future of its reply).

        The caller must pending.pop(request id) when it stops waiting.
        """
        rid = next_request_id(self._rid)
        while rid in self.pending:  # only after 2**31 requests
            rid = next_request_id(rid)
        self._rid = rid
        fut: "asyncio.Future[Envelope]" = self.loop.create_future()
        self.pending[rid] = fut
        head = request_head(rid, len(envelope) + len(tail), ipc=self.ipc)
        transport = self.transport
        assert transport is not None
        if len(envelope) <= JOIN_MAX:
            transport.write(head + envelope + tail)
        else:
            transport.write(head)
            transport.write(envelope)
            if tail:
                transport.write(tail)
        return rid, fut

    @property
    def paused(self) -> bool:
        """True while the transport's write buffer is over its high mark."""
        return self._paused

    async def writable(self) -> None:
        """Waits until the write buffer drained (or the connection ended)."""
        if not self._paused or self.closed:
            return
        fut: "asyncio.Future[None]" = self.loop.create_future()
        self._writable.append(fut)
        try:
            await fut
        finally:
            if fut in self._writable:
                self._writable.remove(fut)

    def abort(self, error: BaseException) -> None:
        """Fails every pending call with error and drops the connection now."""
        if self._error is None:
            self._error = error
        if self.transport is not None and not self.closed:
            self.transport.abort()  # connection_lost follows, from the loop

    # ---- parsing ---------------------------------------------------------------
    def _parse(self, buf: bytearray) -> int:
        """Consumes whole frames from buf; returns how many bytes it used."""
        n = len(buf)
        pos = 0
        if not self._handshaken:
            if n < 8:
                return 0
            peer = parse_handshake(bytes(buf[:8]))
            if peer != PROTO_REP:
                raise ProtocolError(
                    "peer speaks SP protocol 0x%x, not REP (0x%x)" % (peer, PROTO_REP)
                )
            self._handshaken = True
            if not self.ready.done():
                self.ready.set_result(None)
            pos = 8
        head = self._head
        pending = self.pending
        while True:
            if self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
                if self._skip:
                    return pos
            if n - pos < head:
                return pos
            if self.ipc:
                kind, size = _IPC_LEN.unpack_from(buf, pos)
                if kind != 1:
                    raise ProtocolError("ipc message type %d, expected 1" % kind)
            else:
                (size,) = _TCP_LEN.unpack_from(buf, pos)
            if size < 4:
                raise ProtocolError("reply of %d bytes has no request id" % size)
            if size > self.max_recv:
                if n - pos < head + 4:
                    return pos  # need its request id first
                (rid,) = _ID.unpack_from(buf, pos + head)
                fut = pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(MessageTooLarge(size, self.max_recv))
                pos += head + 4
                self._skip = size - 4
                continue
            end = pos + head + size
            if n < end:
                return pos
            (rid,) = _ID.unpack_from(buf, pos + head)
            fut = pending.pop(rid, None)
            if fut is None or fut.done():
                self.stale += 1
            else:
                fut.set_result(buf[pos + head + 4 : end])
            pos = end

    # ---- helpers ---------------------------------------------------------------
    def _failure(self, error: Optional[BaseException]) -> BaseException:
        """Returns a fresh exception for one waiter of a lost connection."""
        if error is None:
            return PeerClosed("connection closed by the server")
        if isinstance(error, ProtocolError):
            return ProtocolError(str(error))
        if isinstance(error, OSError):
            return type(error)(*error.args) if error.args else ConnectionError(str(error))
        return ConnectionError(str(error) or type(error).__name__)

    def _wake_writers(self) -> None:
        waiters, self._writable = self._writable, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
