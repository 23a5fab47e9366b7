"""Client behaviour against the real hoteld: limits, concurrency, ipc,
unreachable servers, Ctrl+C, fork, close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
from nngrpc.v1 import rpc_pb2

from hoteld_fixture import Server, free_port

ECHO = "/nngrpc.testing.v1.Testing/Echo"
LIMIT = nngrpc.DEFAULT_MAX_MESSAGE_BYTES


def echo_payload_for_message_size(total: int) -> bytes:
    """Returns an EchoRequest whose SP message (4-byte id + envelope, no
    timeout, the channel's 16-digit nngrpc-request-id) is exactly total
    bytes."""
    n = total - 64
    md = {"nngrpc-request-id": "0" * 16}
    while True:
        payload = testing_pb2.EchoRequest(payload=b"x" * n).SerializeToString()
        size = 4 + rpc_pb2.Request(method=ECHO, payload=payload, metadata=md).ByteSize()
        if size == total:
            return payload
        n += total - size


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- sizes -------------------------------------------------------------------
def test_oversize_request_is_refused_and_next_call_works(channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    stub.Echo(testing_pb2.EchoRequest(payload=b"warm"), timeout=2.0)
    fds = channel._open_fds()
    t0 = time.monotonic()
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Echo(testing_pb2.EchoRequest(payload=b"x" * LIMIT), timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - t0 < 0.5
    assert channel._open_fds() == fds  # nothing was sent, connection kept
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"next"), timeout=2.0).payload == b"next"


def test_size_limit_agrees_with_the_server(channel: nngrpc.Channel) -> None:
    """A message of exactly max_message_bytes reaches the server; one byte
    more is refused by the client (NNG would drop it silently)."""
    at_limit = echo_payload_for_message_size(LIMIT)
    assert len(channel.call(ECHO, at_limit, timeout=None)) == len(at_limit)
    with pytest.raises(nngrpc.RpcError) as e:
        channel.call(ECHO, echo_payload_for_message_size(LIMIT + 1))
    assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED


def test_oversize_reply_is_refused_and_connection_dropped(hoteld: Server) -> None:
    with nngrpc.Channel(hoteld.tcp, max_receive_message_bytes=1000) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Echo(testing_pb2.EchoRequest(payload=b"y" * 2000), timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.RESOURCE_EXHAUSTED
        assert ch._open_fds() == []
        assert stub.Echo(testing_pb2.EchoRequest(payload=b"small"), timeout=2.0).payload == b"small"


# ---- deadlines -----------------------------------------------------------------
@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_no_time_left_fails_at_once(stub: testing_nngrpc.TestingStub, timeout: float) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        stub.Echo(testing_pb2.EchoRequest(), timeout=timeout)
    assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED


# ---- concurrency ---------------------------------------------------------------
def test_16_threads_share_one_channel(channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    errors: List[BaseException] = []

    def call() -> None:
        try:
            stub.Sleep(testing_pb2.SleepRequest(ms=200), timeout=5.0)
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(16)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors
    assert elapsed < 1.0, elapsed
    assert len(channel._open_fds()) == 16  # one connection per concurrent call


def test_32_threads_scale_sleep_calls(hoteld: Server) -> None:
    """32 threads x Sleep(10 ms) against 1 thread: close to 32x the calls."""

    def rate(n_threads: int, seconds: float = 1.0) -> float:
        counts = [0] * n_threads
        with nngrpc.Channel(hoteld.tcp) as ch:
            stub = testing_nngrpc.TestingStub(ch)
            req = testing_pb2.SleepRequest(ms=10)
            stop = time.monotonic() + seconds

            def loop(i: int) -> None:
                while time.monotonic() < stop:
                    stub.Sleep(req, timeout=5.0)
                    counts[i] += 1

            t0 = time.monotonic()
            threads = [threading.Thread(target=loop, args=(i,)) for i in range(n_threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts) / (time.monotonic() - t0)

    ratio = rate(32) / rate(1)
    assert ratio >= 20, "32 threads gave only %.1fx one thread" % ratio


# ---- transports and endpoints ----------------------------------------------------
def test_ipc_works(hoteld: Server) -> None:
    with nngrpc.Channel(hoteld.ipc) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        assert stub.Echo(testing_pb2.EchoRequest(payload=b"ipc"), timeout=2.0).payload == b"ipc"
        big = b"z" * (1024 * 1024)
        assert stub.Echo(testing_pb2.EchoRequest(payload=big), timeout=5.0).payload == big
        with pytest.raises(nngrpc.RpcError) as e:
            stub.Fail(testing_pb2.FailRequest(code=7, message="no"), timeout=2.0)
        assert e.value.code() is nngrpc.StatusCode.PERMISSION_DENIED


def test_nothing_listening_is_unavailable_quickly() -> None:
    url = "tcp://127.0.0.1:%d" % free_port()
    with nngrpc.Channel(url) as ch:
        t0 = time.monotonic()
        with pytest.raises(nngrpc.RpcError) as e:
            ch.call(ECHO, b"", timeout=5.0)
        assert time.monotonic() - t0 < 0.5
    assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
    assert url in e.value.details()


def test_missing_ipc_path_is_unavailable(tmp_path: "os.PathLike[str]") -> None:
    url = "ipc://%s/none.sock" % tmp_path
    with nngrpc.Channel(url) as ch, pytest.raises(nngrpc.RpcError) as e:
        ch.call(ECHO, b"", timeout=1.0)
    assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE
    assert url in e.value.details()


def test_down_endpoint_is_skipped(hoteld: Server) -> None:
    dead = "tcp://127.0.0.1:%d" % free_port()
    with nngrpc.Channel([dead, hoteld.tcp]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for _ in range(10):
            assert stub.Echo(testing_pb2.EchoRequest(payload=b"rr"), timeout=2.0).payload == b"rr"


def test_round_robin_over_endpoints(hoteld: Server) -> None:
    with nngrpc.Channel([hoteld.tcp, hoteld.ipc]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for _ in range(4):
            stub.Echo(testing_pb2.EchoRequest(), timeout=2.0)
        assert [len(ep.idle) for ep in ch._endpoints] == [1, 1]


# ---- Ctrl+C ------------------------------------------------------------------------
CTRL_C_CHILD = r"""
import sys, time
import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2
ch = nngrpc.Channel(sys.argv[1])
stub = testing_nngrpc.TestingStub(ch)
stub.Echo(testing_pb2.EchoRequest(payload=b"warm"), timeout=5.0)
print("calling", flush=True)
try:
    stub.Sleep(testing_pb2.SleepRequest(ms=3000), timeout=10.0)
    print("not interrupted", flush=True)
    sys.exit(1)
except KeyboardInterrupt:
    print("interrupted", flush=True)
r = stub.Echo(testing_pb2.EchoRequest(payload=b"after"), timeout=5.0)
print("after ok" if r.payload == b"after" else "after bad", flush=True)
ch.close()
"""


def _blocked_in_poll(pid: int) -> bool:
    """True while pid waits in a system call the client waits in: poll,
    ppoll, or the blocking recvfrom of a pipe waiting for its reply
    (x86-64 numbers)."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] in ("7", "271", "45")
    except (OSError, IndexError):
        return False


def test_sigint_interrupts_a_blocked_call(hoteld: Server) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, hoteld.tcp],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "calling"
        end = time.monotonic() + 2.0
        while not _blocked_in_poll(proc.pid) and time.monotonic() < end:
            time.sleep(0.001)
        time.sleep(0.02)  # let the call settle in its wait
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        elapsed = time.monotonic() - t0
        assert line == "interrupted"
        assert elapsed < 0.1, elapsed
        assert proc.stdout.readline().strip() == "after ok"
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- fork ----------------------------------------------------------------------------
def test_call_after_fork_in_child_and_parent(channel: nngrpc.Channel) -> None:
    stub = testing_nngrpc.TestingStub(channel)
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"parent"), timeout=2.0).payload == b"parent"
    pooled = list(channel._endpoints[0].idle)
    assert len(pooled) == 1
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            r = stub.Echo(testing_pb2.EchoRequest(payload=b"child"), timeout=2.0)
            fresh = channel._endpoints[0].idle
            code = 0 if r.payload == b"child" and fresh and fresh[0] is not pooled[0] else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection survived the child (closed there, not shut down).
    assert stub.Echo(testing_pb2.EchoRequest(payload=b"again"), timeout=2.0).payload == b"again"
    assert channel._endpoints[0].idle == pooled


