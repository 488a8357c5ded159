"""``{var}`` substitution.

A string that is exactly ``"{name}"`` becomes the variable's value with its type (``"{num_rounds}"``
→ ``5``); a string that merely contains placeholders gets them formatted in as text. Variables may
refer to other variables. Unlike NVFlare, an undefined name or a cycle is a reported problem, never
a silent ``None`` or an unchanged string. Braces that do not hold an identifier (``'{"a": 1}'``) are
left alone. ``{$NAME}`` reads the environment variable ``NAME``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flruntime.problems import JsonPath, Problem

PLACEHOLDER = re.compile(r"\{(\$?[A-Za-z_][A-Za-z0-9_]*)\}")

#: Top-level keys of config files that are sections, not variables.
SECTIONS = frozenset(
    {
        "format_version",
        "workflows",
        "components",
        "executors",
        "task_data_filters",
        "task_result_filters",
        "server",
        "handlers",
    }
)


@dataclass(frozen=True)
class Variable:
    """A value that placeholders can use, and where it came from (a file, ``system`` or ``override``)."""

    name: str
    value: Any
    origin: str


@dataclass
class Substitution:
    """The outcome of substituting one document."""

    data: Any
    problems: list[Problem] = field(default_factory=list)
    used: dict[str, list[JsonPath]] = field(default_factory=dict)


def variables_of(data: Any, origin: str) -> dict[str, Variable]:
    """Return the top-level variables of a config or meta document (scalars and lists, not sections)."""
    if not isinstance(data, dict):
        return {}
    return {
        k: Variable(k, v, origin)
        for k, v in data.items()
        if k not in SECTIONS and not k.startswith("@") and not isinstance(v, dict)
    }


class _Resolver:
    def __init__(self, table: Mapping[str, Variable], problem: Callable[..., Problem]) -> None:
        self.table = table
        self.problem = problem
        self.done: dict[str, Any] = {}
        self.active: list[str] = []
        self.out = Substitution(None)

    def lookup(self, name: str, path: JsonPath) -> tuple[bool, Any]:
        self.out.used.setdefault(name, []).append(path)
        if name.startswith("$"):
            if name[1:] in os.environ:
                return True, os.environ[name[1:]]
            self.out.problems.append(
                self.problem(
                    path,
                    f"environment variable '{name[1:]}' is not set",
                    f"export {name[1:]}=... before running",
                    code="variable",
                )
            )
            return False, None
        if name in self.done:
            return True, self.done[name]
        if name in self.active:
            cycle = " -> ".join(self.active[self.active.index(name) :] + [name])
            self.out.problems.append(
                self.problem(
                    path,
                    f"variables refer to each other in a cycle: {cycle}",
                    "give one of them a literal value",
                    code="variable-cycle",
                )
            )
            return False, None
        if name not in self.table:
            close = difflib.get_close_matches(name, list(self.table), n=1)
            hint = (
                f"did you mean '{{{close[0]}}}'?"
                if close
                else (f'define a top-level "{name}" in the config or pass -o {name}=VALUE')
            )
            self.out.problems.append(self.problem(path, f"unresolved variable '{{{name}}}'", hint, code="variable"))
            return False, None
        self.active.append(name)
        try:
            value = self.value(self.table[name].value, path)
        finally:
            self.active.pop()
        self.done[name] = value
        return True, value

    def string(self, text: str, path: JsonPath) -> Any:
        whole = PLACEHOLDER.fullmatch(text.strip())
        if whole:
            ok, value = self.lookup(whole.group(1), path)
            return value if ok else text

        def repl(m: re.Match[str]) -> str:
            ok, value = self.lookup(m.group(1), path)
            return str(value) if ok else m.group(0)

        return PLACEHOLDER.sub(repl, text)

    def value(self, node: Any, path: JsonPath) -> Any:
        if isinstance(node, str):
            return self.string(node, path) if "{" in node else node
        if isinstance(node, dict):
            return {k: (v if k.startswith("@") else self.value(v, path + (k,))) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v, path + (i,)) for i, v in enumerate(node)]
        return node


def substitute(data: Any, table: Mapping[str, Variable], problem: Callable[..., Problem]) -> Substitution:
    """Replace placeholders throughout ``data`` (which is not modified).

    Args:
        data: a parsed config document.
        table: the variables in scope, by name.
        problem: builds a located problem, ``problem(path, message, hint, code=...)``.

    Returns:
        The substituted copy, the problems found and where each variable was used.
    """
    resolver = _Resolver(table, problem)
    resolver.out.data = resolver.value(data, ())
    return resolver.out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from the command line; the value is read as JSON when it parses, else as text.

    Raises:
        ValueError: when there is no ``=`` or the key is empty.
    """
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override '{text}' is not of the form key=value")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def system_variables(
    *,
    job_id: str,
    site: str,
    workspace: str,
    app_dir: str,
    config_dir: str,
    custom_dir: str,
    root_url: str = "",
    secure: bool = True,
) -> dict[str, Variable]:
    """Return the system values every config may use.

    ``JOB_ID``, ``SITE_NAME``, ``WORKSPACE`` and ``APP_DIR`` are flruntime's; ``ROOT_URL``,
    ``SECURE_MODE``, ``JOB_CUSTOM_DIR``, ``JOB_CONFIG_DIR``, ``CP_URL`` and ``RELAY_URL`` are
    accepted too because NVFlare's templates use them.
    """
    values: dict[str, Any] = {
        "JOB_ID": job_id,
        "SITE_NAME": site,
        "WORKSPACE": workspace,
        "APP_DIR": app_dir,
        "JOB_CONFIG_DIR": config_dir,
        "JOB_CUSTOM_DIR": custom_dir,
        "ROOT_URL": root_url,
        "CP_URL": root_url,
        "RELAY_URL": "",
        "SECURE_MODE": secure,
    }
    return {k: Variable(k, v, "system") for k, v in values.items()}
