"""Smoke tests of a hoteld container through its published port.

docker/test.sh starts the image with NNGRPC_TESTING=1 and a small dataset,
waits until Docker reports it healthy, then runs

    build/venv/bin/python -m pytest tests/docker/test_container.py \
        --url tcp://127.0.0.1:PORT --hotels 20000 --testing

Everything goes over the real path: host loopback, Docker's port
publishing, the container's network namespace, hoteld as uid 10001 on a
read-only root file system.
"""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

import nngrpc
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

HEALTH_CHECK = "/nngrpc.health.v1.Health/Check"


def health_request(service: str) -> bytes:
    """nngrpc.health.v1.HealthCheckRequest, encoded by hand (the health
    proto's Python module is not in the nngrpc package)."""
    raw = service.encode()
    if not raw:
        return b""
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw


@pytest.fixture(scope="module")
def channel(url: str):  # type: ignore[no-untyped-def]
    with nngrpc.Channel(url) as ch:
        yield ch


def test_health_serving(channel: nngrpc.Channel) -> None:
    check: nngrpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_CHECK)
    assert check(health_request(""), timeout=2.0) == b"\x08\x01"  # SERVING


def test_health_unknown_service_is_not_found(channel: nngrpc.Channel) -> None:
    check: nngrpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_CHECK)
    with pytest.raises(nngrpc.RpcError) as e:
        check(health_request("no.such.Service"), timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.NOT_FOUND


def test_unknown_method_is_unimplemented(channel: nngrpc.Channel) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        channel.call("/no.such.Service/Method", b"", timeout=2.0)
    assert e.value.code() is nngrpc.StatusCode.UNIMPLEMENTED


@pytest.fixture(scope="module")
def testing(request: pytest.FixtureRequest, channel: nngrpc.Channel) -> testing_nngrpc.TestingStub:
    if not request.config.getoption("--testing"):
        pytest.skip("server runs without --testing")
    return testing_nngrpc.TestingStub(channel)


def test_echo(testing: testing_nngrpc.TestingStub) -> None:
    payload = bytes(range(256)) * 256  # 64 KiB through the published port
    resp = testing.Echo(testing_pb2.EchoRequest(payload=payload), timeout=2.0)
    assert resp.payload == payload


def test_deadline_reaches_the_server(testing: testing_nngrpc.TestingStub) -> None:
    start = time.monotonic()
    with pytest.raises(nngrpc.RpcError) as e:
        testing.Sleep(testing_pb2.SleepRequest(ms=5000), timeout=0.2)
    assert e.value.code() is nngrpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 2.0


def test_concurrent_calls_share_one_channel(testing: testing_nngrpc.TestingStub) -> None:
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                data = b"%d-%d" % (n, i)
                resp = testing.Echo(testing_pb2.EchoRequest(payload=data), timeout=2.0)
                assert resp.payload == data
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_crash_fails_only_its_own_call(testing: testing_nngrpc.TestingStub) -> None:
    """The image runs the engine in worker processes (NNGRPC_ISOLATION=
    process): a handler that segfaults fails its own call with INTERNAL,
    while calls around it, before, during and after, all succeed."""
    errors: List[BaseException] = []
    stop = threading.Event()

    def echo_until_stopped() -> None:
        try:
            while not stop.is_set():
                testing.Echo(testing_pb2.EchoRequest(payload=b"around"), timeout=2.0)
                testing.Sleep(testing_pb2.SleepRequest(ms=1), timeout=2.0)
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=echo_until_stopped) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):  # under the poison-pill guard's 3
            with pytest.raises(nngrpc.RpcError) as e:
                testing.Crash(testing_pb2.CrashRequest(kind=testing_pb2.CRASH_SEGFAULT), timeout=5.0)
            assert e.value.code() is nngrpc.StatusCode.INTERNAL, e.value
            assert "SIGSEGV" in e.value.details(), e.value.details()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert testing.Echo(testing_pb2.EchoRequest(payload=b"after"), timeout=2.0).payload == b"after"


@pytest.fixture(scope="module")
def hotels(channel: nngrpc.Channel):  # type: ignore[no-untyped-def]
    try:
        from hotel.v1 import hotel_nngrpc, hotel_pb2
    except ImportError:
        pytest.skip("no generated hotel stubs")
    stub = hotel_nngrpc.HotelSearchStub(channel)
    try:
        stub.Stats(hotel_pb2.StatsRequest(), timeout=5.0)
    except nngrpc.RpcError as e:
        if e.code() is nngrpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("this hoteld has no hotel.v1.HotelSearch yet")
        raise
    return stub, hotel_pb2


def test_stats(request: pytest.FixtureRequest, hotels) -> None:  # type: ignore[no-untyped-def]
    stub, pb = hotels
    stats = stub.Stats(pb.StatsRequest(), timeout=5.0)
    expected = request.config.getoption("--hotels")
    if expected is not None:
        assert stats.hotel_count == expected
    assert stats.hotel_count > 0
    assert stats.dataset_id


def test_search(hotels) -> None:  # type: ignore[no-untyped-def]
    stub, pb = hotels
    resp = stub.Search(pb.SearchRequest(query="hotel", page_size=5), timeout=5.0)
    assert 0 < len(resp.hits) <= 5
    hotel = stub.GetHotel(pb.GetHotelRequest(id=resp.hits[0].hotel.id), timeout=5.0)
    assert hotel.id == resp.hits[0].hotel.id
