"""What the server at the other end of a connection supports (its
capability trailers, docs/compatibility.md): kept on each connection by
the drivers (``conn.caps``), read by the client core (_core.py).  A module
of its own so the pipes can start with UNKNOWN without importing the core.
"""

from __future__ import annotations

import sys
from typing import Any, FrozenSet, Optional


class Caps:
    """A server's request size limit (the SP message, bytes) and the
    encodings it decodes in requests.

    ``UNKNOWN`` (limit -1) until the server answered a call that asked;
    ``OLD_SERVER`` (no limit the client knows) for a server that predates
    capability trailers (it never says).  A limit below any request's size
    makes the driver's one test (``st.size > caps.limit``) send every call
    of an UNKNOWN connection through CallState.prepare(), which asks.
    """

    __slots__ = ("limit", "encodings")

    def __init__(self, limit: int, encodings: FrozenSet[str]) -> None:
        self.limit = limit
        self.encodings = encodings

    def __repr__(self) -> str:
        return "<Caps limit=%d encodings=%s>" % (self.limit, ",".join(sorted(self.encodings)))


#: A connection whose server has said nothing yet.
UNKNOWN = Caps(-1, frozenset())
#: The capabilities of a server that never says any: no limit the client
#: knows, nothing but identity.
OLD_SERVER = Caps(sys.maxsize, frozenset())


def caps_of(limit: Optional[Any], accept: Optional[Any]) -> Optional[Caps]:
    """Returns the capabilities in a reply's trailers (the values of
    nngrpc-max-message-bytes and nngrpc-accept-encoding), or None when
    they are not there (or the limit is not a number)."""
    if not isinstance(limit, str) or not limit.isdigit():
        return None
    names = accept.split(",") if isinstance(accept, str) else ()
    return Caps(int(limit), frozenset(n.strip().lower() for n in names) - {""})
