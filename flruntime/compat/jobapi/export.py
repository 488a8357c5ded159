"""Component objects → job folder: class paths, constructor arguments, the user code ``custom/`` needs.

NVFlare's job API writes each object as ``{"path": <its class>, "args": <its constructor arguments>}``. Here:

- **Class path**: a flruntime component that stands for an NVFlare class is written under NVFlare's path
  (``IntimeModelSelector`` → ``nvflare.app_common.widgets.intime_model_selector.IntimeModelSelector``, the first
  path :data:`~flruntime.graph.aliases.NVFLARE_ALIASES` maps to it); any other class under its own module, which
  is copied into ``custom/`` when it is user code (not NVFlare, not flruntime, not installed in the Python
  environment), with the local modules it imports, as NVFlare does (a class defined in the running script
  takes the script's file name as its module).
- **Arguments**: the shim's component classes remember the arguments each object was made with
  (:func:`remember_init_args`): those that differ from the signature's default are written, plus the values
  NVFlare's own constructors store for a few defaults (:data:`NVFLARE_STORED_DEFAULTS`), so the export reads
  as NVFlare's. Objects of other classes (a model, a component of the user's own) are read the way NVFlare
  reads them: each constructor parameter whose attribute ``name`` or ``_name`` differs from its default.
  Values are JSON scalars, lists and dicts, enums (written as their value) or, at the top level of ``args``,
  other objects, written as nested ``{"path", "args"}`` (which both runtimes build); anything else is refused
  with a one-line error naming the argument.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import json
import shutil
import site
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from flruntime.errors import JobApiError

CONFIG = "config"
CUSTOM = "custom"
SERVER_CONFIG = "config_fed_server.json"
CLIENT_CONFIG = "config_fed_client.json"
META = "meta.json"
#: Top-level packages never copied into ``custom/``.
RUNTIME_PACKAGES = ("nvflare", "flruntime")

#: What NVFlare's constructors store for a default argument, which its export then writes (NVFlare reads the
#: attribute, not the argument): IntimeModelSelector and AnalyticsReceiver in ``nvflare/app_common/widgets/``,
#: MLflowReceiver in ``nvflare/app_opt/tracking/mlflow/mlflow_receiver.py`` (2.5 - 2.7).
_BOTH_EVENTS = ["analytix_log_stats", "fed.analytix_log_stats"]
NVFLARE_STORED_DEFAULTS: dict[str, dict[str, Any]] = {
    "nvflare.app_common.widgets.intime_model_selector.IntimeModelSelector": {"aggregation_weights": {}},
    "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver": {"events": _BOTH_EVENTS},
    "nvflare.app_opt.tracking.wandb.wandb_receiver.WandBReceiver": {"events": _BOTH_EVENTS},
    "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver": {
        "kw_args": {},
        "artifact_location": "artifacts",
        "events": ["fed.analytix_log_stats"],
    },
}

_RECORD = "_flruntime_init_args"


def remember_init_args(*classes: type) -> None:
    """Make the objects of each class remember the arguments they were made with (idempotent).

    The shim calls this for the classes it exports under NVFlare's names, so the job API can write an object
    as it was made. Only an object of exactly that class remembers (a subclass's own ``__init__`` may take
    other arguments, so its objects are read through their attributes); the class's signature is unchanged.
    """
    for cls in classes:
        init = cls.__init__  # type: ignore[misc]
        if getattr(init, "_flruntime_records", None) is not cls:
            cls.__init__ = _recording(cls, init)  # type: ignore[misc]


def _recording(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(init)
    params = list(signature.parameters.values())[1:]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if type(self) is cls:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                pass  # the constructor itself says what is wrong
            else:
                given: dict[str, Any] = {}
                for p in params:
                    if p.name not in bound.arguments:
                        continue
                    if p.kind is p.VAR_KEYWORD:
                        given.update(bound.arguments[p.name])
                    elif p.kind is not p.VAR_POSITIONAL:
                        given[p.name] = bound.arguments[p.name]
                vars(self)[_RECORD] = given
        init(self, *args, **kwargs)

    __init__._flruntime_records = cls  # type: ignore[attr-defined]
    return __init__


def recorded_args(obj: Any) -> dict[str, Any] | None:
    """The arguments ``obj`` was made with, when its class remembers them (:func:`remember_init_args`)."""
    state = vars(obj) if hasattr(obj, "__dict__") else {}
    recorded = state.get(_RECORD)
    cls = type(obj)
    if recorded is None or getattr(cls.__init__, "_flruntime_records", None) is not cls:
        return None
    return dict(recorded)


@cache
def _nvflare_paths() -> dict[str, str]:
    from flruntime.graph.aliases import NVFLARE_ALIASES

    out: dict[str, str] = {}
    for nvflare_path, ours in NVFLARE_ALIASES.items():
        out.setdefault(ours, nvflare_path)
    return out


def nvflare_path_of(cls: type) -> str | None:
    """NVFlare's class path for a flruntime class that stands for one, else None."""
    return _nvflare_paths().get(f"{cls.__module__}.{cls.__qualname__}")


