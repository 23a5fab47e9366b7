"""Leaks: a mixed load, then SIGTERM, and no sanitizer or valgrind report.

test_mixed_load_then_clean_exit: --leak-seconds (default 10; `make
leak-test` runs 120) of mixed calls from 8 threads (every method of every
service, valid and invalid inputs, deadlines, big metadata, Reload; see
workload.py) plus a stream of hostile connections, against --hoteld.  Then
SIGTERM: hoteld must exit 0 with no ASan, LSan or UBSan report in its
output (detect_leaks=1; the ASan build is the point, the plain build runs
the same load as a smoke test).  It prints the ASan allocator's exit
stats as its summary.

test_valgrind_memcheck: --valgrind-seconds (default 0: skipped; `make
leak-test` runs 20) of the same load, lighter, against the plain build
under valgrind --leak-check=full --errors-for-leak-kinds=definite
--error-exitcode=99; asserts "ERROR SUMMARY: 0 errors" and prints the
valgrind summary lines.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import threading
import time
from typing import Dict, List, Tuple

import pytest

import nngrpc
from faultlib import (
    asan_env,
    is_asan,
    libnng_version,
    nng_reaper_can_wedge,
    spawn_hoteld,
    stop_or_explain,
)
from hoteld_fixture import sanitizer_reports
from workload import WEDGES_OLD_NNG, MixedCalls, hostile_once

EXTRA_MARKS = ("LeakSanitizer has encountered a fatal error",)
THREADS = 8


def run_load(target: str, port: int, seconds: float, threads: int, seed: int,
             hostile_every: float = 0.05, skip: Tuple[str, ...] = ()) -> MixedCalls:
    """Closed-loop mixed calls from `threads` threads on one Channel, plus
    one thread making a hostile connection every `hostile_every` s (but
    the kinds in skip)."""
    mix = MixedCalls(seed=seed, reload_count=2000)
    end = time.monotonic() + seconds
    hostile: List[str] = []

    with nngrpc.Channel(target, max_idle_per_endpoint=threads) as ch:

        def client(i: int) -> None:
            k = i
            while time.monotonic() < end:
                mix(ch, k)
                k += threads

        def attacker() -> None:
            rng = random.Random(seed)
            while time.monotonic() < end:
                hostile.append(hostile_once(port, rng, skip))
                time.sleep(hostile_every)

        ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
        ts.append(threading.Thread(target=attacker, daemon=True))
        for t in ts:
            t.start()
        for t in ts:
            t.join(seconds + 60)
    counts: Dict[str, int] = {}
    for h in hostile:
        counts[h] = counts.get(h, 0) + 1
    mix.hostile = counts  # type: ignore[attr-defined]
    return mix


def test_mixed_load_then_clean_exit(
    hoteld_binary: str, workdir: str, request: pytest.FixtureRequest
) -> None:
    seconds = float(request.config.getoption("--leak-seconds"))
    asan = is_asan(hoteld_binary)
    # atexit: ASan prints its allocator stats at exit; ASan's default 256 MiB
    # quarantine (no RSS readings here) catches more use-after-free.
    env = asan_env("atexit=1:quarantine_size_mb=256")
    skip = tuple(sorted(WEDGES_OLD_NNG)) if nng_reaper_can_wedge(hoteld_binary) else ()
    h = spawn_hoteld(hoteld_binary, workdir, ["--hotels", "20000"], env=env)
    t0 = time.monotonic()
    try:
        mix = run_load(h.tcp, h.port, seconds, THREADS, seed=7, skip=skip)
        assert h.alive(), "hoteld died under the mixed load:\n" + h.log()[-5000:]
        took = time.monotonic() - t0
    finally:
        stop_or_explain(h)  # SIGTERM; exit 0 and no sanitizer report (hoteld_fixture)
    log = h.log()
    reports, nng1713 = sanitizer_reports(log, hoteld_binary)  # stop_or_explain printed it
    for mark in [m for m in EXTRA_MARKS if m in log] + reports:
        assert False, "%s in hoteld's output:\n%s" % (mark, log[-5000:])
    # UNKNOWN only where asked for (Fail(code=2)).
    assert "UNKNOWN" not in {code for (op, code) in mix.counts if op != "fail"}, mix.summary()
    stats = [l.strip() for l in log.splitlines() if re.match(r"Stats: .*(malloced|freed by)", l)]
    print("leak-test: %.0f s of mixed load, %d calls (%.0f/s), hostile connections %s"
          % (took, mix.total(), mix.total() / max(took, 1e-9), mix.hostile))  # type: ignore[attr-defined]
    print("leak-test: calls by method and status: %s" % mix.summary())
    if skip:
        print("leak-test: left out %s: libnng %s wedges on it (nanomsg/nng#1636)"
              % (", ".join(skip), ".".join(map(str, libnng_version(hoteld_binary)))))
    if asan and nng1713:
        # LeakSanitizer's report ends the process before ASan's stats.
        print("leak-test: %s (ASan+UBSan, detect_leaks=1): clean drain after SIGTERM; "
              "LeakSanitizer reported only libnng's own lost reply (nanomsg/nng#1713), "
              "set aside; no other report" % hoteld_binary)
    elif asan:
        print("leak-test: %s (ASan+UBSan, detect_leaks=1): exit 0 after SIGTERM, "
              "no AddressSanitizer/LeakSanitizer/UBSan report" % hoteld_binary)
        print("leak-test: ASan exit stats: %s" % " | ".join(stats))
        assert stats, "no ASan exit stats: did hoteld exit through ASan's atexit?\n" + log[-3000:]
    else:
        print("leak-test: %s is not an ASan build: no leak check beyond a clean exit" % hoteld_binary)


VALGRIND_SUMMARY = re.compile(
    r"(ERROR SUMMARY:.*|definitely lost:.*|indirectly lost:.*|possibly lost:.*|"
    r"still reachable:.*|All heap blocks were freed.*|in use at exit:.*)"
)


def test_valgrind_memcheck(
    hoteld_binary: str, workdir: str, request: pytest.FixtureRequest
) -> None:
    seconds = float(request.config.getoption("--valgrind-seconds"))
    if seconds <= 0:
        pytest.skip("--valgrind-seconds 0 (make leak-test runs it)")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed")
    binary = hoteld_binary
    if is_asan(binary):  # valgrind cannot run an ASan binary: take the plain one
        binary = binary.replace("/asan/bin/", "/bin/")
    if is_asan(binary) or not os.access(binary, os.X_OK):
        pytest.skip("no plain (non-ASan) hoteld for valgrind: %s" % binary)
    vlog = os.path.join(workdir, "valgrind.log")
    env = dict(os.environ)
    h = spawn_hoteld(
        binary,
        workdir,
        ["--hotels", "3000", "--workers", "4"],
        env=env,
        wait_limit=180.0,
        wrapper=[
            "valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--num-callers=30", "--log-file=" + vlog,
            "--suppressions=" + os.path.join(os.path.dirname(__file__), "libnng-1.5.2.supp"),
        ],
    )
    calls = 0
    try:
        skip = tuple(sorted(WEDGES_OLD_NNG)) if nng_reaper_can_wedge(binary) else ()
        calls = run_load(h.tcp, h.port, seconds, 2, seed=11, hostile_every=0.2, skip=skip).total()
        assert h.alive(), "hoteld died under valgrind:\n" + h.log()[-3000:]
    finally:
        # SIGTERM; the fixture's check wants exit 0: valgrind exits 99 on errors.
        try:
            stop_or_explain(h, 60.0)
        finally:
            with open(vlog, errors="replace") as f:
                report = f.read()
            summary = [m.group(1).strip() for m in VALGRIND_SUMMARY.finditer(report)]
            print("leak-test: valgrind memcheck of %s, %.0f s of load (%d calls):"
                  % (binary, seconds, calls))
            for line in summary:
                print("leak-test: valgrind: %s" % line)
            # Keep the whole report where a failing CI run can be read.
            keep = os.environ.get("NNGRPC_VALGRIND_LOG")
            if keep:
                with open(keep, "w") as f:
                    f.write(report)
    assert re.search(r"ERROR SUMMARY: 0 errors", report), report[-8000:]
