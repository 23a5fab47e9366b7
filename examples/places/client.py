"""A client of placesd (places.v1.Places): the landmarks nearest to a
point, two distances, and the error a wrong name gets.

Run it with a Python that has the nngrpc wheel and the places stubs
installed (docs/adopting.md makes that venv):

    venv/bin/python client.py tcp://127.0.0.1:5600
"""

from __future__ import annotations

import sys

import nngrpc
from places.v1 import places_nngrpc, places_pb2


def main(url: str) -> int:
    with nngrpc.Channel(url) as channel:
        places = places_nngrpc.PlacesStub(channel)
        near = places.Nearest(
            places_pb2.NearestRequest(latitude=48.8566, longitude=2.3522, limit=3),
            timeout=1.0,
        )
        for place in near.places:
            print(f"{place.distance_km:7.1f} km  {place.name}")
        for a, b in (("Eiffel Tower", "Big Ben"), ("Eiffel Tower", "Atlantis")):
            try:
                d = places.Distance(
                    places_pb2.DistanceRequest(origin=a, destination=b), timeout=1.0
                )
                print(f"{a} to {b}: {d.km:.0f} km")
            except nngrpc.RpcError as e:
                print(f"{a} to {b}: {e.code().name}: {e.details()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5600"))
