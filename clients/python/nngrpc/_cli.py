"""``python -m nngrpc``: a grpcurl-like command line built on reflection.

It lists a server's services, describes services, methods and messages
with their comments, calls any method with JSON in and JSON out, and
checks health, all without generated code: the descriptors come from the
server's nngrpc.reflection.v1.Reflection service.  The exit code is the
call's status code (0 OK, 1..16 as gRPC numbers them).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import time
from typing import Any, Dict, List, NoReturn, Optional, Sequence, TextIO, Tuple

from google.protobuf import descriptor_pb2, json_format, text_format

from nngrpc import _compression
from nngrpc._channel import Channel
from nngrpc._errors import Call, RpcError
from nngrpc._status_table import StatusCode
from nngrpc.health import ServingStatus
from nngrpc.health import check as health_check
from nngrpc.reflection import ReflectionClient, kind_of, split_method

PROG = "python -m nngrpc"
DEFAULT_TIMEOUT = 30.0


class UsageError(Exception):
    """A bad command line or bad input: exit code 3 (INVALID_ARGUMENT)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors exit with INVALID_ARGUMENT (3), not
    argparse's 2 (which is UNKNOWN here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _exit_codes_help() -> str:
    rows = ["exit status:"]
    for code in StatusCode:
        rows.append("  %2d  %s" % (code.value_int, code.name))
    return "\n".join(rows)


EPILOG = """\
examples:
  %(prog)s tcp://127.0.0.1:5555 list
  %(prog)s tcp://127.0.0.1:5555 list hotel.v1.HotelSearch
  %(prog)s tcp://127.0.0.1:5555 describe hotel.v1.SearchRequest
  %(prog)s tcp://127.0.0.1:5555 call hotel.v1.HotelSearch/Search '{"query": "spa"}'
  %(prog)s tcp://127.0.0.1:5555 call hotel.v1.HotelSearch.GetHotel -d @req.json
  echo '{"id": 7}' | %(prog)s tcp://127.0.0.1:5555 call /hotel.v1.HotelSearch/GetHotel
  %(prog)s --token-file token.txt ipc:///run/hoteld.sock call ...
  %(prog)s tcp://127.0.0.1:5555 health hotel.v1.HotelSearch

URL is a server address (tcp://HOST:PORT, ipc:///PATH) or several, comma
separated.  Options may also follow the command.  The --timeout deadline
covers the whole command (reflection lookups and the call).

%(codes)s

  0 is OK.  Otherwise the exit status is the status code of the call that
  failed, and stderr has one line "ERROR: CODE_NAME: details".  The tool's
  own failures use the same codes: a bad command line or bad JSON is
  INVALID_ARGUMENT (3); a symbol the server does not have is NOT_FOUND (5)
  (for "call": UNIMPLEMENTED (12), as the server would answer); no server
  is UNAVAILABLE (14); Ctrl+C is CANCELLED (1).  "health" exits 0 only for
  SERVING; NOT_SERVING exits 14 (UNAVAILABLE), UNKNOWN 2.
""" % {"prog": PROG, "codes": _exit_codes_help()}


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: an option given after the command does not reset one
    # given before it.
    S = argparse.SUPPRESS
    common.add_argument(
        "--timeout", type=float, metavar="S", default=S,
        help="deadline of the whole command in seconds (default %g)" % DEFAULT_TIMEOUT,
    )
    common.add_argument(
        "-H", "--metadata", action="append", metavar="K=V", default=S,
        help='request metadata, repeatable ("k=v" or "k: v"); the value of a'
        ' key ending in -bin is bytes, given in base64',
    )
    common.add_argument(
        "--compression", choices=("identity",) + _compression.AVAILABLE, default=S,
        help="compress requests and accept compressed replies, for servers that"
        " support it (default identity: none)",
    )
    token = common.add_mutually_exclusive_group()
    token.add_argument(
        "--token", metavar="T", default=S,
        help='send "authorization: Bearer T" (visible in ps: prefer --token-file)',
    )
    token.add_argument(
        "--token-file", metavar="F", default=S,
        help="send the token read from file F (surrounding whitespace removed)",
    )
    common.add_argument(
        "--format", choices=("json", "text"), default=S,
        help="output of list/describe/health (default text); of call (default json;"
        " text is protobuf text format)",
    )

    parser = _Parser(
        prog=PROG,
        description="Call nngrpc servers from the command line, like grpcurl: "
        "list and describe their services through reflection, call any method "
        "with JSON, check health.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("url", metavar="URL", help="server address(es), comma separated")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "list", parents=[common], help="the services, or the methods of SERVICE",
        description="Lists the server's services, or the methods of one.",
    )
    p.add_argument("service", nargs="?", metavar="SERVICE")

    p = sub.add_parser(
        "describe", parents=[common],
        help="a service, method, message, enum or field, with comments",
        description="Describes a symbol in .proto syntax with its comments: a "
        "service (its methods and their input and output types), a method, a "
        "message (its fields), an enum, a field or an enum value.  Without "
        "SYMBOL: every service.",
    )
    p.add_argument("symbol", nargs="?", metavar="SYMBOL")

    p = sub.add_parser(
        "call", parents=[common], help="call METHOD with a JSON request",
        description="Calls METHOD (hotel.v1.HotelSearch/Search, "
        "hotel.v1.HotelSearch.Search or /hotel.v1.HotelSearch/Search) with the "
        "request given as JSON (the protobuf JSON mapping of its input type), "
        "and prints the response as JSON.  The request is JSON, -d JSON, "
        "-d @FILE, -d @- (stdin), or stdin when it is not a terminal; none at "
        "all is the empty request {}.",
    )
    p.add_argument("method", metavar="METHOD")
    p.add_argument("json", nargs="?", metavar="JSON", help="the request")
    p.add_argument("-d", "--data", metavar="JSON|@FILE", help="the request, or @FILE, @- for stdin")
    p.add_argument(
        "--emit-defaults", action="store_true",
        help="print fields that have their default value too",
    )
    p.add_argument(
        "--proto-names", action="store_true",
        help="print proto field names (snake_case), not JSON names (lowerCamelCase)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="print the status, server timings and trailers on stderr",
    )

    p = sub.add_parser(
        "health", parents=[common], help="serving state of the server or of SERVICE",
        description="Prints SERVING, NOT_SERVING or UNKNOWN for the server as a "
        "whole, or for SERVICE.  Exit 0 only for SERVING.",
    )
    p.add_argument("service", nargs="?", default="", metavar="SERVICE")
    p.add_argument(
        "--wait", action="store_true",
        help="poll until SERVING or the deadline (--timeout), also while"
        " the server is not up yet",
    )
    return parser


