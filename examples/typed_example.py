#!/usr/bin/env python3
"""The nngrpc client as a typed program uses it; checked by mypy --strict.

    build/venv/bin/python examples/typed_example.py [--url tcp://127.0.0.1:5555]

Start a server first (``make run`` or ``build/bin/hoteld``).  The example
checks the server's health, searches with a deadline and reads the
server's timings from ``with_call``, handles errors by status code (a
missing hotel is NOT_FOUND, a deadline too short is DEADLINE_EXCEEDED),
lists the server's services through reflection, then runs searches
concurrently on one asyncio channel (``nngrpc.aio``).  Every value has a
static type: the generated ``.pyi`` stubs type the requests, responses and
stub methods, and tests/integration/test_mypy.py runs ``mypy --strict`` on
this file and on the nngrpc package.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import List, Optional, Sequence, Tuple, TypeVar

import nngrpc
import nngrpc.aio
import nngrpc.health
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.reflection import ReflectionClient

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def timed_call(
    method: nngrpc.UnaryUnaryMultiCallable[Req, Resp],
    request: Req,
    timeout: float,
) -> Tuple[Resp, str]:
    """Calls any stub method; returns its response and where time went."""
    response, call = method.with_call(request, timeout=timeout)
    return response, "queued %d us, ran %d us" % (call.queue_us, call.run_us)


def hotel_names(resp: hotel_pb2.SearchResponse) -> List[str]:
    return [hit.hotel.name for hit in resp.hits]


def get_hotel(
    stub: hotel_nngrpc.HotelSearchStub, hotel_id: int, timeout: float
) -> Optional[hotel_pb2.Hotel]:
    """The hotel, or None when the server has no such id."""
    try:
        return stub.GetHotel(hotel_pb2.GetHotelRequest(id=hotel_id), timeout=timeout)
    except nngrpc.RpcError as e:
        if e.code() is nngrpc.StatusCode.NOT_FOUND:
            return None
        raise


async def search_totals(url: str, queries: Sequence[str], timeout: float) -> List[int]:
    """The hit count of each query: all searches in flight at once on one
    asyncio channel, no thread per call."""
    async with nngrpc.aio.Channel(url) as channel:
        stub = hotel_nngrpc.HotelSearchAsyncStub(channel)
        responses = await asyncio.gather(
            *(stub.Search(hotel_pb2.SearchRequest(query=q), timeout=timeout) for q in queries)
        )
        try:
            await stub.GetHotel(hotel_pb2.GetHotelRequest(id=2**63), timeout=timeout)
        except nngrpc.RpcError as e:
            if e.code() is not nngrpc.StatusCode.NOT_FOUND:  # errors are the same as sync
                raise
        return [r.total for r in responses]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Typed use of the nngrpc client.")
    parser.add_argument("--url", default="tcp://127.0.0.1:5555", help="hoteld address")
    parser.add_argument("--timeout", type=float, default=5.0, help="per call, seconds")
    args = parser.parse_args(argv)
    url: str = args.url
    timeout: float = args.timeout

    with nngrpc.Channel(url) as channel:
        try:
            status = nngrpc.health.check(channel, "hotel.v1.HotelSearch", timeout=timeout)
            print("health: %s" % status.name)
            if status is not nngrpc.health.ServingStatus.SERVING:
                return 1

            stub = hotel_nngrpc.HotelSearchStub(channel)
            request = hotel_pb2.SearchRequest(
                query="hotel", sort=hotel_pb2.SORT_RATING, page_size=3
            )
            resp, timings = timed_call(stub.Search, request, timeout)
            total: int = resp.total
            print("search: %d hits (%s)" % (total, timings))
            for name in hotel_names(resp):
                print("  %s" % name)

            if resp.hits:
                hotel = get_hotel(stub, resp.hits[0].hotel.id, timeout)
                if hotel is not None:
                    print("top hotel: %s, %s (%.1f/10)" % (hotel.name, hotel.city, hotel.rating))
            missing = get_hotel(stub, 2**63, timeout)
            print("hotel 2**63: %s" % ("missing" if missing is None else missing.name))

            try:
                stub.Search(hotel_pb2.SearchRequest(query="a", facets=True), timeout=1e-6)
                print("a 1 us search finished in time")
            except nngrpc.RpcError as e:
                code: nngrpc.StatusCode = e.code()
                print("1 us deadline: %s" % code.name)

            services: List[str] = ReflectionClient(channel, timeout=timeout).list_services()
            print("services: %s" % ", ".join(services))
        except nngrpc.RpcError as e:
            print("failed: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 1
    queries = ["hotel", "spa", "paris", "beach"]
    try:
        totals = asyncio.run(search_totals(url, queries, timeout))
    except nngrpc.RpcError as e:
        print("aio failed: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    print("aio: %s" % ", ".join("%s=%d" % qt for qt in zip(queries, totals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
