"""The callosum 1.x RPC wire format over ZeroMQ, and upstream's msgpack body codec.

Frames (a client DEALER sends, a server ROUTER sees the peer identity in front):

- ``[b"PING", h, b]`` is answered ``[b"PONG", h, b]`` (the connect handshake; ``h`` echoed);
- ``[b"UPPER", header, body]`` carries one RPC message.

``header`` is msgpack of ``{"type", "meth", "okey", "seq", "zip"}``: message type (1 function,
2 result, 3 failure, 4 error, 5 cancel, 6 cancelled), method name, order key and client sequence
number (both echoed by the server), compression flag (always false here; callosum never sets it
either). ``body`` is msgpack of ``{"meta": bytes, "body": bytes | None}``: for a function or
result, ``body`` holds the serialized payload (``{"args": [...], "kwargs": {...}}`` for a call);
for a failure or error, ``meta`` is msgpack ``[name, repr, traceback]``.

Our additions ride where callosum's decoder never looks: the header key ``ctx`` (the caller's
:class:`~ai.backend.common.contexts.ContextBundle` plus ``deadline``, the seconds left) and, in a
failure's otherwise unused ``body`` slot, msgpack ``{"error_code": ...}`` of a ``BackendAIError``.
The payload also gets ``request_id`` at its root, as upstream's newer agents read it.
"""

from __future__ import annotations

import enum
import io
import os
import pickle
import uuid
from decimal import Decimal
from pathlib import PosixPath, PurePosixPath
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from .exceptions import AgentInvalidArgument, AgentProtocolError

__all__ = (
    "CANCEL_META",
    "EMPTY_META",
    "PING",
    "PONG",
    "RESULT_META",
    "UPPER",
    "MsgType",
    "decode_body",
    "decode_error_meta",
    "decode_header",
    "encode_body",
    "encode_error_meta",
    "encode_header",
    "pack_payload",
    "unpack_payload",
)

PING: Final = b"PING"
PONG: Final = b"PONG"
UPPER: Final = b"UPPER"
EMPTY_META: Final = b""
RESULT_META: Final = msgpack.packb([])  # callosum's ResultMetadata().encode()
CANCEL_META: Final = RESULT_META  # NullMetadata().encode(): an empty array as well


class MsgType(enum.IntEnum):
    """callosum's ``RPCMessageTypes``."""

    NULL = 0
    FUNCTION = 1
    RESULT = 2
    FAILURE = 3
    ERROR = 4
    CANCEL = 5
    CANCELLED = 6


class _Ext(enum.IntEnum):
    # Upstream ai.backend.common.msgpack extension codes.
    UUID = 1
    DATETIME = 2
    DECIMAL = 3
    POSIX_PATH = 4
    PURE_POSIX_PATH = 5


def _default(obj: object) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_Ext.UUID, obj.bytes)
    if isinstance(obj, Decimal):
        return msgpack.ExtType(_Ext.DECIMAL, pickle.dumps(obj, protocol=5))
    if isinstance(obj, PosixPath):
        return msgpack.ExtType(_Ext.POSIX_PATH, os.fsencode(obj))
    if isinstance(obj, PurePosixPath):
        return msgpack.ExtType(_Ext.PURE_POSIX_PATH, os.fsencode(obj))
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"cannot encode {type(obj).__name__} value {obj!r} in an agent RPC message")


class _DecimalOnly(pickle.Unpickler):
    # Upstream pickles Decimal values; unpickling anything else from the network is unsafe.
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("decimal", "Decimal"):
            return Decimal
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _Ext.UUID:
        return uuid.UUID(bytes=data)
    if code == _Ext.DECIMAL:
        return _DecimalOnly(io.BytesIO(data)).load()
    if code == _Ext.POSIX_PATH:
        return PosixPath(os.fsdecode(data))
    if code == _Ext.PURE_POSIX_PATH:
        return PurePosixPath(os.fsdecode(data))
    return msgpack.ExtType(code, data)


_packer_opts: Final = {"use_bin_type": True, "default": _default}


def pack_payload(value: Any) -> bytes:
    """Serialize a call or result payload as upstream's ``msgpack.packb`` does."""
    try:
        return msgpack.packb(value, **_packer_opts)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise AgentInvalidArgument(f"cannot encode RPC payload: {exc}") from exc


def unpack_payload(data: bytes) -> Any:
    """Deserialize a payload (arrays become tuples, as with upstream's ``unpackb``)."""
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, strict_map_key=False, ext_hook=_ext_hook
        )
    except (ValueError, TypeError, pickle.UnpicklingError, msgpack.ExtraData) as exc:
        raise AgentProtocolError(f"cannot decode RPC payload: {exc}") from exc


def encode_header(
    msgtype: MsgType, method: str, okey: Any, seq: int, ctx: dict[str, Any] | None = None
) -> bytes:
    """Encode a callosum header map (``ctx`` added only when given)."""
    header: dict[str, Any] = {"type": int(msgtype), "meth": method, "okey": okey, "seq": seq}
    header["zip"] = False
    if ctx is not None:
        header["ctx"] = ctx
    return msgpack.packb(header, use_bin_type=True)  # type: ignore[no-any-return]


def encode_body(meta: bytes, body: bytes | None) -> bytes:
    """Encode the ``{"meta", "body"}`` envelope."""
    return msgpack.packb({"meta": meta, "body": body}, use_bin_type=True)  # type: ignore[no-any-return]


def decode_header(raw: bytes) -> dict[str, Any]:
    """Decode and check a callosum header map."""
    try:
        header = msgpack.unpackb(raw, raw=False, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise AgentProtocolError(f"cannot decode RPC header: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("seq"), int):
        raise AgentProtocolError(f"RPC header is not a callosum header: {header!r}")
    if header.get("zip"):
        raise AgentProtocolError("compressed (snappy) RPC messages are not supported")
    return header


def decode_body(raw: bytes) -> tuple[bytes, Any]:
    """Decode the ``{"meta", "body"}`` envelope into ``(meta, body)``."""
    try:
        data = msgpack.unpackb(raw, raw=False, use_list=False)
        return data["meta"], data["body"]
    except (ValueError, TypeError, KeyError, msgpack.ExtraData) as exc:
        raise AgentProtocolError(f"cannot decode RPC body envelope: {exc}") from exc


def decode_error_meta(meta: bytes) -> tuple[str, str, str]:
    """Decode a failure's ``[name, repr, traceback]`` metadata."""
    try:
        name, rep, tb = msgpack.unpackb(meta, raw=False, use_list=False)
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise AgentProtocolError(f"cannot decode RPC error metadata: {exc}") from exc
    return str(name), str(rep), str(tb)


def encode_error_meta(name: str, rep: str, tb: str) -> bytes:
    """Encode ``[name, repr, traceback]`` as callosum's ``ErrorMetadata``."""
    return msgpack.packb([name, rep, tb], use_bin_type=True)  # type: ignore[no-any-return]
