"""A mixed workload for the leak run (test_leaks.py) and the soak (soak.py):
every method of every service hoteld serves, valid and invalid inputs, and
a stream of hostile connections.

MixedCalls()(channel, k) makes call k (chosen from k and a seed, so a run
is reproducible) and returns its StatusCode name; its counts say what ran.
hostile_once() makes one hostile connection (random bytes, truncated,
oversize, garbage envelope, a request dropped before its reply, a client
that reads its replies late).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from typing import Callable, Dict, List, Optional, Tuple

import nngrpc
from faultlib import ECHO, FAIL, SLEEP, RawConn, envelope, req_body, sp_frame
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.health.v1 import health_nngrpc, health_pb2
from nngrpc.reflection.v1 import reflection_nngrpc, reflection_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

AMENITIES = [
    "wifi", "pool", "spa", "gym", "parking", "breakfast", "pets", "beach",
    "restaurant", "bar", "air_conditioning", "sauna",
]
WORDS = ["spa", "pool", "paris", "hotel", "beach", "grand", "royal", "garden",
         "old", "town", "family", "view", "berlin", "rome", "zzzz", "é", "東京"]
GEO = [(48.8566, 2.3522), (52.52, 13.405), (41.9028, 12.4964), (40.4168, -3.7038),
       (0.0, 0.0), (89.9, 179.9), (-33.86, 151.2)]
SERVICES = ["", "hotel.v1.HotelSearch", "nngrpc.testing.v1.Testing", "no.such.Service"]
SYMBOLS = ["hotel.v1.HotelSearch", "hotel.v1.SearchRequest", "nngrpc.health.v1.Health",
           "nngrpc.testing.v1.Testing.Echo", "no.such.Symbol", ""]
METHODS = [
    "/hotel.v1.HotelSearch/Search", "/hotel.v1.HotelSearch/GetHotel",
    "/hotel.v1.HotelSearch/Suggest", "/hotel.v1.HotelSearch/Stats",
    ECHO, SLEEP, FAIL, "/nngrpc.health.v1.Health/Check",
    "/nngrpc.reflection.v1.Reflection/ListServices",
]


class _Stubs:
    __slots__ = ("hotels", "testing", "health", "refl", "ch")

    def __init__(self, ch: nngrpc.Channel) -> None:
        self.ch = ch
        self.hotels = hotel_nngrpc.HotelSearchStub(ch)
        self.testing = testing_nngrpc.TestingStub(ch)
        self.health = health_nngrpc.HealthStub(ch)
        self.refl = reflection_nngrpc.ReflectionStub(ch)


class MixedCalls:
    """Calls for open_loop() or a closed loop.  Weights are per 100 calls.

    reload_count: hotels in a Reload(generate) (rarely, weight 0.2%; the
    soak keeps the dataset's size); None: no Reload.  hotels: whether the
    hotel service is served.  max_sleep_ms: Sleep's range (0..max)."""

    OPS: List[Tuple[str, float]] = [
        ("search", 22), ("search_page2", 4), ("get_hotel", 10), ("suggest", 10),
        ("stats", 3), ("echo", 12), ("sleep", 6), ("sleep_deadline", 2), ("fail", 5),
        ("health", 5), ("reflection", 4), ("bad_payload", 5), ("unknown_method", 2),
        ("bad_search", 5), ("big_metadata", 1), ("reload", 0.2),
    ]

    def __init__(
        self,
        seed: int = 1,
        hotels: bool = True,
        reload_count: Optional[int] = 2000,
        max_sleep_ms: int = 5,
        timeout: float = 2.0,
    ) -> None:
        self.seed = seed
        self.hotels = hotels
        self.reload_count = reload_count
        self.max_sleep_ms = max_sleep_ms
        self.timeout = timeout
        ops = [(n, w) for n, w in self.OPS if hotels or not n.startswith(
            ("search", "get_hotel", "suggest", "stats", "bad_search", "reload"))]
        if reload_count is None:
            ops = [(n, w) for n, w in ops if n != "reload"]
        self._names = [n for n, _ in ops]
        self._weights = [w for _, w in ops]
        self._lock = threading.Lock()
        self.counts: Dict[Tuple[str, str], int] = {}
        self._stubs: Dict[int, _Stubs] = {}

    def _stubs_for(self, ch: nngrpc.Channel) -> _Stubs:
        s = self._stubs.get(id(ch))
        if s is None or s.ch is not ch:
            s = self._stubs[id(ch)] = _Stubs(ch)
        return s

    def __call__(self, ch: nngrpc.Channel, k: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + k)
        op = rng.choices(self._names, self._weights)[0]
        s = self._stubs_for(ch)
        try:
            getattr(self, "_" + op)(s, rng)
            code = "OK"
        except nngrpc.RpcError as e:
            code = e.code().name
        with self._lock:
            self.counts[(op, code)] = self.counts.get((op, code), 0) + 1
        return code

    def summary(self) -> str:
        ops: Dict[str, Dict[str, int]] = {}
        for (op, code), n in sorted(self.counts.items()):
            ops.setdefault(op, {})[code] = n
        return "; ".join(
            "%s %s" % (op, " ".join("%s=%d" % kv for kv in sorted(codes.items())))
            for op, codes in sorted(ops.items())
        )

    def total(self) -> int:
        return sum(self.counts.values())

    # ---- the operations -------------------------------------------------------------
    def _search_request(self, rng: random.Random) -> hotel_pb2.SearchRequest:
        req = hotel_pb2.SearchRequest(
            query=" ".join(rng.sample(WORDS, rng.randrange(0, 4))),
            sort=rng.randrange(0, 4),
            page_size=rng.choice([1, 5, 10, 20, 100]),
            facets=rng.random() < 0.3,
            top_cities=rng.randrange(0, 11),
        )
        if rng.random() < 0.4 or req.sort == hotel_pb2.SORT_DISTANCE:
            lat, lon = rng.choice(GEO)
            req.geo.CopyFrom(hotel_pb2.GeoFilter(
                latitude=lat, longitude=lon, radius_km=rng.choice([1, 5, 50, 500, 20000])))
        if rng.random() < 0.3:
            req.min_stars = rng.randrange(0, 6)
        if rng.random() < 0.3:
            req.max_price_cents = rng.randrange(0, 100_000)
        if rng.random() < 0.3:
            req.amenities.extend(rng.sample(AMENITIES, rng.randrange(1, 4)))
        return req

    def _search(self, s: _Stubs, rng: random.Random) -> None:
        s.hotels.Search(self._search_request(rng), timeout=self.timeout)

    def _search_page2(self, s: _Stubs, rng: random.Random) -> None:
        req = self._search_request(rng)
        first = s.hotels.Search(req, timeout=self.timeout)
        if first.next_page_token:
            req.page_token = first.next_page_token
            s.hotels.Search(req, timeout=self.timeout)

    def _bad_search(self, s: _Stubs, rng: random.Random) -> None:
        bad = rng.choice([
            hotel_pb2.SearchRequest(page_size=1000),
            hotel_pb2.SearchRequest(page_token="not-a-token"),
            hotel_pb2.SearchRequest(amenities=["jacuzzi"]),
            hotel_pb2.SearchRequest(query=" ".join(["w%d" % i for i in range(40)])),
            hotel_pb2.SearchRequest(geo=hotel_pb2.GeoFilter(latitude=91, longitude=0, radius_km=1)),
            hotel_pb2.SearchRequest(max_price_cents=-1),
            hotel_pb2.SearchRequest(top_cities=1000),
        ])
        s.hotels.Search(bad, timeout=self.timeout)

    def _get_hotel(self, s: _Stubs, rng: random.Random) -> None:
        s.hotels.GetHotel(hotel_pb2.GetHotelRequest(id=rng.randrange(0, 30_000)), timeout=self.timeout)

    def _suggest(self, s: _Stubs, rng: random.Random) -> None:
        prefix = "".join(rng.choice("abcdefghilmnoprstuvé ") for _ in range(rng.randrange(0, 6)))
        s.hotels.Suggest(
            hotel_pb2.SuggestRequest(prefix=prefix, limit=rng.choice([0, 1, 5, 10, 50, 51])),
            timeout=self.timeout,
        )

    def _stats(self, s: _Stubs, rng: random.Random) -> None:
        s.hotels.Stats(hotel_pb2.StatsRequest(), timeout=self.timeout)

    def _echo(self, s: _Stubs, rng: random.Random) -> None:
        n = rng.choice([0, 1, 100, 1024, 16384, 65536, 262144])
        data = os.urandom(n)
        if s.testing.Echo(testing_pb2.EchoRequest(payload=data), timeout=self.timeout).payload != data:
            raise nngrpc.RpcError.of(nngrpc.StatusCode.DATA_LOSS, "echo differs")

    def _sleep(self, s: _Stubs, rng: random.Random) -> None:
        s.testing.Sleep(testing_pb2.SleepRequest(ms=rng.randrange(0, self.max_sleep_ms + 1)),
                        timeout=self.timeout)

    def _sleep_deadline(self, s: _Stubs, rng: random.Random) -> None:
        s.testing.Sleep(testing_pb2.SleepRequest(ms=200), timeout=0.02)

    def _fail(self, s: _Stubs, rng: random.Random) -> None:
        s.testing.Fail(testing_pb2.FailRequest(
            code=rng.randrange(-1, 18), message=rng.choice(["", "boom", "é" * 300, "x" * 2000])),
            timeout=self.timeout)

    def _health(self, s: _Stubs, rng: random.Random) -> None:
        s.health.Check(health_pb2.HealthCheckRequest(service=rng.choice(SERVICES)), timeout=self.timeout)

    def _reflection(self, s: _Stubs, rng: random.Random) -> None:
        if rng.random() < 0.3:
            s.refl.ListServices(reflection_pb2.ListServicesRequest(), timeout=self.timeout)
        else:
            s.refl.FileContainingSymbol(
                reflection_pb2.FileContainingSymbolRequest(symbol=rng.choice(SYMBOLS)),
                timeout=self.timeout)

    def _bad_payload(self, s: _Stubs, rng: random.Random) -> None:
        s.ch.call(rng.choice(METHODS), rng.choice([b"\xff", b"\x0a\x05ab", b"\x0f", os.urandom(64)]),
                  timeout=self.timeout)

    def _unknown_method(self, s: _Stubs, rng: random.Random) -> None:
        s.ch.call(rng.choice(["/no.Such/Method", "", "/hotel.v1.HotelSearch/", "x" * 300]), b"",
                  timeout=self.timeout)

    def _big_metadata(self, s: _Stubs, rng: random.Random) -> None:
        md = {"k%d" % i: "v" * rng.randrange(0, 20) for i in range(rng.choice([10, 1000, 20000]))}
        s.testing.Echo(testing_pb2.EchoRequest(payload=b"m"), timeout=self.timeout, metadata=md)

    def _reload(self, s: _Stubs, rng: random.Random) -> None:
        assert self.reload_count is not None
        s.hotels.Reload(hotel_pb2.ReloadRequest(generate=hotel_pb2.GeneratedDataset(
            count=self.reload_count, seed=rng.randrange(1, 1000))), timeout=max(self.timeout, 30.0))


# ---- hostile connections ---------------------------------------------------------------
def _random_bytes(port: int, rng: random.Random) -> None:
    with RawConn(port) as c:
        c.send(rng.randbytes(rng.randrange(1, 2048)))


def _truncated(port: int, rng: random.Random) -> None:
    with RawConn(port) as c:
        c.handshake()
        c.send(struct.pack(">Q", rng.randrange(100, 100000)) + b"\x80\x00\x00\x01abc")


def _oversize(port: int, rng: random.Random) -> None:
    with RawConn(port) as c:
        c.handshake()
        c.send(struct.pack(">Q", rng.choice([2**63, 2**40, 64 * 1024 * 1024])) + b"\x80\x00\x00\x01")
        c.closed_by_peer(2.0)


def _garbage_envelope(port: int, rng: random.Random) -> None:
    with RawConn(port) as c:
        c.handshake()
        c.call(rng.randbytes(rng.randrange(0, 512)), rid=rng.randrange(1, 2**31))


def _dropped_before_reply(port: int, rng: random.Random) -> None:
    with RawConn(port) as c:
        c.handshake()
        c.send(sp_frame(req_body(envelope(SLEEP, testing_pb2.SleepRequest(ms=30).SerializeToString(),
                                          1_000_000), 1)))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _late_reader(port: int, rng: random.Random) -> None:
    """Pipelines 20 Echo requests of 64 KiB, then reads the replies.  (Not
    a reset while hoteld still receives: that wedges libnng 1.5.2, see
    test_hostile.py::test_abrupt_disconnects_do_not_leak_descriptors.)"""
    env = envelope(ECHO, testing_pb2.EchoRequest(payload=b"n" * 65536).SerializeToString())
    with RawConn(port, timeout=2.0) as c:
        c.handshake()
        for i in range(20):
            c.send(sp_frame(req_body(env, i + 1)))
        for i in range(20):
            c.recv_response(i + 1)


HOSTILE: List[Callable[[int, random.Random], None]] = [
    _random_bytes, _truncated, _oversize, _garbage_envelope, _dropped_before_reply, _late_reader,
]


# With libnng < 1.6.0 a pipelining client that goes away wedges hoteld's
# connection cleanup and its exit (nanomsg/nng#1636): a leak run that
# wants a clean exit at the end leaves it out there (test_hostile.py has
# the test for that bug).
WEDGES_OLD_NNG = {"late_reader"}


def hostile_once(port: int, rng: random.Random, skip: Tuple[str, ...] = ()) -> str:
    """One hostile connection; returns its name.  Errors on our side (the
    server closing on us) are expected and ignored.  skip: names to leave
    out."""
    fns = [f for f in HOSTILE if f.__name__.lstrip("_") not in skip]
    fn = rng.choice(fns)
    try:
        fn(port, rng)
    except (OSError, TimeoutError, AssertionError):
        pass
    except Exception as e:  # a reply that does not decode, ...
        if type(e).__name__ != "DecodeError":
            raise
    return fn.__name__.lstrip("_")
