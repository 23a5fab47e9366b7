"""make bench, scenario "compression": a 100-hit Search page from Python
with identity, gzip and zstd, side by side in one run (run_bench.py calls
run()).

One hoteld with the generated hotels (--hotels N --seed 1) and its ops
port. The pages are the first pages of the whole listing (empty query,
100 hits each, their tokens collected once), the same requests for every
encoding. Each encoding has its own sync Channel (``compression=``), warmed
up first (the first call of a connection goes plain); the encodings take
turns in rounds, so noise hits them alike. Measured per page:

- bytes on the wire: the reply and request envelopes as hoteld counts them
  (``nngrpc_response_bytes_total`` / ``nngrpc_request_bytes_total`` of
  Search, /metrics, before and after; the SP framing adds 12 bytes each);
- time: the call as the caller sees it (p50, p99: search, compression,
  transfer, decompression and parsing), the server's run time (p50:
  search and encoding, compression included), and the client's CPU time
  per call (getrusage).
"""

from __future__ import annotations

import http.client
import re
import resource
import time
from typing import Any, Dict, List, Tuple

ENCODINGS = ("identity", "gzip", "zstd")
SEARCH = "/hotel.v1.HotelSearch/Search"


def _counter(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(r'^%s\{method="%s"\} ([0-9.eE+-]+)$' % (re.escape(name), re.escape(SEARCH)),
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def _bytes(port: int) -> Tuple[float, float]:
    return (_counter(port, "nngrpc_request_bytes_total"),
            _counter(port, "nngrpc_response_bytes_total"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(b: Any) -> None:
    import nngrpc
    from hotel.v1 import hotel_nngrpc, hotel_pb2
    from run_bench import BenchFailure, Server, fmt, free_port, log, percentile, ratio_str

    quick = b.s.quick
    pages, rounds = (20, 2) if quick else (50, 10)
    port, http_port = free_port(), free_port()
    url = "tcp://127.0.0.1:%d" % port
    srv = b._start(Server(
        "hoteld-compression",
        [b.hoteld_bin, "--hotels", str(b.s.hotels), "--seed", "1", "--listen", url,
         "--http", "127.0.0.1:%d" % http_port, "--log-level", "warn"], b.logdir))
    channels: Dict[str, Any] = {}
    try:
        for enc in ENCODINGS:
            channels[enc] = nngrpc.Channel(url, compression=enc, backoff=0.01, backoff_max=0.05)
        stubs = {enc: hotel_nngrpc.HotelSearchStub(ch) for enc, ch in channels.items()}
        srv.wait_ready(lambda: stubs["identity"].Stats(hotel_pb2.StatsRequest(), timeout=2.0)
                       .hotel_count == b.s.hotels, limit=300)
        requests: List[Any] = []
        token = ""
        for _ in range(pages):
            req = hotel_pb2.SearchRequest(query="", page_size=100, page_token=token)
            resp = stubs["identity"].Search(req, timeout=30.0)
            if len(resp.hits) != 100:
                raise BenchFailure("a listing page has %d hits, not 100" % len(resp.hits))
            requests.append(req)
            token = resp.next_page_token
        plain_size = sum(len(stubs["identity"].Search(r, timeout=30.0).SerializeToString())
                         for r in requests) / len(requests)
        want = [stubs["identity"].Search(r, timeout=30.0) for r in requests[:3]]
        for enc in ENCODINGS:  # warm up: the first call of a connection goes plain
            for r, w in zip(requests[:3], want):
                if stubs[enc].Search(r, timeout=30.0) != w:
                    raise BenchFailure("Search with %s gave another page" % enc)
        lat: Dict[str, List[float]] = {e: [] for e in ENCODINGS}
        run_us: Dict[str, List[int]] = {e: [] for e in ENCODINGS}
        sent: Dict[str, List[float]] = {e: [0.0, 0.0] for e in ENCODINGS}
        cpu: Dict[str, float] = {e: 0.0 for e in ENCODINGS}
        seen: Dict[str, set] = {e: set() for e in ENCODINGS}
        log("compression: %d pages x %d rounds per encoding" % (pages, rounds))
        for _ in range(rounds):
            for enc in ENCODINGS:
                search = stubs[enc].Search.with_call
                before = _bytes(http_port)
                c0 = _cpu()
                for r in requests:
                    t0 = time.perf_counter()
                    resp, call = search(r, timeout=30.0)
                    lat[enc].append((time.perf_counter() - t0) * 1e6)
                    run_us[enc].append(call.run_us)
                    seen[enc].add(call.compression)
                cpu[enc] += _cpu() - c0
                after = _bytes(http_port)
                sent[enc][0] += after[0] - before[0]
                sent[enc][1] += after[1] - before[1]
        srv.check_alive()
    finally:
        for ch in channels.values():
            ch.close()
        b._stop(srv)

    n = pages * rounds
    data: Dict[str, Any] = {"pages": pages, "rounds": rounds,
                            "search_response_bytes": plain_size}
    for enc in ENCODINGS:
        ls = sorted(lat[enc])
        data[enc] = {
            "reply_bytes": sent[enc][1] / n, "request_bytes": sent[enc][0] / n,
            "p50_us": percentile(ls, 0.5), "p99_us": percentile(ls, 0.99),
            "server_run_us_p50": percentile(sorted(run_us[enc]), 0.5),
            "client_cpu_us": 1e6 * cpu[enc] / n, "reply_encodings": sorted(seen[enc]),
        }
    base = data["identity"]
    rows = []
    for enc in ENCODINGS:
        d = data[enc]
        if d["reply_encodings"] != [enc]:
            raise BenchFailure("%s channel: replies came as %s" % (enc, d["reply_encodings"]))
        rows.append([
            enc, fmt(d["reply_bytes"], 0), ratio_str(d["reply_bytes"] / base["reply_bytes"]),
            fmt(d["request_bytes"], 0), fmt(d["p50_us"]), ratio_str(d["p50_us"] / base["p50_us"]),
            fmt(d["p99_us"]), fmt(d["server_run_us_p50"]), fmt(d["client_cpu_us"]),
        ])
    b.report.section(
        "compression", "11. Compression: a 100-hit Search page from Python (100k hotels)",
        "identity (no compression), the same pages in the same run",
        "%d listing pages (empty query, 100 hits, %.0f bytes serialized) x %d rounds per "
        "encoding, one sync Channel each (`compression=`), encodings taking turns. Bytes: "
        "the envelopes as hoteld counts them (/metrics), per call. Time: the call as the "
        "caller sees it, the server's run time (search + encoding), the client's CPU. "
        "Levels: gzip 1, zstd 1, both sides." % (pages, plain_size, rounds),
        ["encoding", "reply bytes", "×", "request bytes", "p50 µs", "×", "p99 µs",
         "server run µs p50", "client CPU µs/call"], rows, data)