# ---- running a command ---------------------------------------------------------


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        """Seconds left; <= 0 makes the next call DEADLINE_EXCEEDED."""
        return self.end - time.monotonic()


def _metadata(args: argparse.Namespace) -> List[Tuple[str, str]]:
    pairs: List[Tuple[str, str]] = []
    for item in getattr(args, "metadata", None) or []:
        eq, colon = item.find("="), item.find(":")
        cut = eq if colon < 0 or (0 <= eq < colon) else colon
        if cut <= 0:
            raise UsageError("metadata %r: want KEY=VALUE or 'KEY: VALUE'" % item)
        key, value = item[:cut].strip(), item[cut + 1 :].strip()
        if key.endswith("-bin"):
            try:
                base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise UsageError("metadata %s: a -bin value must be base64, not %r" % (key, value)) from None
        pairs.append((key, value))
    token: Optional[str] = getattr(args, "token", None)
    token_file: Optional[str] = getattr(args, "token_file", None)
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise UsageError("--token-file %s: %s" % (token_file, e.strerror or e)) from None
        if not token:
            raise UsageError("--token-file %s: the file is empty" % token_file)
    if token is not None:
        if any(k.lower() == "authorization" for k, _ in pairs):
            raise UsageError("--token/--token-file and an authorization --metadata both given")
        pairs.append(("authorization", "Bearer " + token))
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UsageError("metadata key given twice: %s" % ", ".join(dup))
    return pairs


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        metadata = _metadata(args)
        timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
        urls = [u.strip() for u in args.url.split(",") if u.strip()]
        if not urls:
            raise UsageError("no server URL")
        try:
            channel = Channel(urls, backoff=0.05, backoff_max=0.5,
                              compression=getattr(args, "compression", None))
        except ValueError as e:
            raise UsageError(str(e)) from None
        deadline = _Deadline(timeout)
        refl = ReflectionClient(channel, timeout=timeout, metadata=metadata or None)
        cmd = _Command(args, channel, refl, deadline, metadata, sys.stdout)
        with channel:
            return cmd.run()
    except UsageError as e:
        return _fail(StatusCode.INVALID_ARGUMENT, str(e))
    except RpcError as e:
        return _fail(e.code(), e.details())
    except KeyboardInterrupt:
        return _fail(StatusCode.CANCELLED, "interrupted")
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0


