"""YAML config files (safe loading only), with node positions from the YAML composer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from flruntime.problems import JsonPath, Problem


class _Loader(yaml.SafeLoader):
    """A safe loader that keeps timestamps as strings, so every value stays JSON-compatible."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_Pos = dict[JsonPath, tuple[int, int]]

#: The most nodes a document may expand to: aliases can make a small file expand exponentially.
MAX_NODES = 200_000


class _Unbounded(Exception):
    """The document contains itself through an alias, or expands to more than :data:`MAX_NODES` nodes."""

    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


@dataclass
class _Budget:
    """Nodes on the current path (to catch an alias to an enclosing node) and nodes visited so far."""

    active: set[int] = field(default_factory=set)
    visited: int = 0


def _walk(
    node: yaml.Node, path: JsonPath, at: _Pos, problems: list[Problem], display: str, budget: _Budget | None = None
) -> None:
    budget = budget or _Budget()
    budget.visited += 1
    if budget.visited > MAX_NODES:
        raise _Unbounded(f"the document expands to more than {MAX_NODES} nodes through aliases", node)
    if id(node) in budget.active:
        raise _Unbounded("an alias refers to a node that contains it (recursive structures are not allowed)", node)
    at.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return
    budget.active.add(id(node))
    try:
        _walk_children(node, path, at, problems, display, budget)
    finally:
        budget.active.discard(id(node))


def _walk_children(
    node: yaml.Node, path: JsonPath, at: _Pos, problems: list[Problem], display: str, budget: _Budget
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                problems.append(
                    Problem(
                        display,
                        path,
                        f"key {key_node.value!r} is not a string",
                        "quote the key",
                        line,
                        col,
                        code="syntax",
                    )
                )
                continue
            key = key_node.value
            if key in seen:
                problems.append(
                    Problem(
                        display,
                        path + (key,),
                        f"duplicate key '{key}' (only the last value would be used)",
                        "remove or rename one of them",
                        line,
                        col,
                        code="duplicate-key",
                    )
                )
            seen.add(key)
            at.setdefault(path + (key,), (line, col))
            _walk(value_node, path + (key,), at, problems, display, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), at, problems, display, budget)


def parse_yaml(text: str, display: str) -> tuple[Any, _Pos, list[Problem]]:
    """Parse YAML text; return ``(data, positions, problems)`` with ``data`` None on a syntax error."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "syntax error"
        msg = f"invalid YAML: {reason} (line {line}, column {col})"
        return None, {}, [Problem(display, (), msg, "fix the syntax", line, col, code="syntax")]
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        return None, {}, [Problem(display, (), f"invalid YAML: {exc}", "fix the syntax", 1, 1, code="syntax")]
    at: _Pos = {}
    problems: list[Problem] = []
    if node is not None:
        try:
            _walk(node, (), at, problems, display)
        except _Unbounded as exc:
            line, col = exc.node.start_mark.line + 1, exc.node.start_mark.column + 1
            msg = f"invalid YAML: {exc.message} (line {line}, column {col})"
            return (
                None,
                {},
                [Problem(display, (), msg, "write the values out instead of aliasing", line, col, code="syntax")],
            )
    if problems:
        return (None if any(p.code == "syntax" for p in problems) else data), at, problems
    return data, at, problems
