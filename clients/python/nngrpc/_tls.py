"""TLS for ``tls+tcp://`` endpoints: TlsConfig and the TLS flavour of ReqPipe.

hoteld serves ``tls+tcp://`` with ``--tls-cert``/``--tls-key`` (NNG's TLS
transport: TLS over TCP, then the same SP handshake and framing as tcp).
The client wraps its TCP connection with Python's ``ssl`` module:

    ch = nngrpc.Channel(
        "tls+tcp://127.0.0.1:5556",
        tls=nngrpc.TlsConfig(ca_file="ca.pem",            # trust anchor
                             cert_file="client.pem",      # when the server
                             key_file="client.key"),      # verifies clients
    )

The server's certificate is always verified (against ``ca_file``, else the
system's CAs) and must name the host dialled (a DNS name, or an IP address
in its subjectAltName), unless ``server_hostname`` names another.  A failed
handshake fails the call with UNAVAILABLE and says why (for example
"certificate verify failed").  The handshake is bounded by the channel's
``connect_timeout`` (and the call's deadline), so a peer that never answers
cannot hang a call.

This module imports ``ssl`` only when a TLS connection is made, so plain
tcp/ipc users do not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from nngrpc._pipe import JOIN_MAX, POLLIN, POLLOUT, Bytes, ReqPipe
from nngrpc._sp import PeerClosed

if TYPE_CHECKING:
    import socket
    import ssl

    from nngrpc._transport import Address


@dataclass(frozen=True)
class TlsConfig:
    """Client TLS settings for ``tls+tcp://`` endpoints.

    - ``ca_file``: PEM bundle of the CAs that may sign the server's
      certificate (None: the system's default CAs).
    - ``cert_file``, ``key_file``: the client's certificate chain and key
      (PEM), for a server started with ``--tls-ca`` (client verification);
      ``key_file`` may be omitted when ``cert_file`` holds the key too.
    - ``server_hostname``: the name the server's certificate must carry
      (None: the host of each endpoint's URL).
    - ``context``: a ready ``ssl.SSLContext`` to use instead of building one
      from the files (the other fields but ``server_hostname`` are then
      ignored).
    """

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_hostname: Optional[str] = None
    context: Optional["ssl.SSLContext"] = None

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("TlsConfig: key_file given without cert_file")

    def make_context(self) -> "ssl.SSLContext":
        """Returns new: the SSLContext for these settings (the given one if
        any).  Raises OSError/ssl.SSLError for unreadable or bad files."""
        if self.context is not None:
            return self.context
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks names
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=self.ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def context_for(
    addrs: "Sequence[Address]", tls: Optional[TlsConfig]
) -> "Tuple[Optional[ssl.SSLContext], Optional[str]]":
    """Returns (SSLContext, server_hostname) for a channel's endpoints:
    (None, None) when none is tls+tcp; TlsConfig() when tls is None."""
    if tls is None and not any(a.tls for a in addrs):
        return None, None
    if tls is None:
        tls = TlsConfig()
    return tls.make_context(), tls.server_hostname


class TlsHandshakeError(ConnectionError):
    """The TLS handshake failed; str() says why, readably."""


def describe_tls_error(e: BaseException) -> str:
    """Returns a readable reason for a failed TLS handshake."""
    import ssl

    closed = (
        "TLS handshake failed: the server closed the connection (is it a"
        " tls+tcp:// listener? One that verifies clients, hoteld --tls-ca,"
        " closes it when no certificate it trusts is sent:"
        " TlsConfig(cert_file=..., key_file=...))"
    )
    if isinstance(e, ssl.SSLCertVerificationError):
        return "TLS handshake failed: certificate verify failed: %s" % (
            e.verify_message or e.reason or e
        )
    if isinstance(e, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
        return closed
    if isinstance(e, ssl.SSLError):
        reason = e.reason or ""
        if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"):
            return "TLS handshake failed: the server does not speak TLS (%s: a tcp:// listener?)" % (
                reason
            )
        text = str(e.args[1]) if len(e.args) > 1 else str(e)
        if "ALERT" in reason.upper() or "alert" in text:
            return "TLS handshake failed: the server refused it (%s)" % (reason or text)
        return "TLS handshake failed: %s" % (reason or text)
    if isinstance(e, ConnectionError):
        return closed
    return "TLS handshake failed: %s" % e


class TlsReqPipe(ReqPipe):
    """ReqPipe over a non-blocking ssl.SSLSocket.

    SSL reads can need writes and writes reads, decrypted bytes can wait
    inside the SSL object while the socket is not readable (pending()), and
    a readable socket may hold only TLS records that carry no data.
    """

    __slots__ = ()

    tls = True
    sock: "ssl.SSLSocket"

    def tls_handshake(self, deadline: Optional[float]) -> None:
        """Runs the TLS handshake; raises ssl.SSLError (certificate verify
        failed, alert from the server, EOF), OSError, or TimeoutError."""
        import ssl

        while True:
            try:
                self.sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                self._wait(POLLIN, deadline)
            except ssl.SSLWantWriteError:
                self._wait(POLLOUT, deadline)

    def _send(self, head: bytes, payload: Bytes, deadline: Optional[float]) -> None:
        # SSLSocket has no sendmsg: one write when small, else two records
        # (still no copy of the payload).
        if len(payload) <= JOIN_MAX:
            self._send_all(memoryview(head + payload), deadline)
        else:
            self._send_all(memoryview(head), deadline)
            self._send_all(memoryview(payload), deadline)

    def _send_all(self, view: memoryview, deadline: Optional[float]) -> None:
        import ssl

        sock = self.sock
        while view:
            try:
                n = sock.send(view)
            except ssl.SSLWantWriteError:
                self._wait(POLLOUT, deadline)
                continue
            except ssl.SSLWantReadError:
                self._wait(POLLIN, deadline)
                continue
            view = view[n:]

    def _receive(self, deadline: Optional[float], wait_first: bool) -> None:
        import ssl

        sock = self.sock
        reader = self.reader
        if wait_first and not sock.pending():
            self._wait(POLLIN, deadline)
        while True:
            try:
                got = sock.recv_into(reader.space())
            except ssl.SSLWantReadError:
                self._wait(POLLIN, deadline)
                continue
            except ssl.SSLWantWriteError:
                self._wait(POLLOUT, deadline)
                continue
            if not got:
                raise PeerClosed("connection closed by the server")
            reader.end += got
            return

    def is_idle_and_open(self) -> bool:
        if self.reader.unparsed() or self.sock.pending():
            return False
        if not self._poller.poll(0):
            return True
        # Readable: EOF, an error, a stray message, or TLS records with no
        # data in them.  Read what is there without blocking.
        import ssl

        try:
            got = self.sock.recv_into(self.reader.space())
        except ssl.SSLWantReadError:
            return not self.sock.pending()  # only TLS housekeeping
        except (OSError, ssl.SSLError):
            return False
        self.reader.filled(got)
        return False


def wrap(
    sock: "socket.socket",
    context: "ssl.SSLContext",
    server_hostname: str,
    *,
    max_recv: int,
    deadline: Optional[float],
) -> TlsReqPipe:
    """Takes a connected TCP socket; returns new: a TlsReqPipe that
    finished its TLS handshake (not yet the SP one).  Closes sock and
    raises on failure: TlsHandshakeError, TimeoutError."""
    try:
        ssock = context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
    except BaseException:
        sock.close()
        raise
    pipe = TlsReqPipe(ssock, ipc=False, max_recv=max_recv)
    try:
        pipe.tls_handshake(deadline)
    except TimeoutError:
        pipe.close()
        raise
    except OSError as e:
        pipe.close()
        raise TlsHandshakeError(describe_tls_error(e)) from e
    except BaseException:
        pipe.close()
        raise
    return pipe
