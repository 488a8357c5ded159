"""References between components by id.

A component marks an argument as a reference with ``Annotated[str, Ref(Role)]`` (or
``Annotated[list[str], Ref(Role)]`` for several ids). The checker then proves every reference
resolves to an existing component of that role before anything is built.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from flruntime.graph.introspect import init_hints, init_parameters


@dataclass(frozen=True)
class Ref:
    """Marks a constructor argument as the id of another component.

    Attributes:
        role: the role class the referenced component must be an instance of (None: any).
        optional: the argument's default id may name no component (the component then works without one,
            as NVFlare's ``ModelController`` does without a ``persistor``); an id given in the config must exist.
    """

    role: type | None = None
    optional: bool = False


@dataclass(frozen=True)
class RefParam:
    """A reference argument of a class: its name, required role, whether it holds a list, its default."""

    name: str
    ref: Ref
    many: bool
    default: Any


def ref_params(cls: type) -> list[RefParam]:
    """Return the reference arguments declared by ``cls``'s constructor annotations."""
    hints = init_hints(cls)
    params = init_parameters(cls)
    if params is None:
        return []
    out = []
    for name, hint in hints.items():
        ref = _find_ref(hint)
        if ref is None or name not in params:
            continue
        base = _strip(hint)
        many = get_origin(base) in (list, tuple) or base in (list, tuple)
        default = params[name].default
        out.append(RefParam(name, ref, many, None if default is inspect.Parameter.empty else default))
    return out


def _find_ref(hint: Any) -> Ref | None:
    if get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, Ref):
                return meta
    for arg in get_args(hint):
        found = _find_ref(arg)
        if found is not None:
            return found
    return None


def _strip(hint: Any) -> Any:
    """Remove Annotated and Optional wrappers."""
    if get_origin(hint) is typing.Annotated:
        return _strip(get_args(hint)[0])
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _strip(args[0])
    return hint


def referenced_ids(value: Any, many: bool) -> list[str]:
    """Return the ids a reference argument's value names (empty string means "none")."""
    if many:
        return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []
    return [value] if isinstance(value, str) and value else []


def referenced_ids_at(value: Any, many: bool) -> list[tuple[tuple[int, ...], str]]:
    """Return ``(path inside the value, id)`` for each id a reference argument's value names.

    The path is ``(index,)`` for an element of a list of ids and ``()`` for a single id, so a
    problem can point at the exact element.
    """
    if many:
        if not isinstance(value, list):
            return []
        return [((i,), v) for i, v in enumerate(value) if isinstance(v, str) and v]
    return [((), value)] if isinstance(value, str) and value else []
