"""A loaded config file: its data plus where every node came from.

:func:`load_file` picks the format from the file's extension (``.json``, ``.yaml``/``.yml``,
``.conf`` for HOCON); each format lives in its own module. Loading never raises for bad input:
syntax errors come back as :class:`~flruntime.problems.Problem` objects with line and column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.problems import JsonPath, Problem

#: Extensions in the order NVFlare searches them (JSON first, then HOCON, then YAML).
CONFIG_EXTENSIONS = (".json", ".conf", ".yml", ".yaml")

#: How deeply a config may nest objects and lists; deeper files are refused before the recursive checks.
MAX_DEPTH = 100


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Return how many levels of objects and lists ``value`` nests (0 for a scalar), without recursion.

    Counting stops once it passes ``limit``.
    """
    depth, level = 0, [value]
    while depth <= limit:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return depth
        depth += 1
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]
    return depth


@dataclass(frozen=True)
class Source:
    """The parsed content of one config file.

    Attributes:
        path: the file on disk.
        display: the name used in messages (relative to the job folder).
        data: the parsed value (dicts, lists, scalars; JSON-compatible).
        positions: 1-based (line, column) of each node's start, by JSON path.
    """

    path: Path
    display: str
    data: Any
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: JsonPath) -> tuple[int, int]:
        """Return the position of ``path``, or of its nearest located ancestor."""
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: JsonPath, message: str, hint: str = "", **kw: Any) -> Problem:
        """Build a problem located at ``path`` in this file."""
        line, col = self.where(path)
        return Problem(self.display, tuple(path), message, hint, line, col, **kw)


Parser = Callable[[str, str], tuple[Any, dict[JsonPath, tuple[int, int]], list[Problem]]]


def _parser_for(suffix: str) -> Parser | None:
    if suffix == ".json":
        from flruntime.config.json_source import parse_json

        return parse_json
    if suffix in (".yaml", ".yml"):
        from flruntime.config.yaml_source import parse_yaml

        return parse_yaml
    if suffix == ".conf":
        from flruntime.config.hocon_source import parse_hocon

        return parse_hocon
    return None


def config_suffix(path: Path) -> str:
    """Return the config extension of ``path``, ignoring a trailing ``.default`` (NVFlare's convention)."""
    name = path.name[: -len(".default")] if path.name.endswith(".default") else path.name
    return Path(name).suffix.lower()


def load_file(path: Path, display: str | None = None) -> tuple[Source | None, list[Problem]]:
    """Load one config file.

    Args:
        path: the file to read.
        display: how to name the file in problems (defaults to ``str(path)``).

    Returns:
        ``(source, problems)``; ``source`` is None when the file could not be parsed at all.
    """
    shown = display or str(path)
    parser = _parser_for(config_suffix(path))
    if parser is None:
        hint = "use one of " + ", ".join(CONFIG_EXTENSIONS)
        return None, [Problem(shown, (), f"unsupported config file type '{path.suffix}'", hint, code="syntax")]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        before = bytes(exc.object[: exc.start])
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        return None, [Problem(shown, (), message, "save the file as UTF-8", line, column, code="syntax")]
    except OSError as exc:
        return None, [Problem(shown, (), f"cannot read file: {exc.strerror or exc}", code="io")]
    data, positions, problems = parser(text, shown)
    if problems and data is None:
        return None, problems
    if nesting_depth(data) > MAX_DEPTH:
        message = f"objects and lists are nested more than {MAX_DEPTH} levels deep"
        return None, [Problem(shown, (), message, "flatten the structure", 1, 1, code="syntax")]
    return Source(path, shown, data, positions), problems
