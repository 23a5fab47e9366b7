#!/usr/bin/env python3
"""Soak: hoteld at ~80 % of its capacity for a long time; its memory must
not creep.  Run by `make soak` (SOAK_SECONDS, default 600); not in CI.

    build/venv/bin/python tests/fault/soak.py --hoteld build/bin/hoteld --seconds 600

The server: hoteld --workers 4 --queue 64 --hotels 20000 --testing.  Its
capacity for Sleep(20 ms) is 4 / 20 ms = 200 calls/s.  The offered load is
fixed and open-loop (call k due at t0 + k/200 s): four calls in five are
Sleep(20 ms), i.e. 160/s, 80 % of the workers' time; the fifth is a mixed
call (tests/fault/workload.py: every method of every service, valid and
invalid input, deadlines, big metadata, a rare Reload of a same-size
dataset), 40/s, mostly inline methods or a few ms of worker time.  One
hostile connection a second on top (random bytes, truncated and oversize
frames, garbage envelopes, requests dropped before their reply).

hoteld's VmRSS is sampled every --interval seconds (10).  The run fails if
the RSS at the end is more than 5 % above the RSS after the first minute
(or after a quarter of the run, for runs shorter than 4 minutes), or if
hoteld does not exit 0 on SIGTERM afterwards.  It prints start, reference,
end and max RSS and the whole series.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import nngrpc  # noqa: E402
from faultlib import (  # noqa: E402
    SLEEP,
    nng_reaper_can_wedge,
    open_loop,
    percentile,
    spawn_hoteld,
    stop_or_explain,
)
from nngrpc.testing.v1 import testing_pb2  # noqa: E402
from workload import WEDGES_OLD_NNG, MixedCalls, hostile_once  # noqa: E402

WORKERS = 4
QUEUE = 64
HOTELS = 20000
SLEEP_MS = 20
CAPACITY = WORKERS * 1000 / SLEEP_MS  # 200/s
RATE = CAPACITY  # calls/s offered: 80 % Sleep (the workers' 80 %), 20 % mixed
GROWTH_LIMIT = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hoteld", default=os.environ.get("NNGRPC_HOTELD", "build/bin/hoteld"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=64)
    args = ap.parse_args()
    if args.seconds < 20:
        ap.error("--seconds: at least 20")
    ref_at = min(60.0, args.seconds / 4)

    sleep_req = testing_pb2.SleepRequest(ms=SLEEP_MS).SerializeToString()
    mix = MixedCalls(seed=3, reload_count=HOTELS, max_sleep_ms=5, timeout=2.0)
    lock = threading.Lock()
    sleep_codes: Dict[str, int] = {}
    sleep_lat: List[float] = []

    def call(ch: nngrpc.Channel, k: int) -> str:
        if k % 5 == 4:
            return mix(ch, k)
        t0 = time.monotonic()
        try:
            ch.call(SLEEP, sleep_req, timeout=2.0)
            code = "OK"
        except nngrpc.RpcError as e:
            code = e.code().name
        with lock:
            sleep_codes[code] = sleep_codes.get(code, 0) + 1
            if code == "OK" and len(sleep_lat) < 2_000_000:
                sleep_lat.append(time.monotonic() - t0)
        return code

    with tempfile.TemporaryDirectory(prefix="nngrpc-soak-") as workdir:
        h = spawn_hoteld(
            args.hoteld,
            workdir,
            ["--workers", str(WORKERS), "--queue", str(QUEUE), "--hotels", str(HOTELS)],
        )
        skip = tuple(sorted(WEDGES_OLD_NNG)) if nng_reaper_can_wedge(args.hoteld) else ()
        samples: List[Tuple[float, int]] = []
        done = threading.Event()
        t_start = time.monotonic()

        def sampler() -> None:
            while True:
                samples.append((time.monotonic() - t_start, h.rss()))
                if done.wait(args.interval):
                    samples.append((time.monotonic() - t_start, h.rss()))
                    return

        hostile: Dict[str, int] = {}

        def attacker() -> None:
            rng = random.Random(5)
            while not done.wait(1.0):
                name = hostile_once(h.port, rng, skip)
                hostile[name] = hostile.get(name, 0) + 1

        threads = [threading.Thread(target=sampler, daemon=True),
                   threading.Thread(target=attacker, daemon=True)]
        for t in threads:
            t.start()
        ok = True
        try:
            results, elapsed = open_loop(h.tcp, call, RATE, args.seconds, args.threads,
                                         stop_after=30.0)
        finally:
            done.set()
            for t in threads:
                t.join(30)
            alive = h.alive()
            try:
                stop_or_explain(h)
                clean_exit = "exit 0 on SIGTERM, no sanitizer report"
            except BaseException as e:  # pytest's Failed, AssertionError
                clean_exit = "FAILED: %s" % str(e).splitlines()[0]
                ok = False

    codes: Dict[str, int] = {}
    for s in results:
        codes[s.code] = codes.get(s.code, 0) + 1
    late = [s.sent - s.start for s in results]
    ref = [rss for t, rss in samples if t >= ref_at]
    reference = ref[0] if ref else samples[-1][1]
    start, end, peak = samples[0][1], samples[-1][1], max(r for _, r in samples)
    growth = (end - reference) / reference
    print("soak: %s, %.0f s at %.0f calls/s offered (%.0f %% of capacity as Sleep(%d ms) "
          "on %d workers, the rest mixed); %d calls, %.0f/s achieved, sender lateness p99 %.1f ms"
          % (args.hoteld, args.seconds, RATE, 80, SLEEP_MS, WORKERS, len(results),
             len(results) / max(elapsed, 1e-9), 1000 * percentile(late, 99)))
    print("soak: statuses %s" % dict(sorted(codes.items())))
    print("soak: Sleep(%d ms) OK p50 %.1f p99 %.1f ms; Sleep statuses %s"
          % (SLEEP_MS, 1000 * percentile(sleep_lat, 50), 1000 * percentile(sleep_lat, 99),
             dict(sorted(sleep_codes.items()))))
    print("soak: mixed calls: %s" % mix.summary())
    print("soak: hostile connections: %s%s" % (
        dict(sorted(hostile.items())),
        " (left out %s: libnng < 1.6.0 wedges on it)" % ", ".join(skip) if skip else ""))
    print("soak: VmRSS every %.0f s (KiB): %s" % (args.interval, " ".join(str(r) for _, r in samples)))
    print("soak: VmRSS start %d KiB, after %.0f s %d KiB (reference), end %d KiB (%+.1f %%), max %d KiB"
          % (start, ref_at, reference, end, 100 * growth, peak))
    print("soak: hoteld %s; %s" % ("alive at the end" if alive else "DIED", clean_exit))
    if not alive:
        ok = False
    if growth > GROWTH_LIMIT:
        print("soak: FAILED: VmRSS at the end is %.1f %% above the reference (limit %.0f %%)"
              % (100 * growth, 100 * GROWTH_LIMIT))
        ok = False
    bad = {c: n for c, n in sleep_codes.items() if c != "OK"}
    if bad:
        print("soak: FAILED: Sleep calls at 80 %% of capacity did not all succeed: %s" % bad)
        ok = False
    print("soak: %s" % ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
