"""HOCON config files (NVFlare's ``.conf``), parsed by pyhocon, with positions from our scanner."""

from __future__ import annotations

import re
from typing import Any

from flruntime.config._positions import scan
from flruntime.problems import JsonPath, Problem

_LINE_COL = re.compile(r"\(line:\s*(\d+),\s*col:\s*(\d+)\)")
#: pyparsing's "(at char 16)": a character offset, noise next to the line and column we print.
_AT_CHAR = re.compile(r"\s*\(at char \d+\)")


def _plain(value: Any) -> Any:
    """Turn pyhocon's ConfigTree/list values into plain dicts and lists."""
    from pyhocon import ConfigTree

    if isinstance(value, ConfigTree):
        # pyhocon keeps the quotes of a quoted key with dots ("mlflow.note.content"); NVFlare strips them
        return {str(k).strip('"'): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_hocon(text: str, display: str) -> tuple[Any, dict[JsonPath, tuple[int, int]], list[Problem]]:
    """Parse HOCON text; return ``(data, positions, problems)`` with ``data`` None on a syntax error."""
    try:
        from pyhocon import ConfigFactory
    except ImportError:  # pragma: no cover - pyhocon is a hard dependency
        return None, {}, [Problem(display, (), "HOCON support needs pyhocon", "pip install pyhocon", code="syntax")]
    try:
        tree = ConfigFactory.parse_string(text, resolve=True)
    except Exception as exc:  # pyhocon raises pyparsing and its own exception types
        line = int(getattr(exc, "lineno", 0) or 0)
        col = int(getattr(exc, "col", 0) or 0)
        text_msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        found = _LINE_COL.search(text_msg)
        if not line and found:
            line, col = int(found.group(1)), int(found.group(2))
        text_msg = _AT_CHAR.sub("", _LINE_COL.sub("", text_msg)).strip().rstrip(",")
        where = f" (line {line}, column {col})" if line else ""
        msg = f"invalid HOCON: {text_msg}{where}"
        return None, {}, [Problem(display, (), msg, "fix the syntax", line, col, code="syntax")]
    try:
        return _plain(tree), scan(text, hocon=True).at, []
    except RecursionError:
        return None, {}, [Problem(display, (), "invalid HOCON: nested too deeply", "", 1, 1, code="syntax")]
