"""JSON config files: strict JSON, with line/column errors and repeated-key detection."""

from __future__ import annotations

import json
from typing import Any

from flruntime.config._positions import scan
from flruntime.problems import JsonPath, Problem


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str, display: str) -> tuple[Any, dict[JsonPath, tuple[int, int]], list[Problem]]:
    """Parse JSON text; return ``(data, positions, problems)`` with ``data`` None on a syntax error."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        return None, {}, [Problem(display, (), msg, "fix the syntax", exc.lineno, exc.colno, code="syntax")]
    except ValueError as exc:
        return None, {}, [Problem(display, (), f"invalid JSON: {exc}", "fix the syntax", 1, 1, code="syntax")]
    except RecursionError:
        return None, {}, [Problem(display, (), "invalid JSON: nested too deeply", "", 1, 1, code="syntax")]
    try:
        positions = scan(text, hocon=False)
    except RecursionError:
        return None, {}, [Problem(display, (), "invalid JSON: nested too deeply", "", 1, 1, code="syntax")]
    problems = [
        Problem(
            display,
            path,
            f"duplicate key '{path[-1]}' (only the last value would be used)",
            "remove or rename one of them",
            line,
            col,
            code="duplicate-key",
        )
        for path, line, col in positions.duplicates
    ]
    return data, positions.at, problems
