"""Endpoint URLs and dialing: the socket setup under the SP framing.

Supported: ``tcp://host:port`` (also ``tcp4://``, ``tcp6://``; an IPv6 host
in brackets, ``tcp://[::1]:5555``), ``tls+tcp://host:port`` (also
``tls+tcp4://``, ``tls+tcp6://``: the TCP connection wrapped with ``ssl``,
see _tls.py) and ``ipc:///absolute/path`` (or ``ipc://relative/path``), as
NNG writes them.  The SP framing (_sp.py) is the same on all of them but
for ipc's type byte.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from nngrpc._pipe import ReqPipe

if TYPE_CHECKING:
    import ssl

_TCP_FAMILIES = {
    "tcp": socket.AF_UNSPEC,
    "tcp4": socket.AF_INET,
    "tcp6": socket.AF_INET6,
}


@dataclass(frozen=True)
class Address:
    """A parsed endpoint URL.  name: for an address discovered by resolving
    a name (_discovery.py), that name (host is then the IP address)."""

    url: str
    ipc: bool
    family: int
    host: str = ""
    port: int = 0
    path: str = ""
    tls: bool = False
    name: str = ""

    @property
    def tls_name(self) -> str:
        """The name a TLS server's certificate must carry: the name the
        address was discovered from, else the host dialled."""
        return self.name or self.host


def parse_url(url: str) -> Address:
    """Returns the Address of an NNG-style URL; raises ValueError if bad."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not an endpoint URL (scheme://address): %r" % url)
    if scheme == "ipc":
        if not rest:
            raise ValueError("ipc URL without a path: %r" % url)
        return Address(url=url, ipc=True, family=socket.AF_UNIX, path=rest)
    tls = scheme.startswith("tls+")
    family = _TCP_FAMILIES.get(scheme[4:] if tls else scheme)
    if family is not None:
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
            url=url, ipc=False, family=family, host=host, port=port, tls=tls
        )
    if scheme in ("ws", "wss"):
        raise ValueError("%s:// is not supported by this client yet: %r" % (scheme, url))
    raise ValueError("unknown transport %r in %r" % (scheme, url))


def _left(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed while connecting")
    return left


#: One getaddrinfo answer: (family, type, proto, canonname, sockaddr).
AddrInfo = Tuple[int, int, int, str, Tuple[Any, ...]]


def resolve(addr: Address) -> List[AddrInfo]:
    """Returns getaddrinfo's answer for a tcp Address."""
    return socket.getaddrinfo(  # type: ignore[return-value]
        addr.host, addr.port, addr.family, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )


def _connect_tcp(addr: Address, deadline: Optional[float]) -> socket.socket:
    infos = resolve(addr)
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


def dial(
    addr: Address,
    deadline: Optional[float],
    max_recv: int,
    tls_context: "Optional[ssl.SSLContext]" = None,
    server_hostname: Optional[str] = None,
) -> ReqPipe:
    """Connects to addr and completes the SP handshake as REQ (after the
    TLS handshake for tls+tcp, with tls_context, which it then needs).

    Returns new: a ReqPipe the caller owns.  Raises OSError (connection
    refused, no such path, ssl.SSLError for a failed TLS handshake, ...),
    TimeoutError, or _sp.ProtocolError if the peer is not an SP REP socket.
    """
    pipe: ReqPipe
    if addr.ipc:
        pipe = ReqPipe(_connect_ipc(addr, deadline), ipc=True, max_recv=max_recv)
    elif addr.tls:
        from nngrpc import _tls

        if tls_context is None:
            raise ValueError("%s needs a TLS context" % addr.url)
        sock = _connect_tcp(addr, deadline)
        pipe = _tls.wrap(
            sock,
            tls_context,
            server_hostname or addr.tls_name,
            max_recv=max_recv,
            deadline=deadline,
        )
    else:
        pipe = ReqPipe(_connect_tcp(addr, deadline), ipc=False, max_recv=max_recv)
    try:
        pipe.handshake(deadline)
    except BaseException:
        pipe.close()
        raise
    return pipe

