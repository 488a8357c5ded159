"""Job templates: list them, create job folders from them, and show a job's variables.

A template is a folder holding a runnable job (``meta.json`` and its apps), an ``info.md`` card
and a ``template.json`` with a one-line ``description`` and the ``variables`` a user is meant to
set (name → help text). NVFlare's flat templates (``info.conf``, ``meta.conf`` and
``config_fed_*.conf`` at the root) are accepted too: their configs are placed under
``app/config/`` when a job is created.
"""

from __future__ import annotations

import difflib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flruntime.config.edit import set_scalars
from flruntime.config.job import CONFIG_NAMES, find_config
from flruntime.config.source import load_file
from flruntime.config.variables import SECTIONS
from flruntime.config.writer import write_config
from flruntime.errors import UsageError
from flruntime.problems import format_path
from flruntime.validation import validate_job

TEMPLATE_FILE = "template.json"
CARD_FILES = ("info.md", "info.conf", TEMPLATE_FILE)


@dataclass(frozen=True)
class Template:
    """A job template on disk."""

    name: str
    path: Path
    description: str
    variables: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    remove_components: list[str] = field(default_factory=list)
    tracking: dict[str, Any] | None = None
    controller_type: str = ""
    execution_api_type: str = ""

    @property
    def flat(self) -> bool:
        """True for NVFlare's flat layout (configs at the template's root)."""
        return any(find_config(self.path, stem) for stem in CONFIG_NAMES.values())


def builtin_template_dir() -> Path:
    """Return the folder of the templates shipped with flruntime."""
    return Path(str(resources.files("flruntime.job_templates")))


def _read_template(folder: Path) -> Template | None:
    card = folder / TEMPLATE_FILE
    if card.is_file():
        data = json.loads(card.read_text(encoding="utf-8"))
        return Template(
            folder.name,
            folder,
            str(data.get("description", "")),
            dict(data.get("variables", {})),
            data.get("base"),
            list(data.get("remove_components", [])),
            data.get("tracking"),
            str(data.get("controller_type", "")),
            str(data.get("execution_api_type", "")),
        )
    info = find_config(folder, "info")
    if info is not None:  # NVFlare's template card (NVFlare shows NA for a missing entry)
        source, _ = load_file(info)
        data = source.data if source is not None and isinstance(source.data, dict) else {}
        return Template(
            folder.name,
            folder,
            str(data.get("description", "NA")),
            controller_type=str(data.get("controller_type", "NA")),
            execution_api_type=str(data.get("execution_api_type", "NA")),
        )
    return None