# ---- close ---------------------------------------------------------------------------
def test_close_closes_every_fd(hoteld: Server) -> None:
    before = fd_count()
    ch = nngrpc.Channel([hoteld.tcp, hoteld.ipc])
    stub = testing_nngrpc.TestingStub(ch)
    threads = [
        threading.Thread(target=stub.Sleep, args=(testing_pb2.SleepRequest(ms=50), 5.0))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fd_count() >= before + 8
    ch.close()
    assert fd_count() == before
    with pytest.raises(ValueError):
        stub.Echo(testing_pb2.EchoRequest(), timeout=1.0)


def test_close_cancels_calls_in_flight(hoteld: Server) -> None:
    before = fd_count()
    ch = nngrpc.Channel(hoteld.tcp)
    stub = testing_nngrpc.TestingStub(ch)
    errors: List[nngrpc.RpcError] = []

    def call() -> None:
        try:
            stub.Sleep(testing_pb2.SleepRequest(ms=3000), timeout=10.0)
        except nngrpc.RpcError as e:
            errors.append(e)

    t = threading.Thread(target=call)
    t.start()
    end = time.monotonic() + 2.0
    while not ch._open_fds() and time.monotonic() < end:
        time.sleep(0.001)
    t0 = time.monotonic()
    ch.close()
    t.join(5.0)
    assert time.monotonic() - t0 < 0.5
    assert [e.code() for e in errors] == [nngrpc.StatusCode.CANCELLED]
    assert fd_count() == before
