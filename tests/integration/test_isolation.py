"""Process isolation (--isolation process) against thread mode, through a real
hoteld: every fault Testing.Crash injects, under load, in both modes; worker
replacement; the crash report and its replay; the poison-pill guard; the
seccomp sandbox; Reload under load; the flags and /metrics.

Each test starts its own small hoteld (the faults kill servers in thread
mode), from --hoteld, so the same tests run against the ASan build.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional

import pytest

import nngrpc
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

from hoteld_fixture import Server, free_port, start_server, stop_server

K = testing_pb2
WORKERS = 4
SPARES = 2  # zygote.c


def start(binary: str, workdir: str, mode: str, extra: List[str]) -> Server:
    return start_server(
        binary,
        workdir,
        ["--isolation", mode, "--workers", str(WORKERS), "--drain-timeout", "5"]
        + extra,
    )


@pytest.fixture
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nngrpc-iso-") as d:
        yield d


@pytest.fixture
def binary(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--hoteld"))


def kill_hard(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    return body


def zygote_children(server: Server) -> List[int]:
    """The worker processes: children of the zygote, the front end's child.
    There are WORKERS + SPARES: the zygote keeps spares forked for the next
    replacements."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout
    pairs = [tuple(int(x) for x in line.split()) for line in out.splitlines()]
    zygotes = [p for p, pp in pairs if pp == server.proc.pid]
    return [p for p, pp in pairs if pp in zygotes and not is_zombie(p)]


