"""A :class:`Problem` is one finding about a job folder, located by file, line and JSON path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

JsonPath = tuple[str | int, ...]


class Severity(StrEnum):
    """How bad a problem is: errors make a job invalid, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


def format_path(path: Sequence[str | int]) -> str:
    """Render a path as JSONPath: ``("workflows", 0, "args")`` → ``$.workflows[0].args``.

    Keys that are not plain identifiers are quoted: ``$.args['mlflow.note']``.
    """
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


@dataclass(frozen=True)
class Problem:
    """One finding: where it is and what to do about it.

    Attributes:
        file: the file, relative to the job folder when it is inside it.
        path: the JSON path of the offending node inside ``file``.
        message: what is wrong.
        hint: what to do, or ``""``.
        line: 1-based line of the node, 0 when unknown.
        column: 1-based column, 0 when unknown.
        code: a stable identifier of the kind of problem (for editors and ``--format json``).
        severity: error or warning.
    """

    file: str
    path: JsonPath
    message: str
    hint: str = ""
    line: int = 0
    column: int = 0
    code: str = "invalid"
    severity: Severity = Severity.ERROR

    def format(self) -> str:
        """Return the one-line form ``FILE:LINE: $.path: message (hint)``."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {format_path(self.path)}: {self.message}"
        if self.severity is Severity.WARNING:
            text = f"{where}: {format_path(self.path)}: warning: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``path`` rendered as JSONPath)."""
        data = asdict(self)
        data["path"] = format_path(self.path)
        data["severity"] = self.severity.value
        return data


def errors_in(problems: Iterable[Problem]) -> list[Problem]:
    """Return only the problems of severity error."""
    return [p for p in problems if p.severity is Severity.ERROR]
