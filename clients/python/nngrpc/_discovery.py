"""Discovery: the addresses behind a channel's DNS names, with no I/O.

DESIGN
------
A target whose host is a name (``tcp://tasks.hoteld:5555``,
``tls+tcp://api.example:5556``) stands for every address the name resolves
to: each address is an endpoint of its own, so calls are balanced over the
servers behind the name (the core's EndpointSet) rather than over whatever
connections happened to be dialled.  An address discovered from a name
keeps the name (``Address.name``): a TLS connection to it verifies the
server's certificate against the name, not the address.  Targets given as
an IP address or an ``ipc://`` path are endpoints as they are.

Discovery decides when to resolve and turns answers into the channel's
endpoint list; the drivers run the resolver (a plain function, see
Resolver) off the callers' threads, the sync channel on a resolver thread
of its own and the asyncio channel in its loop's executor, and hand the
answers back.  The schedule:

- the first resolution starts with the channel's first call (nothing
  resolves or connects before); calls that have no endpoint yet wait for
  it, within their deadline;
- then every ``interval`` seconds, counted from the previous start;
- sooner when asked (ask()): the core asks when an endpoint refuses a
  connection, loses one, answers UNAVAILABLE or says it is draining
  (``nngrpc-not-run``), or when no endpoint could be reached.  As gRPC's
  DNS resolver, an asked-for resolution starts at once, but never less
  than ``min_gap`` seconds after the previous one started, so a flapping
  server cannot make a channel resolve in a tight loop.

Each name's answer replaces its addresses: endpoints gone from it take no
new call (their calls in flight finish, their connections close), new ones
join the rotation.  A failed resolution (an error, or no address at all)
keeps the name's last good addresses and is logged once, as a warning on
the ``nngrpc`` logger, until the name resolves again (logged at info).
While a name has never resolved it contributes no endpoint; a call that
then has none fails with UNAVAILABLE naming the host and the resolver's
error (``unresolved()``).

Thread-safety: none of its own.  The sync channel calls it under its
resolver's lock (never the channel's lock, never across the resolver
call); the asyncio channel from its loop only.  After a fork,
after_fork() forgets a resolution the parent had under way (the child has
no thread running it) and makes the next one due at once.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Callable, List, Optional, Sequence, Tuple, Union

from nngrpc._transport import Address

#: A resolver: ``resolver(host, port)`` returns the host's addresses now
#: (IPv4 or IPv6 literals, in the order to use), or raises OSError (e.g.
#: socket.gaierror) when it cannot say.  It runs off the callers' threads
#: and may block.  Channels take one as ``resolver=`` (default:
#: system_resolver); tests give one that answers what they need.
Resolver = Callable[[str, int], Sequence[str]]

#: Default seconds between two resolutions of a name.
DEFAULT_RESOLVE_INTERVAL = 1.0
#: Least seconds between the starts of two resolutions, when asked for one.
MIN_RESOLVE_GAP = 0.5

log = logging.getLogger("nngrpc")

#: One resolution's work: (host, port) per name, in order.
Jobs = List[Tuple[str, int]]
#: One name's answer: its addresses, or what the resolver raised.
Answer = Union[Sequence[str], BaseException]


def system_resolver(host: str, port: int) -> List[str]:
    """Returns host's addresses from getaddrinfo (which releases the GIL
    while it waits), each once, in getaddrinfo's order."""
    infos = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    out: List[str] = []
    for _, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in out:
            out.append(ip)
    return out


def is_name(addr: Address) -> bool:
    """True if addr's host is a DNS name to resolve (not an ipc path, not an
    IP literal)."""
    if addr.ipc or addr.name:
        return False
    try:
        ipaddress.ip_address(addr.host.partition("%")[0])
    except ValueError:
        return True
    return False


def resolve_all(resolver: Resolver, jobs: Jobs) -> List[Answer]:
    """Runs the resolver for each job (on a resolver thread or executor:
    it blocks); returns one answer per job, errors included."""
    answers: List[Answer] = []
    for host, port in jobs:
        try:
            answers.append(list(resolver(host, port)))
        except Exception as e:  # the resolver's error is the name's answer
            answers.append(e)
    return answers


def _address(target: Address, ip: str) -> Optional[Address]:
    """Returns the endpoint address for ip, one of target's name's
    addresses (None: not of target's family, as an IPv6 one for tcp4://).
    Raises ValueError if ip is not an IP address."""
    literal = ipaddress.ip_address(ip.partition("%")[0])
    family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
    if target.family not in (socket.AF_UNSPEC, family):
        return None
    scheme = target.url.partition("://")[0]
    host = "[%s]" % ip if family == socket.AF_INET6 else ip
    return Address(
        url="%s://%s:%d" % (scheme, host, target.port),
        ipc=False,
        family=int(family),
        host=ip,
        port=target.port,
        tls=target.tls,
        name=target.host,
    )


