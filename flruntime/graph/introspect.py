"""A class's constructor, read once: its parameters and its type hints (cached per class)."""

from __future__ import annotations

import inspect
from functools import lru_cache
from types import MappingProxyType
from typing import Any, get_type_hints


@lru_cache(maxsize=4096)
def init_parameters(cls: type) -> MappingProxyType[str, inspect.Parameter] | None:
    """Return the parameters of ``cls(...)``, or None when Python cannot tell."""
    try:
        return MappingProxyType(dict(inspect.signature(cls).parameters))
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=4096)
def init_hints(cls: type) -> MappingProxyType[str, Any]:
    """Return the type hints of ``cls.__init__`` with ``Annotated`` extras (empty when unresolvable)."""
    try:
        return MappingProxyType(get_type_hints(cls.__init__, include_extras=True))  # type: ignore[misc]
    except Exception:
        return MappingProxyType({})
