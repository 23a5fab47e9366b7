"""nngrpc.reflection.v1.Reflection through a real hoteld and
nngrpc.reflection.ReflectionClient: listing services, the descriptors the
server sends (compared with the ones compiled into the generated Python
modules), comments, symbol lookup, and calls through reflection-built
message classes compared with the same calls through generated stubs."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List

import pytest
from google.protobuf import descriptor_pb2

import nngrpc
from hoteld_fixture import Server
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.health.v1 import health_pb2
from nngrpc.reflection import ReflectionClient, kind_of, method_path, split_method
from nngrpc.reflection.v1 import reflection_nngrpc, reflection_pb2
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

NOT_FOUND = nngrpc.StatusCode.NOT_FOUND
TIMEOUT = 30.0
SERVICES = [
    "hotel.v1.HotelSearch",
    "nngrpc.health.v1.Health",
    "nngrpc.reflection.v1.Reflection",
    "nngrpc.testing.v1.Testing",
]
# Each served service and the generated module that has its descriptor.
MODULES: Dict[str, Any] = {
    "hotel.v1.HotelSearch": hotel_pb2,
    "nngrpc.health.v1.Health": health_pb2,
    "nngrpc.reflection.v1.Reflection": reflection_pb2,
    "nngrpc.testing.v1.Testing": testing_pb2,
}


@pytest.fixture
def refl(channel: nngrpc.Channel) -> ReflectionClient:
    return ReflectionClient(channel, timeout=TIMEOUT)


@pytest.fixture
def hotels(channel: nngrpc.Channel) -> hotel_nngrpc.HotelSearchStub:
    return hotel_nngrpc.HotelSearchStub(channel)


def _without_source_info(proto: Any) -> Any:
    """The file without what only protoc's plugin requests carry: source
    info and computed json_names."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("source_code_info")

    def clear(messages: Any) -> None:
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            clear(m.nested_type)

    clear(copy.message_type)
    return copy


# ---- listing and descriptors ------------------------------------------------


def test_list_services(refl: ReflectionClient) -> None:
    assert refl.list_services() == SERVICES


def test_list_services_raw(channel: nngrpc.Channel) -> None:
    stub = reflection_nngrpc.ReflectionStub(channel)
    resp = stub.ListServices(reflection_pb2.ListServicesRequest(), timeout=TIMEOUT)
    assert list(resp.services) == SERVICES  # sorted by the server


@pytest.mark.parametrize("service", SERVICES)
def test_descriptors_match_the_generated_code(refl: ReflectionClient, service: str) -> None:
    """The server's descriptor of each file is the one protoc compiled
    into the Python module (source info aside)."""
    desc = refl.service(service)
    module = MODULES[service]
    served = refl.file_proto(desc.file.name)
    compiled = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert _without_source_info(served) == _without_source_info(compiled)
    generated = module.DESCRIPTOR.services_by_name[desc.name]
    assert [m.name for m in desc.methods] == [m.name for m in generated.methods]
    for m, g in zip(desc.methods, generated.methods):
        assert m.input_type.full_name == g.input_type.full_name
        assert m.output_type.full_name == g.output_type.full_name


def test_raw_answer_is_a_file_descriptor_set(channel: nngrpc.Channel) -> None:
    stub = reflection_nngrpc.ReflectionStub(channel)
    resp = stub.FileContainingSymbol(
        reflection_pb2.FileContainingSymbolRequest(symbol="hotel.v1.HotelSearch.Search"),
        timeout=TIMEOUT,
    )
    assert resp.file_name == "hotel/v1/hotel.proto"
    fds = descriptor_pb2.FileDescriptorSet.FromString(resp.file_descriptor_set)
    names = [f.name for f in fds.file]
    assert names[-1] == "hotel/v1/hotel.proto"
    # Dependencies first: every import is earlier in the set.
    for i, f in enumerate(fds.file):
        for dep in f.dependency:
            assert dep in names[:i]


