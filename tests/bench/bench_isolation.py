"""make bench, scenario "isolation": --isolation process against thread, side
by side in one run (run_bench.py calls run()).

  1. cost: hoteld --workers 8 on 100k hotels in each mode; nngrpc-bench
     Search at 1 in flight (p50/p99) and at 8 (calls/s), Echo (inline: runs in
     the front end in both modes) at 1 in flight;
  2. the storm: process mode, 6 calls of Search in flight for 5 s, while one
     thread starts a Crash every 50 ms (segfault, abort, hang, OOM in turn),
     against the same 6 in flight with no crash; failed Search calls, p99,
     worker replacement times (from /metrics);
  3. memory: the whole process tree's PSS (front end + zygote + 8 workers,
     shared pages split between them) after a Search load, with 100k and 1M
     hotels, against thread mode's.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

WORKERS = 8


def tree_pids(root: int) -> List[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True,
                         text=True, check=True).stdout
    kids: Dict[int, List[int]] = {}
    for line in out.splitlines():
        pid, ppid = (int(x) for x in line.split())
        kids.setdefault(ppid, []).append(pid)
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(kids.get(p, []))
    return pids


def pss_kib(root: int) -> Tuple[int, int]:
    """(PSS, RSS) summed over root and its descendants, in KiB."""
    pss = rss = 0
    for pid in tree_pids(root):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        r = re.search(r"^Rss:\s+(\d+) kB", text, re.M)
        pss += int(m.group(1)) if m else 0
        rss += int(r.group(1)) if r else 0
    return pss, rss


def scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    return body


def metric(text: str, name: str) -> float:
    m = re.search(r"^%s ([0-9.eE+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else float("nan")


def nngrpc_bench(b: Any, url: str, method: str, req_file: Optional[str],
                 conc: int, secs: float) -> Dict[str, Any]:
    import json

    cmd = [b.loadgen_bin, "--json", "--quiet", "--url", url, "--method", method,
           "--concurrency", str(conc), "--duration", str(secs), "--warmup", "0.3"]
    if req_file is not None:
        cmd += ["--request-file", req_file, "--no-verify"]
    p = subprocess.run(cmd, capture_output=True, timeout=600)
    out = json.loads(p.stdout)
    return out


class Hoteld:
    def __init__(self, b: Any, mode: str, hotels: int, extra: List[str]) -> None:
        from run_bench import Server, free_port

        self.b = b
        self.port = free_port()
        self.http = free_port()
        self.url = "tcp://127.0.0.1:%d" % self.port
        self.srv = b._start(Server(
            "hoteld-%s-%d" % (mode, hotels),
            [b.hoteld_bin, "--testing", "--hotels", str(hotels), "--isolation", mode,
             "--workers", str(WORKERS), "--listen", self.url,
             "--http", "127.0.0.1:%d" % self.http, "--log-level", "warn"] + extra,
            b.logdir))

    def wait(self) -> None:
        import nngrpc
        from hotel.v1 import hotel_nngrpc, hotel_pb2

        with nngrpc.Channel(self.url, backoff=0.01, backoff_max=0.05) as ch:
            stub = hotel_nngrpc.HotelSearchStub(ch)

            def up() -> bool:
                stub.Stats(hotel_pb2.StatsRequest(), timeout=1.0)
                return True

            self.srv.wait_ready(up, limit=300)

    def stop(self) -> None:
        self.b._stop(self.srv)


def search_file(b: Any) -> str:
    from hotel.v1 import hotel_pb2

    path = os.path.join(b.dir, "isolation_search.bin")
    with open(path, "wb") as f:
        f.write(hotel_pb2.SearchRequest(
            query="spa", geo=hotel_pb2.GeoFilter(latitude=48.8584, longitude=2.2945,
                                                 radius_km=50)).SerializeToString())
    return path


SEARCH = "/hotel.v1.HotelSearch/Search"
ECHO = "/nngrpc.testing.v1.Testing/Echo"
SLEEP = "/nngrpc.testing.v1.Testing/Sleep"


def cost(b: Any, secs: float, req: str, rounds: int) -> Dict[str, Dict[str, Any]]:
    """Both servers up at once, measured in alternation, best of rounds for
    each figure: the machine's other load drifts less between the two."""
    hs = {mode: Hoteld(b, mode, 100000, []) for mode in ("thread", "process")}
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
        m: {"search1": [], "search8": [], "echo": [], "sleep0": []} for m in hs}
    sleep0 = os.path.join(b.dir, "isolation_sleep0.bin")
    with open(sleep0, "wb"):
        pass  # SleepRequest(ms=0) serializes to nothing
    try:
        for h in hs.values():
            h.wait()
        for _ in range(rounds):
            for mode, h in hs.items():
                runs[mode]["search1"].append(nngrpc_bench(b, h.url, SEARCH, req, 1, secs))
                runs[mode]["search8"].append(nngrpc_bench(b, h.url, SEARCH, req, 8, secs))
                runs[mode]["echo"].append(nngrpc_bench(b, h.url, ECHO, None, 1, secs))
                runs[mode]["sleep0"].append(nngrpc_bench(b, h.url, SLEEP, sleep0, 1, secs))
        res: Dict[str, Dict[str, Any]] = {}
        for mode, h in hs.items():
            r = runs[mode]
            res[mode] = {
                "search1": min(r["search1"], key=lambda o: o["latency_us"]["p50"]),
                "search8": max(r["search8"], key=lambda o: o["calls_per_s"]),
                "echo": min(r["echo"], key=lambda o: o["latency_us"]["p50"]),
                "sleep0": min(r["sleep0"], key=lambda o: o["latency_us"]["p50"]),
                "pss_kib": pss_kib(h.srv.pid),
                "all_search8": [o["calls_per_s"] for o in r["search8"]],
                "all_search1_p50": [o["latency_us"]["p50"] for o in r["search1"]]}
        return res
    finally:
        for h in hs.values():
            h.stop()


