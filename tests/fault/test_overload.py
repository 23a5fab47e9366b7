"""Overload: 10x the server's capacity, offered open-loop.

hoteld --workers 4 --queue 16 serving Sleep(20 ms) can serve 4 / 20 ms =
200 calls/s.  We offer 2000 calls/s for 5 s from 4 forked processes of 64
threads, each process with one Channel (one connection per call in flight:
up to 256 connections), open-loop: call k is due at t0 + k/2000 whatever
happened to the calls before it (build/bin/nngrpc-bench is closed-loop,
so it cannot offer a
fixed rate: a rejected call comes back in microseconds and is re-sent at
once).  Each call is one attempt (retry=None).

What must hold:
- the excess is refused with RESOURCE_EXHAUSTED, fast: p99 < 50 ms;
- served calls keep their latency: p99 < 20 ms + the queue's wait
  (queue / workers x 20 ms = 80 ms) + slack: 25 ms on the server's own
  clock (Response queue_us + run_us), 60 ms on the client's (which also
  counts the Python load generator's scheduling on a 2-CPU machine);
- the served rate does not collapse: >= 80 % of capacity;
- nothing else happens (no DEADLINE_EXCEEDED, no connection errors);
- memory stays bounded: peak VmRSS under load within 32 MiB of the
  warmed-up baseline (the queue holds 16 small requests), and back within
  the tolerance afterwards.

Up to five runs: the first that keeps every bound passes (a busy shared
machine only makes figures worse; see test_ten_times_capacity).  The figures are printed (pytest -s, or
the failure message).
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Tuple

import pytest

import nngrpc
from faultlib import (
    SLEEP,
    Hoteld,
    MemoryCheck,
    Sample,
    open_loop,
    percentile,
    spawn_hoteld,
)
from nngrpc.testing.v1 import testing_pb2

WORKERS = 4
QUEUE = 16
SLEEP_MS = 20
CAPACITY = WORKERS * 1000.0 / SLEEP_MS  # 200 calls/s
OFFERED = 10 * CAPACITY  # 2000 calls/s
DURATION = 5.0
PROCESSES = 4  # each with its own GIL
THREADS = 64  # per process; a served call blocks its thread ~100 ms

SLEEP_REQ = testing_pb2.SleepRequest(ms=SLEEP_MS).SerializeToString()


def sleep_call(ch: nngrpc.Channel, k: int) -> Tuple[str, int]:
    try:
        _, call = ch.invoke(SLEEP, SLEEP_REQ, timeout=1.0)
        return "OK", call.queue_us + call.run_us
    except nngrpc.RpcError as e:
        return e.code().name, -1


def ms(v: float) -> float:
    return v * 1000.0


ATTEMPTS = 5


def measure(
    h: Hoteld, unloaded: List[float], mem: MemoryCheck
) -> Tuple[List[Tuple[str, bool]], str]:
    """One overload run; returns (the bounds it broke, the report)."""
    peak = [h.rss()]
    samples, elapsed = open_loop(
        h.tcp, sleep_call, OFFERED, DURATION, THREADS, processes=PROCESSES, retry=None
    )
    peak[0] = max(peak[0], h.rss())
    by_code: Dict[str, List[Sample]] = {}
    for s in samples:
        by_code.setdefault(s.code, []).append(s)
    ok = [s.end - s.sent for s in by_code.get("OK", [])]
    ok_server = [s.server_us / 1e6 for s in by_code.get("OK", [])]
    rej = [s.end - s.sent for s in by_code.get("RESOURCE_EXHAUSTED", [])]
    late = [s.sent - s.start for s in samples]
    offered = len(samples) / elapsed
    served = len(ok) / elapsed
    refused = len(rej) / elapsed
    # Served: 20 ms of Sleep after at most queue/workers x 20 ms = 80 ms in
    # the queue.  Slack: 25 ms on the server's own clock (worker wake-ups
    # and nanosleep overshoot on 2 busy CPUs); 60 ms on the client's, which
    # also counts the Python load generator's own scheduling.
    queue_wait = QUEUE / WORKERS * SLEEP_MS
    bound_server = SLEEP_MS + queue_wait + 25
    bound = SLEEP_MS + queue_wait + 60
    others = {k: len(v) for k, v in by_code.items() if k not in ("OK", "RESOURCE_EXHAUSTED")}
    report = (
        "overload (hoteld --workers %d --queue %d, Sleep(%d ms), capacity %.0f/s; "
        "%d processes x %d threads, open loop):\n"
        "  offered %.0f calls/s (target %.0f; sender lateness p50 %.1f p99 %.1f ms), "
        "%d calls in %.2f s\n"
        "  served OK %.0f/s (%.0f %% of capacity), RESOURCE_EXHAUSTED %.0f/s, other: %s\n"
        "  OK latency p50 %.1f p99 %.1f max %.1f ms (bound %.0f); "
        "unloaded p50 %.1f p99 %.1f ms\n"
        "  OK latency on the server's clock (queue + run) p50 %.1f p99 %.1f ms (bound %.0f)\n"
        "  RESOURCE_EXHAUSTED latency p50 %.2f p99 %.2f max %.2f ms (bound 50)\n"
        "  VmRSS %d KiB warmed up, %d after the run; load average %s"
        % (
            WORKERS, QUEUE, SLEEP_MS, CAPACITY, PROCESSES, THREADS,
            offered, OFFERED, ms(percentile(late, 50)), ms(percentile(late, 99)),
            len(samples), elapsed,
            served, 100 * served / CAPACITY, refused, others,
            ms(percentile(ok, 50)), ms(percentile(ok, 99)), ms(max(ok, default=0)), bound,
            ms(percentile(unloaded, 50)), ms(percentile(unloaded, 99)),
            ms(percentile(ok_server, 50)), ms(percentile(ok_server, 99)), bound_server,
            ms(percentile(rej, 50)), ms(percentile(rej, 99)), ms(max(rej, default=0)),
            mem.warm or 0, peak[0], open("/proc/loadavg").read().split()[0],
        )
    )
    # (name, whether machine noise alone can cause it)
    broken: List[Tuple[str, bool]] = []
    if offered < 0.8 * OFFERED:
        broken.append(("could not offer the load", True))
    if others:
        # A 1 s deadline passes only when the machine stalls the client.
        broken.append(("statuses other than OK and RESOURCE_EXHAUSTED",
                       set(others) == {"DEADLINE_EXCEEDED"}))
    if served < 0.8 * CAPACITY:
        broken.append(("served throughput collapsed", False))
    if refused < 0.5 * (offered - CAPACITY):
        broken.append(("the excess was not refused", False))
    if not ms(percentile(rej, 99)) < 50:
        broken.append(("rejections are slow", True))
    if not ms(percentile(ok_server, 99)) < bound_server:
        broken.append(("served calls lost their latency (server clock)", True))
    if not ms(percentile(ok, 99)) < bound:
        broken.append(("served calls lost their latency (client clock)", True))
    if peak[0] - (mem.warm or 0) > max(32 * 1024, mem.tolerance):
        broken.append(("memory grew under load", False))
    return broken, report


def test_ten_times_capacity(hoteld_binary: str, workdir: str) -> None:
    """Up to five runs: the first that keeps every bound passes.  Noise
    from a shared machine only makes figures worse, so a server that
    really breaks a bound fails them all.  When only latency bounds broke
    and the machine's load average was over 1.5 x its CPUs, the test is
    skipped with the figures rather than failed."""
    h: Hoteld = spawn_hoteld(
        hoteld_binary,
        workdir,
        ["--no-hotels", "--workers", str(WORKERS), "--queue", str(QUEUE)],
    )
    try:
        unloaded: List[float] = []
        with nngrpc.Channel(h.tcp, retry=None) as ch:
            for _ in range(60):
                t0 = time.monotonic()
                ch.call(SLEEP, SLEEP_REQ, timeout=1.0)
                unloaded.append(time.monotonic() - t0)
        # Warm-up at the same overload (threads, arenas, connections).
        # ASan: with 256 connections its per-thread allocator caches and
        # the 16 MiB quarantine can grow more than 40 MiB after the warm-up.
        mem = MemoryCheck(h, asan_tolerance_kib=64 * 1024)
        open_loop(h.tcp, sleep_call, OFFERED, 1.0, THREADS, processes=PROCESSES, retry=None)
        mem.warmed()
        reports = []
        noise_only = True
        busiest = 0.0
        for attempt in range(1, ATTEMPTS + 1):
            broken, report = measure(h, unloaded, mem)
            busiest = max(busiest, float(open("/proc/loadavg").read().split()[0]))
            reports.append("run %d: %s%s" % (
                attempt, report, "\n  BROKEN: " + "; ".join(b for b, _ in broken) if broken else ""))
            print(reports[-1])
            if not broken:
                break
            noise_only = noise_only and all(n for _, n in broken)
        else:
            cpus = os.cpu_count() or 1
            if noise_only and busiest > 1.5 * cpus:
                pytest.skip(
                    "machine too busy to measure latency (load average %.1f on %d CPUs); "
                    "only latency bounds broke:\n%s" % (busiest, cpus, "\n".join(reports))
                )
            raise AssertionError("every run broke a bound:\n" + "\n".join(reports))
        mem.check("after overload")
    finally:
        h.stop()
