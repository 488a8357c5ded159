"""NVFlare's ``DXO`` (data exchange object): what a Shareable carries (``nvflare.apis.dxo``).

A DXO is a data kind (``WEIGHTS``, ``WEIGHT_DIFF``, ``METRICS``, ``COLLECTION``, ...), the data (a dict: arrays
by name, metrics, or DXOs by name for a collection) and meta. It is stored in a Shareable under ``DXO`` as
``{"kind": ..., "data": ..., "meta": ...}``.
"""

from __future__ import annotations

import copy
from typing import Any

from flruntime.compat.constants import FLMetaKey
from flruntime.compat.shareable import Shareable

_KEY_KIND = "kind"
_KEY_DATA = "data"
_KEY_META = "meta"
_KEY_DXO = "DXO"


class DataKind:
    """What a DXO's data is."""

    FL_MODEL = "FL_MODEL"
    WEIGHTS = "WEIGHTS"
    WEIGHT_DIFF = "WEIGHT_DIFF"
    XGB_MODEL = "XGB_MODEL"
    TEXT = "TEXT"
    JSON = "JSON"
    APP_DEFINED = "APP_DEFINED"
    METRICS = "METRICS"
    ANALYTIC = "ANALYTIC"
    COLLECTION = "COLLECTION"
    STATISTICS = "STATISTICS"
    PSI = "PSI"


class MetaKey(FLMetaKey):
    """Keys of a DXO's meta."""


class DXO:
    """Data of one kind, with meta.

    Args:
        data_kind: one of :class:`DataKind` (any string is accepted).
        data: the data (a dict).
        meta: meta properties (a dict).
    """

    def __init__(self, data_kind: str, data: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.data_kind = data_kind
        self.data = data
        self.meta: dict[str, Any] = meta if meta is not None else {}
        problem = self.validate()
        if problem:
            raise ValueError(f"invalid DXO: {problem}")

    def validate(self) -> str:
        """Why this DXO is not well formed, or "" when it is."""
        if not isinstance(self.data_kind, str) or not self.data_kind:
            return f"data_kind must be a non-empty string, got {self.data_kind!r}"
        if self.data is None:
            return "data is None"
        if not isinstance(self.data, dict):
            return f"data must be a dict, got {type(self.data).__name__}"
        if not isinstance(self.meta, dict):
            return f"meta must be a dict, got {type(self.meta).__name__}"
        return ""

    def get_meta_prop(self, key: str, default: Any = None) -> Any:
        """Meta property ``key``, else ``default``."""
        return self.meta.get(key, default)

    def set_meta_prop(self, key: str, value: Any) -> None:
        """Set meta property ``key``."""
        self.meta[key] = value

    def remove_meta_props(self, keys: list[str]) -> None:
        """Drop meta properties."""
        for key in keys:
            self.meta.pop(key, None)

    def get_meta_props(self) -> dict[str, Any]:
        """All meta properties."""
        return self.meta

    def update_meta_props(self, meta: dict[str, Any]) -> None:
        """Add meta properties (copies)."""
        self.meta.update(copy.deepcopy(meta))

    def add_filter_history(self, filter_name: str | list[str]) -> None:
        """Record that filter ``filter_name`` processed this DXO."""
        history = self.meta.setdefault(FLMetaKey.FILTER_HISTORY, [])
        history.extend(filter_name if isinstance(filter_name, list) else [filter_name])

    def get_filter_history(self) -> list[str] | None:
        """The filters that processed this DXO, in order."""
        history = self.meta.get(FLMetaKey.FILTER_HISTORY)
        return list(history) if isinstance(history, list) else None

    def _as_dict(self) -> dict[str, Any]:
        data = self.data
        if self.data_kind == DataKind.COLLECTION:
            data = {k: v._as_dict() if isinstance(v, DXO) else v for k, v in self.data.items()}
        return {_KEY_KIND: self.data_kind, _KEY_DATA: data, _KEY_META: self.meta}

    def to_shareable(self) -> Shareable:
        """A new Shareable that carries this DXO."""
        out = Shareable()
        out[_KEY_DXO] = self._as_dict()
        return out

    def update_shareable(self, shareable: Shareable) -> Shareable:
        """Put this DXO into ``shareable`` (its headers are kept); returns it."""
        shareable[_KEY_DXO] = self._as_dict()
        return shareable

    def to_bytes(self) -> bytes:
        """Serialise with :mod:`flruntime.compat.fobs` (no pickle)."""
        from flruntime.compat import fobs

        return fobs.dumps(self)

    def __repr__(self) -> str:
        keys = list(self.data)[:5] if isinstance(self.data, dict) else []
        return f"DXO(data_kind={self.data_kind!r}, data keys={keys}{'...' if len(self.data) > 5 else ''})"


def _from_dict(d: Any) -> DXO:
    if not isinstance(d, dict) or _KEY_KIND not in d or _KEY_DATA not in d:
        raise ValueError("the shareable holds no DXO (no 'DXO' entry with 'kind' and 'data')")
    kind, data, meta = d[_KEY_KIND], d[_KEY_DATA], d.get(_KEY_META) or {}
    if kind == DataKind.COLLECTION and isinstance(data, dict):
        data = {k: _from_dict(v) if isinstance(v, dict) and _KEY_KIND in v else v for k, v in data.items()}
    return DXO(kind, data, meta)


def from_shareable(s: Shareable) -> DXO:
    """The DXO that ``s`` carries.

    Raises:
        ValueError: when ``s`` holds no DXO.
    """
    return _from_dict(s.get(_KEY_DXO))


def from_bytes(data: bytes) -> DXO:
    """The DXO :meth:`DXO.to_bytes` made."""
    from flruntime.compat import fobs

    obj = fobs.loads(data)
    if not isinstance(obj, DXO):
        raise ValueError(f"the bytes hold a {type(obj).__name__}, not a DXO")
    return obj


def get_leaf_dxos(dxo: DXO, root_name: str = "") -> dict[str, DXO]:
    """Every non-collection DXO inside ``dxo`` by path (``root/name``); ``dxo`` itself when it is no collection."""
    if dxo.data_kind != DataKind.COLLECTION:
        return {root_name: dxo}
    out: dict[str, DXO] = {}
    for name, child in dxo.data.items():
        if isinstance(child, DXO):
            out.update(get_leaf_dxos(child, f"{root_name}/{name}" if root_name else name))
    return out


__all__ = ["DXO", "DataKind", "MetaKey", "from_bytes", "from_shareable", "get_leaf_dxos"]