def test_hotel_service_described(refl: ReflectionClient) -> None:
    svc = refl.service("hotel.v1.HotelSearch")
    methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in svc.methods}
    assert methods == {
        "Search": ("hotel.v1.SearchRequest", "hotel.v1.SearchResponse"),
        "GetHotel": ("hotel.v1.GetHotelRequest", "hotel.v1.Hotel"),
        "Suggest": ("hotel.v1.SuggestRequest", "hotel.v1.SuggestResponse"),
        "Stats": ("hotel.v1.StatsRequest", "hotel.v1.StatsResponse"),
        "Reload": ("hotel.v1.ReloadRequest", "hotel.v1.ReloadResponse"),
    }
    assert set(hotel_nngrpc.NNGRPC_METHODS) == {
        "/hotel.v1.HotelSearch/%s" % m for m in methods
    }
    msg = refl.message("hotel.v1.SearchRequest")
    generated = hotel_pb2.SearchRequest.DESCRIPTOR
    assert [(f.name, f.number, f.type) for f in msg.fields] == [
        (f.name, f.number, f.type) for f in generated.fields
    ]


def test_builtin_services_described(refl: ReflectionClient) -> None:
    check = refl.method("nngrpc.health.v1.Health/Check")
    assert check.input_type.full_name == "nngrpc.health.v1.HealthCheckRequest"
    assert check.output_type.full_name == "nngrpc.health.v1.HealthCheckResponse"
    status = refl.enum("nngrpc.health.v1.HealthCheckResponse.ServingStatus")
    assert {v.name: v.number for v in status.values} == {
        "UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3,
    }
    fcs = refl.method("/nngrpc.reflection.v1.Reflection/FileContainingSymbol")
    assert [f.name for f in fcs.output_type.fields] == ["file_descriptor_set", "file_name"]
    echo = refl.method("nngrpc.testing.v1.Testing.Echo")
    assert echo.input_type.fields_by_name["payload"].type == echo.input_type.fields[0].TYPE_BYTES


def test_comments(refl: ReflectionClient) -> None:
    refl.service("hotel.v1.HotelSearch")
    refl.service("nngrpc.health.v1.Health")
    assert refl.comments("hotel.v1.HotelSearch").startswith("Hotel search.")
    assert refl.comments("hotel.v1.HotelSearch.GetHotel") == "One hotel by id. Errors: NOT_FOUND."
    assert refl.comments("hotel.v1.SearchRequest.query").startswith("Words to find")
    assert refl.comments("hotel.v1.SortOrder.SORT_RATING").startswith("Highest guest rating")
    assert "NOT_FOUND" in refl.comments("nngrpc.health.v1.Health.Check")
    assert refl.comments("hotel.v1.NoSuchThing") == ""
    # The protos the server sends are the ones in the tree, comments and all.
    opts = refl.proto_of("hotel.v1.HotelSearch.Reload").options
    assert opts.idempotency_level == descriptor_pb2.MethodOptions.IDEMPOTENT


# ---- symbols ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "/hotel.v1.HotelSearch/Search",
    "hotel.v1.HotelSearch/Search",
    "hotel.v1.HotelSearch.Search",
])
def test_method_spellings(refl: ReflectionClient, name: str) -> None:
    assert refl.method(name).full_name == "hotel.v1.HotelSearch.Search"
    assert refl.symbol(name).full_name == "hotel.v1.HotelSearch.Search"
    assert method_path(name) == "/hotel.v1.HotelSearch/Search"
    assert split_method(name) == ("hotel.v1.HotelSearch", "Search")


@pytest.mark.parametrize("name", ["Search", "/Search", "", "a/b/c/"])
def test_bad_method_names(name: str) -> None:
    with pytest.raises(ValueError):
        split_method(name)


@pytest.mark.parametrize("name, kind", [
    ("hotel.v1.HotelSearch", "service"),
    ("hotel.v1.HotelSearch.Suggest", "method"),
    ("hotel.v1.Hotel", "message"),
    ("hotel.v1.Suggestion.Kind", "enum"),
    ("hotel.v1.SortOrder", "enum"),
    ("hotel.v1.SearchRequest.geo", "field"),
    ("hotel.v1.SortOrder.SORT_PRICE", "enum value"),
    ("nngrpc.testing.v1.SleepRequest.ms", "field"),
])
def test_symbol_kinds(channel: nngrpc.Channel, name: str, kind: str) -> None:
    # A fresh client each time: the lookup itself must fetch the file.
    refl = ReflectionClient(channel, timeout=TIMEOUT)
    assert kind_of(refl.symbol(name)) == kind


