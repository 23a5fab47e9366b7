"""One Channel over several hoteld processes: spreading, fail-over when a
server dies (kill -9) or drains (SIGTERM), and the retry policy.

Each test that kills or drains starts three servers of its own.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import nngrpc
import nngrpc.aio
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, sanitizer_reports, start_server, stop_server

SLEEP = "/nngrpc.testing.v1.Testing/Sleep"
FAIL = "/nngrpc.testing.v1.Testing/Fail"


def port_of(server: Server) -> int:
    return int(server.tcp.rsplit(":", 1)[1])


@pytest.fixture
def three(request: pytest.FixtureRequest) -> Iterator[List[Server]]:
    """Three hoteld --testing of this test's own."""
    binary = str(request.config.getoption("--hoteld"))
    with ExitStack() as stack:
        servers = []
        for _ in range(3):
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nngrpc-ms-"))
            servers.append(start_server(binary, workdir, ["--no-hotels"]))
        try:
            yield servers
        finally:
            for s in servers:
                if s.proc.returncode == -signal.SIGKILL:  # killed by the test
                    log = s.log()
                    assert not sanitizer_reports(log, binary)[0], log
                else:
                    stop_server(s)


def kill9(server: Server) -> None:
    server.proc.kill()
    server.proc.wait(10)


