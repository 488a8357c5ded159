"""Static checks of one app config: classes, roles, arguments, references and cycles.

Nothing is instantiated. The result keeps every located class so the builder does not have to
look them up again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from flruntime.compat.adapters import NVFLARE_BASES, fills_role
from flruntime.config.model import AppConfig, ComponentSpec
from flruntime.graph.locate import ImportPolicy, Located, LocateError, job_imports, locate
from flruntime.graph.refs import ref_params, referenced_ids_at
from flruntime.graph.signature import check_args, check_values
from flruntime.problems import JsonPath, Problem
from flruntime.roles import Executor, Filter, Workflow, role_name

PLACE_ROLES: dict[str, type] = {"workflow": Workflow, "executor": Executor, "filter": Filter}


@dataclass
class CheckedApp:
    """An app config with the classes found for its specs and the problems found in it."""

    config: AppConfig
    classes: dict[JsonPath, Located] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    edges: dict[str, list[str]] = field(default_factory=dict)

    def ids(self) -> dict[str, ComponentSpec]:
        """Addressable specs by id: components and workflows that are not disabled."""
        out: dict[str, ComponentSpec] = {}
        for spec in (*self.config.workflows, *self.config.components):
            if spec.id and not spec.disabled:
                out.setdefault(spec.id, spec)
        return out


def _all_specs(config: AppConfig) -> list[ComponentSpec]:
    out: list[ComponentSpec] = []
    for spec in config.all_specs():
        if spec.disabled:
            continue
        out.append(spec)
        out.extend(nested for _, nested in spec.nested())
    return out


def _duplicates(app: CheckedApp) -> None:
    src = app.config.source
    seen: dict[str, JsonPath] = {}
    for spec in (*app.config.workflows, *app.config.components):
        if not spec.id:
            continue
        if spec.id in seen:
            first = seen[spec.id]
            line = src.where(first)[0]
            app.problems.append(
                src.problem(
                    spec.path + ("id",),
                    f"duplicate component id '{spec.id}'",
                    f"first defined at line {line}; ids must be unique",
                    code="duplicate-id",
                )
            )
        else:
            seen[spec.id] = spec.path
    unnamed: dict[str, JsonPath] = {}
    for spec in app.config.workflows:
        if spec.id or spec.disabled:
            continue
        default = spec.class_path.rsplit(".", 1)[-1]
        if default in unnamed or default in seen:
            app.problems.append(
                src.problem(
                    spec.path,
                    f"this workflow would get the id '{default}', which another entry already has",
                    'give each workflow its own "id"',
                    code="duplicate-id",
                )
            )
        unnamed.setdefault(default, spec.path)
    claimed: dict[str, int] = {}
    for i, ex in enumerate(app.config.executors):
        if ex.component.disabled:
            continue
        for j, task in enumerate(ex.tasks):
            if task in claimed:
                app.problems.append(
                    src.problem(
                        ("executors", i, "tasks", j),
                        f"task '{task}' is already handled by executors[{claimed[task]}]",
                        "each task has one executor; remove it from one of them",
                        code="duplicate-task",
                    )
                )
            claimed.setdefault(task, i)


def _locate_all(app: CheckedApp, policy: ImportPolicy) -> None:
    src = app.config.source
    for spec in _all_specs(app.config):
        key = "name" if spec.by_name else ("path" if "path" in _raw(src, spec.path) else "class_path")
        try:
            found = locate(spec.class_path, policy, by_name=spec.by_name)
        except LocateError as exc:
            app.problems.append(src.problem(spec.path + (key,), exc.message, exc.hint, code=exc.code))
            continue
        app.classes[spec.path] = found
        role = PLACE_ROLES.get(spec.place)
        if role is not None and not fills_role(found.cls, role):
            app.problems.append(
                src.problem(
                    spec.path + (key,),
                    f"{found.cls.__name__} is not {role_name(role)}",
                    f"{role_name(role)} must implement flruntime.roles.{role.__name__}"
                    + (f" or subclass {NVFLARE_BASES[role]}" if role in NVFLARE_BASES else ""),
                    code="role",
                )
            )


def _raw(src_obj: object, path: JsonPath) -> dict:
    node = getattr(src_obj, "data", None)
    for part in path:
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return {}
    return node if isinstance(node, dict) else {}


def _references(app: CheckedApp) -> None:
    src = app.config.source
    ids = app.ids()
    for spec in _all_specs(app.config):
        found = app.classes.get(spec.path)
        if found is None:
            continue
        owner = spec.id or ""
        for param in ref_params(found.cls):
            given = param.name in spec.args
            value = spec.args[param.name] if given else param.default
            at = spec.path + ("args", param.name) if given else spec.path
            for inner, target in referenced_ids_at(value, param.many):
                path = at + inner if given else at  # a list element when given, else the component
                if owner:
                    app.edges.setdefault(owner, []).append(target)
                if target not in ids:
                    if not given and param.ref.optional:
                        continue  # the default names an optional component the job does not have
                    close = difflib.get_close_matches(target, list(ids), n=1)
                    hint = f"did you mean '{close[0]}'?" if close else "add a component with that id"
                    what = param.name if given else f"{param.name} (default)"
                    app.problems.append(src.problem(path, f"{what}: no component '{target}'", hint, code="reference"))
                    continue
                target_cls = app.classes.get(ids[target].path)
                role = param.ref.role
                if role is not None and target_cls is not None and not fills_role(target_cls.cls, role):
                    app.problems.append(
                        src.problem(
                            path,
                            f"{param.name}: component '{target}' is a {target_cls.cls.__name__}, not {role_name(role)}",
                            f"point {param.name} at {role_name(role)}",
                            code="reference-role",
                        )
                    )


def _cycles(app: CheckedApp) -> None:
    src = app.config.source
    ids = app.ids()
    state: dict[str, int] = {}
    stack: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in app.edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    app.problems.append(
                        src.problem(
                            ids[nxt].path,
                            "components refer to each other in a cycle: " + " -> ".join(cycle),
                            "break one of the references",
                            code="reference-cycle",
                        )
                    )
            elif state.get(nxt) is None and nxt in ids:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in list(app.edges):
        if state.get(node) is None:
            visit(node)


def check_app(config: AppConfig, policy: ImportPolicy) -> CheckedApp:
    """Run every static check on one app config.

    Args:
        config: the substituted app config.
        policy: the import policy, already bound to the app's ``custom/`` folder.
    """
    app = CheckedApp(config)
    _duplicates(app)
    with job_imports(policy.custom_dir):
        _locate_all(app, policy)
        for spec in _all_specs(config):
            found = app.classes.get(spec.path)
            if found is not None:
                app.problems.extend(check_args(found.cls, spec, config.source.problem))
                app.problems.extend(check_values(found.cls, spec, config.source.problem))
    _references(app)
    _cycles(app)
    return app