@pytest.mark.parametrize("name", [
    "hotel.v1.HotelSearch",
    "hotel.v1.HotelSearch.Suggest",
    "hotel.v1.Hotel",
    "hotel.v1.SearchRequest.geo",
    "hotel.v1.SortOrder",
    "hotel.v1.SortOrder.SORT_PRICE",
])
def test_file_containing_symbol_of_every_kind(refl: ReflectionClient, name: str) -> None:
    """Answered from the pool once the file is there (a method or an enum
    value has no .file of its own: the answer comes from its service, its
    enum)."""
    refl.service("hotel.v1.HotelSearch")
    assert refl.file_containing_symbol(name).name == "hotel/v1/hotel.proto"


@pytest.mark.parametrize("name", [
    "nope.v1.Nope",
    "hotel.v1.Nope",
    "hotel.v1.HotelSearch.Nope",
    "hotel.v1.SearchRequest.nope",
    "hotel.v1.HotelSearch/Nope",
])
def test_unknown_symbol_is_not_found(refl: ReflectionClient, name: str) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        refl.symbol(name)
    assert e.value.code() is NOT_FOUND, e.value


def test_wrong_kind_is_not_found(refl: ReflectionClient) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        refl.service("hotel.v1.SearchRequest")
    assert e.value.code() is NOT_FOUND and "message" in e.value.details()
    with pytest.raises(nngrpc.RpcError) as e:
        refl.message("hotel.v1.HotelSearch")
    assert e.value.code() is NOT_FOUND


def test_lookups_are_cached(hoteld: Server) -> None:
    """Once a file is in the pool, no more reflection calls: it still
    answers with the channel closed."""
    ch = nngrpc.Channel(hoteld.tcp)
    refl = ReflectionClient(ch, timeout=TIMEOUT)
    refl.method("hotel.v1.HotelSearch/Search")
    ch.close()
    in_cls, out_cls = refl.method_classes("hotel.v1.HotelSearch.GetHotel")
    assert out_cls.DESCRIPTOR.full_name == "hotel.v1.Hotel"
    assert refl.symbol("hotel.v1.SearchRequest.query").name == "query"
    with pytest.raises(ValueError):  # a lookup that needs the server
        refl.symbol("nngrpc.testing.v1.Testing")


def test_threads_share_a_client(channel: nngrpc.Channel) -> None:
    refl = ReflectionClient(channel, timeout=TIMEOUT)
    errors: List[BaseException] = []
    names = SERVICES + ["hotel.v1.HotelSearch.Search", "hotel.v1.Hotel", "hotel.v1.SortOrder"]

    def work(i: int) -> None:
        try:
            for k in range(len(names)):
                refl.symbol(names[(i + k) % len(names)])
            refl.message_class("hotel.v1.SearchRequest")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    cls = {refl.message_class("hotel.v1.SearchRequest") for _ in range(3)}
    assert len(cls) == 1


# ---- adding files -----------------------------------------------------------------


