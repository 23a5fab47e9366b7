#!/usr/bin/python3
"""Writes the fuzzers' seed corpora into tests/fuzz/corpus/<target>/.

Run it from anywhere with Debian's python3 (python3-protobuf) and protoc:

    /usr/bin/python3 tests/fuzz/make_seeds.py

The _pb2 modules are generated with protoc into a temporary directory, so
nothing generated lands in the tree. Every corpus directory is rewritten
from scratch: the seeds are small, meaningful inputs (a valid call of every
method, JSON Lines files, queries with accents), not a grown corpus; those
stay under build/fuzz/. The byte layouts of fuzz_payload and
fuzz_engine_query inputs are the ones described at the top of their .c
files.
"""

import gzip
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PROTO = os.path.join(ROOT, "proto")
CORPUS = os.path.join(HERE, "corpus")

# As in fuzz_dispatch.c.
AUTH = ("authorization", "Bearer fuzz-token")

PROTOS = [
    "nngrpc/v1/rpc.proto",
    "nngrpc/health/v1/health.proto",
    "nngrpc/reflection/v1/reflection.proto",
    "nngrpc/testing/v1/testing.proto",
    "hotel/v1/hotel.proto",
]


def load_modules():
    """Generates the _pb2 modules into a temp dir and imports them."""
    out = tempfile.mkdtemp(prefix="nngrpc-seeds-")
    subprocess.run(
        ["protoc", "-I" + PROTO, "--python_out=" + out] + PROTOS, check=True
    )
    sys.path.insert(0, out)
    mods = {}
    for p in PROTOS:
        name = p[: -len(".proto")].replace("/", ".") + "_pb2"
        mods[p] = importlib.import_module(name)
    return out, mods


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)


