"""nngrpc.health.v1.Health through a real hoteld and nngrpc.health.check:
per-service states, NOT_FOUND for an unknown service, NOT_SERVING while
draining after SIGTERM (calls in flight still answered, exit 0), and
NOT_SERVING while the hotel dataset is being built at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List

import pytest

import nngrpc
import nngrpc.health
from hoteld_fixture import Server, free_port, start_server, stop_server
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.health import ServingStatus
from nngrpc.health.v1 import health_nngrpc, health_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

SERVING = ServingStatus.SERVING
NOT_SERVING = ServingStatus.NOT_SERVING
HOTEL = "hotel.v1.HotelSearch"
TESTING = "nngrpc.testing.v1.Testing"


def _binary(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--hoteld"))


# ---- a serving server (the session's: --testing and 100000 hotels) -----------


@pytest.mark.parametrize("service", [
    "", HOTEL, TESTING, "nngrpc.health.v1.Health", "nngrpc.reflection.v1.Reflection",
])
def test_serving_after_start(channel: nngrpc.Channel, service: str) -> None:
    assert nngrpc.health.check(channel, service, timeout=5.0) is SERVING


def test_check_matches_the_raw_stub(channel: nngrpc.Channel) -> None:
    stub = health_nngrpc.HealthStub(channel)
    resp, call = stub.Check.with_call(health_pb2.HealthCheckRequest(service=HOTEL), timeout=5.0)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING == int(SERVING)
    assert call.code() is nngrpc.StatusCode.OK


@pytest.mark.parametrize("service", ["nope.v1.Nope", "hotel.v1.HotelSearch.Search", "hotel"])
def test_unknown_service_is_not_found(channel: nngrpc.Channel, service: str) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        nngrpc.health.check(channel, service, timeout=5.0)
    assert e.value.code() is nngrpc.StatusCode.NOT_FOUND, e.value


def test_no_server_is_unavailable() -> None:
    with nngrpc.Channel("tcp://127.0.0.1:%d" % free_port()) as ch:
        with pytest.raises(nngrpc.RpcError) as e:
            nngrpc.health.check(ch, timeout=5.0)
    assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE


def test_serving_status_from_int() -> None:
    assert ServingStatus.from_int(1) is SERVING
    assert ServingStatus.from_int(2) is NOT_SERVING
    assert ServingStatus.from_int(99) is ServingStatus.UNKNOWN
    for name, number in health_pb2.HealthCheckResponse.ServingStatus.items():
        assert ServingStatus[name] == number


# ---- drain after SIGTERM ------------------------------------------------------


@pytest.fixture
def drained(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of our own, for a test that stops it."""
    with tempfile.TemporaryDirectory(prefix="nngrpc-health-") as workdir:
        server = start_server(_binary(request), workdir, [
            "--hotels", "2000", "--log-level", "debug", "--log-format", "json",
            "--drain-timeout", "60",
        ])
        try:
            yield server
        finally:
            stop_server(server)


def _started(server: Server, request_id: str) -> bool:
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg", "").startswith("call ") and entry.get("request_id") == request_id:
            return True
    return False


def test_drain_turns_not_serving_and_finishes_calls(drained: Server) -> None:
    with nngrpc.Channel(drained.tcp, deadline_grace=10.0) as ch:
        assert nngrpc.health.check(ch, timeout=5.0) is SERVING
        assert nngrpc.health.check(ch, HOTEL, timeout=5.0) is SERVING
        stub = testing_nngrpc.TestingStub(ch)
        with ThreadPoolExecutor(max_workers=1) as pool:
            sleeping = pool.submit(
                stub.Sleep.with_call, testing_pb2.SleepRequest(ms=3000), timeout=60.0,
                metadata={"nngrpc-request-id": "drain-sleep"},
            )
            end = time.monotonic() + 10
            while not _started(drained, "drain-sleep"):
                assert time.monotonic() < end, drained.log()
                time.sleep(0.005)
            t_term = time.monotonic()
            drained.proc.send_signal(signal.SIGTERM)

            # Health answers (it stays open while draining) NOT_SERVING,
            # for the server and each service.
            end = time.monotonic() + 5
            while nngrpc.health.check(ch, timeout=5.0) is not NOT_SERVING:
                assert time.monotonic() < end, "still SERVING after SIGTERM"
                time.sleep(0.01)
            assert nngrpc.health.check(ch, HOTEL, timeout=5.0) is NOT_SERVING
            assert nngrpc.health.check(ch, TESTING, timeout=5.0) is NOT_SERVING
            # New calls are refused meanwhile.
            with pytest.raises(nngrpc.RpcError) as e:
                stub.Echo(testing_pb2.EchoRequest(payload=b"x"), timeout=5.0)
            assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE, e.value
            # The command line says so too, with exit status 14.
            cli = subprocess.run(
                [sys.executable, "-m", "nngrpc", drained.tcp, "health"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            )
            assert (cli.returncode, cli.stdout.strip()) == (14, "NOT_SERVING"), cli
            assert drained.proc.poll() is None, "exited with a call in flight"

            # The call in flight is answered OK, then the process exits 0.
            resp, call = sleeping.result(timeout=60)
        assert call.code() is nngrpc.StatusCode.OK
        assert resp.slept_us >= 3_000_000
    drained.proc.wait(timeout=60)
    assert drained.proc.returncode == 0, drained.log()
    assert time.monotonic() - t_term < 30
    # stop_server (the fixture) checks the log for sanitizer reports.


# ---- NOT_SERVING while starting ---------------------------------------------


def test_hotel_service_not_serving_while_its_dataset_builds(request: pytest.FixtureRequest) -> None:
    """hoteld listens before it builds the dataset, and the hotel service
    says NOT_SERVING until it is ready (a big dataset takes seconds)."""
    binary = _binary(request)
    with tempfile.TemporaryDirectory(prefix="nngrpc-health-start-") as workdir:
        tcp = "tcp://127.0.0.1:%d" % free_port()
        log_path = os.path.join(workdir, "hoteld.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary, "--listen", tcp, "--hotels", "1000000"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        server = Server(tcp=tcp, ipc="", proc=proc, log_path=log_path, workers=0)
        seen: List[str] = []
        searched_unavailable = False
        try:
            end = time.monotonic() + 180
            with nngrpc.Channel(tcp, backoff=0.01, backoff_max=0.05) as ch:
                hotels = hotel_nngrpc.HotelSearchStub(ch)
                while time.monotonic() < end:
                    assert proc.poll() is None, "hoteld exited:\n" + server.log()
                    try:
                        status = nngrpc.health.check(ch, HOTEL, timeout=5.0).name
                    except nngrpc.RpcError as e:
                        status = e.code().name  # not listening yet (or not registered)
                    if not seen or seen[-1] != status:
                        seen.append(status)
                    if status == "SERVING":
                        break
                    if status == "NOT_SERVING" and not searched_unavailable:
                        with pytest.raises(nngrpc.RpcError) as e:
                            hotels.Search(hotel_pb2.SearchRequest(query="x"), timeout=5.0)
                        assert e.value.code() is nngrpc.StatusCode.UNAVAILABLE, e.value
                        searched_unavailable = True
                    time.sleep(0.01)
                assert seen and seen[-1] == "SERVING", "never SERVING: %s\n%s" % (seen, server.log())
                assert "NOT_SERVING" in seen, (seen, server.log())
                assert seen.index("NOT_SERVING") < seen.index("SERVING")
                assert searched_unavailable
                assert hotels.Search(hotel_pb2.SearchRequest(query="hotel"), timeout=30.0).total > 0
        finally:
            stop_server(server)
