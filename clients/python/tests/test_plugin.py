"""The protoc plugin's pure functions on hand-made descriptors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from nngrpc import protoc_plugin as pp
from nngrpc._version import __version__, generated_code_supported

FDP = descriptor_pb2.FileDescriptorProto


def make_files() -> List[FDP]:
    common = FDP(name="common/v1/types-x.proto", package="common.v1")
    outer = common.message_type.add(name="Outer")
    outer.nested_type.add(name="Inner")
    main = FDP(name="shop/v1/shop.proto", package="shop.v1", dependency=[common.name])
    main.message_type.add(name="Req")
    svc = main.service.add(name="Shop")
    m = svc.method.add(name="Buy", input_type=".shop.v1.Req", output_type=".common.v1.Outer.Inner")
    m.options.idempotency_level = descriptor_pb2.MethodOptions.IDEMPOTENT
    svc.method.add(name="Look", input_type=".shop.v1.Req", output_type=".shop.v1.Req")
    main.service.add(name="Empty")
    loc = main.source_code_info.location.add(path=[6, 0])
    loc.leading_comments = ' Shop things.\n   Indented "quote" and \\ backslash """ here.\n'
    loc = main.source_code_info.location.add(path=[6, 0, 2, 0])
    loc.leading_comments = ' Buys "it"\n'
    return [common, main]


def run(files: List[FDP], parameter: str = "") -> plugin_pb2.CodeGeneratorResponse:
    req = plugin_pb2.CodeGeneratorRequest(
        file_to_generate=[files[-1].name], proto_file=files, parameter=parameter
    )
    resp = plugin_pb2.CodeGeneratorResponse()
    pp.generate(req, resp)
    return resp


def test_names() -> None:
    assert pp.module_name("hotel/v1/hotel.proto") == "hotel.v1.hotel_pb2"
    assert pp.module_alias("hotel/v1/hotel.proto") == "hotel_dot_v1_dot_hotel__pb2"
    assert pp.module_alias("a_b/c-d.proto") == "a__b_dot_c__d__pb2"
    assert pp.output_base("a/b-c.proto") == "a/b_c_nngrpc"
    assert pp.output_base("top.proto") == "top_nngrpc"


def test_generator_version_is_the_package_version() -> None:
    assert pp.GENERATED_VERSION == __version__
    assert generated_code_supported(__version__)
    assert not generated_code_supported("99.0.0")
    assert generated_code_supported("0.0.9")


def test_render_cross_file_nested_types_and_docs() -> None:
    resp = run(make_files())
    assert not resp.error
    files = {f.name: f.content for f in resp.file}
    assert sorted(files) == ["shop/v1/shop_nngrpc.py", "shop/v1/shop_nngrpc.pyi"]
    py = files["shop/v1/shop_nngrpc.py"]
    assert py.startswith(pp.BANNER + "\n")
    assert "import common.v1.types_x_pb2 as common_dot_v1_dot_types__x__pb2" in py
    assert "import shop.v1.shop_pb2 as shop_dot_v1_dot_shop__pb2" in py
    assert "response_deserializer=common_dot_v1_dot_types__x__pb2.Outer.Inner.FromString" in py
    assert "'/shop.v1.Shop/Buy': 'IDEMPOTENT'" in py
    assert "'/shop.v1.Shop/Look': 'IDEMPOTENCY_UNKNOWN'" in py
    assert '"""Buys "it\\""""' in py
    assert pp.MISSING_DOC in py  # Look and Empty have no comments
    assert "class EmptyStub:" in py
    # Servicer base classes, for nngrpc.testing's fake channels.
    assert "class ShopServicer:" in py and "class EmptyServicer:" in py
    assert "NNGRPC_SERVICE = 'shop.v1.Shop'" in py
    assert (
        "'/shop.v1.Shop/Buy': ('Buy', shop_dot_v1_dot_shop__pb2.Req,"
        " common_dot_v1_dot_types__x__pb2.Outer.Inner)," in py
    )
    assert "context.abort(nngrpc.StatusCode.UNIMPLEMENTED, 'method /shop.v1.Shop/Look is not" in py
    compile(py, "shop_nngrpc.py", "exec")
    compile(files["shop/v1/shop_nngrpc.pyi"], "shop_nngrpc.pyi", "exec")
    # The escaped docstring reads back as the comment.
    ns: dict = {}
    doc_src = "\n".join(pp.docstring(pp.clean_comment(make_files()[1].source_code_info.location[0].leading_comments), ""))
    exec("x = " + doc_src, ns)
    assert ns["x"] == 'Shop things.\n  Indented "quote" and \\ backslash """ here.\n'


