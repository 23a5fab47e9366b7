"""Channels and fork: the parent keeps its connections, children get their
own (same Channel object or a new one).  Plain os.fork, multiprocessing's
fork start method, pre-forking servers (gunicorn --preload style and
socketserver.ForkingMixIn), and nngrpc.aio across a fork.

A forked child never returns into pytest: it ends with os._exit.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from typing import Callable, List, Optional, Tuple

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server


def in_child(fn: Callable[[], bool]) -> int:
    """Forks; the child runs fn and exits 0 if it returned True (1 if
    False, 2 if it raised).  Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if fn() else 1
        except BaseException as e:  # noqa: B902 - reported by the exit code
            print("child failed: %r" % e, file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def echo(stub: testing_nngrpc.TestingStub, payload: bytes) -> bool:
    return bool(stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=5.0).payload == payload)


# ---- plain os.fork -----------------------------------------------------------------
def test_fork_same_and_new_channel_in_child_parent_unaffected(hoteld: Server) -> None:
    with nngrpc.Channel([hoteld.tcp, hoteld.ipc]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for i in range(4):
            assert echo(stub, b"parent %d" % i)
        pooled = [list(ep.idle) for ep in ch._endpoints]
        fds = sorted(ch._open_fds())
        assert len(fds) == 2

        def child() -> bool:
            # The inherited channel forgot the parent's connections...
            if ch._open_fds():
                return False
            # ...and works on new ones; so does a new channel.
            ok = all(echo(stub, b"child %d" % i) for i in range(4))
            with nngrpc.Channel(hoteld.tcp) as fresh:
                ok = ok and echo(testing_nngrpc.TestingStub(fresh), b"fresh")
            return ok

        assert in_child(child) == 0
        # The parent still has the same connections, and they still work.
        assert [list(ep.idle) for ep in ch._endpoints] == pooled
        for i in range(4):
            assert echo(stub, b"again %d" % i)
        assert sorted(ch._open_fds()) == fds


def test_fork_while_other_threads_call(hoteld: Server) -> None:
    """Threads busy on the channel while another thread forks: the child
    gets a usable channel (its lock is new), the parent's calls go on."""
    with nngrpc.Channel(hoteld.tcp) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        stop = threading.Event()
        errors: List[BaseException] = []

        def loop() -> None:
            while not stop.is_set():
                try:
                    stub.Sleep(testing_pb2.SleepRequest(ms=2), timeout=5.0)
                except BaseException as e:  # noqa: B902
                    errors.append(e)

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.05)
            codes = [in_child(lambda: all(echo(stub, b"c%d" % i) for i in range(3))) for _ in range(5)]
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert codes == [0] * 5
        assert not errors


# ---- multiprocessing, fork start method ---------------------------------------------------
#: The module-level channel a pool's workers inherit (set by the test).
POOL_CHANNEL: Optional[nngrpc.Channel] = None


def pool_task(i: int) -> Tuple[int, bytes, int]:
    assert POOL_CHANNEL is not None
    stub = testing_nngrpc.TestingStub(POOL_CHANNEL)
    resp = stub.Echo(testing_pb2.EchoRequest(payload=b"task %d" % i), timeout=5.0)
    stub.Sleep(testing_pb2.SleepRequest(ms=5), timeout=5.0)
    return os.getpid(), resp.payload, len(POOL_CHANNEL._open_fds())


def test_multiprocessing_fork_pool_uses_the_parents_channel(hoteld: Server) -> None:
    global POOL_CHANNEL
    POOL_CHANNEL = nngrpc.Channel(hoteld.tcp)
    try:
        stub = testing_nngrpc.TestingStub(POOL_CHANNEL)
        assert echo(stub, b"parent first")
        parent_fds = POOL_CHANNEL._open_fds()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4) as pool:
            results = pool.map_async(pool_task, range(40)).get(timeout=60)
        assert [r[1] for r in results] == [b"task %d" % i for i in range(40)]
        assert os.getpid() not in {r[0] for r in results}
        assert all(r[2] == 1 for r in results)  # one connection per worker, its own
        assert echo(stub, b"parent after")
        assert POOL_CHANNEL._open_fds() == parent_fds
    finally:
        POOL_CHANNEL.close()
        POOL_CHANNEL = None


