#!/usr/bin/env python3
"""Latency and concurrency of the Python client against a real hoteld.

    build/venv/bin/python tests/integration/measure_latency.py \\
        [--url tcp://127.0.0.1:5555 | --hoteld build/bin/hoteld] [--calls 2000]

Without --url it starts its own ``hoteld --testing --workers 32`` on a free
port.  Prints single-call Echo (64 B) latency p50/p99 over --calls calls,
then the throughput of 32 threads each calling Sleep(10 ms) against one
thread doing the same (the ratio should be close to 32).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import List, Optional

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: Optional[subprocess.Popen[bytes]], limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    with nngrpc.Channel(url) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        while True:
            try:
                stub.Echo(testing_pb2.EchoRequest(), timeout=0.5)
                return
            except nngrpc.RpcError:
                if proc is not None and proc.poll() is not None:
                    raise SystemExit("hoteld exited with %s" % proc.returncode)
                if time.monotonic() > end:
                    raise SystemExit("hoteld did not answer at %s" % url)
                time.sleep(0.02)


def percentile(sorted_values: List[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def latency(url: str, calls: int) -> None:
    with nngrpc.Channel(url) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        req = testing_pb2.EchoRequest(payload=b"x" * 64)
        for _ in range(200):  # warm up: connection, caches
            stub.Echo(req, timeout=1.0)
        times: List[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            stub.Echo(req, timeout=1.0)
            times.append(time.perf_counter() - t0)
    times.sort()
    print(
        "Echo 64 B, %d calls, 1 thread: p50 %.1f us, p99 %.1f us, mean %.1f us"
        % (
            calls,
            percentile(times, 0.50) * 1e6,
            percentile(times, 0.99) * 1e6,
            statistics.fmean(times) * 1e6,
        )
    )


def sleep_throughput(url: str, threads: int, seconds: float) -> float:
    """Returns Sleep(10 ms) calls per second with this many threads."""
    done = [0] * threads
    stop = time.monotonic() + seconds
    with nngrpc.Channel(url) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        req = testing_pb2.SleepRequest(ms=10)

        def worker(i: int) -> None:
            while time.monotonic() < stop:
                stub.Sleep(req, timeout=5.0)
                done[i] += 1

        stub.Sleep(req, timeout=5.0)
        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
    return sum(done) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="an already running hoteld --testing")
    ap.add_argument("--hoteld", default=os.environ.get("NNGRPC_HOTELD", "build/bin/hoteld"))
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    proc = None
    url = args.url
    if url is None:
        url = "tcp://127.0.0.1:%d" % free_port()
        proc = subprocess.Popen(
            [args.hoteld, "--testing", "--no-hotels", "--listen", url, "--workers", "32",
             "--log-level", "warn"]
        )
    try:
        wait_ready(url, proc)
        latency(url, args.calls)
        one = sleep_throughput(url, 1, args.seconds)
        many = sleep_throughput(url, 32, args.seconds)
        print(
            "Sleep(10 ms): 1 thread %.1f calls/s, 32 threads %.1f calls/s, ratio %.1fx"
            % (one, many, many / one)
        )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
