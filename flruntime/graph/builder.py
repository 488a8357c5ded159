"""Building one site's component graph: validated specs in, live objects out.

Components are instantiated in dependency order (a component after the ones it references),
nested components before the component whose args hold them, each from a deep copy of its args,
so building twice gives independent objects and the config is never mutated. Top-level components
written against NVFlare's API are wrapped for flruntime's engines (:func:`flruntime.compat.adapters.adapt`).
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flruntime.compat.adapters import adapt
from flruntime.config.model import ComponentSpec, is_component_dict, spec_of
from flruntime.errors import ConfigError, InstantiationError
from flruntime.graph.check import CheckedApp
from flruntime.graph.locate import ImportPolicy, job_imports, locate
from flruntime.problems import JsonPath, errors_in, format_path

T = TypeVar("T")


@dataclass(frozen=True)
class FilterChain:
    """Filters applied in order to the data (or results) of the tasks matching ``tasks``."""

    tasks: tuple[str, ...]
    direction: str
    filters: tuple[Any, ...]

    def applies_to(self, task: str, direction: str) -> bool:
        """True when this chain filters ``task`` in ``direction`` (``in`` or ``out``)."""
        if self.direction not in (direction, "inout"):
            return False
        return any(task == t or fnmatch.fnmatchcase(task, t) for t in self.tasks)


@dataclass
class SiteGraph:
    """Everything one site's app config builds, wired by id.

    Attributes:
        app: the app's name.
        side: ``server`` or ``client``.
        site: the site's name.
        app_dir: the app folder (its ``custom/`` code is importable while the job runs).
        components: every component and workflow that has an id, by id.
        workflows: workflows in run order, as ``(id, object)``.
        executors: ``(tasks, executor)`` in config order.
        task_data_filters: data filter chains.
        task_result_filters: result filter chains.
    """

    app: str
    side: str
    site: str
    app_dir: Path
    custom_dir: Path | None = None
    components: dict[str, Any] = field(default_factory=dict)
    workflows: list[tuple[str, Any]] = field(default_factory=list)
    executors: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)
    task_data_filters: list[FilterChain] = field(default_factory=list)
    task_result_filters: list[FilterChain] = field(default_factory=list)

    def objects(self) -> list[Any]:
        """Every built object once, in build order: components, workflows, executors, then filters."""
        out: list[Any] = []
        seen: set[int] = set()
        # workflows too: two workflows without an id share a default id, so only one is in components
        items = [*self.components.values(), *(wf for _, wf in self.workflows), *(ex for _, ex in self.executors)]
        items += [f for chain in (*self.task_data_filters, *self.task_result_filters) for f in chain.filters]
        for obj in items:
            if id(obj) not in seen:
                seen.add(id(obj))
                out.append(obj)
        return out

    def get(self, component_id: str, role: type[T]) -> T:
        """Return the component ``component_id``, checked to be a ``role``.

        Raises:
            KeyError: when there is no such component or it has another role (validation prevents both).
        """
        obj = self.components.get(component_id)
        if not isinstance(obj, role):
            raise KeyError(f"no {role.__name__} with id '{component_id}'")
        return obj

    def executor_for(self, task: str) -> Any | None:
        """Return the executor for ``task``: an exact task name wins over a ``*`` pattern."""
        for tasks, ex in self.executors:
            if task in tasks:
                return ex
        for tasks, ex in self.executors:
            if any("*" in t and fnmatch.fnmatchcase(task, t) for t in tasks):
                return ex
        return None

    def filters_for(self, chains: list[FilterChain], task: str, direction: str) -> list[Any]:
        """Return the filters of ``chains`` that apply to ``task`` in ``direction``, in config order."""
        return [f for chain in chains if chain.applies_to(task, direction) for f in chain.filters]


class _Builder:
    def __init__(self, checked: CheckedApp, policy: ImportPolicy) -> None:
        self.checked = checked
        self.policy = policy
        self.source = checked.config.source

    def cls_of(self, spec: ComponentSpec) -> type:
        found = self.checked.classes.get(spec.path)
        return found.cls if found is not None else locate(spec.class_path, self.policy, by_name=spec.by_name).cls

    def value(self, node: Any, path: JsonPath) -> Any:
        if is_component_dict(node):
            spec = spec_of(node, path, "nested")
            assert spec is not None
            return self.instantiate(spec)
        if isinstance(node, dict):
            return {k: self.value(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v, path + (i,)) for i, v in enumerate(node)]
        return copy.deepcopy(node)

    def instantiate(self, spec: ComponentSpec) -> Any:
        cls = self.cls_of(spec)
        kwargs = {k: self.value(v, spec.path + ("args", k)) for k, v in spec.args.items()}
        try:
            return cls(**kwargs)
        except Exception as exc:
            line = self.source.where(spec.path)[0]
            raise InstantiationError(
                f"{self.source.display}:{line}: {format_path(spec.path)}: {cls.__name__}(...) failed: "
                f"{type(exc).__name__}: {exc} (check the args of this component)"
            ) from exc


def _order(checked: CheckedApp) -> list[ComponentSpec]:
    """Components with ids, referenced ones first (validation has ruled out cycles)."""
    ids = checked.ids()
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done or name not in ids:
            return
        for dep in checked.edges.get(name, []):
            if dep not in done:
                visit(dep)
        if name not in done:
            done.append(name)

    for spec in checked.config.components:
        if spec.id and not spec.disabled:
            visit(spec.id)
    return [ids[i] for i in done if ids[i].place == "component"]


def build_site(
    checked: CheckedApp, *, site: str, app_dir: Path, custom_dir: Path | None, policy: ImportPolicy
) -> SiteGraph:
    """Instantiate every component of one checked app side.

    Args:
        checked: the checked app (it must have no errors).
        site: the site's name.
        app_dir: the app folder.
        custom_dir: the app's ``custom/`` folder, importable while building.
        policy: the import policy.

    Raises:
        ConfigError: when the checked app has errors.
        InstantiationError: when a constructor raises.
    """
    errors = errors_in(checked.problems)
    if errors:
        raise ConfigError(errors)
    cfg = checked.config
    graph = SiteGraph(cfg.app, cfg.side, site, app_dir, custom_dir)
    builder = _Builder(checked, policy.with_custom(custom_dir))
    with job_imports(custom_dir):
        for spec in _order(checked):
            graph.components[spec.id or ""] = adapt(builder.instantiate(spec))
        for spec in cfg.workflows:
            if spec.disabled:
                continue
            obj = adapt(builder.instantiate(spec))
            wid = spec.id or type(obj).__name__
            graph.workflows.append((wid, obj))
            graph.components.setdefault(wid, obj)
        for ex in cfg.executors:
            if not ex.component.disabled:
                graph.executors.append((ex.tasks, adapt(builder.instantiate(ex.component))))
        defaults = {"server": ("out", "in"), "client": ("in", "out")}[cfg.side]
        for chains, target, default in (
            (cfg.task_data_filters, graph.task_data_filters, defaults[0]),
            (cfg.task_result_filters, graph.task_result_filters, defaults[1]),
        ):
            for chain in chains:
                filters = tuple(adapt(builder.instantiate(f)) for f in chain.filters if not f.disabled)
                target.append(FilterChain(chain.tasks, chain.direction or default, filters))
    return graph