# ---- pre-forking servers --------------------------------------------------------------------
PREFORK_SERVER = r'''
import http.server, os, signal, socket, socketserver, sys, time
import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

mode, url = sys.argv[1], sys.argv[2]
CHANNEL = nngrpc.Channel(url)              # module level, like an app object
STUB = testing_nngrpc.TestingStub(CHANNEL)
STUB.Echo(testing_pb2.EchoRequest(payload=b"preload"), timeout=5.0)   # used before forking


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        STUB.Sleep(testing_pb2.SleepRequest(ms=30), timeout=5.0)
        r = STUB.Echo(testing_pb2.EchoRequest(payload=self.path.encode()), timeout=5.0)
        body = b"%d %s" % (os.getpid(), r.payload)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if mode == "prefork":                      # gunicorn --preload: 3 workers accept on one socket
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    workers = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            server.serve_forever()
            os._exit(0)
        workers.append(pid)
    # The master keeps using the channel after forking.
    STUB.Echo(testing_pb2.EchoRequest(payload=b"master"), timeout=5.0)
    print("master ok", flush=True)
    sys.stdin.readline()
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    for pid in workers:
        os.waitpid(pid, 0)
else:                                      # socketserver.ForkingMixIn: a child per request
    class Server(socketserver.ForkingMixIn, http.server.HTTPServer):
        pass

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    print("master ok", flush=True)
    import threading
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.readline()
    server.shutdown()
    STUB.Echo(testing_pb2.EchoRequest(payload=b"master after"), timeout=5.0)
CHANNEL.close()
print("done", flush=True)
'''


@pytest.mark.parametrize("mode", ["prefork", "forking_mixin"])
def test_preforking_server_workers_use_the_inherited_channel(hoteld: Server, mode: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PREFORK_SERVER, mode, hoteld.tcp],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "master ok"
        answers: List[Tuple[int, str]] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            for j in range(5):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/r%d-%d" % (i, j))
                resp = conn.getresponse()
                body = resp.read().decode()
                conn.close()
                assert resp.status == 200, body
                pid, path = body.split(" ", 1)
                with lock:
                    answers.append((int(pid), path))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(p for _, p in answers) == sorted("/r%d-%d" % (i, j) for i in range(6) for j in range(5))
        pids = {pid for pid, _ in answers}
        assert proc.pid not in pids
        if mode == "prefork":
            assert len(pids) == 3, pids  # 6 concurrent clients kept every worker busy
        else:
            assert len(pids) >= 6  # a child per request
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- asyncio ----------------------------------------------------------------------------------
async def aio_echo(ch: nngrpc.aio.Channel, payload: bytes) -> bool:
    stub = testing_nngrpc.TestingAsyncStub(ch)
    resp = await stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=5.0)
    return bool(resp.payload == payload)


def test_aio_channel_after_fork_outside_the_loop(hoteld: Server) -> None:
    """The parent used an aio.Channel in one loop and forked between loops:
    in the child a new loop works with a fresh aio.Channel and with the
    inherited one; the parent's channel follows its next loop."""
    ch = nngrpc.aio.Channel(hoteld.tcp)
    assert asyncio.run(aio_echo(ch, b"parent"))

    def child() -> bool:
        async def main() -> bool:
            async with nngrpc.aio.Channel(hoteld.tcp) as fresh:
                ok = await aio_echo(fresh, b"fresh")
            return ok and await aio_echo(ch, b"inherited")

        return asyncio.run(main())

    assert in_child(child) == 0
    assert asyncio.run(aio_echo(ch, b"parent again"))

    async def close() -> None:
        await ch.close()

    asyncio.run(close())


def test_aio_fork_inside_a_running_loop(hoteld: Server) -> None:
    """Fork while the parent's loop runs, with a call in flight: the child
    runs a new loop of its own (never the parent's: their epoll instance is
    shared); the parent's call completes and its connections stay."""

    async def main() -> Tuple[int, bool, int, int]:
        async with nngrpc.aio.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            await aio_echo(ch, b"warm")
            slow = asyncio.ensure_future(stub.Sleep(testing_pb2.SleepRequest(ms=200), timeout=5.0))
            await asyncio.sleep(0.02)
            conns = ch._connection_count()

            def child() -> bool:
                async def inner() -> bool:
                    async with nngrpc.aio.Channel(hoteld.tcp) as fresh:
                        ok = await aio_echo(fresh, b"child fresh")
                    return ok and await aio_echo(ch, b"child inherited")

                return asyncio.run(inner())

            code = in_child(child)
            resp = await slow
            ok = await aio_echo(ch, b"parent after")
            return code, ok and resp.slept_us >= 200_000, conns, ch._connection_count()

    code, ok, conns_before, conns_after = asyncio.run(asyncio.wait_for(main(), 30))
    assert code == 0
    assert ok
    assert conns_after == conns_before  # nothing of the parent's was cut