def _fail(code: StatusCode, details: str) -> int:
    # One line, whatever the details hold (protobuf's JSON errors have
    # newlines).
    details = " ".join(line.strip() for line in details.splitlines() if line.strip())
    sys.stderr.write("ERROR: %s: %s\n" % (code.name, details))
    sys.stderr.flush()
    return code.value_int


class _Command:
    def __init__(
        self,
        args: argparse.Namespace,
        channel: Channel,
        refl: ReflectionClient,
        deadline: _Deadline,
        metadata: List[Tuple[str, str]],
        out: TextIO,
    ) -> None:
        self.args = args
        self.channel = channel
        self.refl = refl
        self.deadline = deadline
        self.metadata = metadata
        self.out = out
        self.format: Optional[str] = getattr(args, "format", None)

    def run(self) -> int:
        command: str = self.args.command
        if command == "list":
            return self.do_list()
        if command == "describe":
            return self.do_describe()
        if command == "call":
            return self.do_call()
        return self.do_health()

    def _tick(self) -> ReflectionClient:
        """The reflection client, with the time left as its timeout."""
        self.refl.timeout = self.deadline.left()
        return self.refl

    def _print(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def _print_json(self, value: Any) -> None:
        self._print(json.dumps(value, indent=2, ensure_ascii=False))

    # ---- list ------------------------------------------------------------------
    def do_list(self) -> int:
        name: Optional[str] = self.args.service
        if not name:
            services = self._tick().list_services()
            if self.format == "json":
                self._print_json({"services": services})
            else:
                self._print("\n".join(services))
            return 0
        service = self._tick().service(name)
        methods = [describe_method(self.refl, m) for m in service.methods]
        if self.format == "json":
            self._print_json({"service": service.full_name, "methods": methods})
        else:
            self._print("\n".join(m["name"] for m in methods))
        return 0

    # ---- describe --------------------------------------------------------------
    def do_describe(self) -> int:
        symbol: Optional[str] = self.args.symbol
        if symbol:
            found = [self._tick().symbol(symbol)]
        else:
            found = [self._tick().service(s) for s in self._tick().list_services()]
        described = [describe(self.refl, d) for d in found]
        if self.format == "json":
            self._print_json(described[0] if symbol else described)
        else:
            self._print("\n".join(render(d) for d in described))
        return 0

    # ---- call --------------------------------------------------------------
    def _request_text(self) -> str:
        given: Optional[str] = self.args.json
        data: Optional[str] = self.args.data
        if given is not None and data is not None:
            raise UsageError("give the request once: as JSON or with -d, not both")
        text = given if given is not None else data
        if text is not None and text.startswith("@"):
            path = text[1:]
            if path == "-":
                return sys.stdin.read()
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read()
            except OSError as e:
                raise UsageError("-d @%s: %s" % (path, e.strerror or e)) from None
        if text is not None:
            return text
        if sys.stdin is not None and not sys.stdin.isatty():
            return sys.stdin.read()
        return ""

    def do_call(self) -> int:
        try:
            split_method(self.args.method)
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            method = self._tick().method(self.args.method)
        except RpcError as e:
            if e.code() is not StatusCode.NOT_FOUND:
                raise
            raise RpcError.of(
                StatusCode.UNIMPLEMENTED,
                "unknown method %s: %s" % (self.args.method, e.details()),
            ) from None
        in_cls = self.refl.message_class(method.input_type)
        text = self._request_text()
        request = in_cls()
        if text.strip():
            type_name: str = method.input_type.full_name
            try:
                value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
            except ValueError as e:
                raise UsageError("request is not JSON: %s" % e) from None
            if not isinstance(value, dict):
                raise UsageError(
                    "request must be a JSON object (a %s), not %s"
                    % (type_name, type(value).__name__)
                )
            try:
                json_format.ParseDict(value, request, descriptor_pool=self.refl.pool)
            except json_format.ParseError as e:
                raise UsageError("request is not a valid %s: %s" % (type_name, e)) from None
        callable_ = self.refl.multicallable(self.args.method)
        try:
            response, call = callable_.with_call(
                request, timeout=self.deadline.left(), metadata=self.metadata or None
            )
        except RpcError as e:
            if self.args.verbose:
                self._verbose(e.call)
            raise
        if self.format == "text":
            self._print(text_format.MessageToString(response, as_utf8=True))
        else:
            self._print(_to_json(response, self.args.emit_defaults, self.args.proto_names,
                                 self.refl))
        if self.args.verbose:
            self._verbose(call)
        return 0

    def _verbose(self, call: Call) -> None:
        line = "status: %s  queue_us: %d  run_us: %d" % (
            call.code().name, call.queue_us, call.run_us)
        if call.compression != _compression.IDENTITY:
            line += "  compression: %s" % call.compression
        sys.stderr.write(line + "\n")
        for key, value in call.trailing_metadata():
            if isinstance(value, bytes):  # a -bin trailer: shown in base64
                value = base64.b64encode(value).decode()
            sys.stderr.write("trailer: %s: %s\n" % (key, value))
        sys.stderr.flush()

    # ---- health --------------------------------------------------------------
    def do_health(self) -> int:
        service: str = self.args.service
        wait: bool = self.args.wait
        unavailable: Optional[RpcError] = None  # while waiting for a server
        while True:
            try:
                status = health_check(
                    self.channel, service, timeout=self.deadline.left(),
                    metadata=self.metadata or None,
                )
            except RpcError as e:
                # --wait: a server not up yet (or still connecting) is
                # waited for too, until the deadline; a deadline that
                # passes meanwhile (a pause that overslept) still means
                # nobody answered.
                if unavailable is not None and e.code() is StatusCode.DEADLINE_EXCEEDED:
                    raise unavailable from None
                if not wait or e.code() is not StatusCode.UNAVAILABLE or self.deadline.left() <= 0.1:
                    raise
                unavailable = e
            else:
                if status is ServingStatus.SERVING or not wait or self.deadline.left() <= 0.1:
                    break
            time.sleep(0.1)
        if self.format == "json":
            self._print_json({"service": service, "status": status.name})
        else:
            self._print(status.name)
        if status is ServingStatus.SERVING:
            return 0
        if status is ServingStatus.NOT_SERVING:
            return StatusCode.UNAVAILABLE.value_int
        if status is ServingStatus.SERVICE_UNKNOWN:
            return StatusCode.NOT_FOUND.value_int
        return StatusCode.UNKNOWN.value_int


def _no_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("key %r given twice" % key)
        out[key] = value
    return out


def _to_json(message: Any, emit_defaults: bool, proto_names: bool, refl: ReflectionClient) -> str:
    kwargs: Dict[str, Any] = {
        "preserving_proto_field_name": proto_names,
        "indent": 2,
        "descriptor_pool": refl.pool,
        "ensure_ascii": False,
    }
    if emit_defaults:
        kwargs["including_default_value_fields"] = True
    try:
        text: str = json_format.MessageToJson(message, **kwargs)
    except TypeError:  # protobuf >= 5.26 renamed the option
        kwargs.pop("including_default_value_fields", None)
        kwargs["always_print_fields_with_no_presence"] = emit_defaults
        text = json_format.MessageToJson(message, **kwargs)
    return text


# ---- describe: symbols as dicts (--format json) and as .proto text --------------

_FDP = descriptor_pb2.FieldDescriptorProto
_IDEMPOTENCY = descriptor_pb2.MethodOptions.IdempotencyLevel


def _strip(type_name: str) -> str:
    return type_name[1:] if type_name.startswith(".") else type_name


def describe_method(refl: ReflectionClient, method: Any) -> Dict[str, Any]:
    """A method as a dict: name, path, input/output types, comment."""
    service: str = method.containing_service.full_name
    full = "%s.%s" % (service, method.name)
    d: Dict[str, Any] = {
        "kind": "method",
        "name": full,
        "path": "/%s/%s" % (service, method.name),
        "input_type": method.input_type.full_name,
        "output_type": method.output_type.full_name,
    }
    try:
        level = refl.proto_of(full).options.idempotency_level
    except KeyError:
        level = 0
    if level:
        d["idempotency_level"] = _IDEMPOTENCY.Name(level)
    d["comment"] = refl.comments(full)
    return d


def _field_type(field: Any, message: Any) -> Tuple[str, str]:
    """(label, type) of a FieldDescriptorProto inside DescriptorProto
    message: label is "repeated", "optional" or ""; maps are "map<K, V>"."""
    if field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_ENUM, _FDP.TYPE_GROUP):
        type_name = _strip(field.type_name)
        if field.label == _FDP.LABEL_REPEATED and field.type == _FDP.TYPE_MESSAGE:
            leaf = type_name.rpartition(".")[2]
            for nested in message.nested_type:
                if nested.name == leaf and nested.options.map_entry:
                    k, v = nested.field[0], nested.field[1]
                    return "", "map<%s, %s>" % (_field_type(k, nested)[1], _field_type(v, nested)[1])
    else:
        type_name = _FDP.Type.Name(field.type)[len("TYPE_"):].lower()
    if field.label == _FDP.LABEL_REPEATED:
        return "repeated", type_name
    if field.proto3_optional or field.label == _FDP.LABEL_REQUIRED:
        return ("optional" if field.proto3_optional else "required"), type_name
    return "", type_name


