"""A "future peer" in the middle: an SP proxy (tcp) that makes every request
and reply look as if a newer nngrpc had sent it.

Requests (client to server) gain envelope fields no release defines (one of
each wire type: varint, 64-bit, length-delimited, 32-bit) and metadata keys
no release knows (``nngrpc-compat-future``, ``x-compat-future``). Replies
(server to client) gain the same unknown fields and the trailers
``nngrpc-compat-future: 1`` and ``x-compat-future: 1``; a reply whose status
message is ``compat-future-code`` has its code changed to 42, a code no
release defines. The contract (docs/compatibility.md, "What a peer does
with what it does not know") says both sides ignore the fields, servers
ignore the metadata, clients show the trailers and read 42 as UNKNOWN.

Standard library only, so it runs in the matrix driver without either
release's client. The envelope is edited at the protobuf wire level: fields
appended to a message are valid protobuf (fields may come in any order),
and a map entry is a length-delimited field holding key (1) and value (2).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Callable, List, Optional, Tuple

PROTO_REQ = 0x30
PROTO_REP = 0x31
_HANDSHAKE = struct.Struct(">4sHH")
_LEN = struct.Struct(">Q")
_MAGIC = b"\x00SP\x00"
MAX_FRAME = 64 * 1024 * 1024

FUTURE_KEY = "nngrpc-compat-future"
FUTURE_APP_KEY = "x-compat-future"
FUTURE_CODE_MESSAGE = "compat-future-code"
FUTURE_CODE = 42

# Request fields 3 (metadata) and Response fields 1 (code), 2 (message),
# 4 (trailers): proto/nngrpc/v1/rpc.proto.
REQ_METADATA = 3
RESP_CODE, RESP_MESSAGE, RESP_TRAILERS = 1, 2, 4


# ---- protobuf wire format, top level only ------------------------------------------
def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read_varint(b: bytes, i: int) -> Tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def fields(b: bytes) -> List[Tuple[int, int, bytes, int]]:
    """(number, wire type, raw bytes of the whole field, varint value or 0)."""
    out = []
    i = 0
    while i < len(b):
        start = i
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        val = 0
        if wt == 0:
            val, i = read_varint(b, i)
        elif wt == 1:
            i += 8
        elif wt == 2:
            n, i = read_varint(b, i)
            i += n
        elif wt == 5:
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, b[start:i], val))
    return out


def payload_of(raw: bytes) -> bytes:
    """The contents of a length-delimited field's raw bytes."""
    _, i = read_varint(raw, 0)
    n, i = read_varint(raw, i)
    return raw[i:i + n]


def string_field(num: int, s: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(s)) + s


def map_entry(num: int, key: str, value: str) -> bytes:
    return string_field(num, string_field(1, key.encode()) + string_field(2, value.encode()))


# Fields 1000-1003: one of each wire type no release defines.
UNKNOWN_FIELDS = (
    varint(1000 << 3 | 0) + varint(7)
    + varint(1001 << 3 | 1) + b"\x01" * 8
    + string_field(1002, b"from the future")
    + varint(1003 << 3 | 5) + b"\x02" * 4
)


def future_request(body: bytes) -> bytes:
    return (
        body
        + map_entry(REQ_METADATA, FUTURE_KEY, "1")
        + map_entry(REQ_METADATA, FUTURE_APP_KEY, "1")
        + UNKNOWN_FIELDS
    )


def future_reply(body: bytes) -> bytes:
    out = bytearray()
    message = b""
    for num, _, raw, _ in fields(body):
        if num == RESP_MESSAGE:
            message = payload_of(raw)
    for num, _, raw, _ in fields(body):
        if num == RESP_CODE and message == FUTURE_CODE_MESSAGE.encode():
            continue  # replaced below
        out += raw
    if message == FUTURE_CODE_MESSAGE.encode():
        out += varint(RESP_CODE << 3 | 0) + varint(FUTURE_CODE)
    out += map_entry(RESP_TRAILERS, FUTURE_KEY, "1")
    out += map_entry(RESP_TRAILERS, FUTURE_APP_KEY, "1")
    out += UNKNOWN_FIELDS
    return bytes(out)


# ---- SP over tcp -------------------------------------------------------------------
def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return bytes(buf)


def _handshake(s: socket.socket, mine: int, theirs: int) -> None:
    s.sendall(_HANDSHAKE.pack(_MAGIC, mine, 0))
    magic, proto, _ = _HANDSHAKE.unpack(_recv_exact(s, 8))
    if magic != _MAGIC or proto != theirs:
        raise ConnectionError("bad SP handshake")


def _pump(src: socket.socket, dst: socket.socket, edit: Callable[[bytes], bytes]) -> None:
    """Frames from src to dst, each body edited after its 4-byte SP header."""
    try:
        while True:
            (n,) = _LEN.unpack(_recv_exact(src, 8))
            if n > MAX_FRAME or n < 4:
                raise ConnectionError("bad frame length %d" % n)
            frame = _recv_exact(src, n)
            out = frame[:4] + edit(frame[4:])
            dst.sendall(_LEN.pack(len(out)) + out)
    except (OSError, ConnectionError, ValueError, IndexError):
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FutureProxy:
    """Listens on 127.0.0.1 (an ephemeral port), forwards every connection
    to upstream ("host", port), making it look newer both ways."""

    def __init__(self, upstream: Tuple[str, int]) -> None:
        self.upstream = upstream
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = "tcp://127.0.0.1:%d" % self._sock.getsockname()[1]
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server: Optional[socket.socket] = None
        try:
            server = socket.create_connection(self.upstream, timeout=10)
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._closed:
                    raise ConnectionError("proxy closed")
                self._conns += [client, server]
            _handshake(client, PROTO_REP, PROTO_REQ)
            _handshake(server, PROTO_REQ, PROTO_REP)
        except (OSError, ConnectionError):
            client.close()
            if server is not None:
                server.close()
            return
        up = threading.Thread(target=_pump, args=(client, server, future_request), daemon=True)
        up.start()
        _pump(server, client, future_reply)
        up.join()
        client.close()
        server.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        self._sock.close()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
