"""Overload: 10x the server's capacity, from closed-loop and open-loop callers.

hoteld --workers 4 --queue 64 serving Sleep(20 ms) can serve 4 / 20 ms =
200 calls/s.  Without admission its queue is a silent one: 60 callers in a
closed loop keep it nearly full, nothing is ever refused, and every call
waits through it (p99 about 15x the unloaded p99); at 10x open-loop load
the queue is always full and every served call waits through all 64.
CoDel admission (the default: --queue-target-ms 5 --queue-interval-ms
100; src/rpc/admission.h) sheds what waits past the target once the
queue has stood above it for an interval.

The load comes from nngrpc-bench (C: it costs the 2 shared CPUs little,
and it times shed calls too), for LOAD_S seconds each:
  unloaded     1 caller: the unloaded p99;
  closed loop  60 callers, each sending again as soon as it is answered;
  open loop    2000 calls/s (10x), each call started when due, whatever
               happened to the ones before (latency from its due time).
Then the Python client, open loop at 2000 calls/s from 4 processes: what
real callers run.

What must hold, with admission on (the issue's goal):
- served p99 at most 2x the unloaded p99;
- served throughput at least 90 % of capacity;
- shed calls answered within a few ms: p99 under 15 ms (they wait the 5 ms
  target first; 10 ms of slack for worker and NNG wake-ups on 2 busy CPUs);
- from the Python client: only OK and RESOURCE_EXHAUSTED, every refusal
  marked nngrpc-not-run, and memory bounded (peak VmRSS within 32 MiB of
  the warmed-up baseline, and back within the tolerance afterwards).
With admission off (--queue-target-ms 0), the same closed loop is measured
for comparison: it must shed nothing and serve p99 > 5x unloaded, which
shows the test measures what it claims.

A shared machine only makes latency worse, so each measurement gets up to
ATTEMPTS runs, the first that keeps every bound passing; when only timing
bounds broke and the load average was over 1.5x the CPUs throughout, the
test is skipped with its figures.  The figures are printed (pytest -s, or
in the failure message).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any, Dict, List, Tuple

import pytest

import nngrpc
from faultlib import (
    REPO,
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
QUEUE = 64
SLEEP_MS = 20
CAPACITY = WORKERS * 1000.0 / SLEEP_MS  # 200 calls/s
OFFERED = 10 * CAPACITY  # 2000 calls/s
CALLERS = 60
LOAD_S = 4.0
ATTEMPTS = 3
SHED_P99_MS = 15.0

SLEEP_REQ = testing_pb2.SleepRequest(ms=SLEEP_MS).SerializeToString()


def loadgen_binary(hoteld: str) -> str:
    """nngrpc-bench beside hoteld, else the plain build's."""
    here = os.path.join(os.path.dirname(hoteld), "nngrpc-bench")
    if os.access(here, os.X_OK):
        return here
    return str(REPO / "build" / "bin" / "nngrpc-bench")


def busy() -> float:
    """The load average per CPU."""
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def loadgen(binary: str, h: Hoteld, workdir: str, args: List[str]) -> Dict[str, Any]:
    """One nngrpc-bench run of Sleep(20 ms); RESOURCE_EXHAUSTED is an answer."""
    req = os.path.join(workdir, "sleep.bin")
    with open(req, "wb") as f:
        f.write(SLEEP_REQ)
    cmd = [binary, "--json", "--quiet", "--url", h.tcp, "--method", SLEEP,
           "--request-file", req, "--duration", str(LOAD_S), "--warmup", "0.5"] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.stdout, "nngrpc-bench printed nothing (exit %d): %s" % (p.returncode, p.stderr)
    out: Dict[str, Any] = json.loads(p.stdout)
    return out


class Figures:
    """One load's figures from nngrpc-bench's JSON."""

    def __init__(self, name: str, out: Dict[str, Any], unloaded_p99_ms: float) -> None:
        secs = out["duration_s"]
        self.name = name
        self.offered = out["calls"] / secs
        self.served = out["ok"] / secs
        self.shed = out["refused"]["count"] / secs
        self.p50 = out["latency_us"]["p50"] / 1e3
        self.p99 = out["latency_us"]["p99"] / 1e3
        self.shed_p50 = out["refused"]["latency_us"]["p50"] / 1e3
        self.shed_p99 = out["refused"]["latency_us"]["p99"] / 1e3
        self.others = {k: v for k, v in out["errors_by_code"].items()
                       if k != "RESOURCE_EXHAUSTED"}
        self.ratio = self.p99 / unloaded_p99_ms if unloaded_p99_ms else float("inf")

    def line(self) -> str:
        return ("  %-28s offered %5.0f/s, served %3.0f/s (%3.0f %% of capacity), shed %5.0f/s;"
                " served p50 %.1f p99 %.1f ms (%.2fx unloaded); shed p50 %.2f p99 %.2f ms%s"
                % (self.name, self.offered, self.served, 100 * self.served / CAPACITY,
                   self.shed, self.p50, self.p99, self.ratio, self.shed_p50, self.shed_p99,
                   "; other: %s" % self.others if self.others else ""))


