"""NVFlare's ``fobs`` (``nvflare.fuel.utils.fobs``) without pickle: ``dumps`` / ``loads`` / ``dump`` / ``load``.

The format is flruntime's own: ``FOBS1`` and the length of a JSON document that describes the object tree,
then the raw bytes of every array and ``bytes`` value. JSON types stay JSON; everything else is a tagged object
(``{"__fobs__": "ndarray", ...}``): numpy arrays and scalars, torch tensors (read back as tensors when torch is
importable), bytes, tuples and sets, dicts with non-string keys, floats that JSON cannot hold, Shareables,
DXOs, ModelLearnables, FLModels, and the classes registered with a :class:`Decomposer` (``register``).
Nothing is ever unpickled, so loading bytes from another site runs no code.
"""

from __future__ import annotations

import json
import math
import struct
from abc import ABC, abstractmethod
from typing import IO, Any

import numpy as np

_MAGIC = b"FOBS1"
_TAG = "__fobs__"


class Decomposer(ABC):
    """Turns objects of one type into fobs-serialisable data and back (register with :func:`register`)."""

    @abstractmethod
    def supported_type(self) -> type:
        """The type this decomposer handles."""

    @abstractmethod
    def decompose(self, target: Any, manager: Any = None) -> Any:
        """Data (of types fobs handles) that describes ``target``."""

    @abstractmethod
    def recompose(self, data: Any, manager: Any = None) -> Any:
        """The object :meth:`decompose` described."""


_decomposers: dict[str, Decomposer] = {}


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def register(decomposer: Decomposer | type[Decomposer]) -> None:
    """Register a decomposer (an instance or a class) for its :meth:`~Decomposer.supported_type`."""
    inst = decomposer() if isinstance(decomposer, type) else decomposer
    _decomposers[_type_name(inst.supported_type())] = inst


def register_data_classes(*classes: type) -> None:
    """Register classes whose instances are serialised through their ``__dict__``."""
    for cls in classes:
        register(_DataClassDecomposer(cls))


def register_enum_types(*types: type) -> None:
    """Register enum types (serialised by name)."""
    for t in types:
        register(_EnumDecomposer(t))


def register_folder(folder: str, package: str) -> None:  # noqa: ARG001 - NVFlare's API; nothing to scan here
    """Accepted for NVFlare compatibility: decomposers are registered explicitly with :func:`register`."""


class _DataClassDecomposer(Decomposer):
    def __init__(self, cls: type) -> None:
        self.cls = cls

    def supported_type(self) -> type:
        return self.cls

    def decompose(self, target: Any, manager: Any = None) -> Any:
        return dict(vars(target))

    def recompose(self, data: Any, manager: Any = None) -> Any:
        obj: Any = object.__new__(self.cls)
        obj.__dict__.update(data)
        return obj


class _EnumDecomposer(Decomposer):
    def __init__(self, t: type) -> None:
        self.t = t

    def supported_type(self) -> type:
        return self.t

    def decompose(self, target: Any, manager: Any = None) -> Any:
        return target.name

    def recompose(self, data: Any, manager: Any = None) -> Any:
        return self.t[data]  # type: ignore[index]


class _Writer:
    def __init__(self) -> None:
        self.buffers: list[bytes | memoryview] = []
        self.offset = 0

    def _buffer(self, data: bytes | memoryview) -> list[int]:
        start = self.offset
        self.buffers.append(data)
        self.offset += len(data)
        return [start, len(data)]

    def _array(self, a: np.ndarray, tag: str) -> dict[str, Any]:
        if a.dtype.hasobject:
            raise TypeError("fobs cannot serialise numpy arrays of Python objects (that would need pickle)")
        a = np.ascontiguousarray(a)
        return {_TAG: tag, "dtype": a.dtype.str, "shape": list(a.shape), "at": self._buffer(a.data.cast("B"))}

    def encode(self, obj: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per supported type
        from flruntime.compat.dxo import DXO
        from flruntime.compat.learnable import ModelLearnable
        from flruntime.compat.shareable import Shareable
        from flruntime.runtime.messages import ModelMessage

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int) and not isinstance(obj, np.integer):
            return obj
        if isinstance(obj, float) and not isinstance(obj, np.floating):
            return obj if math.isfinite(obj) else {_TAG: "float", "v": repr(obj)}
        custom = _decomposers.get(_type_name(type(obj)))
        if custom is not None:
            return {_TAG: "custom", "type": _type_name(type(obj)), "v": self.encode(custom.decompose(obj))}
        if isinstance(obj, np.ndarray):
            return self._array(obj, "ndarray")
        if isinstance(obj, np.generic):
            return {_TAG: "npscalar", "dtype": obj.dtype.str, "v": self.encode(obj.item())}
        if type(obj).__module__.startswith("torch") and type(obj).__name__ == "Tensor":
            return self._array(obj.detach().cpu().numpy(), "tensor")
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return {_TAG: "bytes", "at": self._buffer(bytes(obj))}
        if isinstance(obj, Shareable):
            return {_TAG: "shareable", "v": self._dict(obj)}
        if isinstance(obj, ModelLearnable):
            return {_TAG: "learnable", "v": self._dict(obj)}
        if isinstance(obj, DXO):
            return {_TAG: "dxo", "kind": obj.data_kind, "data": self.encode(obj.data), "meta": self.encode(obj.meta)}
        if isinstance(obj, ModelMessage):
            fields = {
                "params": obj.params,
                "params_type": str(obj.params_type),
                "metrics": obj.metrics,
                "meta": obj.meta,
                "current_round": obj.current_round,
                "total_rounds": obj.total_rounds,
            }
            return {_TAG: "flmodel", "v": self.encode(fields)}
        if isinstance(obj, dict):
            return self._dict(obj)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [self.encode(v) for v in obj]
            return items if isinstance(obj, list) else {_TAG: type(obj).__name__, "v": items}
        raise TypeError(
            f"fobs cannot serialise a {_type_name(type(obj))} (register a Decomposer for it with fobs.register)"
        )

    def _dict(self, d: dict[Any, Any]) -> Any:
        if all(isinstance(k, str) for k in d) and _TAG not in d:
            return {k: self.encode(v) for k, v in d.items()}
        return {_TAG: "dict", "items": [[self.encode(k), self.encode(v)] for k, v in d.items()]}