def test_generated_module_binds_methods() -> None:
    resp = run(make_files())
    py = {f.name: f.content for f in resp.file}["shop/v1/shop_nngrpc.py"]
    # Run it with fake _pb2 modules and a recording channel.
    import types

    fake_common = types.ModuleType("common.v1.types_x_pb2")
    fake_shop = types.ModuleType("shop.v1.shop_pb2")

    class Msg:
        SerializeToString = object()
        FromString = object()

    fake_common.Outer = types.SimpleNamespace(Inner=Msg)  # type: ignore[attr-defined]
    fake_shop.Req = Msg  # type: ignore[attr-defined]
    saved = dict(sys.modules)
    for name in ("common", "common.v1", "shop", "shop.v1"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["common.v1.types_x_pb2"] = fake_common
    sys.modules["shop.v1.shop_pb2"] = fake_shop
    sys.modules["common.v1"].types_x_pb2 = fake_common  # type: ignore[attr-defined]
    sys.modules["shop.v1"].shop_pb2 = fake_shop  # type: ignore[attr-defined]
    sys.modules["common"].v1 = sys.modules["common.v1"]  # type: ignore[attr-defined]
    sys.modules["shop"].v1 = sys.modules["shop.v1"]  # type: ignore[attr-defined]
    try:
        ns: dict = {}
        exec(compile(py, "shop_nngrpc.py", "exec"), ns)
    finally:
        sys.modules.clear()
        sys.modules.update(saved)
    calls = []

    class Chan:
        def unary_unary(self, method, request_serializer, response_deserializer, *, idempotent):  # type: ignore[no-untyped-def]
            calls.append((method, request_serializer, response_deserializer, idempotent))
            return method

    stub = ns["ShopStub"](Chan())
    assert stub.Buy == "/shop.v1.Shop/Buy"
    # Only the method marked IDEMPOTENT may be retried.
    assert [(c[0], c[3]) for c in calls] == [("/shop.v1.Shop/Buy", True), ("/shop.v1.Shop/Look", False)]
    assert ns["EmptyStub"](Chan()) is not None
    assert ns["NNGRPC_METHODS"]["/shop.v1.Shop/Buy"] == "IDEMPOTENT"
    # The asyncio stub binds the same methods the same way.
    calls.clear()
    astub = ns["ShopAsyncStub"](Chan())
    assert astub.Look == "/shop.v1.Shop/Look"
    assert [(c[0], c[3]) for c in calls] == [("/shop.v1.Shop/Buy", True), ("/shop.v1.Shop/Look", False)]
    assert ns["EmptyAsyncStub"](Chan()) is not None


def test_streaming_is_an_error() -> None:
    files = make_files()
    files[1].service[0].method[0].server_streaming = True
    resp = run(files)
    assert "streaming" in resp.error and "shop/v1/shop.proto" in resp.error
    assert len(resp.file) == 0


def test_keyword_method_is_an_error() -> None:
    files = make_files()
    files[1].service[0].method[1].name = "import"
    assert "Python attribute" in run(files).error


def test_unknown_parameter_is_an_error() -> None:
    assert "unknown option" in run(make_files(), "bogus=1").error


def test_plugin_io(tmp_path: Path) -> None:
    req = plugin_pb2.CodeGeneratorRequest(file_to_generate=["shop/v1/shop.proto"], proto_file=make_files())
    out = subprocess.run(
        [sys.executable, "-m", "nngrpc.protoc_plugin"],
        input=req.SerializeToString(),
        capture_output=True,
        check=True,
    ).stdout
    resp = plugin_pb2.CodeGeneratorResponse.FromString(out)
    assert [f.name for f in resp.file] == ["shop/v1/shop_nngrpc.py", "shop/v1/shop_nngrpc.pyi"]


def test_pyi_gives_precise_types(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "use_stub.py"
    script.write_text(
        textwrap.dedent(
            """
            import nngrpc
            import nngrpc.aio
            from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

            def use(ch: nngrpc.Channel) -> None:
                stub = testing_nngrpc.TestingStub(ch)
                reveal_type(stub.Echo(testing_pb2.EchoRequest(), timeout=1.0, metadata={"k": "v"}))
                resp, call = stub.Sleep.with_call(testing_pb2.SleepRequest(ms=1))
                reveal_type(resp)
                reveal_type(call.code())
                reveal_type(call.request_id)

            async def use_aio(ch: nngrpc.aio.Channel) -> None:
                stub = testing_nngrpc.TestingAsyncStub(ch)
                reveal_type(await stub.Fail(testing_pb2.FailRequest(), timeout=1.0))
                resp, call = await stub.Echo.with_call(testing_pb2.EchoRequest())
                reveal_type(resp)
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    out = res.stdout
    assert 'Revealed type is "nngrpc.testing.v1.testing_pb2.EchoResponse"' in out, out
    assert 'Revealed type is "nngrpc.testing.v1.testing_pb2.SleepResponse"' in out, out
    assert 'Revealed type is "nngrpc._status_table.StatusCode"' in out, out
    assert 'Revealed type is "builtins.str"' in out, out
    assert 'Revealed type is "nngrpc.testing.v1.testing_pb2.FailResponse"' in out, out
    assert out.count('Revealed type is "nngrpc.testing.v1.testing_pb2.EchoResponse"') == 2, out
    # Message types themselves (a wrong request type is an error where
    # protobuf's stubs exist): tests/integration/test_mypy.py.
    assert "Success: no issues found" in out, out


def test_servicers_type_check(tmp_path: Path) -> None:
    """A servicer with plain and async methods, served by the fake
    channels, is clean under mypy --strict with the generated .pyi."""
    pytest.importorskip("mypy")
    script = tmp_path / "use_servicer.py"
    script.write_text(
        textwrap.dedent(
            """
            import nngrpc
            from nngrpc.testing import FakeAsyncChannel, FakeChannel, ServicerContext
            from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

            class Mine(testing_nngrpc.TestingServicer):
                def Echo(
                    self, request: testing_pb2.EchoRequest, context: ServicerContext
                ) -> testing_pb2.EchoResponse:
                    context.set_trailing_metadata({"k": "v"})
                    return testing_pb2.EchoResponse(payload=request.payload)

                async def Sleep(
                    self, request: testing_pb2.SleepRequest, context: ServicerContext
                ) -> testing_pb2.SleepResponse:
                    left = context.time_remaining()
                    if left is not None and left < request.ms / 1000:
                        context.abort(nngrpc.StatusCode.DEADLINE_EXCEEDED, "too long")
                    return testing_pb2.SleepResponse()

            def use() -> bytes:
                stub = testing_nngrpc.TestingStub(FakeChannel([Mine()]))
                return stub.Echo(testing_pb2.EchoRequest(payload=b"x"), timeout=1.0).payload

            async def use_aio() -> None:
                stub = testing_nngrpc.TestingAsyncStub(FakeAsyncChannel([Mine()]))
                await stub.Sleep(testing_pb2.SleepRequest(ms=1), timeout=1.0)
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "Success: no issues found" in res.stdout, res.stdout