def measure_admission(binary: str, h: Hoteld, workdir: str) -> Tuple[List[Tuple[str, bool]], str]:
    """Unloaded, closed loop, open loop against h (admission on); returns
    (broken bounds with whether noise alone can break them, the report)."""
    unloaded = loadgen(binary, h, workdir, ["--concurrency", "1"])
    u99 = unloaded["latency_us"]["p99"] / 1e3
    runs = [
        Figures("unloaded (1 caller)", unloaded, u99),
        Figures("closed loop (%d callers)" % CALLERS,
                loadgen(binary, h, workdir, ["--concurrency", str(CALLERS)]), u99),
        Figures("open loop (%.0f calls/s)" % OFFERED,
                loadgen(binary, h, workdir, ["--rate", "%d" % OFFERED,
                                             "--concurrency", "2000"]), u99),
    ]
    broken: List[Tuple[str, bool]] = []
    for f in runs:
        if f.others:
            broken.append(("%s: statuses other than OK and RESOURCE_EXHAUSTED" % f.name, False))
    for f in runs[1:]:
        if f.ratio > 2.0:
            broken.append(("%s: served p99 over 2x unloaded" % f.name, True))
        if f.served < 0.9 * CAPACITY:
            broken.append(("%s: served under 90 %% of capacity" % f.name, True))
        if f.shed_p99 >= SHED_P99_MS:
            broken.append(("%s: shed calls slow (p99 >= %.0f ms)" % (f.name, SHED_P99_MS), True))
        if f.shed < 0.5 * (f.offered - CAPACITY):
            broken.append(("%s: the excess was not shed" % f.name, False))
    report = ("hoteld --workers %d --queue %d, admission on (CoDel, target 5 ms, interval "
              "100 ms), Sleep(%d ms), capacity %.0f calls/s; nngrpc-bench, %.0f s a load; "
              "load average %.1f:\n%s"
              % (WORKERS, QUEUE, SLEEP_MS, CAPACITY, LOAD_S, os.getloadavg()[0],
                 "\n".join(f.line() for f in runs)))
    return broken, report


def measure_silent_queue(binary: str, h: Hoteld, workdir: str) -> Tuple[List[Tuple[str, bool]], str]:
    """The same closed loop with admission off: the silent queue."""
    unloaded = loadgen(binary, h, workdir, ["--concurrency", "1"])
    u99 = unloaded["latency_us"]["p99"] / 1e3
    closed = Figures("closed loop (%d callers)" % CALLERS,
                     loadgen(binary, h, workdir, ["--concurrency", str(CALLERS)]), u99)
    broken: List[Tuple[str, bool]] = []
    if closed.shed > 0 or closed.others:
        broken.append(("admission off: the closed loop was refused something", False))
    if closed.ratio <= 5.0:
        broken.append(("admission off: served p99 not over 5x unloaded", True))
    report = ("the same, admission off (--queue-target-ms 0):\n%s\n%s"
              % (Figures("unloaded (1 caller)", unloaded, u99).line(), closed.line()))
    return broken, report


def until_kept(what: str, measure: Any) -> str:
    """Runs measure() up to ATTEMPTS times; returns the report of the first
    run that keeps every bound.  Fails, or skips when only noise-prone
    bounds broke on a machine busier than 1.5x its CPUs."""
    reports = []
    noise_only = True
    busiest = 0.0
    for attempt in range(1, ATTEMPTS + 1):
        broken, report = measure()
        busiest = max(busiest, busy())
        reports.append("run %d: %s%s" % (attempt, report, "\n  BROKEN: " + "; ".join(
            b for b, _ in broken) if broken else ""))
        print(reports[-1])
        if not broken:
            return report
        noise_only = noise_only and all(n for _, n in broken)
    if noise_only and busiest > 1.5:
        pytest.skip("machine too busy to measure %s (load average %.1f per CPU); only "
                    "timing bounds broke:\n%s" % (what, busiest, "\n".join(reports)))
    raise AssertionError("%s: every run broke a bound:\n%s" % (what, "\n".join(reports)))


def test_admission_keeps_served_latency(hoteld_binary: str, workdir: str) -> None:
    """The issue's goal, closed loop and open loop, with the silent queue
    of admission off beside it."""
    binary = loadgen_binary(hoteld_binary)
    args = ["--no-hotels", "--workers", str(WORKERS), "--queue", str(QUEUE)]
    h = spawn_hoteld(hoteld_binary, workdir, args)
    try:
        until_kept("admission", lambda: measure_admission(binary, h, workdir))
    finally:
        h.stop()
    h = spawn_hoteld(hoteld_binary, workdir, args + ["--queue-target-ms", "0"])
    try:
        until_kept("the silent queue", lambda: measure_silent_queue(binary, h, workdir))
    finally:
        h.stop()


