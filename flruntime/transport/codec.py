"""The wire format: a JSON header plus raw array bytes. Never pickle.

Layout of one encoded message::

    b"FLR1" | header length (4 bytes, big-endian) | header (UTF-8 JSON) | array bytes ...

The header holds every field of the message and, for each array, its name, dtype, shape, offset
and length in the byte section. Arrays are written in C order as little-endian numpy buffers;
``bytes`` values (e.g. serialised ciphertexts) travel the same way with dtype ``"bytes"``. Only
numeric dtypes are accepted, so decoding never executes anything.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from flruntime.runtime.messages import ModelMessage, ParamsType, ReturnCode, Task, TaskResult

MAGIC = b"FLR1"
_ALLOWED_KINDS = set("biuf")  # bool, int, unsigned, float


class CodecError(ValueError):
    """The bytes are not a valid flruntime message."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be sent in a message header")


def _model_header(msg: ModelMessage, arrays: list[tuple[str, Any]]) -> dict[str, Any]:
    params = None
    if msg.params is not None:
        params = []
        for name, value in msg.params.items():
            arrays.append((name, value))
            params.append(name)
    return {
        "params": params,
        "params_type": str(msg.params_type),
        "metrics": msg.metrics,
        "meta": msg.meta,
        "current_round": msg.current_round,
        "total_rounds": msg.total_rounds,
    }


def encode_parts(obj: ModelMessage | Task | TaskResult) -> tuple[bytes, list[memoryview]]:
    """Split a message into its prefix (magic, header length, header) and its array bytes, without copying.

    The parts concatenated are exactly :func:`encode`'s output; the array parts are views of the message's
    own arrays (or of little-endian copies where an array is not C-ordered little-endian), so a transport
    can stream a large model in chunks without building the whole message in memory.
    """
    arrays: list[tuple[str, Any]] = []
    if isinstance(obj, ModelMessage):
        header: dict[str, Any] = {"type": "model", "model": _model_header(obj, arrays)}
    elif isinstance(obj, Task):
        header = {
            "type": "task",
            "task_id": obj.task_id,
            "name": obj.name,
            "headers": obj.headers,
            "model": _model_header(obj.data, arrays),
        }
    elif isinstance(obj, TaskResult):
        header = {
            "type": "result",
            "task_id": obj.task_id,
            "name": obj.name,
            "site": obj.site,
            "rc": str(obj.rc),
            "headers": obj.headers,
            "error": obj.error,
            "model": _model_header(obj.data, arrays) if obj.data is not None else None,
        }
    else:
        raise TypeError(f"cannot encode {type(obj).__name__}")
    specs: list[dict[str, Any]] = []
    parts: list[memoryview] = []
    offset = 0
    for name, value in arrays:
        if isinstance(value, (bytes, bytearray, memoryview)):
            source = np.frombuffer(value, dtype=np.uint8)
            specs.append(
                {"name": name, "dtype": "bytes", "shape": [source.size], "offset": offset, "nbytes": source.size}
            )
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in _ALLOWED_KINDS:
                raise TypeError(f"parameter '{name}' has dtype {arr.dtype}; only numeric arrays can be sent")
            shape = list(arr.shape)  # before ascontiguousarray, which turns a 0-d array (a BatchNorm counter) 1-d
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            source = arr.reshape(-1).view(np.uint8)
            specs.append(
                {
                    "name": name,
                    "dtype": arr.dtype.str,
                    "shape": shape,
                    "offset": offset,
                    "nbytes": source.size,
                }
            )
        parts.append(memoryview(source.data))
        offset += source.size
    header["arrays"] = specs
    head = json.dumps(header, default=_json_default, separators=(",", ":")).encode("utf-8")
    return MAGIC + struct.pack(">I", len(head)) + head, parts


def encode(obj: ModelMessage | Task | TaskResult) -> bytearray:
    """Encode a model message, task or task result.

    Every array is copied exactly once, straight into the returned buffer (a ``bytearray``, so
    :func:`decode` can hand out writable views of it without another copy).
    """
    prefix, parts = encode_parts(obj)
    out = bytearray(len(prefix) + sum(p.nbytes for p in parts))
    out[: len(prefix)] = prefix
    at = len(prefix)
    for part in parts:
        out[at : at + part.nbytes] = part
        at += part.nbytes
    return out


def prefix_size(first: bytes | bytearray | memoryview) -> int | None:
    """Return the size of a message's prefix from its first bytes, or None when fewer than 8 bytes are given.

    Raises:
        CodecError: when the bytes do not start a flruntime message.
    """
    if len(first) < 8:
        return None
    if bytes(first[:4]) != MAGIC:
        raise CodecError("not an flruntime message (bad magic)")
    (size,) = struct.unpack(">I", bytes(first[4:8]))
    return 8 + int(size)


def _model(h: dict[str, Any], tensors: dict[str, Any] | None) -> ModelMessage:
    names = h.get("params")
    params: dict[str, Any] | None
    if names is None:
        params = None
    else:  # without tensors (a header decoded alone) the arrays follow and are described elsewhere
        params = {n: tensors[n] for n in names} if tensors is not None else {}
    return ModelMessage(
        params,
        ParamsType(h.get("params_type", "FULL")),
        h.get("metrics"),
        h.get("meta") or {},
        h.get("current_round"),
        h.get("total_rounds"),
    )


