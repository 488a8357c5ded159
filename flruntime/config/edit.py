"""Changing scalar values in a config file's text, keeping its comments and layout.

:func:`write_config` rewrites a whole document (HOCON becomes JSON, comments are lost). For small changes,
such as a class path or ``num_rounds``, :func:`set_scalars` edits the text instead: the loader tells where
each node starts, the value's token there is replaced by the new value written as JSON (valid in JSON, HOCON
and YAML), and every other character of the file stays as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flruntime.config._positions import _tokenize
from flruntime.config.source import Source, config_suffix, load_file
from flruntime.problems import JsonPath, Severity, format_path

Scalar = str | int | float | bool | None
Span = tuple[int, int]


class EditError(ValueError):
    """A value could not be located in the file's text (the message names the file and the JSON path)."""


def _value_at(data: Any, path: JsonPath) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


def _same(token: str, current: Any, quoted: bool) -> bool:
    if quoted:
        try:
            return bool(json.loads(token) == current)
        except ValueError:
            return False
    if isinstance(current, str):
        return token == current
    try:
        return bool(json.loads(token) == current)
    except ValueError:
        return False


def _text_spans(source: Source, text: str, paths: list[JsonPath]) -> dict[JsonPath, Span]:
    """Spans of scalar values in JSON / HOCON text, from the key (or list item) positions of the loader."""
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    tokens = _tokenize(text)
    at = {(t.line, t.col): i for i, t in enumerate(tokens)}
    spans: dict[JsonPath, Span] = {}
    for path in paths:
        where = source.positions.get(tuple(path))
        index = at.get(where) if where is not None else None
        if index is None:
            raise EditError(f"{source.display}: {format_path(path)}: cannot find this value in the text")
        if isinstance(path[-1], str):  # the position is the key's; the value follows (after ':' or '=')
            key = tokens[index]
            name = json.loads(key.text) if key.kind == "string" else key.text
            if not (name == path[-1] or (key.kind == "word" and name.endswith("." + path[-1]))):
                raise EditError(f"{source.display}: {format_path(path)}: the key in the text is {key.text}")
            index += 1
            if index < len(tokens) and tokens[index].kind == "punct" and tokens[index].text in (":", "="):
                index += 1
        token = tokens[index] if index < len(tokens) else None
        current = _value_at(source.data, path)
        quoted = token is not None and token.kind == "string"
        if token is None or token.kind not in ("string", "word") or not _same(token.text, current, quoted):
            raise EditError(f"{source.display}: {format_path(path)}: the value is not one token in the text")
        start = starts[token.line - 1] + token.col - 1
        spans[tuple(path)] = (start, start + len(token.text))
    return spans


def _yaml_spans(source: Source, text: str, paths: list[JsonPath]) -> dict[JsonPath, Span]:
    """Spans of scalar values in YAML text, from the composer's node marks."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: dict[JsonPath, Span] = {}
    for path in paths:
        node = root
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                node = None
            if node is None:
                break
        if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
            raise EditError(f"{source.display}: {format_path(path)}: the value is not one scalar in the text")
        spans[tuple(path)] = (node.start_mark.index, node.end_mark.index)
    return spans


def set_scalars(path: Path, changes: Mapping[JsonPath, Scalar], display: str | None = None) -> None:
    """Replace the scalar values at the given JSON paths of a config file, keeping everything else.

    Args:
        path: a ``.json``, ``.conf`` (HOCON) or ``.yaml``/``.yml`` file.
        changes: JSON path → new value; each path must name an existing scalar (not a dict or list).
        display: the file's name in error messages (default: its path).

    Raises:
        EditError: a path names no scalar, or the value cannot be found as one token of the text; the
            file is left unchanged.
    """
    if not changes:
        return
    text = path.read_text(encoding="utf-8")
    source, problems = load_file(path, display or str(path))
    if source is None or any(p.severity is Severity.ERROR for p in problems):
        raise EditError(f"{display or path}: cannot edit a file that does not load")
    paths = [tuple(p) for p in changes]
    for p in paths:
        try:
            value = _value_at(source.data, p)
        except (KeyError, IndexError, TypeError):
            raise EditError(f"{source.display}: {format_path(p)}: no such value") from None
        if isinstance(value, dict | list):
            raise EditError(f"{source.display}: {format_path(p)}: not a scalar")
    if config_suffix(path) in (".yaml", ".yml"):
        spans = _yaml_spans(source, text, paths)
    else:
        spans = _text_spans(source, text, paths)
    ordered = sorted(((spans[tuple(p)], new) for p, new in changes.items()), key=lambda item: item[0], reverse=True)
    for (start, end), new in ordered:
        text = text[:start] + json.dumps(new, ensure_ascii=False) + text[end:]
    path.write_text(text, encoding="utf-8")