def _same(a: Any, b: Any) -> bool:
    """``a == b``, with ``False`` and ``0`` different and arrays (which compare element-wise) never equal."""
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """NVFlare's reading of a class's constructor: its parameters, and its bases' when it takes *args, **kwargs."""
    found: dict[str, inspect.Parameter] = {}

    def visit(c: type) -> None:
        try:
            params = inspect.signature(c.__init__).parameters  # type: ignore[misc]
        except (TypeError, ValueError):
            return
        found.update(params)
        if "args" in params and "kwargs" in params:
            for base in c.__bases__:
                if base is not object:
                    visit(base)

    visit(cls)
    return found


def _source_file(cls: type) -> Path | None:
    try:
        name = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    return Path(name) if name else None


class CustomCode:
    """The user code one app's ``custom/`` folder gets: modules of classes, scripts, folders, files.

    Args:
        app_dir: the app's folder (``custom/`` and ``config/`` are inside).
        app_packages: top-level packages installed on the sites: never copied.
    """

    def __init__(self, app_dir: Path, app_packages: Sequence[str] = ()) -> None:
        self.app_dir = app_dir
        self.custom = app_dir / CUSTOM
        self.skip = set(RUNTIME_PACKAGES) | set(app_packages)
        self.modules: set[str] = set()

    def _user_code(self, module: str, source: Path) -> bool:
        if module.split(".")[0] in self.skip:
            return False
        resolved = source.resolve()
        return not any(resolved.is_relative_to(root) for root in _installed_roots())

    def add_module(self, module: str, source: Path) -> None:
        """Copy a user module (and the local modules it imports) to ``custom/<module path>.py``.

        As NVFlare does, the module goes where its dotted name says, and only when the file's path ends that
        way (``src.net`` from ``.../src/net.py`` → ``custom/src/net.py``).
        """
        if module in self.modules or not source.is_file() or not self._user_code(module, source):
            return
        rel = Path(*module.split("."))
        rel = rel / "__init__.py" if source.name == "__init__.py" else rel.with_suffix(".py")
        if source.parts[-len(rel.parts) :] != rel.parts:
            return
        self.modules.add(module)
        self._copy(source, self.custom / rel)
        self._follow_imports(module, source)

    def add_script(self, script: str) -> str:
        """Copy a script (a job resource) into ``custom/`` and return its path there (see :func:`script_location`).

        Raises:
            JobApiError: the script is not a file.
        """
        path = Path(script)
        if not path.is_file():
            raise JobApiError(f"cannot add resource {script}: no such file")
        rel = script_location(script)
        self._copy(path, self.custom / rel)
        self._follow_imports(".".join(Path(rel).with_suffix("").parts), path)
        return rel

    def add_dir(self, folder: str) -> None:
        """Copy a folder's content into ``custom/``."""
        shutil.copytree(folder, self.custom, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))

    def add_file_source(self, src: str, dest_dir: str | None, folder_type: str | None) -> None:
        """Copy a file or folder into ``custom/`` (or ``config/``), optionally into ``dest_dir`` there.

        Raises:
            JobApiError: a folder type other than custom or config, or no such file.
        """
        kind = folder_type or CUSTOM
        if kind not in (CUSTOM, CONFIG):
            raise JobApiError(f"app_folder_type must be 'custom' or 'config', got {folder_type!r}")
        dest = self.app_dir / kind / (dest_dir or "")
        source = Path(src)
        if source.is_file():
            self._copy(source, dest / source.name)
        elif source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            raise JobApiError(f"cannot add file source {src}: no such file or folder")

    def _copy(self, source: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)

    def _follow_imports(self, module: str, source: Path) -> None:
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            return
        here = source.parent
        parts = module.split(".")
        for node in ast.walk(tree):
            found: list[tuple[str, Path]] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found += self._absolute(alias.name, here, parts)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found += self._absolute(node.module, here, parts)
                for alias in node.names:
                    found += self._absolute(f"{node.module}.{alias.name}", here, parts)
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                package = here.joinpath(*[".."] * (node.level - 1)).resolve()
                prefix = parts[: len(parts) - node.level]
                names = [node.module] if node.module else []
                names += [f"{node.module}.{a.name}" if node.module else a.name for a in node.names]
                for name in names:
                    file = _module_file(package, name)
                    if file is not None:
                        found.append((".".join([*prefix, name]), file))
            for name, file in found:
                self.add_module(name, file)

    @staticmethod
    def _absolute(name: str, here: Path, parts: list[str]) -> list[tuple[str, Path]]:
        """An absolute import resolved as NVFlare does: next to the file, else from the module's root."""
        file = _module_file(here, name)
        if file is None and len(parts) > 1:
            file = _module_file(here.joinpath(*[".."] * (len(parts) - 1)).resolve(), name)
        return [] if file is None else [(name, file)]


