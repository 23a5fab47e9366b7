#!/usr/bin/env python3
"""Swarm load client: calls hoteld replicas through ONE nngrpc.Channel and
reports, every --report-every seconds, which replica answered how many
calls and how many calls failed.

    load.py [--target URL] [--threads T] [--interval S] [--timeout S]

Runs in a container on the stack's overlay network (docker/swarm/test.py
starts it in the smoke client image, whose python3 imports nngrpc).  Every
thread alternates two calls of /nngrpc.testing.v1.Testing/Echo (hoteld
--testing):

- idempotent: through the generated stub (the method is NO_SIDE_EFFECTS,
  so the channel retries it on UNAVAILABLE);
- non-idempotent: the same method through channel.unary_unary(...,
  idempotent=False), so only an answer saying the call never ran
  (nngrpc-not-run: the replica was draining) lets the channel send it to
  another replica.

Which replica answered: each request carries metadata testing-hostname,
and Echo answers with the server's host name in that trailer (a Swarm
task's container id, 12 hex digits).  A server of release 0.1.0 has no
such trailer: such a call is counted under "@" and the address of the
connection that answered it (the replica's address on the network), which
a Channel subclass notes per thread (private API of the client, 0.1.0's
and today's; "@?" if it changes).

It runs with the nngrpc package of any release since 0.1.0 (make
upgrade-test runs it in the 0.1.0 smoke client image too): public API only,
apart from that one override.

Output: one JSON object per line,

    {"t": UNIX_TIME, "ok": {HOST: {"idem": N, "non": N}},
     "failed": {"idem": {CODE: N}, "non": {CODE: N}},
     "retried": {"idem": N, "non": N}, "errors": [SAMPLE, ...]}

for the calls that ended since the previous line ("retried": answered
OK after more than one attempt).  A first line {"start": ...} says the
channel is set up.  SIGTERM or SIGINT ends it after one last line; so does
--duration.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Counter, DefaultDict, Dict, List, Optional, Tuple

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

ECHO = "/nngrpc.testing.v1.Testing/Echo"
HOST_KEY = "testing-hostname"
MAX_SAMPLES = 5  # error messages kept per report line


class Tally:
    """Outcomes since the last report; shared by the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.ok: DefaultDict[str, Counter[str]] = defaultdict(Counter)
        self.failed: DefaultDict[str, Counter[str]] = defaultdict(Counter)
        self.retried: Counter[str] = Counter()
        self.errors: List[str] = []

    def add_ok(self, kind: str, host: str, attempts: int) -> None:
        with self.lock:
            self.ok[host][kind] += 1
            if attempts > 1:
                self.retried[kind] += 1

    def add_failed(self, kind: str, e: nngrpc.RpcError, peer: str) -> None:
        with self.lock:
            self.failed[kind][e.code().name] += 1
            if len(self.errors) < MAX_SAMPLES:
                self.errors.append("%s: %s: %s (%d attempts, last to %s)" % (
                    kind, e.code().name, e.details(), e.call.attempts, peer))

    def take(self) -> Dict[str, Any]:
        with self.lock:
            line = {
                "t": round(time.time(), 3),
                "ok": {h: dict(c) for h, c in self.ok.items()},
                "failed": {k: dict(c) for k, c in self.failed.items()},
                "retried": dict(self.retried),
                "errors": self.errors,
            }
            self.reset()
        return line


class PeerChannel(nngrpc.Channel):
    """nngrpc.Channel that notes, per thread, the peer address of the
    connection the thread's last attempt went out on (a retried call's
    attempts run one after another on the caller's thread, so after the
    call it is the one that answered).  Wraps the private _checkout(),
    which returns (endpoint, pipe) in every release so far; "?" when that
    changes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer = threading.local()

    def _checkout(self, *args: Any, **kwargs: Any) -> Any:
        got = super()._checkout(*args, **kwargs)  # type: ignore[misc]
        try:
            self._peer.ip = str(got[1].sock.getpeername()[0])
        except Exception:  # noqa: BLE001 (a changed private API, a reset socket)
            self._peer.ip = "?"
        return got

    def forget_peer(self) -> None:
        self._peer.ip = "?"

    def last_peer(self) -> str:
        return str(getattr(self._peer, "ip", "?"))


def host_of(call: Any, ch: PeerChannel) -> str:
    """The answering replica: its host name (the trailer), else "@" and
    its address."""
    return dict(call.trailing_metadata()).get(HOST_KEY) or "@" + ch.last_peer()


def worker(calls: List[Tuple[str, Callable[[], Tuple[Any, Any]]]], tally: Tally,
           stop: threading.Event, interval: float, ch: PeerChannel) -> None:
    i = 0
    while not stop.is_set():
        kind, call_once = calls[i % len(calls)]
        i += 1
        ch.forget_peer()
        try:
            _, call = call_once()
        except nngrpc.RpcError as e:
            tally.add_failed(kind, e, ch.last_peer())
        else:
            tally.add_ok(kind, host_of(call, ch), call.attempts)
        if interval:
            stop.wait(interval)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="tcp://tasks.hoteld:5555")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--interval", type=float, default=0.004,
                   help="pause after each call, per thread (s)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of each call (s)")
    p.add_argument("--report-every", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=3600.0)
    args = p.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    md = ((HOST_KEY, ""),)
    req = testing_pb2.EchoRequest(payload=b"swarm")
    with PeerChannel(args.target) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        raw: nngrpc.UnaryUnaryMultiCallable[testing_pb2.EchoRequest, testing_pb2.EchoResponse]
        raw = ch.unary_unary(
            ECHO, testing_pb2.EchoRequest.SerializeToString,
            testing_pb2.EchoResponse.FromString, idempotent=False)
        calls: List[Tuple[str, Callable[[], Tuple[Any, Any]]]] = [
            ("idem", lambda: stub.Echo.with_call(req, timeout=args.timeout, metadata=md)),
            ("non", lambda: raw.with_call(req, timeout=args.timeout, metadata=md)),
        ]
        tally = Tally()
        print(json.dumps({"start": time.time(), "target": args.target,
                          "threads": args.threads}), flush=True)
        threads = [threading.Thread(target=worker, args=(calls[k % 2:] + calls[:k % 2], tally,
                                                         stop, args.interval, ch), daemon=True)
                   for k in range(args.threads)]
        for t in threads:
            t.start()
        end = time.monotonic() + args.duration
        while not stop.wait(args.report_every):
            print(json.dumps(tally.take()), flush=True)
            if time.monotonic() > end:
                stop.set()
        for t in threads:
            t.join(args.timeout + 5)
        print(json.dumps(tally.take()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