def crasher(url: str, secs: float, stop: threading.Event, out: Dict[str, Any]) -> None:
    """Starts a Crash every 50 ms, in turn segfault, abort, hang, OOM; each on
    its own thread so a hang or an OOM does not hold up the next."""
    import nngrpc
    from nngrpc.testing.v1 import testing_nngrpc, testing_pb2 as K

    kinds = (K.CRASH_SEGFAULT, K.CRASH_ABORT, K.CRASH_HANG, K.CRASH_OOM)
    codes: Dict[str, int] = {}
    lock = threading.Lock()
    ch = nngrpc.Channel(url, retry=None)
    stub = testing_nngrpc.TestingStub(ch)

    def one(kind: int) -> None:
        try:
            stub.Crash(K.CrashRequest(kind=kind), timeout=0.01 if kind == K.CRASH_HANG else 5)
            code = "OK"
        except nngrpc.RpcError as e:
            code = e.code().name
        with lock:
            codes[code] = codes.get(code, 0) + 1

    threads = []
    start = time.monotonic()
    i = 0
    while not stop.is_set() and time.monotonic() - start < secs:
        t = threading.Thread(target=one, args=(kinds[i % 4],), daemon=True)
        t.start()
        threads.append(t)
        i += 1
        time.sleep(max(0.0, start + 0.05 * i - time.monotonic()))
    for t in threads:
        t.join(timeout=30)
    ch.close()
    out["crashes_started"] = i
    out["codes"] = codes


def storm(b: Any, secs: float, req: str) -> Dict[str, Any]:
    h = Hoteld(b, "process", 100000, ["--poison-pill-crashes", "0", "--deadline-grace",
                                       "0.02", "--worker-memory-mb", "32"])
    try:
        h.wait()
        calm = nngrpc_bench(b, h.url, SEARCH, req, 6, secs)
        stop = threading.Event()
        crashes: Dict[str, Any] = {}
        t = threading.Thread(target=crasher, args=(h.url, secs + 0.3, stop, crashes))
        t.start()
        try:
            stormy = nngrpc_bench(b, h.url, SEARCH, req, 6, secs)
        finally:
            stop.set()
            t.join()
        m = scrape(h.http)
        return {"calm": calm, "storm": stormy, "crashes": crashes,
                "replace_max_s": metric(m, "nngrpc_worker_replace_seconds_max"),
                "replace_sum_s": metric(m, "nngrpc_worker_replace_seconds_sum"),
                "replace_count": metric(m, "nngrpc_worker_replace_seconds_count"),
                "spawns": metric(m, "nngrpc_worker_spawns_total"),
                "alive": h.srv.proc is not None and h.srv.proc.poll() is None}
    finally:
        h.stop()


def memory(b: Any, hotels: int, secs: float, req: str) -> Dict[str, Any]:
    res: Dict[str, Any] = {}
    for mode in ("thread", "process"):
        h = Hoteld(b, mode, hotels, [])
        try:
            h.wait()
            nngrpc_bench(b, h.url, SEARCH, req, WORKERS, secs)  # every worker runs
            res[mode] = pss_kib(h.srv.pid)
        finally:
            h.stop()
    return res