def is_zombie(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(cond, limit: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


class Load:
    """Background callers: Echo (inline) and Sleep(1 ms) (a worker's), or
    Search when the server has hotels; counts successes and failures."""

    def __init__(self, url: str, threads: int = 3, search: bool = False) -> None:
        self.url = url
        self.search = search
        self.ok = 0
        self.failures: List[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.run, args=(i,), daemon=True)
            for i in range(threads)
        ]

    def run(self, i: int) -> None:
        with nngrpc.Channel(self.url, retry=None) as ch:
            t = testing_nngrpc.TestingStub(ch)
            h = hotel_nngrpc.HotelSearchStub(ch)
            n = 0
            while not self.stop.is_set() and n < 100000:
                n += 1
                try:
                    if i == 0:
                        t.Echo(K.EchoRequest(payload=b"x"), timeout=10)
                    elif self.search:
                        h.Search(hotel_pb2.SearchRequest(query="spa"), timeout=10)
                    else:
                        t.Sleep(K.SleepRequest(ms=1), timeout=10)
                    with self.lock:
                        self.ok += 1
                except nngrpc.RpcError as e:
                    with self.lock:
                        self.failures.append("%s %s" % (e.code(), e.details()))
                    if len(self.failures) > 50:
                        return

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def crash(url: str, kind: int, timeout: float = 5.0, rid: str = "") -> nngrpc.RpcError:
    """Calls Crash(kind); returns the error it must end with."""
    md = {"nngrpc-request-id": rid} if rid else None
    with nngrpc.Channel(url, retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        with pytest.raises(nngrpc.RpcError) as info:
            stub.Crash(K.CrashRequest(kind=kind), timeout=timeout, metadata=md)
    return info.value


# What each fault gives the caller in process mode: code and message part.
PROCESS_FAULTS = {
    K.CRASH_SEGFAULT: (nngrpc.StatusCode.INTERNAL, "crashed: SIGSEGV running"),
    K.CRASH_ABORT: (nngrpc.StatusCode.INTERNAL, "crashed: SIGABRT running"),
    K.CRASH_STACK_OVERFLOW: (nngrpc.StatusCode.INTERNAL, "SIGSEGV (stack overflow)"),
    K.CRASH_HANG: (nngrpc.StatusCode.DEADLINE_EXCEEDED, "past its deadline"),
    K.CRASH_OOM: (nngrpc.StatusCode.RESOURCE_EXHAUSTED, "memory limit"),
}
FATAL_IN_THREAD_MODE = (K.CRASH_SEGFAULT, K.CRASH_ABORT, K.CRASH_STACK_OVERFLOW)


@pytest.mark.parametrize("kind", sorted(PROCESS_FAULTS), ids=K.CrashKind.Name)
def test_process_mode_fault_fails_one_call_under_load(
    binary: str, workdir: str, kind: int
) -> None:
    http_port = free_port()
    server = start(
        binary,
        workdir,
        "process",
        ["--no-hotels", "--worker-memory-mb", "64", "--deadline-grace", "0.3",
         "--http", "127.0.0.1:%d" % http_port],
    )
    try:
        with Load(server.tcp) as load:
            assert wait_for(lambda: load.ok > 20)
            err = crash(server.tcp, kind, timeout=0.5 if kind == K.CRASH_HANG else 10,
                        rid="fault-%d" % kind)
            code, part = PROCESS_FAULTS[kind]
            if kind == K.CRASH_HANG:
                # The caller's own deadline ends its wait; the worker dies
                # 0.3 s later (the grace) and is replaced.
                assert err.code() == nngrpc.StatusCode.DEADLINE_EXCEEDED
                assert wait_for(lambda: "past its deadline" in server.log())
            else:
                assert err.code() == code, err.details()
                assert part in err.details()
                assert "request id fault-%d" % kind in err.details()
            before = load.ok
            assert wait_for(lambda: load.ok > before + 20)
        assert not load.failures, load.failures[:5]
        assert wait_for(lambda: len(zygote_children(server)) == WORKERS + SPARES)
        text = metrics(http_port)
        if kind in FATAL_IN_THREAD_MODE:
            sig = "SIGABRT" if kind == K.CRASH_ABORT else "SIGSEGV"
            assert re.search(
                r'nngrpc_worker_crashes_total\{method="/nngrpc.testing.v1.Testing/Crash",'
                r'signal="%s"\} 1' % sig, text), text
        elif kind == K.CRASH_HANG:
            assert 'nngrpc_worker_kills_total{reason="deadline"} 1' in text
        else:
            assert 'nngrpc_worker_kills_total{reason="memory"} 1' in text
        log = server.log()
        assert "backtrace:" in log or kind in (K.CRASH_HANG, K.CRASH_OOM)
    finally:
        stop_server(server)


@pytest.mark.parametrize("kind", sorted(PROCESS_FAULTS), ids=K.CrashKind.Name)
def test_thread_mode_fault_is_the_servers(binary: str, workdir: str, kind: int) -> None:
    """The same faults without isolation: a crash takes the whole server and
    every call in flight; a hang holds a worker thread; OOM runs in the
    server's own memory (bounded by the test service at 2 GiB)."""
    server = start(binary, workdir, "thread", ["--no-hotels"])
    try:
        with Load(server.tcp) as load:
            assert wait_for(lambda: load.ok > 20)
            timeout = 0.5 if kind == K.CRASH_HANG else 30
            with nngrpc.Channel(server.tcp, retry=None) as ch:
                stub = testing_nngrpc.TestingStub(ch)
                with pytest.raises(nngrpc.RpcError) as info:
                    stub.Crash(K.CrashRequest(kind=kind), timeout=timeout)
            if kind in FATAL_IN_THREAD_MODE:
                assert server.proc.wait(timeout=30) != 0
                assert wait_for(lambda: len(load.failures) > 0)
                return
            if kind == K.CRASH_HANG:
                assert info.value.code() == nngrpc.StatusCode.DEADLINE_EXCEEDED
            else:
                assert info.value.code() == nngrpc.StatusCode.RESOURCE_EXHAUSTED
                assert "allocated" in info.value.details()
            before = load.ok
            assert wait_for(lambda: load.ok > before + 20)
        assert not load.failures, load.failures[:5]
        assert server.proc.poll() is None
    finally:
        kill_hard(server)  # a hung thread would hold the drain


def test_forbidden_syscall_kills_the_worker_not_the_server(
    binary: str, workdir: str
) -> None:
    server = start(binary, workdir, "process", ["--no-hotels"])
    try:
        if "seccomp off (sanitizer build)" in server.log():
            pytest.skip("no seccomp filter in sanitizer builds (see sandbox.h)")
        with Load(server.tcp) as load:
            assert wait_for(lambda: load.ok > 20)
            err = crash(server.tcp, K.CRASH_FORBIDDEN_SYSCALL)
            assert err.code() == nngrpc.StatusCode.INTERNAL
            # socket(2) is syscall 41 on x86-64.
            assert "SIGSYS (forbidden syscall 41)" in err.details(), err.details()
            before = load.ok
            assert wait_for(lambda: load.ok > before + 20)
        assert not load.failures
    finally:
        stop_server(server)
    # Without isolation the same call just opens a socket.
    server = start(binary, workdir, "thread", ["--no-hotels"])
    try:
        with nngrpc.Channel(server.tcp) as ch:
            testing_nngrpc.TestingStub(ch).Crash(
                K.CrashRequest(kind=K.CRASH_FORBIDDEN_SYSCALL), timeout=5)
    finally:
        stop_server(server)


def test_workers_are_replaced_and_counted(binary: str, workdir: str) -> None:
    http_port = free_port()
    server = start(binary, workdir, "process",
                   ["--hotels", "1000", "--poison-pill-crashes", "0",
                    "--http", "127.0.0.1:%d" % http_port])
    try:
        first = set(zygote_children(server))
        assert len(first) == WORKERS + SPARES
        for _ in range(6):
            crash(server.tcp, K.CRASH_SEGFAULT)
        assert wait_for(lambda: len(zygote_children(server)) == WORKERS + SPARES)
        assert len(first & set(zygote_children(server))) <= WORKERS
        # Replacements (spares forked ahead among them) serve the dataset.
        with nngrpc.Channel(server.tcp) as ch:
            h = hotel_nngrpc.HotelSearchStub(ch)
            for _ in range(4 * (WORKERS + SPARES)):
                assert h.Stats(hotel_pb2.StatsRequest(), timeout=10).hotel_count == 1000
        text = metrics(http_port)
        assert "nngrpc_worker_spawns_total %d" % (WORKERS + 6) in text
        m = re.search(r'nngrpc_worker_replace_seconds_max ([0-9.]+)', text)
        assert m and 0 < float(m.group(1)) < 5.0, text
        assert "nngrpc_worker_replace_seconds_count 6" in text
    finally:
        stop_server(server)


def test_poison_pill_is_refused_without_running(binary: str, workdir: str) -> None:
    server = start(binary, workdir, "process",
                   ["--no-hotels", "--poison-pill-crashes", "3",
                    "--poison-pill-window", "60"])
    try:
        for _ in range(3):
            assert "SIGABRT" in crash(server.tcp, K.CRASH_ABORT).details()
        err = crash(server.tcp, K.CRASH_ABORT)
        assert err.code() == nngrpc.StatusCode.INTERNAL
        assert "poison-pill guard" in err.details()
        assert len(re.findall(r"nngrpc worker \d+ crashed: SIGABRT",
                              server.log())) == 3
        # Another payload still runs.
        assert "SIGSEGV" in crash(server.tcp, K.CRASH_SEGFAULT).details()
    finally:
        stop_server(server)


def test_crash_report_replays_in_process(binary: str, workdir: str) -> None:
    crash_dir = os.path.join(workdir, "crashes")
    os.mkdir(crash_dir)
    server = start(binary, workdir, "process",
                   ["--no-hotels", "--crash-dir", crash_dir])
    try:
        err = crash(server.tcp, K.CRASH_ABORT, rid="to-replay")
        assert "SIGABRT" in err.details()
        files = os.listdir(crash_dir)
        assert len(files) == 1 and files[0].endswith("-SIGABRT.nngrpc-request"), files
        path = os.path.join(crash_dir, files[0])
        assert "--replay %s" % path in server.log()
    finally:
        stop_server(server)
    # The saved request runs again in one process, and dies the same way.
    replay = subprocess.run([binary, "--testing", "--no-hotels", "--replay", path],
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode in (-signal.SIGABRT, 128 + signal.SIGABRT, 1), replay
    assert "replay: %s" % path in replay.stderr
    # A request that does not crash prints its status and exits 0.
    ok_path = os.path.join(workdir, "echo.req")
    from nngrpc.v1 import rpc_pb2  # the envelope, as the client builds it

    with open(ok_path, "wb") as f:
        f.write(rpc_pb2.Request(
            method="/nngrpc.testing.v1.Testing/Echo",
            payload=K.EchoRequest(payload=b"hi").SerializeToString(),
        ).SerializeToString())
    done = subprocess.run([binary, "--testing", "--no-hotels", "--replay", ok_path],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    assert "/nngrpc.testing.v1.Testing/Echo: OK (4 bytes of output)" in done.stdout
    missing = subprocess.run([binary, "--no-hotels", "--replay", "/nonexistent"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_reload_under_load_in_process_mode(binary: str, workdir: str) -> None:
    http_port = free_port()
    server = start(binary, workdir, "process",
                   ["--hotels", "3000", "--http", "127.0.0.1:%d" % http_port])
    try:
        first = set(zygote_children(server))
        # The service's gauges are read where the dataset is: the zygote.
        assert "\nhotel_dataset_hotels 3000\n" in metrics(http_port)
        with Load(server.tcp, threads=4, search=True) as load:
            assert wait_for(lambda: load.ok > 50)
            with nngrpc.Channel(server.tcp) as ch:
                h = hotel_nngrpc.HotelSearchStub(ch)
                assert h.Stats(hotel_pb2.StatsRequest(), timeout=10).hotel_count == 3000
                resp = h.Reload(hotel_pb2.ReloadRequest(
                    generate=hotel_pb2.GeneratedDataset(count=4000, seed=7)),
                    timeout=60)
                assert resp.stats.hotel_count == 4000
                # Every call after the answer sees the new dataset.
                for _ in range(20):
                    assert h.Stats(hotel_pb2.StatsRequest(),
                                   timeout=10).hotel_count == 4000
            before = load.ok
            assert wait_for(lambda: load.ok > before + 50)
        assert not load.failures, load.failures[:5]
        # The old generation left; a full new one serves.
        assert wait_for(lambda: len(zygote_children(server)) == WORKERS + SPARES)
        assert not first & set(zygote_children(server))
        text = metrics(http_port)
        assert "\nhotel_dataset_hotels 4000\n" in text, text
        assert "\nhotel_dataset_reloads_total 1\n" in text, text
    finally:
        stop_server(server)


def test_flags_environment_and_print_config(binary: str) -> None:
    env = dict(os.environ, NNGRPC_ISOLATION="process", NNGRPC_CRASH_DIR="/tmp/x")
    out = subprocess.run([binary, "--print-config"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for line in ("isolation = process", "worker-memory-mb = 1024",
                 "deadline-grace = 1", "crash-dir = /tmp/x",
                 "poison-pill-crashes = 3", "poison-pill-window = 60",
                 "worker-seccomp = true"):
        assert line in out.stdout.splitlines(), out.stdout
    flag = subprocess.run([binary, "--isolation", "thread", "--print-config"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert "isolation = thread" in flag.stdout.splitlines()
    bad = subprocess.run([binary, "--isolation", "fork"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2
    assert "--isolation: must be thread or process, got 'fork'" in bad.stderr
    assert "--isolation VALUE" in subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=30).stdout


def test_unknown_crash_kind_and_inline_methods_in_process_mode(
    binary: str, workdir: str
) -> None:
    server = start(binary, workdir, "process", ["--hotels", "1000"])
    try:
        err = crash(server.tcp, 99)
        assert err.code() == nngrpc.StatusCode.INVALID_ARGUMENT
        with nngrpc.Channel(server.tcp) as ch:
            # GetHotel reads the dataset: a worker's call in process mode.
            h = hotel_nngrpc.HotelSearchStub(ch)
            assert h.GetHotel(hotel_pb2.GetHotelRequest(id=1), timeout=10).id == 1
            assert h.Stats(hotel_pb2.StatsRequest(), timeout=10).hotel_count == 1000
    finally:
        stop_server(server)


def test_a_lost_zygote_drains_and_ends_the_server(binary: str, workdir: str) -> None:
    """With no zygote no worker can be replaced: the server says so, drains
    and exits 1, so that its orchestrator starts a whole new one."""
    server = start(binary, workdir, "process", ["--no-hotels"])
    try:
        out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True,
                             text=True, check=True).stdout
        zygote = [int(p) for p, pp in (l.split() for l in out.splitlines())
                  if int(pp) == server.proc.pid]
        assert len(zygote) == 1
        os.kill(zygote[0], signal.SIGKILL)
        assert server.proc.wait(timeout=30) == 1
        assert "isolation: the zygote (pid %d) is gone" % zygote[0] in server.log()
    finally:
        kill_hard(server)
