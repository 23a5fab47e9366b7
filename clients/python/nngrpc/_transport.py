"""Endpoint URLs and dialing: the socket setup under the SP framing.

Supported: ``tcp://host:port`` (also ``tcp4://``, ``tcp6://``; an IPv6 host
in brackets, ``tcp://[::1]:5555``) and ``ipc:///absolute/path`` (or
``ipc://relative/path``), as NNG writes them.  ``tls+tcp://`` will wrap the
connected socket with ``ssl`` here; the framing in _sp.py stays the same.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import List, Optional

from nngrpc._sp import ReqPipe

_TCP_FAMILIES = {
    "tcp": socket.AF_UNSPEC,
    "tcp4": socket.AF_INET,
    "tcp6": socket.AF_INET6,
}


@dataclass(frozen=True)
class Address:
    """A parsed endpoint URL."""

    url: str
    ipc: bool
    family: int
    host: str = ""
    port: int = 0
    path: str = ""


def parse_url(url: str) -> Address:
    """Returns the Address of an NNG-style URL; raises ValueError if bad."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not an endpoint URL (scheme://address): %r" % url)
    if scheme == "ipc":
        if not rest:
            raise ValueError("ipc URL without a path: %r" % url)
        return Address(url=url, ipc=True, family=socket.AF_UNIX, path=rest)
    if scheme in _TCP_FAMILIES:
        if rest.startswith("["):
            host, bracket, tail = rest[1:].partition("]")
            if not bracket or not tail.startswith(":"):
                raise ValueError("bad IPv6 address in %r" % url)
            port_s = tail[1:]
        else:
            host, colon, port_s = rest.rpartition(":")
            if not colon:
                raise ValueError("tcp URL without a port: %r" % url)
        if not host or host == "*":
            raise ValueError("tcp URL needs a host to dial: %r" % url)
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError("bad port in %r" % url) from None
        if not 0 < port < 65536:
            raise ValueError("port out of range in %r" % url)
        return Address(
            url=url, ipc=False, family=_TCP_FAMILIES[scheme], host=host, port=port
        )
    if scheme in ("tls+tcp", "ws", "wss"):
        raise ValueError("%s:// is not supported by this client yet: %r" % (scheme, url))
    raise ValueError("unknown transport %r in %r" % (scheme, url))


def _left(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed while connecting")
    return left


def _connect_tcp(addr: Address, deadline: Optional[float]) -> socket.socket:
    infos = socket.getaddrinfo(
        addr.host, addr.port, addr.family, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    errors: List[str] = []
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)
        except TimeoutError:
            sock.close()
            raise
        except OSError as e:
            sock.close()
            errors.append("%s: %s" % (sockaddr[0], e.strerror or e))
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ConnectionError("; ".join(errors) or "no address for %s" % addr.host)


def _connect_ipc(addr: Address, deadline: Optional[float]) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_left(deadline))
        sock.connect(addr.path)
    except BaseException:
        sock.close()
        raise
    return sock


def dial(addr: Address, deadline: Optional[float], max_recv: int) -> ReqPipe:
    """Connects to addr and completes the SP handshake as REQ.

    Returns new: a ReqPipe the caller owns.  Raises OSError (connection
    refused, no such path, ...), TimeoutError, or _sp.ProtocolError if the
    peer is not an SP REP socket.
    """
    if addr.ipc:
        sock = _connect_ipc(addr, deadline)
    else:
        sock = _connect_tcp(addr, deadline)
    pipe = ReqPipe(sock, ipc=addr.ipc, max_recv=max_recv)
    try:
        pipe.handshake(deadline)
    except BaseException:
        pipe.close()
        raise
    return pipe

