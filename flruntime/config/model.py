"""Frozen specs of an app config after variable substitution: components, executors, filter chains.

Specs hold plain data only (the class path as written, the args, the JSON path of the entry);
nothing is imported here. Nested components inside ``args`` (dicts with a ``path``) are specs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flruntime.config.source import Source
from flruntime.problems import JsonPath

CLASS_KEYS = ("path", "class_path", "name")


@dataclass(frozen=True)
class ComponentSpec:
    """One component entry.

    Attributes:
        id: the component's id (None for executors, filters and nested components without one).
        class_path: the class as written (a dotted path, or a short name when ``by_name``).
        by_name: True when given as ``"name"`` (a registry short name).
        args: constructor arguments, with nested component dicts left in place.
        path: JSON path of the entry in its file.
        place: ``workflow``, ``component``, ``executor``, ``filter`` or ``nested``.
        disabled: True when ``"disabled": true`` (the component is skipped).
    """

    id: str | None
    class_path: str
    by_name: bool
    args: dict[str, Any]
    path: JsonPath
    place: str
    disabled: bool = False

    def nested(self) -> Iterator[tuple[JsonPath, ComponentSpec]]:
        """Yield ``(path relative to args, spec)`` for every component nested in the args."""
        yield from _nested_in(self.args, ("args",), self.path)


def is_component_dict(value: Any) -> bool:
    """True for a dict that describes a component (has a dotted ``path``/``class_path``).

    ``"config_type": "dict"`` opts a dict out, as in NVFlare.
    """
    if not isinstance(value, dict) or value.get("config_type") == "dict":
        return False
    for key in ("path", "class_path"):
        if isinstance(value.get(key), str) and "." in value[key]:
            return True
    return value.get("config_type") == "component" and isinstance(value.get("name"), str)


def spec_of(node: dict[str, Any], path: JsonPath, place: str, with_id: bool = True) -> ComponentSpec | None:
    """Build a spec from a component dict, or None when it names no class (the schema reports that)."""
    for key in CLASS_KEYS:
        if isinstance(node.get(key), str) and node[key]:
            args = node.get("args", {})
            ident = node.get("id") if with_id and isinstance(node.get("id"), str) else None
            return ComponentSpec(
                ident,
                node[key],
                key == "name",
                args if isinstance(args, dict) else {},
                path,
                place,
                node.get("disabled") is True,
            )
    return None


def _nested_in(value: Any, rel: JsonPath, base: JsonPath) -> Iterator[tuple[JsonPath, ComponentSpec]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if is_component_dict(v):
                spec = spec_of(v, base + rel + (k,), "nested")
                if spec is not None:
                    yield rel + (k,), spec
                    yield from spec.nested()
            else:
                yield from _nested_in(v, rel + (k,), base)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if is_component_dict(v):
                spec = spec_of(v, base + rel + (i,), "nested")
                if spec is not None:
                    yield rel + (i,), spec
                    yield from spec.nested()
            else:
                yield from _nested_in(v, rel + (i,), base)


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor and the tasks it handles."""

    tasks: tuple[str, ...]
    component: ComponentSpec


@dataclass(frozen=True)
class FilterChainSpec:
    """Filters applied, in order, to the data or results of some tasks."""

    tasks: tuple[str, ...]
    filters: tuple[ComponentSpec, ...]
    direction: str | None
    path: JsonPath


@dataclass(frozen=True)
class AppConfig:
    """One side (server or client) of one app, after substitution.

    Attributes:
        app: the app's name.
        side: ``server`` or ``client``.
        source: the file as loaded (for positions; its data is the unsubstituted text).
        data: the substituted document.
    """

    app: str
    side: str
    source: Source
    data: dict[str, Any]
    workflows: tuple[ComponentSpec, ...]
    components: tuple[ComponentSpec, ...]
    executors: tuple[ExecutorSpec, ...]
    task_data_filters: tuple[FilterChainSpec, ...]
    task_result_filters: tuple[FilterChainSpec, ...]

    def all_specs(self) -> Iterator[ComponentSpec]:
        """Yield every top-level spec: workflows, components, executors and filters, in file order."""
        yield from self.workflows
        yield from self.components
        for ex in self.executors:
            yield ex.component
        for chain in self.task_data_filters + self.task_result_filters:
            yield from chain.filters


def _list(data: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    value = data.get(key)
    return list(enumerate(value)) if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    """The strings of ``value`` when it is a list, else nothing (the schema reports other shapes)."""
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


def _chains(data: dict[str, Any], key: str) -> tuple[FilterChainSpec, ...]:
    out = []
    for i, chain in _list(data, key):
        if not isinstance(chain, dict):
            continue
        filters = tuple(
            s
            for j, f in _list(chain, "filters")
            if isinstance(f, dict) and (s := spec_of(f, (key, i, "filters", j), "filter", with_id=False))
        )
        tasks = _strings(chain.get("tasks"))
        direction = chain.get("direction") if isinstance(chain.get("direction"), str) else None
        out.append(FilterChainSpec(tasks, filters, direction, (key, i)))
    return tuple(out)


def app_config(app: str, side: str, source: Source, data: dict[str, Any]) -> AppConfig:
    """Read the specs out of a substituted config document (shape errors are the schema's job)."""
    workflows = tuple(
        s
        for i, w in _list(data, "workflows")
        if isinstance(w, dict) and (s := spec_of(w, ("workflows", i), "workflow"))
    )
    components = tuple(
        s
        for i, c in _list(data, "components")
        if isinstance(c, dict) and (s := spec_of(c, ("components", i), "component"))
    )
    executors = []
    for i, e in _list(data, "executors"):
        if isinstance(e, dict) and isinstance(e.get("executor"), dict):
            spec = spec_of(e["executor"], ("executors", i, "executor"), "executor", with_id=False)
            if spec is not None:
                tasks = _strings(e.get("tasks"))
                executors.append(ExecutorSpec(tasks, spec))
    return AppConfig(
        app,
        side,
        source,
        data,
        workflows,
        components,
        tuple(executors),
        _chains(data, "task_data_filters"),
        _chains(data, "task_result_filters"),
    )
