"""SP REQ framing: NNG's REQ/REP wire protocol on one stream connection.

What goes on the wire (checked against nng v1.5.2: src/sp/transport/tcp/
tcp.c, src/sp/transport/ipc/ipc.c, src/sp/protocol/reqrep0/req.c, rep.c):

- Handshake: once connected, each side sends 8 bytes, ``00 'S' 'P' 00``,
  its 16-bit big-endian protocol id, and two zero bytes.  We are REQ
  (0x30) and accept only a REP peer (0x31); NNG checks the same on its side.
- A message on tcp (and tls): a 64-bit big-endian length, then the body.
  On ipc: a one-byte message type (always 1), then the length, then the body.
- A request body is the 32-bit big-endian request id, top bit set, then the
  envelope.  The REP copies the request's header (here just that id) in
  front of its reply, so a reply body is the same id, then the envelope.
  A reply with another id is stale (an earlier, abandoned request) and is
  discarded.

This module does no socket setup (see _transport.py).  ReqPipe owns a
connected stream socket, puts it in non-blocking mode and waits for it with
poll(2): a call costs one poll(0) (is the pooled connection still open?),
one send, one poll until the reply (or the deadline) and one recv, where a
socket with a Python timeout would add a poll before the send and an
ioctl(FIONBIO) per settimeout.  Every wait is a poll that releases the GIL
and is interrupted by signals (Ctrl+C raises KeyboardInterrupt, PEP 475).
_tls.TlsReqPipe does the same over ssl.SSLSocket.

libnng's REQ resends a request whose reply is late (NNG_OPT_REQ_RESENDTIME,
which runs a slow call twice, nng#913).  ReqPipe never resends: a request is
sent exactly once, and retrying is the caller's decision.

A ReqPipe is not thread-safe: it carries one call at a time.  Its caller
closes it after any exception, since a late reply could still arrive.
(The asyncio client, _aio_pipe.py, multiplexes many calls on one
connection instead; the framing is the same.)
"""

from __future__ import annotations

import math
import random
import select
import socket
import struct
import time
from typing import Optional, Union

PROTO_REQ = 0x30
PROTO_REP = 0x31

_SP_MAGIC = b"\x00SP\x00"
_HANDSHAKE = struct.Struct(">4sHH")
_TCP_HEAD = struct.Struct(">QI")  # length, request id
_IPC_HEAD = struct.Struct(">BQI")  # type 1, length, request id
_TCP_LEN = struct.Struct(">Q")
_IPC_LEN = struct.Struct(">BQ")
_ID = struct.Struct(">I")

# Below this a request is joined to its header and sent in one write; above
# it the two are written separately rather than copying the body.
JOIN_MAX = 64 * 1024
_RECV_CHUNK = 64 * 1024

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT


class ProtocolError(Exception):
    """The peer broke the SP protocol (bad handshake, bad frame)."""


