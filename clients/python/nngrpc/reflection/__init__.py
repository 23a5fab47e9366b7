"""Server reflection: call any method of a server without generated code.

    import nngrpc
    from nngrpc.reflection import ReflectionClient

    with nngrpc.Channel("tcp://127.0.0.1:5555") as ch:
        refl = ReflectionClient(ch)
        refl.list_services()          # ['hotel.v1.HotelSearch', 'nngrpc.health.v1.Health', ...]
        search = refl.multicallable("hotel.v1.HotelSearch/Search")
        Request, _ = refl.method_classes("hotel.v1.HotelSearch/Search")
        resp = search(Request(query="spa"), timeout=1.0)

Every nngrpc server has ``nngrpc.reflection.v1.Reflection``: ``ListServices``
and ``FileContainingSymbol``, which answers a serialized FileDescriptorSet
(the file defining the symbol and every file it imports).  The client adds
each file once, dependencies first, to a ``DescriptorPool`` of its own (not
the default pool, so it never clashes with generated modules), and makes
message classes from it with ``message_factory``.  Descriptors already in
the pool are not fetched again.

Method names are accepted as gRPC writes them ("/hotel.v1.HotelSearch/Search"),
without the leading slash, or with a dot ("hotel.v1.HotelSearch.Search").

A server started with ``--auth-token-file`` wants the token on reflection
calls too: pass ``metadata={"authorization": "Bearer <token>"}``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Type, TypeVar, Union, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import DecodeError, Message

from nngrpc._channel import Channel, UnaryUnaryMultiCallable
from nngrpc._errors import Metadata, RpcError
from nngrpc._status_table import StatusCode
from nngrpc.reflection.v1 import reflection_nngrpc, reflection_pb2

__all__ = [
    "DEFAULT_TIMEOUT",
    "SERVICE_NAME",
    "ReflectionClient",
    "Symbol",
    "kind_of",
    "method_path",
    "split_method",
]

class _TypedPool(Protocol):
    """The DescriptorPool methods used here, with their types (the protobuf
    stubs of python3-typeshed leave them unannotated, and mypy --strict
    rejects untyped calls from typed code)."""

    def Add(self, file_desc_proto: descriptor_pb2.FileDescriptorProto) -> None: ...

    def FindFileByName(self, file_name: str) -> FileDescriptor: ...

    def FindServiceByName(self, full_name: str) -> ServiceDescriptor: ...

    def FindMessageTypeByName(self, full_name: str) -> Descriptor: ...

    def FindEnumTypeByName(self, full_name: str) -> EnumDescriptor: ...


#: The full name of the reflection service.
SERVICE_NAME = "nngrpc.reflection.v1.Reflection"

#: Deadline of each reflection call when none is given (seconds).
DEFAULT_TIMEOUT = 10.0

#: What a symbol resolves to.
Symbol = Union[
    ServiceDescriptor,
    MethodDescriptor,
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    EnumValueDescriptor,
]

# FileDescriptorProto / DescriptorProto / EnumDescriptorProto /
# ServiceDescriptorProto field numbers, for source_code_info paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Path = Tuple[int, ...]

_D = TypeVar("_D", ServiceDescriptor, Descriptor, EnumDescriptor)


def split_method(name: str) -> Tuple[str, str]:
    """("hotel.v1.HotelSearch", "Search") from "/hotel.v1.HotelSearch/Search",
    "hotel.v1.HotelSearch/Search" or "hotel.v1.HotelSearch.Search".

    Raises ValueError for a name with no service part.
    """
    bare = name.strip()
    if bare.startswith("/"):
        bare = bare[1:]
    if "/" in bare:
        service, _, method = bare.rpartition("/")
    else:
        service, _, method = bare.rpartition(".")
    if not service or not method or "/" in service:
        raise ValueError(
            "not a method name: %r (want package.Service/Method"
            " or package.Service.Method)" % name
        )
    return service, method


def method_path(name: str) -> str:
    """The wire name "/package.Service/Method" of any accepted spelling."""
    service, method = split_method(name)
    return "/%s/%s" % (service, method)


def _serialize(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return data


class ReflectionClient:
    """Descriptors of a server's services through its reflection service.

    Thread-safe.  ``timeout`` (seconds, None for no deadline) and
    ``metadata`` apply to every reflection call the client makes; both
    are plain attributes that may be changed between uses.  Failed
    reflection calls raise nngrpc.RpcError (an unknown symbol: NOT_FOUND).
    """

    def __init__(
        self,
        channel: Channel,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        metadata: Optional[Metadata] = None,
    ) -> None:
        self.timeout = timeout
        self.metadata = metadata
        self._channel = channel
        self._stub = reflection_nngrpc.ReflectionStub(channel)
        # Guards the pool and everything below (re-entrant: message_class
        # may resolve a name while holding it).
        self._lock = threading.RLock()
        self._pool: _TypedPool = descriptor_pool.DescriptorPool()
        # Guarded by _lock: every file added to _pool, by name.
        self._files: Dict[str, Any] = {}
        # Guarded by _lock: full name -> (file name, source path).
        self._paths: Dict[str, Tuple[str, Path]] = {}
        # Guarded by _lock: file name -> {source path: leading comments}.
        self._comments: Dict[str, Dict[Path, str]] = {}
        self._classes: Dict[str, Type[Message]] = {}  # guarded by _lock
        self._factory: Any = None  # guarded by _lock

    @property
    def channel(self) -> Channel:
        """The channel the client calls through."""
        return self._channel

    @property
    def pool(self) -> descriptor_pool.DescriptorPool:
        """The client's own pool, holding every file fetched so far."""
        return cast(descriptor_pool.DescriptorPool, self._pool)

    # ---- the server's answers ----------------------------------------------
    def list_services(self) -> List[str]:
        """Full names of every service the server answers, sorted."""
        resp = self._stub.ListServices(
            reflection_pb2.ListServicesRequest(),
            timeout=self.timeout,
            metadata=self.metadata,
        )
        return sorted(str(s) for s in resp.services)

    def file_containing_symbol(self, symbol: str) -> FileDescriptor:
        """The file that defines symbol (a service, method, message or
        enum), fetched from the server unless the pool has it already."""
        found = self._find_local(symbol)
        if found is not None:
            return _file_of(found)
        return self._fetch(symbol)

    def _fetch(self, symbol: str) -> FileDescriptor:
        resp = self._stub.FileContainingSymbol(
            reflection_pb2.FileContainingSymbolRequest(symbol=symbol),
            timeout=self.timeout,
            metadata=self.metadata,
        )
        self.add_file_descriptor_set(resp.file_descriptor_set)
        try:
            return self._pool.FindFileByName(resp.file_name)
        except KeyError:
            raise RpcError.of(
                StatusCode.INTERNAL,
                "reflection answered file %r for %r but did not send it"
                % (resp.file_name, symbol),
            ) from None

    def add_file_descriptor_set(self, data: bytes) -> None:
        """Adds the files of a serialized FileDescriptorSet to the pool:
        each file once, its dependencies before it."""
        try:
            fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        except DecodeError as e:
            raise RpcError.of(
                StatusCode.INTERNAL, "undecodable FileDescriptorSet from reflection: %s" % e
            ) from None
        by_name: Dict[str, Any] = {f.name: f for f in fds.file}
        with self._lock:
            visiting: List[str] = []

            def add(name: str) -> None:
                if name in self._files:
                    return
                proto = by_name.get(name)
                if proto is None:
                    raise RpcError.of(
                        StatusCode.INTERNAL,
                        "reflection sent no descriptor of %r (imported by %s)"
                        % (name, visiting[-1] if visiting else "the answer"),
                    )
                if name in visiting:
                    raise RpcError.of(
                        StatusCode.INTERNAL,
                        "import cycle through %r in reflection's answer" % name,
                    )
                visiting.append(name)
                for dep in proto.dependency:
                    add(dep)
                visiting.pop()
                try:
                    self._pool.Add(proto)
                except Exception as e:  # TypeError from the C++ pool, others from Python's
                    raise RpcError.of(
                        StatusCode.INTERNAL,
                        "cannot build %r from reflection's descriptors: %s" % (name, e),
                    ) from None
                self._files[name] = proto
                self._index(proto)

            for f in fds.file:
                add(f.name)

    # ---- lookups ------------------------------------------------------------
    def service(self, name: str) -> ServiceDescriptor:
        """The descriptor of a service ("hotel.v1.HotelSearch")."""
        return self._resolve_as(name.lstrip("."), "service", ServiceDescriptor)

    def method(self, name: str) -> MethodDescriptor:
        """The descriptor of a method, in any spelling split_method takes."""
        service_name, method_name = split_method(name)
        service = self.service(service_name)
        method: Optional[MethodDescriptor] = service.methods_by_name.get(method_name)
        if method is None:
            raise RpcError.of(
                StatusCode.NOT_FOUND,
                "service %s has no method %s" % (service_name, method_name),
            )
        return method

    def message(self, name: str) -> Descriptor:
        """The descriptor of a message type ("hotel.v1.SearchRequest")."""
        return self._resolve_as(name.lstrip("."), "message", Descriptor)

    def enum(self, name: str) -> EnumDescriptor:
        """The descriptor of an enum type ("hotel.v1.SortOrder")."""
        return self._resolve_as(name.lstrip("."), "enum", EnumDescriptor)

    def symbol(self, name: str) -> Symbol:
        """Any symbol: a service, a method ("pkg.Service.Method" or
        "pkg.Service/Method"), a message, an enum, a field
        ("pkg.Message.field") or an enum value ("pkg.Enum.VALUE")."""
        name = name.strip().lstrip("/").lstrip(".")
        if "/" in name:
            return self.method(name)
        return self._resolve(name)

    def _resolve_as(self, name: str, kind: str, want: Type[_D]) -> _D:
        """The descriptor named name, which must be a want (kind names it)."""
        found = self._resolve(name)
        if not isinstance(found, want):
            raise RpcError.of(
                StatusCode.NOT_FOUND, "%s is a %s, not a %s" % (name, kind_of(found), kind)
            )
        return found

    def _resolve(self, name: str) -> Symbol:
        found = self._find_local(name)
        if found is None:
            # Fields and enum values are not symbols the server looks up:
            # fetch the file of the innermost ancestor it knows.
            scope = name
            error: Optional[RpcError] = None
            while scope:
                try:
                    self._fetch(scope)
                    break
                except RpcError as e:
                    if e.code() is not StatusCode.NOT_FOUND:
                        raise
                    if error is None:
                        error = e
                scope = scope.rpartition(".")[0]
            found = self._find_local(name)
            if found is None:
                if error is not None:
                    raise error
                raise RpcError.of(StatusCode.NOT_FOUND, "symbol %r not found" % name)
        return found

    def _find_local(self, name: str) -> Optional[Symbol]:
        """The descriptor named name in the pool, or None."""
        with self._lock:
            return self._find_local_locked(name)

    def _find_local_locked(self, name: str) -> Optional[Symbol]:
        pool = self._pool
        finders: Tuple[Callable[[str], Symbol], ...] = (
            pool.FindServiceByName,
            pool.FindMessageTypeByName,
            pool.FindEnumTypeByName,
        )
        for find in finders:
            try:
                return find(name)
            except KeyError:
                pass
        parent, _, leaf = name.rpartition(".")
        if not parent:
            return None
        try:
            method: MethodDescriptor = pool.FindServiceByName(parent).methods_by_name[leaf]
            return method
        except KeyError:
            pass
        try:
            field: FieldDescriptor = pool.FindMessageTypeByName(parent).fields_by_name[leaf]
            return field
        except KeyError:
            pass
        try:
            value: EnumValueDescriptor = pool.FindEnumTypeByName(parent).values_by_name[leaf]
            return value
        except KeyError:
            pass
        return None

    # ---- message classes and calls -------------------------------------------
    def message_class(self, message: Union[str, Descriptor]) -> Type[Message]:
        """The message class for a descriptor (or full name) of this pool."""
        desc = self.message(message) if isinstance(message, str) else message
        full_name: str = desc.full_name
        with self._lock:
            cls = self._classes.get(full_name)
            if cls is None:
                get_class: Optional[Callable[[Any], Type[Message]]] = getattr(
                    message_factory, "GetMessageClass", None
                )
                if get_class is not None:  # protobuf >= 4.22
                    cls = get_class(desc)
                else:
                    if self._factory is None:
                        self._factory = message_factory.MessageFactory(self.pool)
                    cls = self._factory.GetPrototype(desc)
                self._classes[full_name] = cls
            return cls

    def method_classes(self, method: str) -> Tuple[Type[Message], Type[Message]]:
        """(input class, output class) of a method."""
        desc = self.method(method)
        return self.message_class(desc.input_type), self.message_class(desc.output_type)

    def multicallable(self, method: str) -> UnaryUnaryMultiCallable[Message, Message]:
        """A callable for the method, as a generated stub has, taking and
        returning instances of the reflection-built message classes."""
        desc = self.method(method)
        out_cls = self.message_class(desc.output_type)
        path = "/%s/%s" % (desc.containing_service.full_name, desc.name)
        return self._channel.unary_unary(
            path,
            request_serializer=_serialize,
            response_deserializer=out_cls.FromString,
        )

    # ---- documentation --------------------------------------------------------
    def file_proto(self, file_name: str) -> Any:
        """The FileDescriptorProto of a file fetched so far
        (a google.protobuf.descriptor_pb2.FileDescriptorProto)."""
        with self._lock:
            return self._files[file_name]

    def comments(self, full_name: str) -> str:
        """The leading comments of a symbol in its .proto file ("" if
        none or the server sent no source info).  Fields and methods are
        named "pkg.Message.field" and "pkg.Service.Method", enum values
        "pkg.Enum.VALUE"."""
        with self._lock:
            where = self._paths.get(full_name.lstrip("."))
            if where is None:
                return ""
            return self._comments.get(where[0], {}).get(where[1], "")

    def proto_of(self, full_name: str) -> Any:
        """The descriptor_pb2 message of a symbol fetched so far, as the
        server sent it: a DescriptorProto, FieldDescriptorProto,
        EnumDescriptorProto, EnumValueDescriptorProto,
        ServiceDescriptorProto or MethodDescriptorProto (names as for
        comments()).  Raises KeyError for a name not fetched."""
        with self._lock:
            file_name, path = self._paths[full_name.lstrip(".")]
            node: Any = self._files[file_name]
        for number, index in zip(path[::2], path[1::2]):
            node = getattr(node, node.DESCRIPTOR.fields_by_number[number].name)[index]
        return node

    def _index(self, proto: Any) -> None:
        """Records where each symbol of a file is and its comments;
        called with _lock held."""
        file_name: str = proto.name
        comments: Dict[Path, str] = {}
        for loc in proto.source_code_info.location:
            text: str = loc.leading_comments
            if text:
                comments[tuple(loc.path)] = _clean_comment(text)
        self._comments[file_name] = comments
        prefix = proto.package + "." if proto.package else ""

        def enum(e: Any, full: str, path: Path) -> None:
            self._paths[full] = (file_name, path)
            for k, v in enumerate(e.value):
                self._paths[full + "." + v.name] = (file_name, path + (_ENUM_VALUE, k))

        def message(m: Any, full: str, path: Path) -> None:
            self._paths[full] = (file_name, path)
            for k, f in enumerate(m.field):
                self._paths[full + "." + f.name] = (file_name, path + (_MSG_FIELD, k))
            for k, o in enumerate(m.oneof_decl):
                self._paths.setdefault(full + "." + o.name, (file_name, path + (_MSG_ONEOF, k)))
            for k, n in enumerate(m.nested_type):
                message(n, full + "." + n.name, path + (_MSG_NESTED, k))
            for k, e in enumerate(m.enum_type):
                enum(e, full + "." + e.name, path + (_MSG_ENUM, k))

        for i, m in enumerate(proto.message_type):
            message(m, prefix + m.name, (_FILE_MESSAGE, i))
        for i, e in enumerate(proto.enum_type):
            enum(e, prefix + e.name, (_FILE_ENUM, i))
        for i, s in enumerate(proto.service):
            full = prefix + s.name
            self._paths[full] = (file_name, (_FILE_SERVICE, i))
            for k, m in enumerate(s.method):
                self._paths[full + "." + m.name] = (
                    file_name,
                    (_FILE_SERVICE, i, _SERVICE_METHOD, k),
                )


def _file_of(sym: Symbol) -> FileDescriptor:
    """The file that defines sym (methods and enum values have no .file of
    their own: their service's, their enum's)."""
    owner: Any = sym
    if isinstance(sym, MethodDescriptor):
        owner = sym.containing_service
    elif isinstance(sym, EnumValueDescriptor):
        owner = sym.type
    file: FileDescriptor = owner.file
    return file


def kind_of(desc: Any) -> str:
    """"service", "method", "message", "enum", "field", "enum value"."""
    if isinstance(desc, ServiceDescriptor):
        return "service"
    if isinstance(desc, MethodDescriptor):
        return "method"
    if isinstance(desc, Descriptor):
        return "message"
    if isinstance(desc, EnumDescriptor):
        return "enum"
    if isinstance(desc, FieldDescriptor):
        return "field"
    if isinstance(desc, EnumValueDescriptor):
        return "enum value"
    return type(desc).__name__


def _clean_comment(text: str) -> str:
    """A comment block without the one space after "//" and the final
    newline."""
    lines = text.rstrip("\n").split("\n")
    return "\n".join(line[1:] if line.startswith(" ") else line for line in lines).strip("\n")