def list_templates(template_dir: str | Path | None = None) -> list[Template]:
    """Return the templates in ``template_dir`` (default: the built-in ones), sorted by name."""
    root = Path(template_dir) if template_dir else builtin_template_dir()
    if not root.is_dir():
        raise UsageError(f"template folder '{root}' does not exist")
    found = [_read_template(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]
    return [t for t in found if t is not None]


def find_template(name: str, template_dir: str | Path | None = None) -> Template:
    """Return the template called ``name``, or the template folder at path ``name``.

    Raises:
        UsageError: naming the available templates when there is no such template.
    """
    as_path = Path(name)
    if as_path.is_dir():
        found = _read_template(as_path)
        if found is not None:
            return found
    templates = {t.name: t for t in list_templates(template_dir)}
    if name in templates:
        return templates[name]
    close = difflib.get_close_matches(name, list(templates), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "available: " + ", ".join(sorted(templates))
    raise UsageError(f"no job template '{name}' ({hint})")


def _copy(template: Template, dest: Path) -> None:
    ignore = shutil.ignore_patterns(*CARD_FILES, "__pycache__", "__init__.py", "*.pyc")
    if not template.flat:
        shutil.copytree(template.path, dest, ignore=ignore)
        return
    dest.mkdir(parents=True)
    config_dir = dest / "app" / "config"
    config_dir.mkdir(parents=True)
    for item in template.path.iterdir():
        if item.name in CARD_FILES or item.name in ("__pycache__", "__init__.py"):
            continue
        target = dest if item.name.startswith("meta.") else config_dir
        if item.is_dir():
            shutil.copytree(item, dest / item.name, ignore=ignore)
        else:
            shutil.copy2(item, target / item.name)


def _overlay(variant: Template, dest: Path) -> None:
    """Copy a variant's own files (e.g. ``app/config/*.json``) over the copy of its base, replacing them."""
    ignore = shutil.ignore_patterns(*CARD_FILES, "__pycache__", "__init__.py", "*.pyc")
    shutil.copytree(variant.path, dest, ignore=ignore, dirs_exist_ok=True)


def _config_files(job_dir: Path) -> list[Path]:
    files = [p for p in (find_config(job_dir, "meta"),) if p is not None]
    for stem in CONFIG_NAMES.values():
        files.extend(sorted(job_dir.glob(f"*/config/{stem}.*")))
    return files


def apply_overrides(job_dir: Path, overrides: Mapping[str, Any]) -> None:
    """Set top-level variables in a job folder's files.

    Raises:
        UsageError: when a key is not a variable of any file (with the nearest name).
    """
    applied: set[str] = set()
    known: set[str] = set()
    for path in _config_files(job_dir):  # a variable several files define (bundle_root, min_clients) is set in each
        source, problems = load_file(path)
        if source is None or not isinstance(source.data, dict):
            continue
        data = dict(source.data)
        changed = False
        for key, value in overrides.items():
            if key in data and key not in SECTIONS and not isinstance(data[key], dict):
                data[key] = value
                changed = True
        known |= {k for k in data if k not in SECTIONS}
        if changed:
            write_config(path, data)
        applied |= {k for k in overrides if k in data}
    for key in [k for k in overrides if k not in applied]:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "flruntime job show-variables lists them"
        raise UsageError(f"'{key}' is not a variable of this template ({hint})")


def _apply_variant(variant: Template, job_dir: Path) -> None:
    """Turn a copy of the base template into the variant: drop components, add a tracking receiver."""
    for path in _config_files(job_dir):
        source, _ = load_file(path)
        if source is None or not isinstance(source.data, dict) or "components" not in source.data:
            continue
        kept = [c for c in source.data["components"] if c.get("id") not in variant.remove_components]
        if len(kept) != len(source.data["components"]):
            write_config(path, {**source.data, "components": kept})
    if variant.tracking:
        from flruntime.tracking.add import add_experiment_tracking

        spec = dict(variant.tracking)
        add_experiment_tracking(job_dir, spec.pop("type"), spec.pop("config", {}), **spec)
    meta = find_config(job_dir, "meta")
    if meta is not None:
        source, _ = load_file(meta)
        if source is not None and isinstance(source.data, dict):
            write_config(meta, {**source.data, "name": variant.name})


def create_job(
    template: str,
    dest: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    template_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Create a job folder from a template and set its variables.

    Args:
        template: a template name or a template folder.
        dest: the job folder to create.
        overrides: variables to set (``{"num_rounds": 5}``).
        template_dir: where to look for templates (default: the built-in ones).
        force: replace ``dest`` if it exists.

    The meta file's ``name`` becomes the folder's name (as with ``nvflare job create``).

    Returns:
        The created folder.

    Raises:
        UsageError: unknown template or variable, or ``dest`` exists without ``force``.
    """
    found = find_template(template, template_dir)
    target = Path(dest)
    if target.exists():
        if not force:
            raise UsageError(f"'{target}' already exists (use --force to replace it)")
        shutil.rmtree(target)
    if found.base:
        base = find_template(found.base, found.path.parent)
        _copy(base, target)
        _overlay(found, target)
        _apply_variant(found, target)
    else:
        _copy(found, target)
    try:
        apply_overrides(target, dict(overrides or {}))
    except UsageError:
        shutil.rmtree(target)
        raise
    set_job_name(target, target.resolve().name)
    return target


def set_job_name(job_dir: Path, name: str) -> None:
    """Set the meta file's ``name`` (as ``nvflare job create`` does: the job folder's name), keeping comments."""
    meta = find_config(job_dir, "meta")
    if meta is None:
        return
    source, _ = load_file(meta)
    if source is None or not isinstance(source.data, dict) or source.data.get("name") == name:
        return
    if isinstance(source.data.get("name"), str):
        set_scalars(meta, {("name",): name})
    else:
        write_config(meta, {**source.data, "name": name})


@dataclass(frozen=True)
class VariableRow:
    """One row of ``flruntime job show-variables``."""

    name: str
    value: str
    origin: str
    used_at: str


def job_variables(job_dir: str | Path) -> list[VariableRow]:
    """Return every variable of a job folder: its value, where it is defined and where it is used."""
    report = validate_job(job_dir)
    rows: dict[tuple[str, str], tuple[Any, set[str]]] = {}
    for key, table in report.variables.items():
        used = report.used.get(key, {})
        checked = next((a for a in report.apps if (a.config.app, a.config.side) == key), None)
        display = checked.config.source.display if checked else key[0]
        for name, var in table.items():
            if var.origin == "system" and name not in used:
                continue
            entry = rows.setdefault((name, var.origin), (var.value, set()))
            for path in used.get(name, []):
                line = checked.config.source.where(path)[0] if checked else 0
                entry[1].add(f"{display}:{line} {format_path(path)}")
    out = []
    for (name, origin), (value, places) in sorted(rows.items()):
        shown = json.dumps(value) if not isinstance(value, str) else value
        out.append(VariableRow(name, shown, origin, ", ".join(sorted(places)) or "-"))
    return out
