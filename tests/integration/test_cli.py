"""``python -m nngrpc`` through a real hoteld: list, describe, call with
JSON in and out (checked against the same call through the generated
stubs), metadata, timeouts, health, and exit statuses that are the calls'
status codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
from google.protobuf import json_format

import nngrpc
from hoteld_fixture import Server, free_port, start_server, stop_server
from hotel.v1 import hotel_nngrpc, hotel_pb2

TIMEOUT = 30.0
SEARCH_JSON = {
    "query": "hotel",
    "geo": {"latitude": 48.8584, "longitude": 2.2945, "radiusKm": 3000},
    "sort": "SORT_DISTANCE",
    "pageSize": 5,
    "facets": True,
    "amenities": ["wifi"],
}


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """hoteld --testing with 2000 hotels and an access log (JSON lines),
    which shows the metadata the command line sent."""
    binary = str(request.config.getoption("--hoteld"))
    with tempfile.TemporaryDirectory(prefix="nngrpc-cli-") as workdir:
        srv = start_server(binary, workdir, [
            "--hotels", "2000", "--seed", "5",
            "--log-format", "json", "--access-log", "all",
        ])
        try:
            yield srv
        finally:
            stop_server(srv)


@pytest.fixture(scope="module")
def hotels(server: Server) -> Iterator[hotel_nngrpc.HotelSearchStub]:
    with nngrpc.Channel(server.tcp) as ch:
        yield hotel_nngrpc.HotelSearchStub(ch)


def cli(*args: str, stdin: Optional[str] = None, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "nngrpc", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True, text=True, timeout=timeout,
    )


def ok(p: "subprocess.CompletedProcess[str]") -> str:
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p.stdout


def failed(p: "subprocess.CompletedProcess[str]", code: nngrpc.StatusCode) -> str:
    """The details of the one ERROR line; the exit status is the code."""
    assert p.returncode == code.value_int, "exit %d, want %d\nstdout: %s\nstderr: %s" % (
        p.returncode, code.value_int, p.stdout, p.stderr)
    errors = [l for l in p.stderr.splitlines() if l.startswith("ERROR: ")]
    assert len(errors) == 1, p.stderr
    prefix = "ERROR: %s: " % code.name
    assert errors[0].startswith(prefix), p.stderr
    return errors[0][len(prefix):]


# ---- help and usage ------------------------------------------------------------------


def test_help_documents_the_exit_statuses() -> None:
    out = ok(cli("--help"))
    for code in nngrpc.StatusCode:
        assert "%2d  %s" % (code.value_int, code.name) in out
    for command in ("list", "describe", "call", "health"):
        assert command in out
    assert "--timeout" in out and "--metadata" in out and "--token-file" in out
    ok(cli("tcp://127.0.0.1:1", "call", "--help"))


@pytest.mark.parametrize("args", [
    [],
    ["tcp://127.0.0.1:1"],
    ["tcp://127.0.0.1:1", "frobnicate"],
    ["--timeout", "soon", "tcp://127.0.0.1:1", "list"],
    ["-H", "novalue", "tcp://127.0.0.1:1", "list"],
    ["-H", "=v", "tcp://127.0.0.1:1", "list"],
    ["-H", "k=1", "-H", "k=2", "tcp://127.0.0.1:1", "list"],
    ["--token", "a", "--token-file", "b", "tcp://127.0.0.1:1", "list"],
    ["http://127.0.0.1:1", "list"],
    ["tcp://127.0.0.1:1", "call", "NoServiceHere"],
])
def test_usage_errors_are_invalid_argument(args: List[str]) -> None:
    p = cli(*args)
    failed(p, nngrpc.StatusCode.INVALID_ARGUMENT)
    assert "usage:" in p.stderr or "ERROR:" in p.stderr


# ---- list -----------------------------------------------------------------------------


def test_list_services(server: Server) -> None:
    assert ok(cli(server.tcp, "list")).split() == [
        "hotel.v1.HotelSearch",
        "nngrpc.health.v1.Health",
        "nngrpc.reflection.v1.Reflection",
        "nngrpc.testing.v1.Testing",
    ]
    # ipc, and the options after the command, work the same.
    assert ok(cli(server.ipc, "list", "--timeout", "10")).split()[0] == "hotel.v1.HotelSearch"
    listed = json.loads(ok(cli("--format", "json", server.tcp, "list")))
    assert listed["services"][0] == "hotel.v1.HotelSearch"


def test_list_methods(server: Server) -> None:
    assert ok(cli(server.tcp, "list", "hotel.v1.HotelSearch")).split() == [
        "hotel.v1.HotelSearch.%s" % m for m in ("Search", "GetHotel", "Suggest", "Stats", "Reload")
    ]
    listed = json.loads(ok(cli(server.tcp, "list", "nngrpc.testing.v1.Testing", "--format", "json")))
    assert listed["service"] == "nngrpc.testing.v1.Testing"
    sleep = [m for m in listed["methods"] if m["name"].endswith(".Sleep")][0]
    assert sleep == {
        "kind": "method",
        "name": "nngrpc.testing.v1.Testing.Sleep",
        "path": "/nngrpc.testing.v1.Testing/Sleep",
        "input_type": "nngrpc.testing.v1.SleepRequest",
        "output_type": "nngrpc.testing.v1.SleepResponse",
        "idempotency_level": "NO_SIDE_EFFECTS",
        "comment": sleep["comment"],
    }
    assert sleep["comment"].startswith("Sleeps in a worker thread")


def test_list_unknown_service_is_not_found(server: Server) -> None:
    failed(cli(server.tcp, "list", "nope.v1.Nope"), nngrpc.StatusCode.NOT_FOUND)
    # A message is not a service.
    failed(cli(server.tcp, "list", "hotel.v1.Hotel"), nngrpc.StatusCode.NOT_FOUND)


# ---- describe --------------------------------------------------------------------------


def test_describe_service(server: Server) -> None:
    out = ok(cli(server.tcp, "describe", "hotel.v1.HotelSearch"))
    lines = out.splitlines()
    assert lines[0] == "hotel.v1.HotelSearch is a service:"
    assert lines[1].startswith("// Hotel search.")
    assert "service HotelSearch {" in lines
    assert "  rpc Search(hotel.v1.SearchRequest) returns (hotel.v1.SearchResponse) {" in lines
    assert "  rpc GetHotel(hotel.v1.GetHotelRequest) returns (hotel.v1.Hotel) {" in lines
    assert "    option idempotency_level = IDEMPOTENT;" in lines  # Reload
    assert "  // One hotel by id. Errors: NOT_FOUND." in lines
    assert lines[-1] == "}"


def test_describe_message_matches_the_generated_code(server: Server) -> None:
    out = ok(cli(server.tcp, "describe", "hotel.v1.SearchRequest"))
    assert out.startswith("hotel.v1.SearchRequest is a message:\n// Input of Search.\nmessage SearchRequest {\n")
    assert "  string query = 1;\n" in out
    assert "  hotel.v1.GeoFilter geo = 2;\n" in out
    assert "  repeated string amenities = 5;\n" in out
    assert "  oneof page_size_present {\n    uint32 page_size = 7;\n  }\n" in out
    assert "  // Words to find in name, city, country and description" in out
    d = json.loads(ok(cli(server.tcp, "describe", "hotel.v1.SearchRequest", "--format", "json")))
    assert d["kind"] == "message" and d["file"] == "hotel/v1/hotel.proto"
    generated = hotel_pb2.SearchRequest.DESCRIPTOR
    assert [(f["name"], f["number"], f["json_name"]) for f in d["fields"]] == [
        (f.name, f.number, f.json_name) for f in generated.fields
    ]


@pytest.mark.parametrize("symbol, head, body", [
    ("hotel.v1.HotelSearch.GetHotel", "hotel.v1.HotelSearch.GetHotel is a method:",
     "rpc GetHotel(hotel.v1.GetHotelRequest) returns (hotel.v1.Hotel) {"),
    ("/hotel.v1.HotelSearch/Search", "hotel.v1.HotelSearch.Search is a method:",
     "rpc Search(hotel.v1.SearchRequest) returns (hotel.v1.SearchResponse) {"),
    ("hotel.v1.SortOrder", "hotel.v1.SortOrder is an enum:", "  SORT_DISTANCE = 3;"),
    ("hotel.v1.Suggestion", "hotel.v1.Suggestion is a message:", "  enum Kind {"),
    ("hotel.v1.SearchRequest.max_price_cents", "hotel.v1.SearchRequest.max_price_cents is a field:",
     "int64 max_price_cents = 4;"),
    ("hotel.v1.SortOrder.SORT_PRICE", "hotel.v1.SortOrder.SORT_PRICE is an enum value:", "SORT_PRICE = 2;"),
    ("nngrpc.health.v1.HealthCheckResponse", "nngrpc.health.v1.HealthCheckResponse is a message:",
     "    NOT_SERVING = 2;"),
])
def test_describe_symbols(server: Server, symbol: str, head: str, body: str) -> None:
    lines = ok(cli(server.tcp, "describe", symbol)).splitlines()
    assert lines[0] == head
    assert body in lines


def test_describe_everything(server: Server) -> None:
    out = ok(cli(server.tcp, "describe"))
    for service in ("hotel.v1.HotelSearch", "nngrpc.health.v1.Health",
                    "nngrpc.reflection.v1.Reflection", "nngrpc.testing.v1.Testing"):
        assert "%s is a service:" % service in out
    everything = json.loads(ok(cli(server.tcp, "describe", "--format", "json")))
    assert [d["name"] for d in everything][0] == "hotel.v1.HotelSearch"


def test_describe_unknown_symbol_is_not_found(server: Server) -> None:
    details = failed(cli(server.tcp, "describe", "hotel.v1.Nope"), nngrpc.StatusCode.NOT_FOUND)
    assert "hotel.v1.Nope" in details


# ---- call --------------------------------------------------------------------------------


def _stub_search(hotels: hotel_nngrpc.HotelSearchStub) -> hotel_pb2.SearchResponse:
    req = json_format.Parse(json.dumps(SEARCH_JSON), hotel_pb2.SearchRequest())
    return hotels.Search(req, timeout=TIMEOUT)


@pytest.mark.parametrize("method", [
    "hotel.v1.HotelSearch/Search",
    "hotel.v1.HotelSearch.Search",
    "/hotel.v1.HotelSearch/Search",
])
def test_call_search_json_in_and_out(server: Server, hotels: hotel_nngrpc.HotelSearchStub, method: str) -> None:
    out = ok(cli(server.tcp, "call", method, json.dumps(SEARCH_JSON)))
    got = json_format.Parse(out, hotel_pb2.SearchResponse())
    expected = _stub_search(hotels)
    assert got == expected
    assert got.total > 0 and len(got.hits) == 5
    distances = [h.distance_km for h in got.hits]
    assert distances == sorted(distances)
    # Plain JSON, with JSON names (lowerCamelCase) and 64-bit ints as strings.
    parsed = json.loads(out)
    assert "nextPageToken" in parsed and isinstance(parsed["total"], str)


def test_call_request_from_file_and_stdin(server: Server, hotels: hotel_nngrpc.HotelSearchStub,
                                          tmp_path: "os.PathLike[str]") -> None:
    expected = _stub_search(hotels)
    path = os.path.join(str(tmp_path), "req.json")
    with open(path, "w") as f:
        json.dump(SEARCH_JSON, f)
    for args, stdin in (
        (["-d", "@" + path], None),
        (["-d", json.dumps(SEARCH_JSON)], None),
        (["-d", "@-"], json.dumps(SEARCH_JSON)),
        ([], json.dumps(SEARCH_JSON)),
    ):
        out = ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/Search", *args, stdin=stdin))
        assert json_format.Parse(out, hotel_pb2.SearchResponse()) == expected, args


def test_call_output_options(server: Server, hotels: hotel_nngrpc.HotelSearchStub) -> None:
    hotel_id = _stub_search(hotels).hits[0].hotel.id
    req = json.dumps({"id": str(hotel_id)})
    plain = json.loads(ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/GetHotel", req)))
    assert plain["id"] == str(hotel_id)
    snake = json.loads(ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/GetHotel", req, "--proto-names")))
    fields = hotel_pb2.Hotel.DESCRIPTOR.fields
    assert set(plain) == {f.json_name for f in fields if f.json_name in plain}
    assert set(snake) == {f.name for f in fields if f.json_name in plain}
    assert "priceCents" in plain and "price_cents" in snake
    # An empty request: defaults are printed only when asked for.
    stats = json.loads(ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/Stats")))
    defaults = json.loads(ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/Stats", "{}", "--emit-defaults")))
    assert set(stats) <= set(defaults)
    text = ok(cli(server.tcp, "call", "hotel.v1.HotelSearch/GetHotel", req, "--format", "text"))
    assert text.startswith("id: %d\n" % hotel_id)
    expected = hotels.GetHotel(hotel_pb2.GetHotelRequest(id=hotel_id), timeout=TIMEOUT)
    assert json_format.ParseDict(plain, hotel_pb2.Hotel()) == expected


def test_call_verbose_shows_server_timings(server: Server) -> None:
    p = cli(server.tcp, "call", "-v", "nngrpc.testing.v1.Testing/Sleep", '{"ms": 20}')
    assert json.loads(ok(p))["sleptUs"]
    status = [l for l in p.stderr.splitlines() if l.startswith("status: ")]
    assert len(status) == 1 and status[0].startswith("status: OK"), p.stderr
    run_us = int(status[0].split("run_us: ")[1])
    assert run_us >= 20_000


def test_call_missing_hotel_exits_5(server: Server) -> None:
    details = failed(cli(server.tcp, "call", "hotel.v1.HotelSearch/GetHotel", '{"id": 999999999}'),
                     nngrpc.StatusCode.NOT_FOUND)
    assert "999999999" in details


def test_call_bad_request_exits_3(server: Server) -> None:
    # Not JSON, an unknown field, a wrong type: caught before sending.
    for bad in ("{", '{"nope": 1}', '{"pageSize": "many"}', "[]", '"query"', '{"query": "a", "query": "b"}'):
        failed(cli(server.tcp, "call", "hotel.v1.HotelSearch/Search", bad), nngrpc.StatusCode.INVALID_ARGUMENT)
    # The server's own INVALID_ARGUMENT (a bad field value).
    details = failed(cli(server.tcp, "call", "hotel.v1.HotelSearch/Search", '{"minStars": 9}'),
                     nngrpc.StatusCode.INVALID_ARGUMENT)
    assert "min_stars" in details


def test_call_unknown_method_exits_12(server: Server) -> None:
    failed(cli(server.tcp, "call", "hotel.v1.HotelSearch/Nope", "{}"), nngrpc.StatusCode.UNIMPLEMENTED)
    failed(cli(server.tcp, "call", "nope.v1.Nope/Nope", "{}"), nngrpc.StatusCode.UNIMPLEMENTED)


@pytest.mark.parametrize("code", [c for c in nngrpc.StatusCode if c.value_int != 0])
def test_exit_status_is_the_status_code(server: Server, code: nngrpc.StatusCode) -> None:
    request = json.dumps({"code": code.value_int, "message": "asked for %s" % code.name})
    details = failed(cli(server.tcp, "call", "nngrpc.testing.v1.Testing/Fail", request), code)
    assert details == "asked for %s" % code.name


def test_no_server_exits_14() -> None:
    url = "tcp://127.0.0.1:%d" % free_port()
    t0 = time.monotonic()
    for args in (["list"], ["call", "hotel.v1.HotelSearch/Search", "{}"], ["health"]):
        failed(cli(url, *args), nngrpc.StatusCode.UNAVAILABLE)
    assert time.monotonic() - t0 < 30
    failed(cli("ipc:///nonexistent/nngrpc-cli.sock", "list"), nngrpc.StatusCode.UNAVAILABLE)


# ---- metadata and timeouts -----------------------------------------------------------------


def _access_lines(server: Server, request_id: str) -> List[Dict[str, Any]]:
    found = []
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "access" and entry.get("request_id") == request_id:
            found.append(entry)
    return found


def test_metadata_reaches_the_server(server: Server) -> None:
    for i, opt in enumerate(("nngrpc-request-id=cli-md-%d", "nngrpc-request-id: cli-md-%d")):
        request_id = "cli-md-%d" % i
        p = cli("--metadata", opt % i, server.tcp, "call", "nngrpc.testing.v1.Testing/Echo", '{"payload": "eA=="}')
        assert json.loads(ok(p)) == {"payload": "eA=="}
        end = time.monotonic() + 10
        while True:
            lines = _access_lines(server, request_id)
            # The reflection lookups and the call itself all carry it.
            methods = {l["method"] for l in lines}
            if "/nngrpc.testing.v1.Testing/Echo" in methods:
                break
            assert time.monotonic() < end, server.log()
            time.sleep(0.02)
        assert "/nngrpc.reflection.v1.Reflection/FileContainingSymbol" in methods


def test_timeout_is_the_deadline(server: Server) -> None:
    t0 = time.monotonic()
    details = failed(
        cli("--timeout", "0.3", server.tcp, "call", "nngrpc.testing.v1.Testing/Sleep", '{"ms": 10000}'),
        nngrpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert time.monotonic() - t0 < 8.0  # interpreter start included
    assert details
    # After the command, too; and a long enough one lets it finish.
    failed(cli(server.tcp, "call", "nngrpc.testing.v1.Testing/Sleep", '{"ms": 10000}', "--timeout", "0.3"),
           nngrpc.StatusCode.DEADLINE_EXCEEDED)
    out = ok(cli(server.tcp, "call", "nngrpc.testing.v1.Testing/Sleep", '{"ms": 100}', "--timeout", "20"))
    assert int(json.loads(out)["sleptUs"]) >= 100_000
    # No time at all: DEADLINE_EXCEEDED before anything is sent.
    failed(cli("--timeout", "0", server.tcp, "list"), nngrpc.StatusCode.DEADLINE_EXCEEDED)


# ---- health ----------------------------------------------------------------------------------


def test_health(server: Server) -> None:
    assert ok(cli(server.tcp, "health")).strip() == "SERVING"
    assert ok(cli(server.tcp, "health", "hotel.v1.HotelSearch")).strip() == "SERVING"
    assert ok(cli(server.tcp, "health", "nngrpc.testing.v1.Testing", "--wait")).strip() == "SERVING"
    assert json.loads(ok(cli(server.tcp, "health", "hotel.v1.HotelSearch", "--format", "json"))) == {
        "service": "hotel.v1.HotelSearch", "status": "SERVING",
    }
    failed(cli(server.tcp, "health", "nope.v1.Nope"), nngrpc.StatusCode.NOT_FOUND)
    # NOT_SERVING (exit 14) while draining is in test_health.py.


def test_health_wait_for_a_server_that_starts_later(request: pytest.FixtureRequest, tmp_path: "os.PathLike[str]") -> None:
    url = "tcp://127.0.0.1:%d" % free_port()
    waiting = subprocess.Popen(
        [sys.executable, "-m", "nngrpc", "--timeout", "60", url, "health", "hotel.v1.HotelSearch", "--wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(0.5)
        assert waiting.poll() is None, waiting.communicate()
        log_path = os.path.join(str(tmp_path), "hoteld.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(request.config.getoption("--hoteld")), "--listen", url, "--hotels", "2000"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        server = Server(tcp=url, ipc="", proc=proc, log_path=log_path, workers=0)
        try:
            out, err = waiting.communicate(timeout=60)
            assert (waiting.returncode, out.strip()) == (0, "SERVING"), err
        finally:
            stop_server(server)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    # Nobody ever there: UNAVAILABLE once the deadline passes.
    t0 = time.monotonic()
    failed(cli("--timeout", "1", url, "health", "--wait"), nngrpc.StatusCode.UNAVAILABLE)
    assert 0.9 <= time.monotonic() - t0 < 20


def test_in_process_main(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    from nngrpc._cli import main

    assert main([server.tcp, "call", "nngrpc.testing.v1.Testing/Echo", '{"payload": "eQ=="}']) == 0
    assert json.loads(capsys.readouterr().out) == {"payload": "eQ=="}
    assert main([server.tcp, "call", "nngrpc.testing.v1.Testing/Fail", '{"code": 7}']) == 7
    assert capsys.readouterr().err.startswith("ERROR: PERMISSION_DENIED: ")
