"""Checking a component's args against its constructor signature and type annotations."""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from flruntime.config.model import ComponentSpec, is_component_dict
from flruntime.graph.introspect import init_hints, init_parameters
from flruntime.problems import Problem

ProblemAt = Callable[..., Problem]


def type_name(hint: Any) -> str:
    """Render an annotation the way people write it (``list[str] | None``)."""
    if get_origin(hint) is typing.Annotated:
        return type_name(get_args(hint)[0])
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not get_args(hint):
        return hint.__name__
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    return str(hint).replace("typing.", "")


def matches(value: Any, hint: Any) -> bool | None:
    """Return whether a JSON value fits an annotation (None: the annotation cannot be judged)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = get_origin(hint)
    if origin is typing.Annotated:
        return matches(value, get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        results = [matches(value, a) for a in get_args(hint)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is Literal:
        return value in get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set, frozenset, Sequence) or hint in (list, tuple, set, Sequence):
        if not isinstance(value, list):
            return False
        inner = get_args(hint)
        if len(inner) == 1 or (origin is tuple and len(inner) == 2 and inner[1] is Ellipsis):
            results = [matches(v, inner[0]) for v in value]
            return False if any(r is False for r in results) else (None if any(r is None for r in results) else True)
        return True
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, dict):
            return False
        inner = get_args(hint)
        if len(inner) == 2:
            results = [matches(v, inner[1]) for v in value.values()]
            return False if any(r is False for r in results) else (None if any(r is None for r in results) else True)
        return True
    if isinstance(hint, type) and value is not None and isinstance(value, (bool, int, float, str, list, dict)):
        # a JSON value given where a class instance is expected; it may still be converted by the class
        return True if isinstance(value, hint) else None
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _type_hint(value: Any, hint: Any) -> str:
    """Suggest dropping the quotes when the quoted text is a JSON number or boolean that fits ``hint``."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if text.lower() in ("true", "false"):
        text = text.lower()
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return ""
    if isinstance(parsed, (bool, int, float)) and matches(parsed, hint):
        return f"write {text} without quotes"
    return ""


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, str):
        return f"str {value!r}"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__} {value}"
    if value is None:
        return "null"
    return "a list" if isinstance(value, list) else "an object"


def check_args(cls: type, spec: ComponentSpec, at: ProblemAt) -> list[Problem]:
    """Check ``spec.args`` against ``cls``'s constructor: unknown, missing and mistyped arguments.

    Args:
        cls: the located class.
        spec: the component entry.
        at: builds a problem at a JSON path: ``at(path, message, hint, code=...)``.
    """
    found = init_parameters(cls)
    if found is None:
        return []
    params = dict(found)
    params.pop("self", None)
    name = cls.__name__
    problems: list[Problem] = []
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {k: p for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    args_path = spec.path + ("args",)
    for key in spec.args:
        if key not in named and not takes_any:
            close = difflib.get_close_matches(key, list(named), n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else ("it takes " + ", ".join(named) if named else f"{name} takes no arguments")
            )
            problems.append(at(args_path + (key,), f"unknown argument '{key}' for {name}", hint, code="unknown-arg"))
    for key, p in named.items():
        if p.default is p.empty and key not in spec.args and p.kind is not p.POSITIONAL_ONLY:
            problems.append(
                at(
                    args_path if "args" in spec.args or spec.args else spec.path,
                    f"missing required argument '{key}' for {name}",
                    f'add "{key}" to args',
                    code="missing-arg",
                )
            )
    hints = init_hints(cls)
    for key, value in spec.args.items():
        if key not in hints or is_component_dict(value):
            continue
        if matches(value, hints[key]) is False:
            problems.append(
                at(
                    args_path + (key,),
                    f"argument '{key}' of {name} expects {type_name(hints[key])}, got {_describe(value)}",
                    _type_hint(value, hints[key]),
                    code="arg-type",
                )
            )
    return problems


def check_values(cls: type, spec: ComponentSpec, at: ProblemAt) -> list[Problem]:
    """Report argument values the class's own ``validate_args(args)`` classmethod refuses.

    A component declares value rules its annotations cannot express (``params_transfer_type`` must be FULL or
    DIFF) as ``validate_args(args) -> Iterable[tuple[str, str]]`` pairs of argument name and message, so the
    validator finds them before anything is built. Only literal values are checked: nested components are not.
    """
    hook = getattr(cls, "validate_args", None)
    if not callable(hook):
        return []
    args = {k: v for k, v in spec.args.items() if not is_component_dict(v)}
    try:
        found = list(hook(args))
    except Exception as exc:  # a broken hook must not break validation
        return [at(spec.path, f"{cls.__name__}.validate_args failed: {type(exc).__name__}: {exc}", code="arg-value")]
    return [at(spec.path + ("args", name), message, code="arg-value") for name, message in found]
