"""SP REQ framing: NNG's REQ/REP wire protocol on one stream connection,
sans I/O (no sockets here: the sync pipe, _pipe.py, and the asyncio pipe,
_aio_pipe.py, both drive FrameReader).

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
  A reply with an id nobody waits for is stale (an earlier, abandoned
  request) and is dropped.

libnng's REQ resends a request whose reply is late (NNG_OPT_REQ_RESENDTIME,
which runs a slow call twice, nng#913).  Our pipes never resend: a request
is sent exactly once, and retrying is the channel's decision (_core.py).

FrameReader is the receive side: a buffer the owner receives into
(``space()`` then ``filled(n)``, which is what ``socket.recv_into`` and
``asyncio.BufferedProtocol`` both want), and the parser that finds the
handshake and the replies in it.  The buffer is reused from one reply to
the next, so a reply costs no allocation and no copy on the way in; the
envelope of a reply is handed out as a region of that buffer, valid until
the owner receives again.
"""

from __future__ import annotations

import random
import struct
from typing import Optional, Tuple

PROTO_REQ = 0x30
PROTO_REP = 0x31

_SP_MAGIC = b"\x00SP\x00"
_HANDSHAKE = struct.Struct(">4sHH")
TCP_HEAD = struct.Struct(">QI")  # length, request id
IPC_HEAD = struct.Struct(">BQI")  # type 1, length, request id
_TCP_LEN = struct.Struct(">Q")
_IPC_LEN = struct.Struct(">BQ")
_ID = struct.Struct(">I")

#: Receive buffer of a new connection; a larger reply grows it.
INITIAL_BUFFER = 64 * 1024
#: A buffer grown past this is given back once the reply in it is consumed,
#: so an idle pooled connection never holds more.
KEEP_BUFFER = 1024 * 1024 + 64 * 1024

#: What FrameReader.next() returns for an oversize reply (skip mode): its
#: envelope start is OVERSIZE and its "end" is the message size.
OVERSIZE = -1

#: A reply found by FrameReader.next(): (request id, envelope start,
#: envelope end) in FrameReader.buf.
Frame = Tuple[int, int, int]


class ProtocolError(Exception):
    """The peer broke the SP protocol (bad handshake, bad frame)."""


class MessageTooLarge(ProtocolError):
    """The peer sent a message larger than the receive limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("reply of %d bytes exceeds the limit of %d bytes" % (size, limit))
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
            raise ProtocolError("peer answered with TLS, not SP: dial it with a tls+tcp:// URL")
        raise ProtocolError("peer did not send an SP header: %r" % header)
    return int(proto)


def check_rep(header: bytes) -> None:
    """Raises ProtocolError unless header is a REP peer's handshake."""
    peer = parse_handshake(header)
    if peer != PROTO_REP:
        raise ProtocolError("peer speaks SP protocol 0x%x, not REP (0x%x)" % (peer, PROTO_REP))


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
    """Returns the frame header of a request whose envelope is size bytes:
    the length (and ipc's type byte), then the request id."""
    if ipc:
        return IPC_HEAD.pack(1, size + 4, rid)
    return TCP_HEAD.pack(size + 4, rid)