class Load:
    """8 threads calling Echo and Sleep(5) in turn through one channel,
    recording every outcome, until stop()."""

    def __init__(self, channel: nngrpc.Channel, threads: int = 8) -> None:
        self.stub = testing_nngrpc.TestingStub(channel)
        self.ok = 0
        self.retried = 0
        self.errors: List[nngrpc.RpcError] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _loop(self, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if n % 2:
                    _, call = self.stub.Echo.with_call(
                        testing_pb2.EchoRequest(payload=b"%d/%d" % (i, n)), timeout=5.0
                    )
                else:
                    _, call = self.stub.Sleep.with_call(testing_pb2.SleepRequest(ms=5), timeout=5.0)
            except nngrpc.RpcError as e:
                with self._lock:
                    self.errors.append(e)
                continue
            with self._lock:
                self.ok += 1
                self.retried += call.attempts > 1

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def wait_busy_on(ch: nngrpc.Channel, server: Server, limit: float = 5.0) -> None:
    """Waits until a call of ch is in flight on server."""
    port = port_of(server)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with ch._lock:
            busy = list(ch._busy)
        for pipe in busy:
            try:
                if pipe.sock.getpeername()[1] == port:
                    return
            except OSError:
                pass
        time.sleep(0.0005)
    pytest.fail("no call in flight on %s" % server.tcp)


def idle_per_server(ch: nngrpc.Channel) -> Dict[str, int]:
    return {ep.addr.url: len(ep.idle) for ep in ch._endpoints}


# ---- sync channel ----------------------------------------------------------------
def test_kill_9_one_server_every_call_still_succeeds(three: List[Server]) -> None:
    with nngrpc.Channel([s.tcp for s in three]) as ch:
        load = Load(ch)
        try:
            # Calls reach every server (polled: a loaded machine is slow
            # to spread them), then one dies.
            end = time.monotonic() + 10
            spread = idle_per_server(ch)
            while not all(n > 0 for n in spread.values()) and time.monotonic() < end:
                time.sleep(0.05)
                spread = idle_per_server(ch)
            wait_busy_on(ch, three[0])
            kill9(three[0])
            ok_at_kill = load.ok
            time.sleep(0.7)
        finally:
            load.stop()
        assert not load.errors, load.errors[:5]
        assert all(n > 0 for n in spread.values()), spread  # every server had calls
        assert load.ok - ok_at_kill > 100  # and the others carried on
        assert load.retried >= 1  # the calls cut by the kill were sent again


def test_without_retries_some_calls_fail_unavailable(three: List[Server]) -> None:
    with nngrpc.Channel([s.tcp for s in three], retry=None) as ch:
        load = Load(ch)
        try:
            time.sleep(0.2)
            wait_busy_on(ch, three[1])
            kill9(three[1])
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.errors, "no call was cut by the kill"
        assert {e.code() for e in load.errors} == {nngrpc.StatusCode.UNAVAILABLE}
        assert all(e.call.attempts == 1 for e in load.errors)
        assert load.retried == 0 and load.ok > 100


def test_non_idempotent_call_is_not_retried(three: List[Server]) -> None:
    """A call cut by a dying server: sent once when not idempotent, sent
    again (to another server) when it is."""
    req = testing_pb2.SleepRequest(ms=1000).SerializeToString()
    outcome: List[object] = []

    def call_in_thread(ch: nngrpc.Channel, idempotent: bool) -> threading.Thread:
        def run() -> None:
            try:
                outcome.append(ch.invoke(SLEEP, req, timeout=5.0, idempotent=idempotent)[1])
            except nngrpc.RpcError as e:
                outcome.append(e)

        t = threading.Thread(target=run)
        t.start()
        return t

    # The first call of a channel goes to its first endpoint.
    with nngrpc.Channel([three[0].tcp, three[2].tcp]) as ch:
        t = call_in_thread(ch, idempotent=False)
        wait_busy_on(ch, three[0])
        t0 = time.monotonic()
        kill9(three[0])
        t.join(10)
        err = outcome.pop()
        assert isinstance(err, nngrpc.RpcError), err
        assert err.code() is nngrpc.StatusCode.UNAVAILABLE
        assert err.call.attempts == 1 and "lost during the call" in err.details()
        assert time.monotonic() - t0 < 0.5

    with nngrpc.Channel([three[1].tcp, three[2].tcp]) as ch:
        t = call_in_thread(ch, idempotent=True)
        wait_busy_on(ch, three[1])
        kill9(three[1])
        t.join(10)
        call = outcome.pop()
        assert isinstance(call, nngrpc.Call), call
        assert call.code() is nngrpc.StatusCode.OK and call.attempts == 2


def test_draining_server_sends_its_clients_elsewhere(three: List[Server]) -> None:
    with nngrpc.Channel([s.tcp for s in three]) as ch:
        load = Load(ch)
        try:
            time.sleep(0.3)
            three[2].proc.send_signal(signal.SIGTERM)
            three[2].proc.wait(10)  # drains, then exits
            ok_at_exit = load.ok
            time.sleep(0.3)
        finally:
            load.stop()
        assert not load.errors, load.errors[:5]
        assert load.ok - ok_at_exit > 50
    stop_server(three[2])  # exited 0, no sanitizer report


def test_draining_server_is_skipped_by_the_next_call(three: List[Server]) -> None:
    """An UNAVAILABLE answer from a draining server marks it down, so the
    next calls go to the others, with retries off too."""
    a, b = three[0], three[1]
    with nngrpc.Channel([a.tcp, b.tcp], retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for _ in range(4):
            stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)
        # Keep a's drain from finishing: one call still runs there.
        holder_result: List[object] = []
        with nngrpc.Channel(a.tcp) as holder:

            def hold() -> None:
                try:
                    holder_result.append(holder.call(
                        SLEEP, testing_pb2.SleepRequest(ms=1500).SerializeToString(), timeout=5.0))
                except nngrpc.RpcError as e:
                    holder_result.append(e)

            slow = threading.Thread(target=hold)
            slow.start()
            wait_busy_on(holder, a)
            time.sleep(0.2)  # sent is not yet running: let a worker take it
            a.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)  # let the drain begin
            failures = []
            for _ in range(20):
                try:
                    stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)
                except nngrpc.RpcError as e:
                    failures.append(e)
            slow.join(10)
        # The drain let the running call finish.
        assert isinstance(holder_result[0], bytes), holder_result
        # One call met the draining server; the others went to b.
        assert len(failures) == 1, failures
        assert failures[0].code() is nngrpc.StatusCode.UNAVAILABLE
        assert "not serving" in failures[0].details() or "draining" in failures[0].details()
    a.proc.wait(10)
    stop_server(a)


# ---- retry policy (the session's server) --------------------------------------------------
def test_retry_policy_attempts_backoff_and_deadline(hoteld: Server) -> None:
    unavailable = testing_pb2.FailRequest(code=14, message="try later").SerializeToString()
    policy = nngrpc.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with nngrpc.Channel(hoteld.tcp, retry=policy) as ch:
        # Retried up to max_attempts when idempotent; the last answer is raised.
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(FAIL, unavailable, timeout=5.0, idempotent=True)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
        assert e.value.details() == "try later" and e.value.call.attempts == 3
        # Sent once when not.
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(FAIL, unavailable, timeout=5.0)
        assert e.value.call.attempts == 1
        # Other codes are not retried.
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(FAIL, testing_pb2.FailRequest(code=13).SerializeToString(), timeout=5.0,
                    idempotent=True)
        assert e.value.code() is nngrpc.StatusCode.INTERNAL and e.value.call.attempts == 1

    slow = nngrpc.RetryPolicy(max_attempts=1000, initial_backoff=0.05, backoff_multiplier=1.0)
    with nngrpc.Channel(hoteld.tcp, retry=slow) as ch:
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(FAIL, unavailable, timeout=0.3, idempotent=True)
        elapsed = time.monotonic() - t0
        # The last answer, or DEADLINE_EXCEEDED when the deadline passed
        # while an attempt was on the wire (a loaded machine): never later.
        assert e.value.code() in (nngrpc.StatusCode.UNAVAILABLE,
                                  nngrpc.StatusCode.DEADLINE_EXCEEDED)
        assert elapsed < 0.3 + 0.05, elapsed  # never sleeps past the deadline
        assert 1 < e.value.call.attempts < 1000

    with pytest.raises(ValueError):
        nngrpc.RetryPolicy(max_attempts=0)