def _module_file(folder: Path, name: str) -> Path | None:
    base = folder.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _installed_roots() -> tuple[Path, ...]:
    """Folders of the Python installation (standard library, site-packages): code there is never copied."""
    roots = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return tuple(Path(r).resolve() for r in roots if r)


def script_location(script: str) -> str:
    """Where a script goes under ``custom/``.

    Its path as given, or, for an absolute path, relative to the longest ``sys.path`` entry holding it (NVFlare's
    rule); just its name when neither keeps it inside ``custom/``.
    """
    path = Path(script)
    if path.is_absolute():
        best: Path | None = None
        for entry in sys.path:
            root = Path(entry or ".").resolve()
            if path.resolve().is_relative_to(root) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        path = path.resolve().relative_to(best) if best is not None else Path(path.name)
    if ".." in path.parts or not path.parts:
        path = Path(Path(script).name)
    return path.as_posix()


class ComponentWriter:
    """Turns objects into ``{"path", "args"}`` entries, copying the user code they need into one app.

    Args:
        code: the app's custom code.
    """

    def __init__(self, code: CustomCode) -> None:
        self.code = code

    def entry(self, obj: Any, where: str) -> dict[str, Any]:
        """``{"path": ..., "args": ...}`` for ``obj``."""
        return {"path": self.class_path(obj), "args": self.args(obj, where)}

    def class_path(self, obj: Any) -> str:
        """NVFlare's path of a flruntime stand-in, else the object's module and class (copied if user code)."""
        cls = type(obj)
        ours = nvflare_path_of(cls)
        if ours is not None:
            return ours
        module = cls.__module__
        source = _source_file(cls)
        if module == "__main__" and source is not None:
            module = source.stem
        if source is not None:
            self.code.add_module(module, source)
        return f"{module}.{cls.__name__}"

    def args(self, obj: Any, where: str) -> dict[str, Any]:
        """The constructor arguments to write for ``obj`` (see the module)."""
        cls = type(obj)
        label = f"{where} ({cls.__name__})"
        state = vars(obj) if hasattr(obj, "__dict__") else {}
        recorded = recorded_args(obj)
        if recorded is not None:
            params = inspect.signature(cls).parameters
            given = {
                k: v
                for k, v in recorded.items()
                if k not in params or params[k].default is inspect.Parameter.empty or not _same(params[k].default, v)
            }
            stored = NVFLARE_STORED_DEFAULTS.get(nvflare_path_of(cls) or "", {})
            merged = {**{k: v for k, v in stored.items() if k not in given}, **given}
            order = {name: i for i, name in enumerate(params)}
            chosen = dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order))))
        else:
            chosen = {}
            for name, param in _init_parameters(cls).items():
                key = name if name in state else "_" + name
                if key in ("args", "kwargs") or key not in state:
                    continue
                if not _same(param.default, state[key]):
                    chosen[name] = state[key]
        return {name: self._value(value, f"{label}.{name}", nested=True) for name, value in chosen.items()}

    def _value(self, value: Any, where: str, nested: bool) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value.value if isinstance(value, Enum) else value
        if isinstance(value, Enum):
            return self._value(value.value, where, nested)
        if isinstance(value, Path):
            return str(value)
        if hasattr(value, "tolist") and type(value).__module__.split(".")[0] == "numpy":
            return value.tolist()
        if isinstance(value, (list, tuple)):
            return [self._value(v, f"{where}[{i}]", False) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return {str(k): self._value(v, f"{where}.{k}", False) for k, v in value.items()}
        if nested and not isinstance(value, (set, frozenset, bytes, bytearray, complex)) and not _builtin(value):
            return self.entry(value, where)
        raise JobApiError(
            f"cannot write argument {where} to the job config: a {type(value).__name__} is not JSON "
            "(pass numbers, strings, lists, dicts or components)"
        )


def _builtin(value: Any) -> bool:
    return type(value).__name__ in dir(builtins) and type(value).__module__ == "builtins"


@dataclass
class SideConfig:
    """One side (server or client) of an app, as the job API collects it."""

    workflows: list[tuple[str, Any]] = field(default_factory=list)
    executors: list[tuple[list[str], Any]] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)
    data_filters: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    result_filters: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    file_sources: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def add_filter(self, chains: list[tuple[list[str], list[Any]]], tasks: list[str], flt: Any) -> None:
        """Append ``flt`` to the chain for exactly these tasks (a new chain for a new task set)."""
        for chain_tasks, filters in chains:
            if sorted(chain_tasks) == sorted(tasks):
                filters.append(flt)
                return
        chains.append((list(tasks), [flt]))

    def merged_with(self, other: SideConfig, site: str) -> SideConfig:
        """This side's content followed by ``other``'s (a site's own additions to what all clients get).

        Raises:
            JobApiError: both name a different component with the same id.
        """
        out = SideConfig(
            workflows=[*self.workflows, *other.workflows],
            executors=[*self.executors, *other.executors],
            components=dict(self.components),
            data_filters=[(list(t), list(f)) for t, f in self.data_filters],
            result_filters=[(list(t), list(f)) for t, f in self.result_filters],
            params={**self.params, **other.params},
            scripts=[*self.scripts, *(s for s in other.scripts if s not in self.scripts)],
            dirs=[*self.dirs, *(d for d in other.dirs if d not in self.dirs)],
            file_sources=[*self.file_sources, *other.file_sources],
        )
        for cid, comp in other.components.items():
            if cid in out.components and out.components[cid] is not comp:
                raise JobApiError(f"component id '{cid}' is used both for all clients and for {site}")
            out.components[cid] = comp
        for tasks, filters in other.data_filters:
            for flt in filters:
                out.add_filter(out.data_filters, tasks, flt)
        for tasks, filters in other.result_filters:
            for flt in filters:
                out.add_filter(out.result_filters, tasks, flt)
        return out


