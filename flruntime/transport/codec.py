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
import struct
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


def _model(h: dict[str, Any], tensors: dict[str, Any]) -> ModelMessage:
    names = h.get("params")
    params = {n: tensors[n] for n in names} if names is not None else None
    return ModelMessage(
        params,
        ParamsType(h.get("params_type", "FULL")),
        h.get("metrics"),
        h.get("meta") or {},
        h.get("current_round"),
        h.get("total_rounds"),
    )


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
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise CodecError("not an flruntime message (bad magic)")
    (size,) = struct.unpack(">I", view[4:8])
    try:
        header = json.loads(bytes(view[8 : 8 + size]))
    except ValueError as exc:
        raise CodecError(f"bad message header: {exc}") from exc
    body = view[8 + size :]
    tensors: dict[str, Any] = {}
    for spec in header.get("arrays", []):
        start, end = int(spec["offset"]), int(spec["offset"]) + int(spec["nbytes"])
        if end > len(body):
            raise CodecError(f"array '{spec['name']}' runs past the end of the message")
        if spec["dtype"] == "bytes":
            tensors[spec["name"]] = bytes(body[start:end])
            continue
        dtype = np.dtype(spec["dtype"])
        if dtype.kind not in _ALLOWED_KINDS:
            raise CodecError(f"array '{spec['name']}' has a forbidden dtype {spec['dtype']}")
        tensors[spec["name"]] = np.frombuffer(body[start:end], dtype=dtype).reshape(spec["shape"])
    kind = header.get("type")
    if kind == "model":
        return _model(header["model"], tensors)
    if kind == "task":
        return Task(header["task_id"], header["name"], _model(header["model"], tensors), header.get("headers") or {})
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
    raise CodecError(f"unknown message type {kind!r}")


__all__ = ["CodecError", "decode", "encode", "encode_parts", "prefix_size"]
