"""The client side of the compatibility matrix (tests/compat/matrix.py).

Run by each release's own interpreter (its build/venv/bin/python), so the
nngrpc imported here is that release's client: the same application code
against the old and the new package. It uses only the API of release
0.1.0; newer features are looked up (``_supports``) and used when present.

    probe.py CONFIG_JSON PHASE     run PHASE's checks ("main", "drain")
    probe.py --hold URL MS         one Sleep(MS) call (keeps a drain going)

For each check it prints a line ``start NAME`` before, then one JSON object
``{"check", "seen", "detail", "seconds"}``: "seen" is a short, stable
observation (what the matrix compares with the contract), "detail" what
explains it. An exception in a check is an observation too ("error: ...").
Every call has a deadline, so no check can wait for ever; the driver also
bounds the whole run.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Tuple

import nngrpc
import nngrpc.aio
from hotel.v1 import hotel_nngrpc, hotel_pb2
from nngrpc.health import ServingStatus
from nngrpc.health import check as health_check
from nngrpc.reflection import ReflectionClient
from nngrpc.testing.v1 import testing_nngrpc, testing_pb2

T = 5.0  # the deadline of an ordinary call
ECHO = "/nngrpc.testing.v1.Testing/Echo"
FAIL = "/nngrpc.testing.v1.Testing/Fail"
CANCEL = "/nngrpc.v1.Control/Cancel"
FUTURE_CODE_MESSAGE = "compat-future-code"  # future_proxy.py turns it into code 42

Check = Callable[[Dict[str, Any]], Tuple[str, Any]]
CHECKS: Dict[str, List[Tuple[str, Check]]] = {"main": [], "drain": []}


def check(name: str, phase: str = "main") -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[phase].append((name, fn))
        return fn

    return register


def _supports(fn: Any, option: str) -> bool:
    try:
        return option in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def echo_req(payload: bytes) -> bytes:
    return testing_pb2.EchoRequest(payload=payload).SerializeToString()


def fail(stub: Any, code: int, message: str) -> nngrpc.RpcError:
    """Testing/Fail's error (no retries: the channel's policy is None)."""
    try:
        stub.Fail(testing_pb2.FailRequest(code=code, message=message), timeout=T)
    except nngrpc.RpcError as e:
        return e
    raise AssertionError("Fail(%d) answered OK" % code)


def code_of(e: BaseException) -> str:
    return e.code().name if isinstance(e, nngrpc.RpcError) else "error: " + type(e).__name__


def nngrpc_trailers(call: Any) -> Dict[str, str]:
    return {k: v for k, v in call.trailing_metadata() if k.startswith("nngrpc-")}


# ---- calls and status -----------------------------------------------------------------
@check("unary calls")
def unary(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        r = testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(payload=b"compat"), timeout=T)
        hotels = hotel_nngrpc.HotelSearchStub(ch)
        page = hotels.Search(hotel_pb2.SearchRequest(page_size=3), timeout=T)
        one = hotels.GetHotel(hotel_pb2.GetHotelRequest(id=page.hits[0].hotel.id), timeout=T)
    ok = r.payload == b"compat" and len(page.hits) == 3 and one.id == page.hits[0].hotel.id
    return ("ok" if ok else "wrong answer"), {"hits": len(page.hits), "hotel": one.name}


@check("status codes and messages")
def status_codes(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    wrong = []
    with nngrpc.Channel(cfg["main"], retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for code in nngrpc.StatusCode:
            if code is nngrpc.StatusCode.OK:
                continue
            e = fail(stub, code.value_int, "compat %s" % code.name)
            if e.code() is not code or e.details() != "compat %s" % code.name:
                wrong.append("%s -> %s %r" % (code.name, e.code().name, e.details()))
    return ("ok, 16 codes" if not wrong else "wrong: %d" % len(wrong)), wrong


@check("unknown method")
def unknown_method(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        try:
            ch.call("/compat.v1.Nothing/Here", b"", timeout=T)
        except nngrpc.RpcError as e:
            return e.code().name, e.details()
    return "OK", None


@check("deadlines")
def deadlines(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        t0 = time.monotonic()
        try:
            stub.Sleep(testing_pb2.SleepRequest(ms=5000), timeout=0.3)
            return "OK (no deadline)", None
        except nngrpc.RpcError as e:
            took = time.monotonic() - t0
            seen = e.code().name + ("" if took < 2.5 else " late")
            return seen, {"seconds": round(took, 3), "server_run_us": e.call.run_us}


@check("metadata and request ids")
def request_ids(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    rid = "compat-" + uuid.uuid4().hex[:16]
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        _, call = stub.Echo.with_call(
            testing_pb2.EchoRequest(payload=b"rid"), timeout=T,
            metadata=[("x-compat", "yes"), ("nngrpc-request-id", rid)],
        )
        _, generated = stub.Echo.with_call(testing_pb2.EchoRequest(payload=b"rid"), timeout=T)
    ok = call.request_id == rid and len(generated.request_id) == 16
    # The driver checks that the server logged both ids.
    return ("ok" if ok else "wrong id"), {"rid": rid, "generated": generated.request_id}


@check("retries")
def retries(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)  # Fail is NO_SIDE_EFFECTS
        idem = fail(stub, 14, "compat retry")
        try:
            ch.call("/nngrpc.testing.v1.Testing/Fail",
                    testing_pb2.FailRequest(code=14).SerializeToString(), timeout=T)
            other = 0
        except nngrpc.RpcError as e:
            other = e.call.attempts
    return "idempotent x%d, other x%d" % (idem.call.attempts, other), idem.details()


# ---- built-in services and tools ---------------------------------------------------------
@check("health")
def health(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        whole = health_check(ch, "", timeout=T)
        hotel = health_check(ch, "hotel.v1.HotelSearch", timeout=T)
        try:
            health_check(ch, "compat.v1.Nothing", timeout=T)
            unknown = "OK"
        except nngrpc.RpcError as e:
            unknown = e.code().name
    return "%s; unknown %s" % ("SERVING" if whole == hotel == ServingStatus.SERVING
                               else "%s, %s" % (whole.name, hotel.name), unknown), None


@check("reflection")
def reflection(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    want = {"hotel.v1.HotelSearch", "nngrpc.testing.v1.Testing", "nngrpc.health.v1.Health",
            "nngrpc.reflection.v1.Reflection"}
    with nngrpc.Channel(cfg["main"]) as ch:
        refl = ReflectionClient(ch, timeout=T)
        services = refl.list_services()
        fields = [f.name for f in refl.message("hotel.v1.SearchRequest").fields]
    missing = sorted(want - set(services))
    ok = not missing and "query" in fields
    return ("ok" if ok else "missing %s" % missing), services


@check("CLI (python -m nngrpc)")
def cli(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    def run(*args: str) -> Tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", "nngrpc", "--timeout", "10", cfg["main"], *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    rc_list, out = run("list")
    rc_call, _ = run("call", "nngrpc.testing.v1.Testing/Fail", '{"code": 5, "message": "cli"}')
    rc_health, _ = run("health")
    ok = "hotel.v1.HotelSearch" in out
    seen = "exit %d/%d/%d" % (rc_list, rc_call, rc_health) + ("" if ok else ", list wrong")
    return seen, "list, call Fail(5), health"


@check("auth")
def auth(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    token = open(cfg["token_file"]).read().strip()
    with nngrpc.Channel(cfg["auth"], retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        try:
            stub.Echo(testing_pb2.EchoRequest(), timeout=T)
            without = "OK"
        except nngrpc.RpcError as e:
            without = e.code().name
        stub.Echo(testing_pb2.EchoRequest(), timeout=T,
                  metadata=[("authorization", "Bearer " + token)])
    return "no token %s, token OK" % without, None


@check("auth: health needs no token")
def auth_health(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["auth"], retry=None) as ch:
        return health_check(ch, "", timeout=T).name, None


@check("TLS")
def tls(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["tls"], tls=nngrpc.TlsConfig(ca_file=cfg["ca"])) as ch:
        r = testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(payload=b"tls"), timeout=T)
    return ("ok" if r.payload == b"tls" else "wrong answer"), None


@check("asyncio client")
def aio(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    async def main() -> Tuple[str, Any]:
        async with nngrpc.aio.Channel(cfg["main"]) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            replies = await asyncio.gather(*(
                stub.Echo(testing_pb2.EchoRequest(payload=b"%d" % i), timeout=T) for i in range(50)
            ))
            ok = [r.payload for r in replies] == [b"%d" % i for i in range(50)]
            try:
                await stub.Sleep(testing_pb2.SleepRequest(ms=5000), timeout=0.3)
                late = "OK"
            except nngrpc.RpcError as e:
                late = e.code().name
        return ("50 ok" if ok else "wrong answers") + ", deadline " + late, None

    return asyncio.run(main())


@check("asyncio task cancelled, then a call")
def aio_cancel(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """A task awaiting a Sleep is cancelled (a new client sends a cancel
    by request id on the shared connection); the same channel calls
    again."""
    async def main() -> Tuple[str, Any]:
        async with nngrpc.aio.Channel(cfg["main"]) as ch:
            stub = testing_nngrpc.TestingAsyncStub(ch)
            task = asyncio.ensure_future(stub.Sleep(testing_pb2.SleepRequest(ms=2000), timeout=T))
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                r = await stub.Echo(testing_pb2.EchoRequest(payload=b"after"), timeout=T)
                return ("next call OK" if r.payload == b"after" else "wrong answer"), None
            except nngrpc.RpcError as e:
                return "next call " + e.code().name, e.details()

    return asyncio.run(main())


# ---- the envelope additions (issue 13 item 5): today's behaviour ----------------------------
@check("size limit, client not told")
def size_limit(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    payload = b"x" * (cfg["limit"] + 64 * 1024)
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        t0 = time.monotonic()
        try:
            stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=T)
            return "OK", None
        except nngrpc.RpcError as e:
            names = str(cfg["limit"]) in e.details()
            seen = "%s x%d%s" % (e.code().name, e.call.attempts, ", names limit" if names else "")
            return seen, {"details": e.details(), "seconds": round(time.monotonic() - t0, 3)}


@check("size limit, learned on the connection")
def size_limit_learned(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """A small call first, then the oversize one on the same connection: a
    client that learned the server's limit there refuses it unsent."""
    payload = b"x" * (cfg["limit"] + 64 * 1024)
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        stub.Echo(testing_pb2.EchoRequest(payload=b"first"), timeout=T)
        try:
            stub.Echo(testing_pb2.EchoRequest(payload=payload), timeout=T)
            return "OK", None
        except nngrpc.RpcError as e:
            unsent = "not sent" in e.details() and str(cfg["limit"]) in e.details()
            return "%s x%d%s" % (e.code().name, e.call.attempts, ", not sent" if unsent else ""), e.details()