def describe_message(refl: ReflectionClient, full: str) -> Dict[str, Any]:
    proto = refl.proto_of(full)
    oneofs = [o.name for o in proto.oneof_decl]
    fields: List[Dict[str, Any]] = []
    for f in proto.field:
        label, type_name = _field_type(f, proto)
        fd: Dict[str, Any] = {
            "name": f.name,
            "number": f.number,
            "type": type_name,
            "label": label,
            "json_name": f.json_name or f.name,
        }
        if f.HasField("oneof_index") and not f.proto3_optional:
            fd["oneof"] = oneofs[f.oneof_index]
        fd["comment"] = refl.comments(full + "." + f.name)
        fields.append(fd)
    return {
        "kind": "message",
        "name": full,
        "comment": refl.comments(full),
        "fields": fields,
        "oneofs": [
            {"name": o, "comment": refl.comments(full + "." + o)}
            for o in oneofs
            if any(f.get("oneof") == o for f in fields)
        ],
        "messages": [
            describe_message(refl, full + "." + n.name)
            for n in proto.nested_type
            if not n.options.map_entry
        ],
        "enums": [describe_enum(refl, full + "." + e.name) for e in proto.enum_type],
    }


def describe_enum(refl: ReflectionClient, full: str) -> Dict[str, Any]:
    proto = refl.proto_of(full)
    return {
        "kind": "enum",
        "name": full,
        "comment": refl.comments(full),
        "values": [
            {"name": v.name, "number": v.number, "comment": refl.comments(full + "." + v.name)}
            for v in proto.value
        ],
    }