def _file(name: str, package: str, deps: List[str], message: str, field_type: str = "") -> Any:
    f = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    f.dependency.extend(deps)
    m = f.message_type.add(name=message)
    if field_type:
        m.field.add(
            name="x", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
            type_name=field_type, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    return f


def test_files_added_once_dependencies_first(channel: nngrpc.Channel) -> None:
    refl = ReflectionClient(channel)
    base = _file("t/base.proto", "t", [], "Base")
    mid = _file("t/mid.proto", "t", ["t/base.proto"], "Mid", ".t.Base")
    top = _file("t/top.proto", "t", ["t/mid.proto", "t/base.proto"], "Top", ".t.Mid")
    # Dependents first in the set: the client orders them itself.
    fds = descriptor_pb2.FileDescriptorSet(file=[top, mid, base])
    refl.add_file_descriptor_set(fds.SerializeToString())
    # The same files again (as another answer would carry them): no error.
    refl.add_file_descriptor_set(descriptor_pb2.FileDescriptorSet(file=[base, mid]).SerializeToString())
    Top = refl.message_class("t.Top")
    msg = Top()
    msg.x.x.SetInParent()
    assert Top.FromString(msg.SerializeToString()) == msg


def test_missing_dependency_is_internal(channel: nngrpc.Channel) -> None:
    refl = ReflectionClient(channel)
    orphan = _file("t/orphan.proto", "t", ["t/absent.proto"], "Orphan")
    with pytest.raises(nngrpc.RpcError) as e:
        refl.add_file_descriptor_set(descriptor_pb2.FileDescriptorSet(file=[orphan]).SerializeToString())
    assert e.value.code() is nngrpc.StatusCode.INTERNAL
    assert "t/absent.proto" in e.value.details()
    with pytest.raises(nngrpc.RpcError) as e:
        refl.add_file_descriptor_set(b"\xff\xff\xff")
    assert e.value.code() is nngrpc.StatusCode.INTERNAL


# ---- calls through reflection-built classes ------------------------------------------


def test_search_through_reflection(refl: ReflectionClient, hotels: hotel_nngrpc.HotelSearchStub) -> None:
    Request, Response = refl.method_classes("hotel.v1.HotelSearch/Search")
    assert Request is not hotel_pb2.SearchRequest  # built from the server's descriptors
    search = refl.multicallable("/hotel.v1.HotelSearch/Search")
    assert search.method == "/hotel.v1.HotelSearch/Search"
    req = Request(query="hotel", page_size=7, facets=True, sort=1)  # 1: SORT_RATING
    req.geo.latitude, req.geo.longitude, req.geo.radius_km = 48.8584, 2.2945, 2000.0
    resp, call = search.with_call(req, timeout=TIMEOUT)
    assert isinstance(resp, Response)
    assert call.code() is nngrpc.StatusCode.OK
    expected = hotels.Search(
        hotel_pb2.SearchRequest.FromString(req.SerializeToString()), timeout=TIMEOUT
    )
    assert resp.total == expected.total > 0
    assert len(resp.hits) == 7
    assert resp.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_get_hotel_through_reflection(refl: ReflectionClient, hotels: hotel_nngrpc.HotelSearchStub) -> None:
    first = hotels.Search(hotel_pb2.SearchRequest(query="hotel", page_size=1), timeout=TIMEOUT)
    hotel_id = first.hits[0].hotel.id
    Request, Hotel = refl.method_classes("hotel.v1.HotelSearch.GetHotel")
    get = refl.multicallable("hotel.v1.HotelSearch.GetHotel")
    got = get(Request(id=hotel_id), timeout=TIMEOUT)
    assert isinstance(got, Hotel)
    assert got.id == hotel_id and got.name == first.hits[0].hotel.name
    assert got.SerializeToString(deterministic=True) == hotels.GetHotel(
        hotel_pb2.GetHotelRequest(id=hotel_id), timeout=TIMEOUT
    ).SerializeToString(deterministic=True)
    with pytest.raises(nngrpc.RpcError) as e:
        get(Request(id=999_999_999), timeout=TIMEOUT)
    assert e.value.code() is NOT_FOUND


def test_echo_and_health_through_reflection(refl: ReflectionClient, stub: testing_nngrpc.TestingStub) -> None:
    EchoRequest, EchoResponse = refl.method_classes("nngrpc.testing.v1.Testing/Echo")
    payload = bytes(range(256)) * 3
    resp = refl.multicallable("nngrpc.testing.v1.Testing/Echo")(
        EchoRequest(payload=payload), timeout=TIMEOUT
    )
    assert isinstance(resp, EchoResponse) and resp.payload == payload
    assert stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=TIMEOUT).payload == payload
    CheckRequest, _ = refl.method_classes("nngrpc.health.v1.Health/Check")
    status = refl.multicallable("nngrpc.health.v1.Health/Check")(
        CheckRequest(service="hotel.v1.HotelSearch"), timeout=TIMEOUT
    ).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_unknown_method_through_reflection(refl: ReflectionClient) -> None:
    with pytest.raises(nngrpc.RpcError) as e:
        refl.multicallable("nngrpc.testing.v1.Testing/Nope")
    assert e.value.code() is NOT_FOUND