@check("size limit, client told")
def size_limit_told(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    payload = b"x" * (cfg["limit"] + 64 * 1024)
    with nngrpc.Channel(cfg["main"], max_message_bytes=cfg["limit"]) as ch:
        try:
            testing_nngrpc.TestingStub(ch).Echo(testing_pb2.EchoRequest(payload=payload), timeout=T)
            return "OK", None
        except nngrpc.RpcError as e:
            return "%s x%d" % (e.code().name, e.call.attempts), e.details()


@check("long status messages")
def long_status(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    seen = []
    with nngrpc.Channel(cfg["main"], retry=None) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        for chars in (1000, 1667):
            sent = "€" * chars  # three bytes a character: a cut may fall inside one
            n = len(sent.encode())
            got = fail(stub, 9, sent).details()
            size = len(got.encode())
            if got == sent:
                seen.append("%d exact" % n)
            elif sent.startswith(got):
                seen.append("%d->%d" % (n, size))
            else:
                seen.append("%d->%d changed" % (n, size))
    return ", ".join(seen), None


@check("NUL in a status message")
def nul_status(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """Fail with a message holding NUL, as a string and (FailRequest's
    field 3, message_bytes, written by hand: 0.1.0's stubs lack it) as
    bytes; a server that knows field 3 sends that one."""
    text = "before\x00after"
    raw = text.encode()
    request = testing_pb2.FailRequest(code=9, message=text).SerializeToString()
    request += b"\x1a" + bytes([len(raw)]) + raw
    with nngrpc.Channel(cfg["main"], retry=None) as ch:
        try:
            ch.call(FAIL, request, timeout=T)
            return "OK", None
        except nngrpc.RpcError as e:
            got = e.details()
    return ("exact" if got == text else "cut at NUL" if got == "before" else "changed"), got


@check("-bin metadata")
def bin_metadata(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        stub = testing_nngrpc.TestingStub(ch)
        # Text in a -bin key: what 0.1.0 clients can send; a server passes it on.
        stub.Echo(testing_pb2.EchoRequest(), timeout=T,
                  metadata=[("x-compat-bin", base64.b64encode(b"\x00\xff").decode())])
        try:
            stub.Echo(testing_pb2.EchoRequest(), timeout=T, metadata=[("x-compat-bin", b"\x00\xff")])  # type: ignore[list-item]
            as_bytes = "bytes sent"
        except nngrpc.RpcError as e:
            as_bytes = "bytes: " + e.code().name
        except Exception as e:  # 0.1.0: protobuf refuses bytes in a string map
            as_bytes = "bytes refused by client"
            return as_bytes + "; base64 text ok", type(e).__name__ + ": " + str(e)
    return as_bytes + "; base64 text ok", None


@check("-bin trailers (Echo returns metadata)")
def bin_trailers(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """Echo asked (EchoRequest.return_metadata, field 2, written by hand:
    0.1.0's stubs lack it) to send a -bin metadata value back."""
    key = b"x-compat-bin"
    request = echo_req(b"bin") + b"\x12" + bytes([len(key)]) + key
    with nngrpc.Channel(cfg["main"]) as ch:
        _, call = ch.invoke(ECHO, request, timeout=T, idempotent=True,
                            metadata=[("x-compat-bin", base64.b64encode(b"\x00\xff\x00").decode())])
    got = dict(call.trailing_metadata()).get("x-compat-bin")
    if got is None:
        return "not returned", None
    if got == b"\x00\xff\x00":
        return "returned as bytes", None
    if isinstance(got, str) and base64.b64decode(got + "=" * (-len(got) % 4)) == b"\x00\xff\x00":
        return "returned as base64 text", got
    return "changed", repr(got)


@check("compression option")
def compression_option(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """A channel that compresses with gzip (two calls: the first of a
    connection goes plain, the next compressed if the server decodes gzip),
    then one call with zstd."""
    if not _supports(nngrpc.Channel.__init__, "compression"):
        return "no such option", None
    data = b"compress me " * 8192
    seen = []
    with nngrpc.Channel(cfg["main"], compression="gzip") as ch:  # type: ignore[call-arg]
        stub = testing_nngrpc.TestingStub(ch)
        for _ in range(2):
            r, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=data), timeout=T)
        seen.append("gzip %s (reply %s)" % ("ok" if r.payload == data else "wrong answer",
                                            call.compression))
        r, call = stub.Echo.with_call(testing_pb2.EchoRequest(payload=data), timeout=T,
                                      compression="zstd")  # type: ignore[call-arg]
        seen.append("zstd per call %s (reply %s)" % ("ok" if r.payload == data else "wrong answer",
                                                     call.compression))
    return "; ".join(seen), None


@check("accept-encoding on the wire")
def accept_encoding(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """A request that says it decodes gzip, with a large compressible reply:
    the reply says how its payload is encoded, and must decode to the echo."""
    data = b"compress me " * 8192
    with nngrpc.Channel(cfg["main"]) as ch:
        payload, call = ch.invoke(ECHO, echo_req(data), timeout=T,
                                  metadata=[("nngrpc-accept-encoding", "gzip")], idempotent=True)
    enc = dict(call.trailing_metadata()).get("nngrpc-encoding", "identity")
    if enc == "gzip":
        payload = gzip.decompress(payload)
    ok = testing_pb2.EchoResponse.FromString(payload).payload == data
    # A client that decodes compressed replies itself hides the trailer and
    # says so on the Call.
    decoded = getattr(call, "compression", "identity")
    if enc == "identity" and decoded != "identity":
        return "reply %s, decoded by the client%s" % (decoded, "" if ok else ", wrong payload"), None
    return "reply %s%s" % (enc, "" if ok else ", wrong payload"), len(payload)


@check("capability trailers")
def capabilities(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        _, call = ch.invoke(ECHO, echo_req(b"caps"), timeout=T,
                            metadata=[("nngrpc-accept-encoding", "identity")], idempotent=True)
    got = nngrpc_trailers(call)
    return ", ".join("%s=%s" % kv for kv in sorted(got.items())) or "none", got


@check("cancel by request id")
def cancel(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["main"]) as ch:
        try:
            ch.call(CANCEL, b"", timeout=T, metadata=[("nngrpc-cancel", "compat-no-such-call")])
            return "OK", None
        except nngrpc.RpcError as e:
            return e.code().name, e.details()


# ---- a peer newer than both (tests/compat/future_proxy.py) -----------------------------------
@check("future peer: unknown fields, metadata, trailers")
def future_fields(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["proxy"]) as ch:
        r, call = testing_nngrpc.TestingStub(ch).Echo.with_call(
            testing_pb2.EchoRequest(payload=b"future"), timeout=T)
    shown = dict(call.trailing_metadata())
    ok = r.payload == b"future"
    both = shown.get("nngrpc-compat-future") == "1" and shown.get("x-compat-future") == "1"
    return ("ok" if ok else "wrong answer") + (", trailers shown" if both else ", trailers lost"), shown


@check("future peer: unknown status code")
def future_code(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["proxy"], retry=None) as ch:
        e = fail(testing_nngrpc.TestingStub(ch), 13, FUTURE_CODE_MESSAGE)
    kept = e.details() == FUTURE_CODE_MESSAGE
    return e.code().name + (", message kept" if kept else ", message lost"), e.details()


# ---- while a server drains -----------------------------------------------------------------
@check("not-run trailer", "drain")
def not_run(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["drain"], retry=None) as ch:
        try:
            ch.call(ECHO, echo_req(b"drain"), timeout=T)
            return "OK", None
        except nngrpc.RpcError as e:
            trailers = nngrpc_trailers(e.call)
            mark = "nngrpc-not-run=%s" % trailers["nngrpc-not-run"] if "nngrpc-not-run" in trailers else "no trailer"
            return "%s, %s" % (e.code().name, mark), e.details()


@check("failover of a non-idempotent call", "drain")
def failover(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel([cfg["drain"], cfg["main"]]) as ch:
        _, call = ch.invoke(ECHO, echo_req(b"failover"), timeout=T, idempotent=False)
    return "OK x%d" % call.attempts, None


@check("health while draining", "drain")
def health_draining(cfg: Dict[str, Any]) -> Tuple[str, Any]:
    with nngrpc.Channel(cfg["drain"]) as ch:
        return health_check(ch, "", timeout=T).name, None


# ---- main -----------------------------------------------------------------------------------
def hold(url: str, ms: int) -> int:
    """One long Sleep, to keep a draining server draining."""
    with nngrpc.Channel(url, retry=None) as ch:
        try:
            testing_nngrpc.TestingStub(ch).Sleep(testing_pb2.SleepRequest(ms=ms), timeout=ms / 1000 + 10)
        except nngrpc.RpcError as e:
            print("hold: %s" % e, file=sys.stderr)
    return 0


def main(argv: List[str]) -> int:
    if argv[:1] == ["--hold"]:
        return hold(argv[1], int(argv[2]))
    cfg = json.loads(argv[0])
    only = set(os.environ.get("COMPAT_CHECKS", "").split(",")) - {""}
    for name, fn in CHECKS[argv[1]]:
        if only and name not in only:
            continue
        print("start %s" % name, flush=True)
        t0 = time.monotonic()
        try:
            seen, detail = fn(cfg)
        except nngrpc.RpcError as e:
            seen, detail = "error: %s" % e.code().name, e.details()
        except Exception as e:  # an observation too: the matrix shows it
            seen, detail = "error: %s" % type(e).__name__, str(e)
        print(json.dumps({"check": name, "seen": seen, "detail": detail,
                          "seconds": round(time.monotonic() - t0, 3)}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
