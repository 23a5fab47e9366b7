#!/usr/bin/env python3
"""Smoke client: calls every hoteld replica through ONE nngrpc.Channel.

    smoke_client.py [--calls N | --duration S] [--threads T] [URL ...]

The URLs (default $NNGRPC_TARGETS, comma-separated, else tcp://hoteld1:5555,
tcp://hoteld2:5555, tcp://hoteld3:5555) all go into one
``nngrpc.Channel([...])``, which spreads calls round-robin over the replicas
that are up and skips one that refuses connections.  T threads share the
channel.  It prints how many calls each replica answered, then one line

    RESULT {"calls": ..., "ok": ..., "errors": {...}, "replicas": {...}}

(JSON: per replica its count, the Unix time of its last answer, and its
answers per half second) for scripts, also when SIGTERM or SIGINT ends a
--duration run early, and exits 1 when more than --max-errors calls failed or fewer than
--min-replicas replicas answered.

Method: ``--method auto`` (the default) calls hotel.v1.HotelSearch/Search
and Stats when the server has the hotel service, else the built-in
/nngrpc.health.v1.Health/Check, so it works with any hoteld.

Which replica answered: ``Call.peer()`` (from ``with_call``), the address
the call went to.  A target whose host is a DNS name is one endpoint per
address it resolves to (``tcp://tasks.hoteld:5555``: every Swarm replica):
its answers count for the target (``Targets``), and the per-address counts
are printed too.

Calls answered UNAVAILABLE (a replica draining) are sent again, --retries
times: every method called is NO_SIDE_EFFECTS.  A Channel that retries
idempotent calls by itself makes this a no-op.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import nngrpc

DEFAULT_TARGETS = "tcp://hoteld1:5555,tcp://hoteld2:5555,tcp://hoteld3:5555"
HEALTH_CHECK = "/nngrpc.health.v1.Health/Check"
UNKNOWN_PEER = "?"


class Targets:
    """Which target a call's answer counts for: ``Call.peer()`` is the
    address URL the call went to, and a target whose host is a DNS name
    (``tcp://tasks.hoteld:5555``) is one endpoint per address it resolves
    to.  The names are resolved here too, at the start and again when an
    address not seen yet answers (at most once a second)."""

    def __init__(self, targets: List[str]) -> None:
        self.targets = targets
        self._by_address: Dict[str, str] = {}
        self._lock = threading.Lock()
        self._resolved_at = 0.0
        self._resolve()

    def _resolve(self) -> None:
        self._resolved_at = time.monotonic()
        for url in self.targets:
            self._by_address.setdefault(url, url)  # an IP literal, or ipc://
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rpartition(":")
            if not port.isdigit() or scheme == "ipc":
                continue
            try:
                infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
            except OSError:
                continue
            for family, _, _, _, sockaddr in infos:
                ip = "[%s]" % sockaddr[0] if family == socket.AF_INET6 else sockaddr[0]
                self._by_address["%s://%s:%s" % (scheme, ip, port)] = url

    def of(self, address: str) -> str:
        """The target address (a peer() URL) belongs to; UNKNOWN_PEER for ""."""
        if not address:
            return UNKNOWN_PEER
        with self._lock:
            if address not in self._by_address and time.monotonic() - self._resolved_at >= 1.0:
                self._resolve()
            return self._by_address.get(address, address)


def _health_status(payload: bytes) -> int:
    """Field 1 (varint) of nngrpc.health.v1.HealthCheckResponse; 0 if absent.
    Decoded by hand: the health proto's Python module is not in the
    nngrpc package."""
    i = 0
    while i < len(payload):
        key = payload[i]
        i += 1
        if key == 0x08:
            value = shift = 0
            while True:
                b = payload[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    return value
        break  # anything else: not what Check sends
    return 0


def make_calls(ch: nngrpc.Channel, method: str) -> Tuple[str, List[Callable[[float], nngrpc.Call]]]:
    """The calls one iteration makes, and the method's display name."""
    health: nngrpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(HEALTH_CHECK)

    def check(timeout: float) -> nngrpc.Call:
        reply, call = health.with_call(b"", timeout=timeout)
        status = _health_status(reply)
        if status != 1:
            raise RuntimeError("health status %d, not SERVING" % status)
        return call

    if method == "health":
        return "Health/Check", [check]
    try:
        from hotel.v1 import hotel_nngrpc, hotel_pb2  # type: ignore[import-not-found]
    except ImportError:
        if method != "auto":
            raise
        return "Health/Check (no hotel stubs)", [check]
    stub = hotel_nngrpc.HotelSearchStub(ch)

    def search(timeout: float) -> nngrpc.Call:
        req = hotel_pb2.SearchRequest(query="hotel", page_size=5)
        return stub.Search.with_call(req, timeout=timeout)[1]

    def stats(timeout: float) -> nngrpc.Call:
        reply, call = stub.Stats.with_call(hotel_pb2.StatsRequest(), timeout=timeout)
        if reply.hotel_count == 0:
            raise RuntimeError("Stats: empty dataset")
        return call

    if method == "auto":
        try:
            stats(5.0)
        except nngrpc.RpcError as e:
            if e.code() is not nngrpc.StatusCode.UNIMPLEMENTED:
                raise
            return "Health/Check (server has no hotel service)", [check]
    return "HotelSearch Search+Stats", [search, stats]


def wait_for_first_answer(ch: nngrpc.Channel, limit: float) -> None:
    """Replicas may still be starting: poll Health until one answers."""
    health: nngrpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(HEALTH_CHECK)
    end = time.monotonic() + limit
    while True:
        try:
            if _health_status(health(b"", timeout=1.0)) == 1:
                return
        except nngrpc.RpcError as e:
            if time.monotonic() > end:
                raise SystemExit("smoke: no replica answered within %.0f s: %s" % (limit, e))
        time.sleep(0.2)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", help="replica URLs (default $NNGRPC_TARGETS)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--calls", type=int, default=None, help="total calls (default 300)")
    g.add_argument("--duration", type=float, default=None, help="call for this many seconds")
    p.add_argument("--threads", type=int, default=4, help="threads sharing the channel")
    p.add_argument("--interval", type=float, default=0.0,
                   help="pause between a thread's calls (seconds)")
    p.add_argument("--timeout", type=float, default=2.0, help="deadline of each call (s)")
    p.add_argument("--method", choices=("auto", "hotel", "health"), default="auto")
    p.add_argument("--wait", type=float, default=60.0,
                   help="wait up to this long for a first answer (s)")
    p.add_argument("--report-every", type=float, default=0.0,
                   help="print per-replica counts every S seconds")
    p.add_argument("--min-replicas", type=int, default=None,
                   help="replicas that must answer (default: all targets)")
    p.add_argument("--max-errors", type=int, default=0, help="failed calls allowed")
    p.add_argument("--retries", type=int, default=1,
                   help="times a call answered UNAVAILABLE is sent again (default 1)")
    a = p.parse_args(argv)

    targets = a.targets or os.environ.get("NNGRPC_TARGETS", DEFAULT_TARGETS).split(",")
    targets = [t.strip() for t in targets if t.strip()]
    min_replicas = len(targets) if a.min_replicas is None else a.min_replicas
    if a.calls is None and a.duration is None:
        a.calls = 300

    # Short backoff: a stopped replica is retried soon after it comes back.
    ch = nngrpc.Channel(targets, connect_timeout=1.0, backoff=0.5, backoff_max=2.0)
    names = Targets(targets)
    wait_for_first_answer(ch, a.wait)
    label, calls = make_calls(ch, a.method)
    print("smoke: %s through one Channel(%s), %d threads"
          % (label, ", ".join(targets), a.threads), flush=True)

    lock = threading.Lock()
    bucket = 0.5  # seconds per timeline slot
    timeline: Dict[str, List[int]] = {u: [] for u in targets}
    wall_start = time.time()
    counts: Counter[str] = Counter()
    by_address: Counter[str] = Counter()
    last_ok: Dict[str, float] = {}
    errors: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    first_errors: List[str] = []
    issued = [0]
    start = time.monotonic()
    stop_at = start + a.duration if a.duration is not None else None
    # SIGTERM or SIGINT (`docker kill -s TERM`, Ctrl+C) ends the run early,
    # with the report. Python as PID 1 of a container needs the handler.
    stop_now = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_now.set())

    def take_ticket() -> bool:
        if stop_now.is_set():
            return False
        with lock:
            if a.calls is not None:
                if issued[0] >= a.calls:
                    return False
            elif stop_at is not None and time.monotonic() >= stop_at:
                return False
            issued[0] += 1
            return True

    def call_once(fn: Callable[[float], nngrpc.Call]) -> bool:
        """One logical call: True when it succeeded (and counted)."""
        for attempt in range(a.retries + 1):
            try:
                call = fn(a.timeout)
                break
            except nngrpc.RpcError as e:
                text = "%s: %s" % (e.code().name, e.details())
                # Every method called here is NO_SIDE_EFFECTS, so a call
                # answered UNAVAILABLE (a replica draining, a connection
                # lost) may be sent again: the channel takes the next
                # replica. (Until nngrpc.Channel retries by itself.)
                if e.code() is nngrpc.StatusCode.UNAVAILABLE and attempt < a.retries:
                    with lock:
                        retried[text] += 1
                    continue
                key = e.code().name
            except RuntimeError as e:
                key, text = "BAD_ANSWER", str(e)
            with lock:
                errors[key] += 1
                if len(first_errors) < 5:
                    first_errors.append("%.2fs %s" % (time.monotonic() - start, text))
            return False
        address = call.peer() or UNKNOWN_PEER
        peer = names.of(call.peer())
        now = time.time()
        slot = int((now - wall_start) / bucket)
        with lock:
            counts[peer] += 1
            by_address[address] += 1
            last_ok[peer] = now
            row = timeline.setdefault(peer, [])
            row.extend([0] * (slot + 1 - len(row)))
            row[slot] += 1
        return True

    def worker() -> None:
        i = 0
        while take_ticket():
            call_once(calls[i % len(calls)])
            i += 1
            if a.interval:
                time.sleep(a.interval)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
    for t in threads:
        t.start()
    if a.report_every > 0:
        prev: Counter[str] = Counter()
        while True:
            for t in threads:
                t.join(max(0.0, a.report_every - (time.monotonic() - start) % a.report_every))
                if t.is_alive():
                    break
            if not any(t.is_alive() for t in threads):
                break
            with lock:
                now, errs, again = Counter(counts), sum(errors.values()), sum(retried.values())
            delta = {u: now[u] - prev[u] for u in targets}
            print("smoke: t=%5.1fs  %s  errors=%d sent-again=%d" % (
                time.monotonic() - start,
                "  ".join("%s=%d" % (u.split("//")[-1], delta[u]) for u in targets),
                errs, again), flush=True)
            prev = now
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ch.close()

    ok = sum(counts.values())
    n_err = sum(errors.values())
    for u in targets + sorted(set(counts) - set(targets)):
        print("smoke: %-24s %6d calls" % (u, counts[u]))
    if sorted(by_address) != sorted(counts):  # names: one endpoint per address
        for u in sorted(by_address):
            print("smoke:   address %-24s %6d calls" % (u, by_address[u]))
    print("smoke: %d ok, %d failed in %.2f s (%.0f calls/s)"
          % (ok, n_err, elapsed, (ok + n_err) / elapsed if elapsed else 0))
    for line in first_errors:
        print("smoke: error at %s" % line)
    for text, n in sorted(retried.items()):
        print("smoke: sent again after %d answer(s) %s" % (n, text))
    answered = [u for u in targets if counts[u] > 0]
    print("RESULT " + json.dumps({
        "method": label,
        "calls": ok + n_err,
        "ok": ok,
        "errors": dict(errors),
        "retried": dict(retried),
        "seconds": round(elapsed, 3),
        "replicas": {u: {"calls": counts[u], "last_ok": last_ok.get(u, 0.0)} for u in targets},
        # Answers per replica in consecutive slots of `bucket` seconds
        # from Unix time `start`.
        "timeline": {"start": wall_start, "bucket": bucket, "replicas": timeline},
    }, sort_keys=True), flush=True)
    if n_err > a.max_errors:
        print("smoke: FAIL: %d calls failed (allowed %d)" % (n_err, a.max_errors))
        return 1
    if len(answered) < min_replicas:
        print("smoke: FAIL: %d of %d replicas answered (need %d)"
              % (len(answered), len(targets), min_replicas))
        return 1
    print("smoke: OK: %d of %d replicas answered" % (len(answered), len(targets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
