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
resolves the future of each reply's id as replies are parsed.  A reply
whose id is not pending (its caller was cancelled or gave up at its
deadline) is counted in ``stale`` and dropped; the caller removes its own
entry when it stops waiting, so the table never holds abandoned calls.

AioPipe is an asyncio.BufferedProtocol: the transport receives straight
into the connection's reused buffer (_sp.FrameReader, the same parser the
sync pipe uses), and each reply's envelope is copied out once, into the
bytes its future resolves to (the caller decodes it later, after the
buffer has moved on).

An oversize reply fails only its own call: the reader skips its body.  A
connection that breaks fails every pending call with ConnectionError
(PeerClosed at EOF); a peer that breaks the protocol fails them with
ProtocolError and the connection is aborted.

Only the event loop's thread touches an AioPipe.  The socket under the
transport is kept in ``sock`` so a forked child can close(2) its copy
without going through the parent's loop (see aio.py).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

from nngrpc._caps import UNKNOWN
from nngrpc._sp import (
    IPC_HEAD,
    OVERSIZE,
    PROTO_REQ,
    TCP_HEAD,
    FrameReader,
    MessageTooLarge,
    PeerClosed,
    ProtocolError,
    check_rep,
    first_request_id,
    handshake_header,
    next_request_id,
)

#: What a pending call's future resolves to: the reply envelope.
Envelope = bytes
Bytes = Union[bytes, bytearray, memoryview]

#: Above this many payload bytes a request is handed to the transport in
#: two writes instead of being joined to its head (no copy of the payload).
JOIN_MAX = 2048


class AioPipe(asyncio.BufferedProtocol):
    """An SP REQ connection carrying many calls at once (one loop only)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, url: str, *, ipc: bool, max_recv: int
    ) -> None:
        self.loop = loop
        self.url = url
        self.ipc = ipc
        self.transport: Optional[asyncio.Transport] = None
        self.sock: Optional[socket.socket] = None  # set by the dialer
        #: request id -> future of its reply envelope
        self.pending: Dict[int, "asyncio.Future[Envelope]"] = {}
        self.ready: "asyncio.Future[None]" = loop.create_future()  # SP handshake
        self.lost: "asyncio.Future[None]" = loop.create_future()  # connection_lost ran
        self.closed = False
        self.stale = 0  # replies nobody waited for any more
        #: The last request sent or reply received (monotonic): idle since
        #: then when nothing is pending.
        self.last_active = time.monotonic()
        self.on_lost: Optional[Callable[["AioPipe"], None]] = None
        self.reader = FrameReader(ipc=ipc, max_recv=max_recv, skip_oversize=True)
        #: What the server on this connection supports (_caps.Caps).
        self.caps = UNKNOWN
        #: False once the server answered a cancel UNIMPLEMENTED (an old
        #: one): the channel sends it no more (CallState.cancel_answered).
        self.cancels = True
        self._rid = first_request_id()
        self._handshaken = False
        self._error: Optional[BaseException] = None  # why we aborted
        self._paused = False
        self._writable: List["asyncio.Future[None]"] = []

    # ---- asyncio.BufferedProtocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(handshake_header(PROTO_REQ))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.space()

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.filled(nbytes)
        try:
            self._parse()
        except ProtocolError as e:
            self.abort(e)

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
    def send(self, head: bytes, payload: Bytes) -> "Tuple[int, asyncio.Future[Envelope]]":
        """Writes one request (envelope head, then payload); returns
        (request id, future of its reply envelope).

        The caller must pending.pop(request id) when it stops waiting.
        """
        self.last_active = time.monotonic()
        rid = next_request_id(self._rid)
        while rid in self.pending:  # only after 2**31 requests
            rid = next_request_id(rid)
        self._rid = rid
        fut: "asyncio.Future[Envelope]" = self.loop.create_future()
        self.pending[rid] = fut
        size = len(head) + len(payload) + 4
        if self.ipc:
            sp_head = IPC_HEAD.pack(1, size, rid)
        else:
            sp_head = TCP_HEAD.pack(size, rid)
        transport = self.transport
        assert transport is not None
        if len(payload) <= JOIN_MAX:
            transport.write(sp_head + head + payload)
        else:  # an empty transport sends each write at once, uncopied
            transport.write(sp_head + head)
            transport.write(payload)
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
    def _parse(self) -> None:
        """Resolves the futures of every complete reply received."""
        reader = self.reader
        if not self._handshaken:
            header = reader.handshake()
            if header is None:
                return
            check_rep(header)
            self._handshaken = True
            if not self.ready.done():
                self.ready.set_result(None)
        pending = self.pending
        while True:
            frame = reader.next()
            if frame is None:
                return
            rid, start, end = frame
            self.last_active = time.monotonic()
            fut = pending.pop(rid, None)
            if fut is None or fut.done():
                self.stale += 1
            elif start == OVERSIZE:
                fut.set_exception(MessageTooLarge(end, reader.max_recv))
            else:
                fut.set_result(reader.view[start:end].tobytes())

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