@dataclass
class AppFolder:
    """One app of the job folder: its name and the sides it has."""

    name: str
    server: SideConfig | None = None
    client: SideConfig | None = None


def _side_config(side: SideConfig, server: bool, writer: ComponentWriter) -> dict[str, Any]:
    out: dict[str, Any] = {"format_version": 2}
    if server:
        out["workflows"] = [{"id": wid, **writer.entry(wf, f"workflow '{wid}'")} for wid, wf in side.workflows]
    else:
        out["executors"] = [
            {"tasks": list(tasks), "executor": writer.entry(ex, f"executor for {tasks}")}
            for tasks, ex in side.executors
        ]
    out["components"] = [{"id": cid, **writer.entry(c, f"component '{cid}'")} for cid, c in side.components.items()]
    for key, chains in (("task_data_filters", side.data_filters), ("task_result_filters", side.result_filters)):
        out[key] = [
            {"tasks": list(tasks), "filters": [writer.entry(f, f"{key} for {tasks}") for f in filters]}
            for tasks, filters in chains
        ]
    out.update(side.params)
    return out


def write_job(
    root: Path,
    meta: dict[str, Any],
    apps: list[AppFolder],
    app_packages: Sequence[str] = (),
) -> Path:
    """Write the job folder ``root`` (an earlier export there is replaced) and return it.

    Raises:
        JobApiError: ``root`` exists and is not a job folder, or an argument cannot be written.
    """
    if root.exists():
        if not (root / META).is_file():
            raise JobApiError(f"job folder {root} already exists and is not a job folder (no {META})")
        shutil.rmtree(root)
    for app in apps:
        app_dir = root / app.name
        (app_dir / CONFIG).mkdir(parents=True, exist_ok=True)
        (app_dir / CUSTOM).mkdir(exist_ok=True)
        code = CustomCode(app_dir, app_packages)
        writer = ComponentWriter(code)
        for side, is_server, file in ((app.server, True, SERVER_CONFIG), (app.client, False, CLIENT_CONFIG)):
            if side is None:
                continue
            data = _side_config(side, is_server, writer)
            (app_dir / CONFIG / file).write_text(json.dumps(data, indent=4), encoding="utf-8")
            for script in side.scripts:
                code.add_script(script)
            for folder in side.dirs:
                code.add_dir(folder)
            for src, dest, kind in side.file_sources:
                code.add_file_source(src, dest, kind)
    (root / META).write_text(json.dumps(meta, indent=4), encoding="utf-8")
    return root


__all__ = [
    "NVFLARE_STORED_DEFAULTS",
    "AppFolder",
    "ComponentWriter",
    "CustomCode",
    "JobApiError",
    "SideConfig",
    "nvflare_path_of",
    "recorded_args",
    "remember_init_args",
    "script_location",
    "write_job",
]