def describe(refl: ReflectionClient, desc: Any) -> Dict[str, Any]:
    """Any resolved symbol as a dict (the --format json of describe)."""
    kind = kind_of(desc)
    if kind == "service":
        return {
            "kind": "service",
            "name": desc.full_name,
            "file": desc.file.name,
            "comment": refl.comments(desc.full_name),
            "methods": [describe_method(refl, m) for m in desc.methods],
        }
    if kind == "method":
        return describe_method(refl, desc)
    if kind == "message":
        d = describe_message(refl, desc.full_name)
        d["file"] = desc.file.name
        return d
    if kind == "enum":
        d = describe_enum(refl, desc.full_name)
        d["file"] = desc.file.name
        return d
    if kind == "field":
        parent: str = desc.containing_type.full_name
        message = describe_message(refl, parent)
        field = next(f for f in message["fields"] if f["name"] == desc.name)
        return {"kind": "field", **field, "name": "%s.%s" % (parent, desc.name)}
    # an enum value
    enum_name: str = desc.type.full_name
    value = next(v for v in describe_enum(refl, enum_name)["values"] if v["name"] == desc.name)
    return {"kind": "enum value", **value, "name": "%s.%s" % (enum_name, desc.name)}


def _comment(text: str, indent: str) -> List[str]:
    if not text:
        return []
    return [(indent + "// " + line).rstrip() for line in text.split("\n")]