def run(b: Any) -> None:
    from run_bench import fmt, log, ratio_str

    quick = b.s.quick
    secs = 1.0 if quick else 3.0
    req = search_file(b)
    log("isolation: cost, thread against process")
    rounds = 1 if quick else 3
    c = cost(b, secs, req, rounds)
    log("isolation: the storm")
    st = storm(b, 2.0 if quick else 5.0, req)
    mem = {100000: {m: c[m]["pss_kib"] for m in c}}
    if not quick:
        log("isolation: memory with 1M hotels")
        mem[1000000] = memory(b, 1000000, 2.0, req)

    t, p = c["thread"], c["process"]
    rows = []
    for mode, r in (("thread", t), ("process", p)):
        rows.append([mode, fmt(r["search1"]["latency_us"]["p50"]),
                     fmt(r["search1"]["latency_us"]["p99"]),
                     fmt(r["search8"]["calls_per_s"], 0),
                     fmt(r["echo"]["latency_us"]["p50"]),
                     fmt(r["echo"]["latency_us"]["p99"]),
                     fmt(r["sleep0"]["latency_us"]["p50"])])
    d50 = p["search1"]["latency_us"]["p50"] - t["search1"]["latency_us"]["p50"]
    qps = p["search8"]["calls_per_s"] / t["search8"]["calls_per_s"]
    echo_d = p["echo"]["latency_us"]["p50"] - t["echo"]["latency_us"]["p50"]
    hop = p["sleep0"]["latency_us"]["p50"] - t["sleep0"]["latency_us"]["p50"]
    rows.append(["process − thread", "%+.1f" % d50,
                 "%+.1f" % (p["search1"]["latency_us"]["p99"]
                            - t["search1"]["latency_us"]["p99"]),
                 ratio_str(qps), "%+.1f" % echo_d, "", "%+.1f" % hop])
    b.report.section(
        "isolation", "7. Isolation: --isolation process against thread (Search on 100k "
        "hotels, 8 workers)", "thread mode, the same binary",
        "nngrpc-bench, %.0f s per run: Search (query 'spa' within 50 km of Paris) at 1 "
        "and 8 calls in flight, Echo (inline in both modes) at 1, Sleep(0) (a "
        "worker's call that does nothing: the hand-off alone) at 1; both servers up, "
        "measured in alternation, best of %d rounds." % (secs, rounds),
        ["mode", "Search p50 µs", "Search p99 µs", "Search 8-in-flight calls/s",
         "Echo p50 µs", "Echo p99 µs", "Sleep(0) p50 µs"], rows,
        {"thread": t, "process": p, "p50_overhead_us": d50, "qps_ratio": qps,
         "hop_us": hop})

    calm, stormy = st["calm"], st["storm"]
    p99r = stormy["latency_us"]["p99"] / calm["latency_us"]["p99"]
    mean_ms = (1000 * st["replace_sum_s"] / st["replace_count"]
               if st["replace_count"] else float("nan"))
    srows = [["no crashes", fmt(calm["calls_per_s"], 0), str(calm["errors"]),
              fmt(calm["latency_us"]["p50"]), fmt(calm["latency_us"]["p99"]), "", ""],
             ["crash every 50 ms", fmt(stormy["calls_per_s"], 0), str(stormy["errors"]),
              fmt(stormy["latency_us"]["p50"]), fmt(stormy["latency_us"]["p99"]),
              "%d started: %s" % (st["crashes"].get("crashes_started", 0),
                                  st["crashes"].get("codes")),
              "%.1f / %.1f" % (mean_ms, 1000 * st["replace_max_s"])]]
    b.report.section(
        "isolation_storm", "8. The storm: Search while workers crash (process mode)",
        "the same Search load with no crash",
        "6 Search calls in flight for %.0f s; one thread starts Crash every 50 ms "
        "(segfault, abort, hang with a 10 ms deadline and 20 ms grace, OOM over a "
        "32 MiB limit, in turn; the poison-pill guard off, or the repeated requests "
        "would be refused). Replacement: from a lost worker to its successor in "
        "the pool (mean / max ms, /metrics)." % (2.0 if quick else 5.0),
        ["run", "calls/s", "failed", "p50 µs", "p99 µs", "crashes (answers)",
         "replace mean/max ms"], srows, st)

    mrows = []
    for n, mm in sorted(mem.items()):
        tp, pp = mm["thread"], mm["process"]
        mrows.append(["{:,}".format(n), fmt(tp[0] / 1024), fmt(pp[0] / 1024),
                      ratio_str(pp[0] / tp[0]), fmt(pp[1] / 1024)])
    b.report.section(
        "isolation_memory", "9. Memory: hoteld + 8 workers against thread mode (PSS)",
        "thread mode", "PSS of the whole process tree after a Search load at 8 in flight "
        "(shared copy-on-write pages split between the processes that map them); RSS "
        "summed over the processes counts them once per process.",
        ["hotels", "thread PSS MiB", "process PSS MiB", "×", "process ΣRSS MiB"],
        mrows, {str(k): v for k, v in mem.items()})

    b.report.goal("iso_p50", "process mode: Search p50 at most 20 µs over thread mode",
                  d50, "%+.1f µs" % d50, 20.0, False)
    b.report.goal("iso_qps", "process mode: Search calls/s at 8 in flight >= 85% of "
                  "thread mode", qps, "%.0f%%" % (100 * qps), 0.85, True)
    b.report.goal("iso_storm_fail", "storm: 0 failed Search calls",
                  float(stormy["errors"]), str(stormy["errors"]), 0.0, False)
    b.report.goal("iso_storm_p99", "storm: Search p99 at most 3× its p99 with no crash",
                  p99r, "%.2f×" % p99r, 3.0, False)
    b.report.goal("iso_replace", "a lost worker replaced within 50 ms (max)",
                  1000 * st["replace_max_s"], "%.1f ms" % (1000 * st["replace_max_s"]),
                  50.0, False)
    for n, mm in sorted(mem.items()):
        r = mm["process"][0] / mm["thread"][0]
        b.report.goal("iso_mem_%d" % n, "hoteld + 8 workers at most 2× thread mode's "
                      "memory, %s hotels" % "{:,}".format(n), r, "%.2f×" % r, 2.0, False)