class _Reader:
    def __init__(self, body: memoryview) -> None:
        self.body = body

    def _view(self, at: list[int]) -> memoryview:
        start, size = int(at[0]), int(at[1])
        if start < 0 or size < 0 or start + size > len(self.body):
            raise ValueError("fobs data is damaged (an array lies outside the data)")
        return self.body[start : start + size]

    def _bytes(self, at: list[int]) -> bytes:
        return bytes(self._view(at))

    def _array(self, node: dict[str, Any]) -> np.ndarray:
        dtype = np.dtype(node["dtype"])
        if dtype.hasobject:
            raise ValueError("fobs data is damaged (object arrays are never written)")
        return np.frombuffer(self._view(node["at"]), dtype=dtype).reshape(node["shape"]).copy()  # one copy

    def decode(self, node: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per tag
        from flruntime.compat.dxo import DXO
        from flruntime.compat.learnable import ModelLearnable
        from flruntime.compat.shareable import Shareable
        from flruntime.runtime.messages import ModelMessage, ParamsType

        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        tag = node.get(_TAG)
        if tag is None:
            return {k: self.decode(v) for k, v in node.items()}
        if tag == "ndarray":
            return self._array(node)
        if tag == "tensor":
            array = self._array(node)
            try:
                import torch
            except ImportError:
                return array
            return torch.from_numpy(array)
        if tag == "npscalar":
            return np.dtype(node["dtype"]).type(self.decode(node["v"]))
        if tag == "float":
            return float(node["v"])
        if tag == "bytes":
            return self._bytes(node["at"])
        if tag in ("tuple", "set", "frozenset"):
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](self.decode(v) for v in node["v"])
        if tag == "dict":
            return {_hashable(self.decode(k)): self.decode(v) for k, v in node["items"]}
        if tag == "shareable":
            return Shareable(self.decode(node["v"]))
        if tag == "learnable":
            return ModelLearnable(self.decode(node["v"]))
        if tag == "dxo":
            return DXO(node["kind"], self.decode(node["data"]), self.decode(node["meta"]))
        if tag == "flmodel":
            f = self.decode(node["v"])
            return ModelMessage(
                f["params"], ParamsType(f["params_type"]), f["metrics"], f["meta"] or {}, f["current_round"],
                f["total_rounds"],
            )  # fmt: skip
        if tag == "custom":
            decomposer = _decomposers.get(str(node["type"]))
            if decomposer is None:
                raise ValueError(f"fobs data holds a {node['type']}, but no Decomposer for it is registered")
            return decomposer.recompose(self.decode(node["v"]))
        raise ValueError(f"fobs data is damaged (unknown tag {tag!r})")


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def dumps(obj: Any, max_value_size: int | None = None) -> bytes:  # noqa: ARG001 - NVFlare's signature
    """Serialise ``obj`` (see the module docstring for the types).

    Raises:
        TypeError: for a type fobs cannot serialise without pickle.
    """
    writer = _Writer()
    tree = json.dumps(writer.encode(obj), separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"".join([_MAGIC, struct.pack("<Q", len(tree)), tree, *writer.buffers])  # one copy of each array


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The object :func:`dumps` serialised.

    Raises:
        ValueError: when ``data`` is not fobs data (or is damaged).
    """
    view = memoryview(data)
    head = len(_MAGIC) + 8
    if len(view) < head or bytes(view[: len(_MAGIC)]) != _MAGIC:
        raise ValueError("not fobs data written by flruntime (no FOBS1 header)")
    (size,) = struct.unpack("<Q", view[len(_MAGIC) : head])
    if head + size > len(view):
        raise ValueError("fobs data is truncated")
    tree = json.loads(bytes(view[head : head + size]).decode("utf-8"))
    return _Reader(view[head + size :]).decode(tree)


def dump(obj: Any, stream: IO[bytes]) -> None:
    """Write ``dumps(obj)`` to a binary file object."""
    stream.write(dumps(obj))


def load(stream: IO[bytes]) -> Any:
    """Read an object :func:`dump` wrote."""
    return loads(stream.read())


def serialize(obj: Any) -> bytes:
    """Same as :func:`dumps`."""
    return dumps(obj)


def deserialize(data: bytes) -> Any:
    """Same as :func:`loads`."""
    return loads(data)


__all__ = [
    "Decomposer",
    "deserialize",
    "dump",
    "dumps",
    "load",
    "loads",
    "register",
    "register_data_classes",
    "register_enum_types",
    "register_folder",
    "serialize",
]