def _rpc_lines(m: Dict[str, Any], indent: str) -> List[str]:
    head = "%srpc %s(%s) returns (%s)" % (
        indent, m["name"].rpartition(".")[2], m["input_type"], m["output_type"])
    if "idempotency_level" not in m:
        return [head + ";"]
    return [head + " {",
            "%s  option idempotency_level = %s;" % (indent, m["idempotency_level"]),
            indent + "}"]


def _field_line(f: Dict[str, Any], indent: str) -> str:
    label = f["label"] + " " if f["label"] else ""
    return "%s%s%s %s = %d;" % (indent, label, f["type"], f["name"], f["number"])


def _message_lines(d: Dict[str, Any], indent: str) -> List[str]:
    lines = _comment(d["comment"], indent)
    lines.append("%smessage %s {" % (indent, d["name"].rpartition(".")[2]))
    inner = indent + "  "
    done_oneofs = set()
    for f in d["fields"]:
        oneof = f.get("oneof")
        if oneof is None:
            lines += _comment(f["comment"], inner)
            lines.append(_field_line(f, inner))
            continue
        if oneof in done_oneofs:
            continue
        done_oneofs.add(oneof)
        for o in d["oneofs"]:
            if o["name"] == oneof:
                lines += _comment(o["comment"], inner)
        lines.append("%soneof %s {" % (inner, oneof))
        for g in d["fields"]:
            if g.get("oneof") == oneof:
                lines += _comment(g["comment"], inner + "  ")
                lines.append(_field_line(g, inner + "  "))
        lines.append(inner + "}")
    for n in d["messages"]:
        lines += _message_lines(n, inner)
    for e in d["enums"]:
        lines += _enum_lines(e, inner)
    lines.append(indent + "}")
    return lines


def _enum_lines(d: Dict[str, Any], indent: str) -> List[str]:
    lines = _comment(d["comment"], indent)
    lines.append("%senum %s {" % (indent, d["name"].rpartition(".")[2]))
    for v in d["values"]:
        lines += _comment(v["comment"], indent + "  ")
        lines.append("%s  %s = %d;" % (indent, v["name"], v["number"]))
    lines.append(indent + "}")
    return lines


def render(d: Dict[str, Any]) -> str:
    """A described symbol as .proto text, headed "NAME is a KIND:"."""
    kind: str = d["kind"]
    article = "an" if kind[0] in "aeiou" else "a"
    lines = ["%s is %s %s:" % (d["name"], article, kind)]
    if kind == "service":
        lines += _comment(d["comment"], "")
        lines.append("service %s {" % d["name"].rpartition(".")[2])
        for i, m in enumerate(d["methods"]):
            if i and (m["comment"] or "idempotency_level" in m):
                lines.append("")
            lines += _comment(m["comment"], "  ")
            lines += _rpc_lines(m, "  ")
        lines.append("}")
    elif kind == "method":
        lines += _comment(d["comment"], "")
        lines += _rpc_lines(d, "")
    elif kind == "message":
        lines += _message_lines(d, "")
    elif kind == "enum":
        lines += _enum_lines(d, "")
    elif kind == "field":
        lines += _comment(d["comment"], "")
        lines.append(_field_line(dict(d, name=d["name"].rpartition(".")[2]), ""))
    else:
        lines += _comment(d["comment"], "")
        lines.append("%s = %d;" % (d["name"].rpartition(".")[2], d["number"]))
    return "\n".join(lines) + "\n"
