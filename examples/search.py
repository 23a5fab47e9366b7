#!/usr/bin/env python3
"""Search hotels near a point with the nngrpc Python client.

    build/venv/bin/python examples/search.py [--url tcp://127.0.0.1:5555]

Start a server first (``make run``, or ``build/bin/hoteld``).  The example
looks for "hotel" within 5 km of the Eiffel Tower, nearest first, prints the
first page, fetches the next page with its page token, then fetches the
nearest hotel by id with GetHotel.
"""

from __future__ import annotations

import argparse
import sys

import nngrpc
from hotel.v1 import hotel_nngrpc, hotel_pb2

EIFFEL_TOWER = (48.8584, 2.2945)


def print_page(title: str, resp: hotel_pb2.SearchResponse) -> None:
    print("%s (%d hits in all, dataset %s)" % (title, resp.total, resp.dataset_id))
    for hit in resp.hits:
        h = hit.hotel
        print(
            "  %6.2f km  %-40s %s  %.1f/10  %7.2f/night  id %d"
            % (hit.distance_km, h.name[:40], "*" * h.stars, h.rating, h.price_cents / 100, h.id)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="tcp://127.0.0.1:5555", help="hoteld address")
    parser.add_argument("--query", default="hotel", help="words to search for")
    parser.add_argument("--radius-km", type=float, default=5.0)
    parser.add_argument("--page-size", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0, help="per call, seconds")
    args = parser.parse_args(argv)

    with nngrpc.Channel(args.url) as channel:
        stub = hotel_nngrpc.HotelSearchStub(channel)
        req = hotel_pb2.SearchRequest(
            query=args.query,
            geo=hotel_pb2.GeoFilter(
                latitude=EIFFEL_TOWER[0], longitude=EIFFEL_TOWER[1], radius_km=args.radius_km
            ),
            sort=hotel_pb2.SORT_DISTANCE,
            page_size=args.page_size,
        )
        try:
            first = stub.Search(req, timeout=args.timeout)
            print_page("Page 1: %r within %g km of the Eiffel Tower" % (args.query, args.radius_km), first)
            if first.next_page_token:
                # The same request with the token gives the next page.
                req.page_token = first.next_page_token
                print_page("Page 2", stub.Search(req, timeout=args.timeout))
            if first.hits:
                hotel = stub.GetHotel(
                    hotel_pb2.GetHotelRequest(id=first.hits[0].hotel.id), timeout=args.timeout
                )
                print("Nearest: %s, %s, %s" % (hotel.name, hotel.city, hotel.country))
                print("  amenities: %s" % (", ".join(hotel.amenities) or "none"))
                if hotel.description:
                    print("  %s" % hotel.description)
        except nngrpc.RpcError as e:
            print("search failed: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