@dataclass(frozen=True)
class ArraySpec:
    """Where one array lies in a message's byte section.

    Attributes:
        name: the parameter's name.
        dtype: its numpy dtype (None for a ``bytes`` value).
        shape: its shape.
        offset: its first byte in the byte section.
        nbytes: its length in bytes.
    """

    name: str
    dtype: np.dtype | None
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _spec(raw: Any, body_size: int) -> ArraySpec:
    try:
        name, offset, nbytes = str(raw["name"]), int(raw["offset"]), int(raw["nbytes"])
        shape = tuple(int(n) for n in raw["shape"])
        dtype = None if raw["dtype"] == "bytes" else np.dtype(raw["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad array entry in the message header: {exc}") from exc
    if dtype is not None and dtype.kind not in _ALLOWED_KINDS:
        raise CodecError(f"array '{name}' has a forbidden dtype {raw['dtype']}")
    if offset < 0 or nbytes < 0 or offset + nbytes > body_size:
        raise CodecError(f"array '{name}' runs past the end of the message")
    if min(shape, default=0) < 0 or (dtype is not None and math.prod(shape) * dtype.itemsize != nbytes):
        raise CodecError(f"array '{name}' has {nbytes} bytes, which is not its shape {list(shape)}")
    return ArraySpec(name, dtype, shape, offset, nbytes)


def _unique(names: list[str]) -> list[str]:
    """``names``, when none repeats.

    Raises:
        CodecError: a name that appears twice.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CodecError(f"array '{name}' appears twice in the message")
        seen.add(name)
    return names


def _header(view: memoryview) -> tuple[dict[str, Any], int]:
    """The JSON header of a message and where its byte section starts."""
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise CodecError("not an flruntime message (bad magic)")
    (size,) = struct.unpack(">I", view[4:8])
    if 8 + size > len(view):
        raise CodecError("the message header runs past the end of the message")
    try:
        header = json.loads(bytes(view[8 : 8 + size]))
    except ValueError as exc:
        raise CodecError(f"bad message header: {exc}") from exc
    if not isinstance(header, dict):
        raise CodecError("bad message header: not a JSON object")
    return header, 8 + size


def _message(header: dict[str, Any], tensors: dict[str, Any] | None) -> ModelMessage | Task | TaskResult:
    kind = header.get("type")
    try:
        if kind == "model":
            return _model(header["model"], tensors)
        if kind == "task":
            return Task(
                header["task_id"], header["name"], _model(header["model"], tensors), header.get("headers") or {}
            )
        if kind == "result":
            model = _model(header["model"], tensors) if header.get("model") is not None else None
            return TaskResult(
                header["task_id"],
                header["name"],
                header["site"],
                ReturnCode(header["rc"]),
                model,
                header.get("headers") or {},
                header.get("error", ""),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad message header: {exc!r}") from exc
    raise CodecError(f"unknown message type {kind!r}")


def decode(data: bytes | bytearray | memoryview) -> ModelMessage | Task | TaskResult:
    """Decode bytes made by :func:`encode`.

    Arrays are views into one writable copy of ``data`` (or into ``data`` itself when it is a
    writable buffer such as a ``bytearray``), so a receiver may update them in place.

    Raises:
        CodecError: when the bytes are not a valid message.
    """
    view = memoryview(data)
    if view.readonly:
        view = memoryview(bytearray(view))
    header, start = _header(view)
    body = view[start:]
    tensors: dict[str, Any] = {}
    specs = [_spec(raw, len(body)) for raw in header.get("arrays", [])]
    _unique([spec.name for spec in specs])
    for spec in specs:
        part = body[spec.offset : spec.offset + spec.nbytes]
        if spec.dtype is None:
            tensors[spec.name] = bytes(part)
        else:
            tensors[spec.name] = np.frombuffer(part, dtype=spec.dtype).reshape(spec.shape)
    return _message(header, tensors)


def decode_head(
    prefix: bytes | bytearray | memoryview, body_size: int
) -> tuple[ModelMessage | Task | TaskResult, list[ArraySpec]]:
    """Decode a message's prefix alone, for a receiver that takes its arrays as they stream in.

    Args:
        prefix: the message's first :func:`prefix_size` bytes.
        body_size: the length of the byte section that follows.

    Returns:
        The message without its arrays (its model's ``params`` is an empty dict when it has arrays, None
        when it has none) and the arrays' places, in the order they come; they must tile the byte section
        exactly, as :func:`encode` writes them.

    Raises:
        CodecError: a bad header, or arrays that overlap, leave gaps, do not fill ``body_size`` or are not the
            parameters the header lists (in order, each once).
    """
    header, _ = _header(memoryview(prefix))
    specs = [_spec(raw, body_size) for raw in header.get("arrays", [])]
    at = 0
    for spec in specs:
        if spec.offset != at:
            raise CodecError(f"array '{spec.name}' starts at byte {spec.offset}, not at {at} where the last ended")
        at += spec.nbytes
    if at != body_size:
        raise CodecError(f"the arrays fill {at} bytes but the message has {body_size}")
    names = _unique([spec.name for spec in specs])
    model = header.get("model")
    listed = model.get("params") if isinstance(model, dict) else None
    if names != (listed or []):
        raise CodecError(
            f"the message's arrays {names[:5]} are not the parameters its header lists {(listed or [])[:5]}"
        )
    return _message(header, None), specs


__all__ = ["ArraySpec", "CodecError", "decode", "decode_head", "encode", "encode_parts", "prefix_size"]