def rpc_seeds(m):
    rpc = m["nngrpc/v1/rpc.proto"]
    health = m["nngrpc/health/v1/health.proto"]
    refl = m["nngrpc/reflection/v1/reflection.proto"]
    testing = m["nngrpc/testing/v1/testing.proto"]
    hotel = m["hotel/v1/hotel.proto"]

    # (seed name, service full name, method, request message)
    calls = [
        ("health-all", "nngrpc.health.v1.Health", "Check",
         health.HealthCheckRequest()),
        ("health-hotel", "nngrpc.health.v1.Health", "Check",
         health.HealthCheckRequest(service="hotel.v1.HotelSearch")),
        ("reflection-list", "nngrpc.reflection.v1.Reflection",
         "ListServices", refl.ListServicesRequest()),
        ("reflection-symbol", "nngrpc.reflection.v1.Reflection",
         "FileContainingSymbol",
         refl.FileContainingSymbolRequest(symbol="hotel.v1.SearchRequest")),
        ("echo", "nngrpc.testing.v1.Testing", "Echo",
         testing.EchoRequest(payload=b"hello \xc3\xa9\x00\xff")),
        ("sleep", "nngrpc.testing.v1.Testing", "Sleep",
         testing.SleepRequest(ms=1)),
        ("fail", "nngrpc.testing.v1.Testing", "Fail",
         testing.FailRequest(code=5, message="hôtel 7 not found")),
        ("fail-ok", "nngrpc.testing.v1.Testing", "Fail",
         testing.FailRequest(code=0)),
        # Long non-ASCII messages, just under the runtime's cuts (a
        # 512-byte status message, "%.200s" of a caller's name).
        ("fail-accents", "nngrpc.testing.v1.Testing", "Fail",
         testing.FailRequest(code=9, message="é" * 250)),
        ("health-accents", "nngrpc.health.v1.Health", "Check",
         health.HealthCheckRequest(service="ü" * 99)),
        ("search", "hotel.v1.HotelSearch", "Search",
         hotel.SearchRequest(query="spa paris", page_size=5, facets=True)),
        ("search-geo", "hotel.v1.HotelSearch", "Search",
         hotel.SearchRequest(
             query="hôtel",
             geo=hotel.GeoFilter(latitude=48.8566, longitude=2.3522,
                                 radius_km=50),
             min_stars=3, max_price_cents=30000,
             amenities=["wifi", "AMENITY_SPA"],
             sort=hotel.SORT_DISTANCE, top_cities=3)),
        ("search-token", "hotel.v1.HotelSearch", "Search",
         hotel.SearchRequest(query="zürich", sort=hotel.SORT_PRICE,
                             page_token="not-a-token")),
        ("gethotel", "hotel.v1.HotelSearch", "GetHotel",
         hotel.GetHotelRequest(id=42)),
        ("suggest", "hotel.v1.HotelSearch", "Suggest",
         hotel.SuggestRequest(prefix="São P", limit=5)),
        ("stats", "hotel.v1.HotelSearch", "Stats", hotel.StatsRequest()),
        ("reload-generate", "hotel.v1.HotelSearch", "Reload",
         hotel.ReloadRequest(
             generate=hotel.GeneratedDataset(count=50, seed=3))),
        ("reload-path", "hotel.v1.HotelSearch", "Reload",
         hotel.ReloadRequest(path="/srv/hotels.jsonl")),
    ]

    # fuzz_dispatch: whole envelopes.
    reset("fuzz_dispatch")
    for name, svc, meth, req in calls:
        env = rpc.Request(method="/%s/%s" % (svc, meth),
                          timeout_us=1000000,
                          payload=req.SerializeToString())
        env.metadata[AUTH[0]] = AUTH[1]
        env.metadata["nngrpc-request-id"] = "seed-" + name
        write("fuzz_dispatch", name + ".bin",
              env.SerializeToString(deterministic=True))
    special = {
        "no-auth": rpc.Request(method="/nngrpc.testing.v1.Testing/Echo"),
        "unknown-method": rpc.Request(method="/x.Y/Z", timeout_us=1),
        "no-deadline": rpc.Request(
            method="/nngrpc.health.v1.Health/Check"),
        "bad-payload": rpc.Request(
            method="/hotel.v1.HotelSearch/Search", payload=b"\x0a\xff\xff"),
    }
    # The envelope additions: compressed payloads (gzip, zstd, one that
    # decompresses past the limit, one that is not a stream), an unknown
    # encoding, a compressible reply accepted, -bin metadata sent back.
    echo = testing.EchoRequest(payload=b"abc" * 1000,
                               return_metadata=["x-bin", "bad-bin"])
    gz = gzip.compress(echo.SerializeToString(), mtime=0)
    zs = zstandard.ZstdCompressor(write_content_size=False).compress(
        echo.SerializeToString())
    bomb = gzip.compress(testing.EchoRequest(
        payload=b"\0" * (5 << 20)).SerializeToString(), mtime=0)
    encoded = {
        "gzip-request": ("gzip", gz),
        "zstd-request": ("zstd", zs),
        "gzip-bomb": ("gzip", bomb),
        "gzip-broken": ("gzip", gz[:-7]),
        "unknown-encoding": ("br", echo.SerializeToString()),
    }
    for name, (enc, payload) in encoded.items():
        env = rpc.Request(method="/nngrpc.testing.v1.Testing/Echo",
                          timeout_us=1000000, payload=payload)
        env.metadata[AUTH[0]] = AUTH[1]
        env.metadata["nngrpc-encoding"] = enc
        env.metadata["nngrpc-accept-encoding"] = "zstd, gzip"
        env.metadata["x-bin"] = "AP8A"
        env.metadata["bad-bin"] = "not base64"
        special[name] = env
    for name, env in special.items():
        write("fuzz_dispatch", name + ".bin",
              env.SerializeToString(deterministic=True))

    # fuzz_payload: method index, flags, payload. Indexes are the
    # registration order fuzz_rpc.c uses.
    order = [
        ("nngrpc.health.v1.Health", health),
        ("nngrpc.reflection.v1.Reflection", refl),
        ("nngrpc.testing.v1.Testing", testing),
        ("hotel.v1.HotelSearch", hotel),
    ]
    index = {}
    for svc, mod in order:
        short = svc.rsplit(".", 1)[1]
        for meth in mod.DESCRIPTOR.services_by_name[short].methods:
            index[(svc, meth.name)] = len(index)
    reset("fuzz_payload")
    for name, svc, meth, req in calls:
        flags = 0x01 if "search" in name else 0x04  # metadata; 1 s deadline
        data = bytes([index[(svc, meth)], flags]) + req.SerializeToString()
        write("fuzz_payload", name + ".bin", data)


# ---- fuzz_engine_query ------------------------------------------------------

def query(flags=0, sort=0, page_size=10, min_stars=0, max_price=0,
          amenities=0, top_cities=0, geo=(0.0, 0.0, 0.0), next_size=10,
          token=b"", text=""):
    """The 22-byte header of fuzz_engine_query.c, then token and text."""
    lat = int(round(geo[0] / 90.0 * 32767))
    lon = int(round(geo[1] / 180.0 * 32767))
    rad = int(round(geo[2] * 10))
    if token:
        flags |= 0x40
    head = struct.pack("<BBBBiIHhhHBB", flags, sort, page_size, min_stars,
                       max_price, amenities, top_cities, lat, lon, rad,
                       next_size, len(token))
    assert len(head) == 22
    return head + token + text.encode("utf-8")


