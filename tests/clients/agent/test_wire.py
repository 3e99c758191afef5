"""The callosum wire format and upstream's msgpack codec, checked against callosum itself."""

from __future__ import annotations

import datetime
import pickle
import uuid
from decimal import Decimal
from pathlib import PosixPath, PurePosixPath

import msgpack  # type: ignore[import-untyped]
import pytest
from callosum.abc import RawHeaderBody
from callosum.rpc.message import ErrorMetadata, RPCMessage, RPCMessageTypes

from ai.backend.common.clients.agent import AgentInvalidArgument, AgentProtocolError
from ai.backend.common.clients.agent import _wire as wire


def _callosum_packb(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def test_request_matches_callosum_encoding() -> None:
    payload = wire.pack_payload({"args": ("k", 1), "kwargs": {"x": None}})
    ours_header = wire.encode_header(wire.MsgType.FUNCTION, "create_kernels", "", 7)
    ours_body = wire.encode_body(wire.EMPTY_META, payload)
    theirs = RPCMessage(
        None,
        RPCMessageTypes.FUNCTION,
        "create_kernels",
        "",
        7,
        None,
        {"args": ("k", 1), "kwargs": {"x": None}},
    ).encode(_callosum_packb)
    assert msgpack.unpackb(ours_header) == msgpack.unpackb(theirs.header)
    assert ours_body == theirs.body


def test_ctx_header_is_invisible_to_callosum() -> None:
    header = wire.encode_header(
        wire.MsgType.FUNCTION, "ping", "", 3, {"request_id": "r", "deadline": 1.5}
    )
    body = wire.encode_body(wire.EMPTY_META, wire.pack_payload({"args": (), "kwargs": {}}))
    msg = RPCMessage.decode(RawHeaderBody(header, body, b"peer"), wire.unpack_payload)
    assert (msg.msgtype, msg.method, msg.client_seq_id) == (RPCMessageTypes.FUNCTION, "ping", 3)
    assert msg.body == {"args": (), "kwargs": {}}


def test_failure_reply_decodes_in_callosum() -> None:
    meta = wire.encode_error_meta("ValueError", "ValueError('x')", "tb")
    extra = wire.pack_payload({"error_code": "agent_execute_internal-error"})
    header = wire.encode_header(wire.MsgType.FAILURE, "m", "", 1)
    msg = RPCMessage.decode(
        RawHeaderBody(header, wire.encode_body(meta, extra), None), wire.unpack_payload
    )
    assert msg.metadata == ErrorMetadata("ValueError", "ValueError('x')", "tb")
    assert wire.decode_error_meta(meta) == ("ValueError", "ValueError('x')", "tb")


def test_codec_matches_upstream_ext_types() -> None:
    kid = uuid.uuid4()
    value = {
        "kernel": kid,
        "amount": Decimal("1.50"),
        "path": PosixPath("/home/work"),
        "pure": PurePosixPath("a/b"),
        "tuple": (1, 2),
    }
    packed = wire.pack_payload(value)
    # the extension codes and contents upstream's ai.backend.common.msgpack writes
    raw = msgpack.unpackb(packed, raw=False)
    assert raw["kernel"] == msgpack.ExtType(1, kid.bytes)
    assert raw["path"] == msgpack.ExtType(4, b"/home/work")
    assert raw["pure"] == msgpack.ExtType(5, b"a/b")
    assert pickle.loads(raw["amount"].data) == Decimal("1.50")
    assert wire.unpack_payload(packed) == value | {"tuple": (1, 2)}
    unknown = msgpack.packb(msgpack.ExtType(42, b"?"))
    assert wire.unpack_payload(unknown) == msgpack.ExtType(42, b"?")
    with pytest.raises(AgentInvalidArgument):
        wire.pack_payload(datetime.datetime.now())


def test_untrusted_pickle_refused() -> None:
    evil = msgpack.packb(msgpack.ExtType(3, pickle.dumps(PosixPath("/x"))))
    with pytest.raises(AgentProtocolError):
        wire.unpack_payload(evil)


def test_compressed_rejected() -> None:
    header = msgpack.packb({"type": 2, "meth": "m", "okey": "", "seq": 1, "zip": True})
    with pytest.raises(AgentProtocolError):
        wire.decode_header(header)
    with pytest.raises(AgentProtocolError):
        wire.decode_header(b"\xc1")
    with pytest.raises(AgentProtocolError):
        wire.decode_body(msgpack.packb({"nope": 1}))
