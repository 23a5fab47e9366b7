"""kill -9 under load, then a restart on the same port.

Eight threads share one nngrpc.Channel and call Echo (timeout 0.5 s) in a
loop; an nngrpc.aio.Channel runs eight concurrent Echo loops too (when
nngrpc.aio exists).  After a second of load hoteld gets SIGKILL; half a
second later a new hoteld starts on the same port.  Neither channel is
replaced.

What must hold:
- no call waits past its deadline: the longest call takes at most
  0.5 s + the client's deadline_grace (20 ms) + 130 ms of scheduling slack;
- calls fail only with UNAVAILABLE or DEADLINE_EXCEEDED while the server
  is down (never INTERNAL, never a hang);
- every client recovers by itself: each thread and each aio task has a
  successful call within 1 s of the restart (the new process being
  started), and calls keep succeeding to the end.

The figures (longest call, recovery times) are printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Dict, List, Optional, Tuple

import nngrpc
from faultlib import Hoteld, free_port, percentile, spawn_hoteld, wait_for
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

try:
    import nngrpc.aio as nngrpc_aio
except ImportError:  # not in this tree yet
    nngrpc_aio = None  # type: ignore[assignment]

TIMEOUT = 0.5
GRACE = 0.02  # nngrpc.Channel's default deadline_grace
SLACK = 0.13
THREADS = 8
AIO_TASKS = 8
LOAD_BEFORE = 1.0
DOWN = 0.5
LOAD_AFTER = 2.5
RECOVERY_LIMIT = 1.0

Record = Tuple[str, float, float, str]  # client, start, end, code


def test_kill_9_and_restart(hoteld_binary: str, workdir: str) -> None:
    port = free_port()
    args = ["--no-hotels"]
    first = spawn_hoteld(hoteld_binary, workdir, args, port=port)
    second: Optional[Hoteld] = None
    records: List[Record] = []
    lock = threading.Lock()
    stop = threading.Event()
    hard_end = time.monotonic() + LOAD_BEFORE + DOWN + LOAD_AFTER + 30

    def add(rec: Record) -> None:
        with lock:
            records.append(rec)

    channel = nngrpc.Channel(first.tcp)
    stub = testing_nngrpc.TestingStub(channel)

    def sync_client(i: int) -> None:
        name = "thread-%d" % i
        n = 0
        while not stop.is_set() and time.monotonic() < hard_end:
            n += 1
            payload = b"%d-%d" % (i, n)
            t0 = time.monotonic()
            try:
                got = stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=TIMEOUT)
                code = "OK" if got.payload == payload else "WRONG_PAYLOAD"
            except nngrpc.RpcError as e:
                code = e.code().name
            add((name, t0, time.monotonic(), code))
            if code != "OK":
                time.sleep(0.005)  # a failing client does not spin

    def aio_client() -> None:
        async def main() -> None:
            async with nngrpc_aio.Channel(first.tcp) as ach:
                astub = testing_nngrpc.TestingAsyncStub(ach)

                async def task(i: int) -> None:
                    name = "aio-%d" % i
                    n = 0
                    while not stop.is_set() and time.monotonic() < hard_end:
                        n += 1
                        payload = b"a%d-%d" % (i, n)
                        t0 = time.monotonic()
                        try:
                            got = await astub.Echo(
                                testing_pb2.EchoRequest(payload=payload), timeout=TIMEOUT
                            )
                            code = "OK" if got.payload == payload else "WRONG_PAYLOAD"
                        except nngrpc.RpcError as e:
                            code = e.code().name
                        add((name, t0, time.monotonic(), code))
                        await asyncio.sleep(0.005 if code != "OK" else 0)

                await asyncio.gather(*(task(i) for i in range(AIO_TASKS)))

        asyncio.run(main())

    workers = [threading.Thread(target=sync_client, args=(i,), daemon=True) for i in range(THREADS)]
    if nngrpc_aio is not None:
        workers.append(threading.Thread(target=aio_client, daemon=True))
    try:
        for t in workers:
            t.start()
        time.sleep(LOAD_BEFORE)
        t_kill = time.monotonic()
        os.kill(first.pid, signal.SIGKILL)
        first.server.proc.wait(10)
        time.sleep(DOWN)
        t_restart = time.monotonic()
        second = spawn_hoteld(hoteld_binary, workdir, args, port=port, wait=False)
        # When the new server first answers (its own probe; not a client's).
        answering: List[float] = []

        def probe() -> bool:
            try:
                with nngrpc.Channel(second.tcp, retry=None) as ch:  # type: ignore[union-attr]
                    testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(), timeout=0.2)
                answering.append(time.monotonic())
                return True
            except nngrpc.RpcError:
                return False

        assert wait_for(probe, 30.0, 0.01), "the new hoteld never answered:\n" + second.log()
        time.sleep(max(0.0, t_restart + LOAD_AFTER - time.monotonic()))
    finally:
        stop.set()
        for t in workers:
            t.join(10)
        channel.close()
        if first.alive():
            first.server.proc.kill()
            first.server.proc.wait(10)

    clients = sorted({r[0] for r in records})
    longest = max(r[2] - r[1] for r in records)
    codes: Dict[str, int] = {}
    for r in records:
        codes[r[3]] = codes.get(r[3], 0) + 1
    recovery: Dict[str, float] = {}
    for c in clients:
        oks = [r[2] for r in records if r[0] == c and r[3] == "OK" and r[2] > t_restart]
        recovery[c] = (min(oks) - t_restart) if oks else float("inf")
    down_codes = {
        r[3] for r in records if t_kill <= r[2] and r[1] <= answering[0] and r[3] != "OK"
    }
    late_failures = [r for r in records if r[1] > t_restart + RECOVERY_LIMIT and r[3] != "OK"]
    durations = [r[2] - r[1] for r in records]
    report = (
        "kill -9 under load (%d threads on one Channel%s, Echo timeout %.1f s):\n"
        "  %d calls: %s\n"
        "  longest call %.0f ms (deadline %.0f ms + grace %.0f ms), p99 %.1f ms\n"
        "  server down %.0f ms (kill -9 to new process), new process answering %.0f ms after start\n"
        "  recovery after the restart (first OK per client): max %.0f ms, %s"
        % (
            THREADS,
            " + %d aio tasks on one aio.Channel" % AIO_TASKS if nngrpc_aio is not None else "",
            TIMEOUT,
            len(records), codes,
            1000 * longest, 1000 * TIMEOUT, 1000 * GRACE, 1000 * percentile(durations, 99),
            1000 * (t_restart - t_kill), 1000 * (answering[0] - t_restart),
            1000 * max(recovery.values()),
            ", ".join("%s %.0f" % (c, 1000 * v) for c, v in sorted(recovery.items())),
        )
    )
    print(report)
    try:
        assert longest <= TIMEOUT + GRACE + SLACK, "a call waited past its deadline\n" + report
        assert down_codes <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, report
        assert all(v <= RECOVERY_LIMIT for v in recovery.values()), "slow recovery\n" + report
        assert not late_failures, "calls still failing after recovery: %s\n%s" % (
            late_failures[:5], report,
        )
        assert "WRONG_PAYLOAD" not in codes, report
    finally:
        if second is not None:
            second.stop()

