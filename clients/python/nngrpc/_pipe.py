"""ReqPipe: one blocking-style SP REQ conversation on a stream socket, for
the sync Channel.

Waiting for a reply is one blocking recv_into, bounded by the call's
deadline through SO_RCVTIMEO (set again only when a call's deadline is
nearer than the one armed: calls with the same timeout arm it once), so a
call costs two system calls, send and recv, and a third, poll(0) (is the
pooled connection still open?, asked by the channel), when its connection
was idle for 2 ms or more.  Sends never block
(MSG_DONTWAIT; a full socket buffer is waited for with poll, within the
deadline).  Every wait releases the GIL and is interrupted by signals
(Ctrl+C raises KeyboardInterrupt, PEP 475).  A socket with a Python
timeout would add a poll before the send and before each recv.

Sending: the SP header with the envelope head is one small bytes object;
the payload goes with it in one sendmsg (scatter-gather), never copied.
Receiving: recv_into the connection's reused buffer (_sp.FrameReader); the
reply's envelope is returned as a region of that buffer, valid until the
next call on this pipe, so the caller decodes it before it gives the pipe
back.  _tls.TlsReqPipe does the same over ssl.SSLSocket.

A ReqPipe is not thread-safe: it carries one call at a time.  Its caller
closes it after any exception, since a late reply could still arrive.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import time
from typing import Optional, Tuple, Union

from nngrpc._caps import UNKNOWN
from nngrpc._sp import (
    IPC_HEAD,
    PROTO_REQ,
    TCP_HEAD,
    FrameReader,
    PeerClosed,
    check_rep,
    first_request_id,
    handshake_header,
)

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
MSG_DONTWAIT = socket.MSG_DONTWAIT

_monotonic = time.monotonic  # one global lookup on the per-call path, not two
#: struct timeval, for SO_RCVTIMEO.
_TIMEVAL = struct.Struct("@ll")
#: How much sooner than a call's deadline the receive timeout is armed.
ARM_SLACK = 0.001

#: Below this many payload bytes the head and the payload are joined and
#: sent with send(); above, sendmsg sends both without copying the payload
#: (measured: the join is cheaper than sendmsg's iovec for small payloads).
JOIN_MAX = 2048

Bytes = Union[bytes, bytearray, memoryview]

#: A reply's envelope: (a view of the receive buffer, start, end).
Region = Tuple[memoryview, int, int]


class ReqPipe:
    """One REQ conversation on a connected stream socket (not thread-safe).

    Takes sock (blocking for tcp and ipc, non-blocking for TLS); close()
    closes it.
    """

    __slots__ = (
        "sock", "ipc", "reader", "caps", "idle_since", "_rid", "_poller", "_fd", "_armed", "_tcp",
    )

    #: TLS pipes keep a non-blocking socket, wait with poll and send
    #: through _send() (SSLSocket has no sendmsg).
    tls = False

    def __init__(self, sock: socket.socket, *, ipc: bool, max_recv: int) -> None:
        sock.setblocking(self.tls is False)
        self.sock = sock
        self._armed = 0.0  # the SO_RCVTIMEO set (seconds; 0: none)
        self.ipc = ipc
        self._tcp = not ipc and not self.tls  # plain SP over TCP: call()'s fast path
        self.reader = FrameReader(ipc=ipc, max_recv=max_recv)
        #: What the server on this connection supports (_caps.Caps).
        self.caps = UNKNOWN
        self._rid = first_request_id()
        self._fd = sock.fileno()
        #: When the pipe last went back to its channel's pool (monotonic).
        self.idle_since = 0.0
        self._poller = select.poll()
        self._poller.register(self._fd, POLLIN)

    # ---- waiting -------------------------------------------------------------
    def _wait(self, events: int, deadline: Optional[float]) -> None:
        """Polls until the socket is ready for events (POLLIN or POLLOUT).

        Raises TimeoutError when the deadline passes first.  A signal
        handler's exception (KeyboardInterrupt) propagates from poll.
        """
        poller = self._poller
        if events != POLLIN:
            poller.modify(self._fd, events)
        try:
            while True:
                if deadline is None:
                    ms = -1
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("deadline passed")
                    ms = math.ceil(left * 1000)
                if poller.poll(ms):
                    return
        finally:
            if events != POLLIN:
                poller.modify(self._fd, POLLIN)

    # ---- raw I/O (overridden for TLS) -------------------------------------------
    def _send(self, head: bytes, payload: Bytes, deadline: Optional[float]) -> None:
        """Sends head then payload, waiting for room as needed."""
        if len(payload) <= JOIN_MAX:
            data = head + payload
            try:
                sent = self.sock.send(data, MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._send_all(memoryview(data)[sent:], deadline)
            return
        try:
            sent = self.sock.sendmsg((head, payload), (), MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(head):
            self._send_all(memoryview(head)[sent:], deadline)
            sent = len(head)
        if sent - len(head) < len(payload):
            self._send_all(memoryview(payload)[sent - len(head) :], deadline)

    def _send_all(self, view: memoryview, deadline: Optional[float]) -> None:
        sock = self.sock
        while view:
            try:
                n = sock.send(view, MSG_DONTWAIT)
            except BlockingIOError:
                self._wait(POLLOUT, deadline)
                continue
            view = view[n:]

    def _receive(self, deadline: Optional[float], wait_first: bool) -> None:
        """Receives what comes next into the reader (at least one byte),
        waiting in a blocking recv until the deadline; raises PeerClosed at
        EOF, TimeoutError when the deadline passes.  (wait_first matters
        to the TLS pipe, which polls.)"""
        reader = self.reader
        while True:
            if deadline is None:
                if self._armed:
                    self._arm(0.0)
            else:
                left = deadline - _monotonic()
                if left <= 0:
                    raise TimeoutError("deadline passed")
                armed = self._armed
                if left < armed or not armed:
                    # A little short of the deadline, so that the next calls
                    # with the same timeout find it armed already.
                    self._arm(left - ARM_SLACK if left > 2 * ARM_SLACK else left)
            if reader.start == reader.end and not reader._grown:
                # All parsed (always so for a call's first receive): the
                # common case of reader.space() inline.
                reader.start = reader.end = 0
                space = reader.view
            else:
                space = reader.space()
            try:
                got = self.sock.recv_into(space)
            except BlockingIOError:  # SO_RCVTIMEO ran out: check the deadline
                continue
            if not got:
                raise PeerClosed("connection closed by the server")
            reader.end += got
            return

    def _arm(self, seconds: float) -> None:
        """Sets SO_RCVTIMEO: a blocking recv returns EAGAIN after seconds
        (0: never)."""
        whole = int(seconds)
        micros = int((seconds - whole) * 1e6)
        if seconds and not whole and not micros:
            micros = 1
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(whole, micros))
        self._armed = seconds

    # ---- handshake ---------------------------------------------------------
    def handshake(self, deadline: Optional[float]) -> None:
        """Exchanges SP headers; raises ProtocolError unless the peer is REP."""
        self._send_all(memoryview(handshake_header(PROTO_REQ)), deadline)
        reader = self.reader
        wait = True
        while True:
            header = reader.handshake()
            if header is not None:
                check_rep(header)
                return
            self._receive(deadline, wait)
            wait = False

    # ---- one call ------------------------------------------------------------
    def call(self, head: bytes, payload: Bytes, deadline: Optional[float]) -> Region:
        """Sends one request, envelope head + payload, and returns where the
        envelope of its reply is: (view of the receive buffer, start, end),
        valid until the next call on this pipe.

        Replies with other ids are stale and dropped.  Raises
        MessageTooLarge, ProtocolError, PeerClosed (or another OSError) or
        TimeoutError.
        """
        rid = self._rid = 0x80000000 | ((self._rid + 1) & 0x7FFFFFFF)
        n = len(payload)
        if self.ipc:
            head = IPC_HEAD.pack(1, len(head) + n + 4, rid) + head
        else:
            head = TCP_HEAD.pack(len(head) + n + 4, rid) + head
        if n <= JOIN_MAX and not self.tls:  # the common case inline: one send
            data = head + payload
            try:
                sent = self.sock.send(data, MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._send_all(memoryview(data)[sent:], deadline)
        else:
            self._send(head, payload, deadline)
        self._receive(deadline, True)  # the reply cannot be there yet: wait
        reader = self.reader
        if reader.start == 0 and self._tcp:
            # The common case inline (FrameReader.next() does the same in
            # general): an idle pipe receives at the buffer's front, and the
            # reply usually arrives whole and alone in that one receive.
            end = reader.end
            if end >= 12:
                size, got = TCP_HEAD.unpack_from(reader.buf)
                if got == rid and size + 8 == end and size <= reader.max_recv:
                    reader.start = end
                    return reader.view, 12, end
        return self.receive_rest(rid, deadline)

    def receive_rest(self, rid: int, deadline: Optional[float]) -> Region:
        """Goes on receiving for request rid, whose request went out on this
        pipe (by call(), or by the C speedups, which leave what they got in
        the reader), until its reply is in: returns it as call() does, and
        drops stale replies on the way."""
        reader = self.reader
        while True:
            frame = reader.next()
            if frame is None:
                self._receive(deadline, False)
            elif frame[0] == rid:
                return reader.view, frame[1], frame[2]
            # else stale: the reply to an abandoned request

    def request(self, body: Bytes, deadline: Optional[float]) -> bytes:
        """Sends one raw request body and returns the raw reply body (for
        tools and tests that speak SP without an envelope)."""
        buf, start, end = self.call(b"", body, deadline)
        return bytes(buf[start:end])

    def is_idle_and_open(self) -> bool:
        """True if the peer has neither closed the connection nor sent
        anything since the last reply.  Never blocks.

        Used before reusing a pooled connection: a server restart leaves
        closed connections in the pool.
        """
        reader = self.reader
        if reader.start != reader.end:
            return False
        # Readable while idle means EOF, an error, or a stray message.
        return not self._poller.poll(0)

    def fileno(self) -> int:
        return self._fd

    def shutdown(self) -> None:
        """Wakes a call blocked on this pipe in another thread (it then
        fails with PeerClosed).  Only for Channel.close(): a forked process
        sharing the descriptor would see it."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Closes the socket (close(2) only: never shutdown, which a forked
        process sharing the descriptor would see)."""
        self.sock.close()