class MessageTooLarge(ProtocolError):
    """The peer sent a message larger than the receive limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            "reply of %d bytes exceeds the limit of %d bytes" % (size, limit)
        )
        self.size = size
        self.limit = limit


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


def handshake_header(proto: int) -> bytes:
    """Returns the 8-byte SP handshake header announcing protocol proto."""
    return _HANDSHAKE.pack(_SP_MAGIC, proto, 0)


def parse_handshake(header: bytes) -> int:
    """Returns the protocol id in an 8-byte SP handshake header.

    Raises ProtocolError if it is not an SP header.
    """
    if len(header) != 8:
        raise ProtocolError("SP handshake must be 8 bytes, got %d" % len(header))
    magic, proto, reserved = _HANDSHAKE.unpack(header)
    if magic != _SP_MAGIC or reserved != 0:
        if header[0] in (0x15, 0x16) and header[1] == 0x03:
            # A TLS record (alert or handshake): a tls+tcp:// listener.
            raise ProtocolError(
                "peer answered with TLS, not SP: dial it with a tls+tcp:// URL"
            )
        raise ProtocolError("peer did not send an SP header: %r" % header)
    return int(proto)


def encode_message(body: bytes, *, ipc: bool) -> bytes:
    """Returns one framed SP message (length prefix, and ipc's type byte)."""
    if ipc:
        return _IPC_LEN.pack(1, len(body)) + body
    return _TCP_LEN.pack(len(body)) + body


def next_request_id(rid: int) -> int:
    """Returns the request id after rid (31-bit counter, top bit set)."""
    return 0x80000000 | ((rid + 1) & 0x7FFFFFFF)


def first_request_id() -> int:
    """Returns a random first request id for a new connection."""
    return 0x80000000 | random.getrandbits(31)


def request_head(rid: int, size: int, *, ipc: bool) -> bytes:
    """Returns the frame header of a request whose envelope is size bytes."""
    if ipc:
        return _IPC_HEAD.pack(1, size + 4, rid)
    return _TCP_HEAD.pack(size + 4, rid)


class ReqPipe:
    """One REQ conversation on a connected stream socket (not thread-safe).

    Takes sock (and makes it non-blocking); close() closes it.
    """

    __slots__ = ("sock", "ipc", "max_recv", "_rid", "_buf", "_poller", "_fd")

    def __init__(self, sock: socket.socket, *, ipc: bool, max_recv: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.ipc = ipc
        self.max_recv = max_recv
        self._rid = first_request_id()
        self._buf = bytearray()
        self._fd = sock.fileno()
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
    def _send_all(self, data: Union[bytes, memoryview], deadline: Optional[float]) -> None:
        """Sends all of data, waiting for room as needed."""
        sock = self.sock
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
            except BlockingIOError:
                self._wait(POLLOUT, deadline)
                continue
            view = view[n:]

    def _recv(self, deadline: Optional[float], wait_first: bool) -> bytes:
        """Returns the next bytes received (at most _RECV_CHUNK); raises
        PeerClosed at EOF.  wait_first: poll before the first recv (a
        reply that was just asked for is never there yet)."""
        if wait_first:
            self._wait(POLLIN, deadline)
        while True:
            try:
                chunk = self.sock.recv(_RECV_CHUNK)
            except BlockingIOError:
                self._wait(POLLIN, deadline)
                continue
            if not chunk:
                raise PeerClosed("connection closed by the server")
            return chunk

    def _recv_into(self, view: memoryview, deadline: Optional[float]) -> int:
        """Receives into view; returns the count (> 0) or raises PeerClosed."""
        while True:
            try:
                got = self.sock.recv_into(view)
            except BlockingIOError:
                self._wait(POLLIN, deadline)
                continue
            if not got:
                raise PeerClosed("connection closed by the server")
            return got

    # ---- handshake ---------------------------------------------------------
    def handshake(self, deadline: Optional[float]) -> None:
        """Exchanges SP headers; raises ProtocolError unless the peer is REP."""
        self._send_all(handshake_header(PROTO_REQ), deadline)
        peer = parse_handshake(self._read_exact(8, deadline, True))
        if peer != PROTO_REP:
            raise ProtocolError(
                "peer speaks SP protocol 0x%x, not REP (0x%x)" % (peer, PROTO_REP)
            )

    # ---- one call ------------------------------------------------------------
    def send_request(self, envelope: bytes, deadline: Optional[float], tail: bytes = b"") -> int:
        """Sends one request, envelope + tail (the envelope's last bytes,
        kept apart so a large envelope is not copied); returns its request
        id (top bit set)."""
        rid = self._rid = next_request_id(self._rid)
        head = request_head(rid, len(envelope) + len(tail), ipc=self.ipc)
        if len(envelope) <= JOIN_MAX:
            self._send_all(head + envelope + tail, deadline)
        else:
            self._send_all(head, deadline)
            self._send_all(envelope, deadline)
            if tail:
                self._send_all(tail, deadline)
        return rid

    def recv_reply(self, rid: int, deadline: Optional[float]) -> memoryview:
        """Returns the envelope of the reply to request rid.

        Replies with other ids are stale and discarded.  Raises
        MessageTooLarge, ProtocolError, PeerClosed or TimeoutError.
        """
        want = _ID.pack(rid)
        wait_first = True
        while True:
            body = self.recv_message(deadline, wait_first)
            wait_first = False
            if len(body) < 4:
                raise ProtocolError("reply of %d bytes has no request id" % len(body))
            if body[:4] == want:
                return memoryview(body)[4:]

    def request(self, envelope: bytes, deadline: Optional[float], tail: bytes = b"") -> memoryview:
        """Sends a request (envelope + tail) and returns the envelope of its
        reply."""
        return self.recv_reply(self.send_request(envelope, deadline, tail), deadline)

    # ---- framing -------------------------------------------------------------
    def recv_message(
        self, deadline: Optional[float], wait_first: bool = False
    ) -> Union[bytes, bytearray]:
        """Returns the body of the next message (request id included)."""
        if self.ipc:
            kind, size = _IPC_LEN.unpack(self._read_exact(9, deadline, wait_first))
            if kind != 1:
                raise ProtocolError("ipc message type %d, expected 1" % kind)
        else:
            (size,) = _TCP_LEN.unpack(self._read_exact(8, deadline, wait_first))
        if size > self.max_recv:
            raise MessageTooLarge(size, self.max_recv)
        return self._read_exact(size, deadline, False)

    def _read_exact(
        self, n: int, deadline: Optional[float], wait_first: bool
    ) -> Union[bytes, bytearray]:
        """Returns exactly n bytes from the connection (buffered)."""
        buf = self._buf
        have = len(buf)
        if have >= n:
            out = bytes(buf[:n])
            del buf[:n]
            return out
        if have:
            wait_first = False
        if n - have > _RECV_CHUNK:
            # Large message: read straight into its final buffer.
            big = bytearray(n)
            big[:have] = buf
            buf.clear()
            view = memoryview(big)
            if wait_first:
                self._wait(POLLIN, deadline)
            while have < n:
                have += self._recv_into(view[have:], deadline)
            view.release()
            return big
        while len(buf) < n:
            buf += self._recv(deadline, wait_first)
            wait_first = False
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def is_idle_and_open(self) -> bool:
        """True if the peer has neither closed the connection nor sent
        anything since the last reply.  Never blocks.

        Used before reusing a pooled connection: a server restart leaves
        closed connections in the pool.
        """
        if self._buf:
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
