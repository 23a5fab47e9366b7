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

This module does no socket setup (see _transport.py): ReqPipe works on any
connected stream socket with ``sendall``, ``recv``, ``recv_into`` and
``settimeout`` (socket.socket, and ssl.SSLSocket for tls+tcp later).

libnng's REQ resends a request whose reply is late (NNG_OPT_REQ_RESENDTIME,
which runs a slow call twice, nng#913).  ReqPipe never resends: a request is
sent exactly once, and retrying is the caller's decision.

A ReqPipe is not thread-safe: it carries one call at a time.  Its caller
closes it after any exception, since a late reply could still arrive.
"""

from __future__ import annotations

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
_JOIN_MAX = 64 * 1024
_RECV_CHUNK = 64 * 1024


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
        raise ProtocolError("peer did not send an SP header: %r" % header)
    return int(proto)


def encode_message(body: bytes, *, ipc: bool) -> bytes:
    """Returns one framed SP message (length prefix, and ipc's type byte)."""
    if ipc:
        return _IPC_LEN.pack(1, len(body)) + body
    return _TCP_LEN.pack(len(body)) + body


class ReqPipe:
    """One REQ conversation on a connected stream socket (not thread-safe).

    Borrows nothing: it owns sock and closes it in close().
    """

    __slots__ = ("sock", "ipc", "max_recv", "_next_id", "_buf", "_poller")

    def __init__(self, sock: socket.socket, *, ipc: bool, max_recv: int) -> None:
        self.sock = sock
        self.ipc = ipc
        self.max_recv = max_recv
        self._next_id = random.getrandbits(31)
        self._buf = bytearray()
        self._poller: Optional["select.poll"] = None

    # ---- deadlines ---------------------------------------------------------
    def _arm(self, deadline: Optional[float]) -> None:
        """Sets the socket timeout to what is left until deadline.

        Raises TimeoutError when the deadline has passed.
        """
        if deadline is None:
            self.sock.settimeout(None)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)

    # ---- handshake ---------------------------------------------------------
    def handshake(self, deadline: Optional[float]) -> None:
        """Exchanges SP headers; raises ProtocolError unless the peer is REP."""
        self._arm(deadline)
        self.sock.sendall(handshake_header(PROTO_REQ))
        peer = parse_handshake(self._read_exact(8, deadline))
        if peer != PROTO_REP:
            raise ProtocolError(
                "peer speaks SP protocol 0x%x, not REP (0x%x)" % (peer, PROTO_REP)
            )

    # ---- one call ------------------------------------------------------------
    def send_request(self, envelope: bytes, deadline: Optional[float]) -> int:
        """Sends one request; returns its request id (top bit set)."""
        rid = 0x80000000 | self._next_id
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        size = len(envelope) + 4
        if self.ipc:
            head = _IPC_HEAD.pack(1, size, rid)
        else:
            head = _TCP_HEAD.pack(size, rid)
        self._arm(deadline)
        if len(envelope) <= _JOIN_MAX:
            self.sock.sendall(head + envelope)
        else:
            self.sock.sendall(head)
            self.sock.sendall(envelope)
        return rid

    def recv_reply(self, rid: int, deadline: Optional[float]) -> memoryview:
        """Returns the envelope of the reply to request rid.

        Replies with other ids are stale and discarded.  Raises
        MessageTooLarge, ProtocolError, PeerClosed or TimeoutError.
        """
        want = _ID.pack(rid)
        while True:
            body = self.recv_message(deadline)
            if len(body) < 4:
                raise ProtocolError("reply of %d bytes has no request id" % len(body))
            if body[:4] == want:
                return memoryview(body)[4:]

    def request(self, envelope: bytes, deadline: Optional[float]) -> memoryview:
        """Sends a request and returns the envelope of its reply."""
        return self.recv_reply(self.send_request(envelope, deadline), deadline)

    # ---- framing -------------------------------------------------------------
    def recv_message(self, deadline: Optional[float]) -> Union[bytes, bytearray]:
        """Returns the body of the next message (request id included)."""
        if self.ipc:
            kind, size = _IPC_LEN.unpack(self._read_exact(9, deadline))
            if kind != 1:
                raise ProtocolError("ipc message type %d, expected 1" % kind)
        else:
            (size,) = _TCP_LEN.unpack(self._read_exact(8, deadline))
        if size > self.max_recv:
            raise MessageTooLarge(size, self.max_recv)
        return self._read_exact(size, deadline)

    def _read_exact(self, n: int, deadline: Optional[float]) -> Union[bytes, bytearray]:
        """Returns exactly n bytes from the connection (buffered)."""
        buf = self._buf
        have = len(buf)
        if have >= n:
            out = bytes(buf[:n])
            del buf[:n]
            return out
        if n - have > _RECV_CHUNK:
            # Large message: read straight into its final buffer.
            big = bytearray(n)
            big[:have] = buf
            buf.clear()
            view = memoryview(big)
            while have < n:
                self._arm(deadline)
                got = self.sock.recv_into(view[have:])
                if got == 0:
                    raise PeerClosed("connection closed by the server")
                have += got
            view.release()
            return big
        while len(buf) < n:
            self._arm(deadline)
            chunk = self.sock.recv(_RECV_CHUNK)
            if not chunk:
                raise PeerClosed("connection closed by the server")
            buf += chunk
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
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
        # Readable while idle means EOF, an error, or a stray message.
        return not self._poller.poll(0)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Closes the socket (close(2) only: never shutdown, which a forked
        process sharing the descriptor would see)."""
        self.sock.close()
