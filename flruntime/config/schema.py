"""Structural checks of meta and config files against the JSON Schemas in ``schemas/``.

The schemas are Draft 2020-12 and validated with ``jsonschema``; each violation becomes a
:class:`~flruntime.problems.Problem` with a message written for people (unknown keys get a
"did you mean" hint) instead of jsonschema's raw text.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from flruntime.config.source import Source
from flruntime.problems import Problem

SCHEMA_FILES = {
    "meta": "meta.schema.json",
    "server": "config_fed_server.schema.json",
    "client": "config_fed_client.schema.json",
}

_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _read(name: str) -> dict[str, Any]:
    return json.loads(resources.files("flruntime.schemas").joinpath(name).read_text(encoding="utf-8"))


#: Base URI the schema files are registered under; their ``$ref``s are relative, so editors resolve them
#: next to the files on disk and we resolve them here.
_BASE = "file:///flruntime/schemas/"


@cache
def _validator(kind: str) -> Draft202012Validator:
    registry: Registry = Registry().with_resource(
        _BASE + "common.schema.json", Resource.from_contents(_read("common.schema.json"))
    )
    schema = {"$id": _BASE + SCHEMA_FILES[kind], **_read(SCHEMA_FILES[kind])}
    return Draft202012Validator(schema, registry=registry)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for typ, name in (
        (dict, "an object"),
        (list, "a list"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a number"),
    ):
        if isinstance(value, typ):
            return name
    return "null" if value is None else type(value).__name__


def _message(err: ValidationError, known_keys: list[str]) -> tuple[str, str]:
    """Turn one jsonschema error into (message, hint)."""
    v = err.validator
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(key, allowed + known_keys, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "allowed keys: " + ", ".join(allowed)
        return f"unknown key '{key}'", hint
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        return f"missing required key '{missing}'", ""
    if v == "type":
        want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        names = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in want)
        return f"expected {names}, got {_describe(err.instance)}", ""
    if v == "const":
        return f"must be {json.dumps(err.validator_value)}, got {json.dumps(err.instance)}", ""
    if v == "enum":
        return (
            f"must be one of {', '.join(json.dumps(x) for x in err.validator_value)}, got {json.dumps(err.instance)}",
            "",
        )
    if v == "minItems":
        return ("must not be empty" if err.validator_value == 1 else f"needs at least {err.validator_value} items"), ""
    if v == "minLength":
        return "must not be empty", ""
    if v == "minProperties":
        return "must not be empty", ""
    if v == "anyOf" and isinstance(err.instance, dict) and any("required" in sub for sub in err.validator_value):
        return "no class given", 'add "path": "package.module.Class" (or "name" with a registered short name)'
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return err.message, ""
    if v == "pattern":
        return f"{json.dumps(err.instance)} is not allowed here (must match {err.validator_value})", ""
    if v == "uniqueItems":
        return "has repeated items", "list each item once"
    if v == "propertyNames":
        return f"invalid name: {err.message}", ""
    return err.message, ""


def _leaf(err: ValidationError) -> ValidationError:
    """Descend into anyOf/oneOf/allOf errors to the most relevant one (jsonschema's best_match)."""
    if err.context and err.validator in ("allOf",):
        return _leaf(best_match(err.context))
    if err.context and err.validator in ("anyOf", "oneOf"):
        # an anyOf over "required" alternatives reads best as one message about the whole node
        if all(sub.validator == "required" for sub in err.context):
            return err
        return _leaf(best_match(err.context))
    return err


def _misspelt_sections(source: Source, known: list[str]) -> list[Problem]:
    """Report unknown top-level keys holding a list that look like a misspelt section (``workflowz``).

    Such a key would otherwise pass as a list variable, and the real section would silently be missing.
    """
    out = []
    for key, value in source.data.items():
        if key in known or not isinstance(value, list):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if close:
            out.append(
                source.problem((key,), f"unknown top-level key '{key}'", f"did you mean '{close[0]}'?", code="schema")
            )
    return out


def check_schema(kind: str, source: Source) -> list[Problem]:
    """Validate ``source.data`` against the schema ``kind`` (``meta``, ``server`` or ``client``)."""
    validator = _validator(kind)
    known = list(validator.schema.get("properties", {}))
    problems: list[Problem] = []
    if kind != "meta" and isinstance(source.data, dict):
        problems.extend(_misspelt_sections(source, known))
    misspelt = {p.path[0] for p in problems}  # their items are sections' items, not variables: say it once
    for err in sorted(validator.iter_errors(source.data), key=lambda e: list(map(str, e.absolute_path))):
        leaf = _leaf(err)
        path = tuple(leaf.absolute_path)
        if path and path[0] in misspelt:
            continue
        if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
            allowed = leaf.schema.get("properties", {})
            for key in [k for k in leaf.instance if k not in allowed]:
                close = difflib.get_close_matches(key, list(allowed) + known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "allowed keys: " + ", ".join(allowed)
                problems.append(source.problem(path + (key,), f"unknown key '{key}'", hint, code="schema"))
            continue
        if kind != "meta" and len(path) == 1 and path[0] not in known:
            # a top-level key that is neither a section nor a scalar variable
            key = str(path[0])
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "top-level keys are sections or scalar variables"
            problems.append(source.problem(path, f"unknown top-level key '{key}'", hint, code="schema"))
            continue
        message, hint = _message(leaf, known)
        problems.append(source.problem(path, message, hint, code="schema"))
    return problems