class _Name:
    """One target with a name: its last good addresses and its errors."""

    __slots__ = ("target", "addrs", "error", "failing")

    def __init__(self, target: Address) -> None:
        self.target = target
        self.addrs: Optional[List[Address]] = None  # None: never resolved
        self.error = ""  # the last failure, "" once it resolves
        self.failing = False  # a failure was logged and no success since

    def take(self, answer: Answer) -> bool:
        """Records one resolution's answer; True if the addresses changed."""
        if isinstance(answer, BaseException):
            return self._failed(_describe(answer))
        addrs: List[Address] = []
        for ip in answer:
            try:
                a = _address(self.target, ip)
            except ValueError:
                return self._failed("the resolver answered %r, not an IP address" % (ip,))
            if a is not None and a not in addrs:
                addrs.append(a)
        if not addrs:
            return self._failed("no address")
        if self.failing:
            log.info("%s resolves again: %s", self.target.host, _ips(addrs))
        elif addrs != self.addrs:
            log.debug("%s resolves to %s", self.target.host, _ips(addrs))
        self.failing = False
        self.error = ""
        changed = addrs != self.addrs
        self.addrs = addrs
        return changed

    def _failed(self, why: str) -> bool:
        self.error = why
        if not self.failing:
            self.failing = True
            if self.addrs is None:
                log.warning("cannot resolve %s: %s", self.target.host, why)
            else:
                log.warning(
                    "cannot resolve %s: %s; keeping its last addresses %s",
                    self.target.host,
                    why,
                    _ips(self.addrs),
                )
        return False


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _ips(addrs: Sequence[Address]) -> str:
    return ", ".join(a.host for a in addrs)


class Discovery:
    """A channel's targets and when to resolve their names; see DESIGN.

    targets: the channel's parsed URLs, in order.  interval: seconds
    between resolutions (> 0).  The driver's loop: when due(now), start()
    returns the jobs; run them (resolve_all, off the callers' threads) and
    give the answers to finish(), which returns the new endpoint addresses
    when they changed.
    """

    __slots__ = (
        "interval",
        "min_gap",
        "running",
        "completed",
        "_fixed",
        "_names",
        "_wanted",
        "_started_at",
    )

    def __init__(self, targets: Sequence[Address], interval: float) -> None:
        if not interval > 0:
            raise ValueError("resolve_interval must be > 0 seconds, got %r" % (interval,))
        self.interval = float(interval)
        self.min_gap = min(MIN_RESOLVE_GAP, self.interval)
        self.running = False  # a resolution is under way
        self.completed = 0  # resolutions finished: callers wait for it to grow
        self._fixed = [a for a in targets if not is_name(a)]
        self._names: List[_Name] = []
        for a in targets:
            if is_name(a) and all(n.target != a for n in self._names):
                self._names.append(_Name(a))
        self._wanted = True  # the first resolution, at the first call
        self._started_at: Optional[float] = None

    @property
    def has_names(self) -> bool:
        """True if some target is a name (else there is nothing to do)."""
        return bool(self._names)

    @property
    def hosts(self) -> str:
        """The names, for messages: "a, b"."""
        return ", ".join(n.target.host for n in self._names)

    def addresses(self) -> List[Address]:
        """Returns the endpoint addresses: the fixed targets, then each
        name's last good addresses, each once, in the targets' order."""
        out = list(self._fixed)
        for n in self._names:
            for a in n.addrs or ():
                if a not in out:
                    out.append(a)
        return out

    def ask(self) -> None:
        """Asks for a resolution as soon as min_gap allows (something failed)."""
        self._wanted = True

    def next_at(self) -> float:
        """Returns the monotonic time the next resolution is due."""
        if self._started_at is None:
            return float("-inf")
        if self._wanted:
            return self._started_at + self.min_gap
        return self._started_at + self.interval

    def due(self, now: float) -> bool:
        """True if a resolution should start now."""
        return not self.running and now >= self.next_at()

    def start(self, now: float) -> Jobs:
        """Marks a resolution started; returns its jobs, (host, port) per name."""
        self.running = True
        self._wanted = False
        self._started_at = now
        return [(n.target.host, n.target.port) for n in self._names]

    def finish(self, answers: Sequence[Answer]) -> Optional[List[Address]]:
        """Takes the answers to start()'s jobs; returns the new endpoint
        addresses if they changed, else None."""
        self.running = False
        self.completed += 1
        changed = False
        for n, answer in zip(self._names, answers):
            changed |= n.take(answer)
        return self.addresses() if changed else None

    def unresolved(self) -> str:
        """Why a call has no endpoint: each name and its resolver's error."""
        parts = []
        for n in self._names:
            if n.addrs is None:
                parts.append(
                    "cannot resolve %s: %s" % (n.target.host, n.error or "no answer yet")
                )
        return "; ".join(parts) or "no endpoint to connect to"

    def abandon(self) -> None:
        """The resolution under way will not finish (its driver stopped:
        channel closed, event loop gone); the next one is due soon."""
        self.running = False
        self._wanted = True

    def after_fork(self) -> None:
        """In a forked child: the parent's resolution under way is not ours;
        resolve again at the next chance."""
        self.running = False
        self._wanted = True
        self._started_at = None