def test_dead_endpoint_retries_go_to_the_live_one(hoteld: Server) -> None:
    """Connection refused is retried (on another endpoint at once); with a
    single dead endpoint the retries end after max_attempts."""
    from hoteld_fixture import free_port

    dead = "tcp://127.0.0.1:%d" % free_port()
    with nngrpc.Channel([dead, hoteld.tcp]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for _ in range(6):
            _, call = stub.Echo.with_call(testing_pb2.EchoRequest(), timeout=2.0)
            assert call.attempts == 1  # the refused dial moved on by itself
    policy = nngrpc.RetryPolicy(max_attempts=4, initial_backoff=0.001)
    with nngrpc.Channel(dead, retry=policy) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
        assert e.value.call.attempts == 4 and dead in e.value.details()


# ---- asyncio channel ----------------------------------------------------------------------
def test_aio_kill_9_and_drain_every_call_still_succeeds(three: List[Server]) -> None:
    async def main() -> Tuple[int, int, List[BaseException], Dict[str, int]]:
        async with nngrpc.aio.Channel([s.tcp for s in three]) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            stop = False
            ok = 0
            errors: List[BaseException] = []

            async def worker(i: int) -> None:
                nonlocal ok
                n = 0
                while not stop:
                    n += 1
                    try:
                        if n % 2:
                            await stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % n), timeout=5.0)
                        else:
                            await stub.Sleep(testing_pb2.SleepRequest(ms=5), timeout=5.0)
                        ok += 1
                    except nngrpc.RpcError as e:
                        errors.append(e)

            tasks = [asyncio.ensure_future(worker(i)) for i in range(16)]
            await asyncio.sleep(0.3)
            spread = {e.addr.url: len(e.pipes) for e in ch._endpoints}
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, kill9, three[0])
            three[1].proc.send_signal(signal.SIGTERM)
            await loop.run_in_executor(None, three[1].proc.wait, 10)
            ok_after = ok
            await asyncio.sleep(0.3)
            stop = True
            await asyncio.gather(*tasks)
            assert ch._pending_count() == 0 and ch._in_flight_count() == 0
            return ok, ok_after, errors, spread

    ok, ok_after, errors, spread = asyncio.run(asyncio.wait_for(main(), 60))
    assert not errors, errors[:5]
    assert all(n > 0 for n in spread.values()), spread
    assert ok - ok_after > 50
    stop_server(three[1])  # drained: exit 0


def test_not_run_reply_lets_a_non_idempotent_call_move(three: List[Server]) -> None:
    """A draining server marks its UNAVAILABLE answer "nngrpc-not-run": the
    handler never ran, so even a call that is not idempotent goes to
    another server instead of failing (gRPC does the same after GOAWAY)."""
    a, b = three[0], three[1]
    echo = "/nngrpc.testing.v1.Testing/Echo"
    with nngrpc.Channel([a.tcp, b.tcp]) as ch:
        for _ in range(4):
            ch.call(echo, b"", timeout=2.0, idempotent=False)
        holder_result: List[object] = []
        with nngrpc.Channel(a.tcp) as holder:

            def hold() -> None:
                try:
                    holder_result.append(holder.call(
                        SLEEP, testing_pb2.SleepRequest(ms=1500).SerializeToString(), timeout=5.0))
                except nngrpc.RpcError as e:
                    holder_result.append(e)

            slow = threading.Thread(target=hold)
            slow.start()
            wait_busy_on(holder, a)
            time.sleep(0.2)  # sent is not yet running: let a worker take it
            a.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)  # let the drain begin
            attempts = []
            for _ in range(20):
                _, call = ch.invoke(echo, b"", timeout=2.0, idempotent=False)
                attempts.append(call.attempts)
            slow.join(10)
        assert isinstance(holder_result[0], bytes), holder_result
        # Every call succeeded; the one that met the draining server was
        # sent again, to b.
        assert attempts.count(2) == 1 and attempts.count(1) == 19, attempts
    a.proc.wait(10)
    stop_server(a)