# ---- the Python client under the same open-loop overload ----------------------------
PROCESSES = 4  # each with its own GIL
THREADS = 64  # per process; a served call blocks its thread ~25 ms


def sleep_call(ch: nngrpc.Channel, k: int) -> Tuple[str, int]:
    try:
        _, call = ch.invoke(SLEEP, SLEEP_REQ, timeout=1.0)
        return "OK", call.queue_us + call.run_us
    except nngrpc.RpcError as e:
        code = e.code().name
        if code == "RESOURCE_EXHAUSTED" and dict(e.trailing_metadata()).get(
                "nngrpc-not-run") != "1":
            code = "RESOURCE_EXHAUSTED without nngrpc-not-run"
        return code, -1


def ms(v: float) -> float:
    return v * 1000.0


def test_python_callers_at_ten_times_capacity(hoteld_binary: str, workdir: str) -> None:
    """2000 calls/s offered from 4 forked processes of 64 threads, each
    process with one Channel, one attempt a call (retry=None).  Only OK and
    RESOURCE_EXHAUSTED (marked not-run) come back, throughput holds, and
    memory stays bounded."""
    h = spawn_hoteld(hoteld_binary, workdir,
                     ["--no-hotels", "--workers", str(WORKERS), "--queue", str(QUEUE)])
    try:
        # Warm-up at the same overload (threads, arenas, connections).
        # ASan: with 256 connections its per-thread allocator caches and
        # the 16 MiB quarantine can grow more than 40 MiB after the warm-up.
        mem = MemoryCheck(h, asan_tolerance_kib=64 * 1024)
        open_loop(h.tcp, sleep_call, OFFERED, 1.0, THREADS, processes=PROCESSES, retry=None)
        mem.warmed()

        def measure() -> Tuple[List[Tuple[str, bool]], str]:
            peak = h.rss()
            samples, elapsed = open_loop(
                h.tcp, sleep_call, OFFERED, LOAD_S, THREADS, processes=PROCESSES, retry=None)
            peak = max(peak, h.rss())
            by_code: Dict[str, List[Sample]] = {}
            for s in samples:
                by_code.setdefault(s.code, []).append(s)
            ok = [s.end - s.sent for s in by_code.get("OK", [])]
            rej = [s.end - s.sent for s in by_code.get("RESOURCE_EXHAUSTED", [])]
            late = [s.sent - s.start for s in samples]
            offered = len(samples) / elapsed
            served = len(ok) / elapsed
            others = {k: len(v) for k, v in by_code.items()
                      if k not in ("OK", "RESOURCE_EXHAUSTED")}
            report = (
                "Python client, open loop (%d processes x %d threads), hoteld --workers %d "
                "--queue %d, admission on:\n"
                "  offered %.0f calls/s (target %.0f; sender lateness p99 %.1f ms), %d calls\n"
                "  served OK %.0f/s (%.0f %% of capacity), RESOURCE_EXHAUSTED %.0f/s, other: %s\n"
                "  OK latency p50 %.1f p99 %.1f ms; RESOURCE_EXHAUSTED p50 %.2f p99 %.2f ms\n"
                "  VmRSS %d KiB warmed up, peak %d; load average %.1f"
                % (PROCESSES, THREADS, WORKERS, QUEUE, offered, OFFERED,
                   ms(percentile(late, 99)), len(samples), served, 100 * served / CAPACITY,
                   len(rej) / elapsed, others, ms(percentile(ok, 50)), ms(percentile(ok, 99)),
                   ms(percentile(rej, 50)), ms(percentile(rej, 99)), mem.warm or 0, peak,
                   os.getloadavg()[0]))
            broken: List[Tuple[str, bool]] = []
            if offered < 0.8 * OFFERED:
                broken.append(("could not offer the load", True))
            if others:
                # A 1 s deadline passes only when the machine stalls the client.
                broken.append(("statuses other than OK and RESOURCE_EXHAUSTED (not run)",
                               set(others) == {"DEADLINE_EXCEEDED"}))
            # The latency and throughput goals are nngrpc-bench's above:
            # here 1000 Python threads share the 2 CPUs with the server.
            if served < 0.6 * CAPACITY:
                broken.append(("served throughput collapsed", True))
            if peak - (mem.warm or 0) > max(32 * 1024, mem.tolerance):
                broken.append(("memory grew under load", False))
            return broken, report

        until_kept("the Python client", measure)
        mem.check("after overload")
    finally:
        h.stop()