def engine_seeds():
    reset("fuzz_engine_query")
    paris = (48.8566, 2.3522, 25.0)
    seeds = {
        "empty": query(),
        "paris": query(text="paris", flags=0x02 | 0x08),
        "prefix": query(text="grand pal", page_size=3, flags=0x08),
        "zurich-accent": query(text="Zürich spa", sort=1, flags=0x02),
        "sao-paulo": query(text="São Paulo", sort=2, min_stars=4),
        "strasse": query(text="Straße", flags=0x08, next_size=1),
        "geo-distance": query(geo=paris, flags=0x01 | 0x02 | 0x08, sort=3,
                              top_cities=3),
        "geo-text": query(geo=paris, flags=0x01, text="hôtel",
                          max_price=25000, amenities=0x5),
        "punct": query(text="!!"),
        "many-words": query(text=" ".join(["a%d" % i for i in range(40)])),
        "bad-token": query(text="spa", token=b"AAAAAAAAAAAAAAAA"),
        "raw": query(flags=0x10, sort=9, page_size=0, min_stars=7,
                     max_price=-1, amenities=0xFFFFFFFF, top_cities=5000),
        "special-geo": query(flags=0x01 | 0x04, geo=(0.0, 0.0, 0.1)),
        "past-deadline": query(flags=0x20, text="beach"),
        # Cancelled at the first stop check (the start), then at the second
        # (part way through a facet scan of every hotel).
        "cancel-start": query(flags=0x80, text="beach", next_size=0),
        "cancel-mid": query(flags=0x80 | 0x02, next_size=1),
        "cjk": query(text="東京 ホテル"),
        "upper": query(text="ÉCOLE MÜNCHEN ÆØÅ", flags=0x02),
    }
    for name, data in seeds.items():
        write("fuzz_engine_query", name + ".bin", data)


# ---- fuzz_jsonl --------------------------------------------------------------

def hotel_line(**kw):
    h = {
        "id": "1", "name": "Hôtel Bellevue", "city": "Paris",
        "country": "France", "latitude": 48.85, "longitude": 2.35,
        "stars": 4, "priceCents": "18900", "rating": 8.7,
        "reviewCount": 412, "amenities": ["wifi", "spa"],
        "description": "Near the Seine.",
    }
    h.update(kw)
    for k in [k for k, v in h.items() if v is None]:
        del h[k]
    return json.dumps(h, ensure_ascii=False)


def jsonl_seeds():
    reset("fuzz_jsonl")
    lines = {
        "one": [hotel_line()],
        "three": [
            hotel_line(),
            hotel_line(id="2", name="Grand Palace Tokyo", city="Tokyo",
                       country="Japan", latitude=35.68, longitude=139.69,
                       amenities=["AMENITY_POOL", "Air_Conditioning"]),
            hotel_line(id=3, name="Zürich Lodge", city="Zürich",
                       country="Switzerland", price_cents=5000,
                       priceCents=None, review_count=2, reviewCount=None),
        ],
        "minimal": ['{"id":7,"name":"A","city":"B","country":"C","stars":1}'],
        "blank-lines": ["", hotel_line(id="9"), "   ", ""],
        "escapes": [hotel_line(name="Caf\u00e9 \"Quote\" \\ \u2603 \U0001F600",
                               description="line\nbreak\ttab")],
        "numbers": [hotel_line(latitude=-89.999999999, longitude=179.5,
                               rating=10, priceCents="9223372036854775807",
                               reviewCount=4294967295)],
        "bad-stars": [hotel_line(stars=7)],
        "duplicate-id": [hotel_line(), hotel_line(name="Other")],
        "unknown-field": [hotel_line(extra=1)],
        "truncated": [hotel_line()[:40]],
        "not-object": ["[1, 2, 3]"],
        "bad-amenity": [hotel_line(amenities=["jacuzzi"])],
    }
    for name, ls in lines.items():
        write("fuzz_jsonl", name + ".jsonl", "\n".join(ls) + "\n")
    write("fuzz_jsonl", "no-newline.jsonl", hotel_line())
    write("fuzz_jsonl", "empty.jsonl", "")


def main():
    tmp, mods = load_modules()
    try:
        rpc_seeds(mods)
        engine_seeds()
        jsonl_seeds()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    print("make_seeds: %d seed files under %s" % (n, CORPUS))


if __name__ == "__main__":
    main()