class FrameReader:
    """The receive side of one SP REQ connection, sans I/O.

    The owner receives into ``space()`` and says how much arrived with
    ``filled(n)``; ``handshake()`` then returns the peer's handshake header
    once it is in, and ``next()`` the replies one by one.  Not thread-safe:
    one owner.

    Oversize replies (over max_recv): by default ``next()`` raises
    MessageTooLarge (the caller drops the connection).  With
    ``skip_oversize`` (a connection shared by many calls) it returns
    (request id, OVERSIZE, size) as soon as the request id is in and then
    drops the body as it arrives, so only that call fails.
    """

    __slots__ = (
        "ipc",
        "max_recv",
        "skip_oversize",
        "buf",
        "view",
        "start",
        "end",
        "_head",
        "_need",
        "_skip",
        "_grown",
    )

    def __init__(self, *, ipc: bool, max_recv: int, skip_oversize: bool = False) -> None:
        self.ipc = ipc
        self.max_recv = max_recv
        self.skip_oversize = skip_oversize
        #: Received bytes not yet parsed are buf[start:end].
        self.buf = bytearray(INITIAL_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self._head = 9 if ipc else 8
        self._need = 0  # bytes the frame being received needs in all
        self._skip = 0  # bytes of an oversize reply still to drop
        self._grown = False  # buf is over KEEP_BUFFER

    # ---- receiving -------------------------------------------------------------
    def space(self) -> memoryview:
        """Returns where to receive the next bytes (never empty).

        Invalidates the regions next() returned before.
        """
        if self.start == self.end:  # all parsed: start over at the front
            self.start = self.end = 0
            if not self._grown:
                return self.view
            self._replace(INITIAL_BUFFER)  # a large reply is gone
        if len(self.buf) - self.end < 512 or self.start + self._need > len(self.buf):
            self._make_room()
        return self.view[self.end :]

    def filled(self, n: int) -> None:
        """Records that n bytes were received into space()."""
        self.end += n

    def unparsed(self) -> int:
        """Returns how many received bytes are not parsed yet."""
        return self.end - self.start

    def _make_room(self) -> None:
        """Moves the unparsed bytes to the front, or into a larger buffer
        when the frame being received does not fit."""
        have = self.end - self.start
        want = max(self._need, have + 512)
        if want > len(self.buf):
            self._replace(max(want, 2 * len(self.buf)))
        elif self.start:
            self.buf[:have] = self.view[self.start : self.end]
            self.start, self.end = 0, have

    def _replace(self, size: int) -> None:
        have = self.end - self.start
        buf = bytearray(size)
        buf[:have] = self.view[self.start : self.end]
        self.buf, self.view = buf, memoryview(buf)
        self.start, self.end = 0, have
        self._grown = size > KEEP_BUFFER

    # ---- parsing -----------------------------------------------------------------
    def handshake(self) -> Optional[bytes]:
        """Returns the peer's 8-byte handshake header once it is in (and
        consumes it), else None."""
        if self.end - self.start < 8:
            self._need = 8
            return None
        header = bytes(self.view[self.start : self.start + 8])
        self.start += 8
        self._need = 0
        return header

    def next(self) -> Optional[Frame]:
        """Returns the next complete reply, consumed: (request id, start,
        end) of its envelope in buf, valid until space() is called again;
        (request id, OVERSIZE, size) for an oversize reply in skip mode;
        None until more bytes are in.

        Raises ProtocolError for a broken frame, MessageTooLarge for an
        oversize reply when not skipping.
        """
        if self._skip and not self._drop():
            return None
        pos = self.start
        have = self.end - pos
        head = self._head
        buf = self.buf
        if have >= head + 4:  # length and request id in one unpack
            if self.ipc:
                kind, size, rid = IPC_HEAD.unpack_from(buf, pos)
                if kind != 1:
                    raise ProtocolError("ipc message type %d, expected 1" % kind)
            else:
                size, rid = TCP_HEAD.unpack_from(buf, pos)
            if 4 <= size <= self.max_recv:
                end = pos + head + size
                if end <= self.end:
                    self.start = end
                    self._need = 0
                    return rid, pos + head + 4, end
                self._need = head + size
                return None
        elif have < head:
            self._need = head
            return None
        if self.ipc:
            if buf[pos] != 1:
                raise ProtocolError("ipc message type %d, expected 1" % buf[pos])
            (size,) = _TCP_LEN.unpack_from(buf, pos + 1)
        else:
            (size,) = _TCP_LEN.unpack_from(buf, pos)
        if size < 4:
            raise ProtocolError("reply of %d bytes has no request id" % size)
        if size > self.max_recv:
            if not self.skip_oversize:
                raise MessageTooLarge(size, self.max_recv)
            if have < head + 4:
                self._need = head + 4
                return None
            (rid,) = _ID.unpack_from(buf, pos + head)
            self.start = pos + head + 4
            self._skip = size - 4
            self._need = 0
            self._drop()
            return rid, OVERSIZE, size
        end = pos + head + size
        if end > self.end:
            self._need = head + size
            return None
        (rid,) = _ID.unpack_from(buf, pos + head)
        self.start = end
        self._need = 0
        return rid, pos + head + 4, end

    def _drop(self) -> bool:
        """Drops what is in of an oversize reply; True when all of it is."""
        take = min(self._skip, self.end - self.start)
        self.start += take
        self._skip -= take
        return not self._skip
