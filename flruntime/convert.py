"""``flruntime job convert``: an NVFlare job folder with flruntime's own class paths.

flruntime runs NVFlare job folders unchanged (NVFlare class paths resolve through the alias map), so
converting is optional: it makes a job say which code really runs. The folder is copied; in every app's
``config_fed_server`` / ``config_fed_client`` file each string that is an NVFlare class path with an alias
(``nvflare.*``, ``monai_nvflare.*``) is replaced by the flruntime class path it maps to. The files are edited
as text (:func:`~flruntime.config.edit.set_scalars`), so comments and layout survive in JSON, HOCON and YAML.
Components given by ``name`` stay as they are: flruntime resolves NVFlare's short names itself. NVFlare
classes without a counterpart are left alone and reported. The copy is validated like the original, and the
report says whether both give the same problems.

A folder in NVFlare's legacy job format (a single app: ``config/`` at the top, no meta file) is first wrapped into a
job as NVFlare's ``convert_legacy_zipped_app_to_job`` does: folder ``F`` becomes app ``OUT/F`` and ``OUT/meta.json``
says ``{"name": F, "resource_spec": {}, "deploy_map": {F: ["@ALL"]}, "min_clients": 1}``. The original is then
validated as that wrapped copy (before its class paths are rewritten), since flruntime refuses the legacy format.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.config.edit import set_scalars
from flruntime.config.job import discover, legacy_app
from flruntime.config.source import load_file
from flruntime.errors import UsageError
from flruntime.graph.aliases import NVFLARE_ALIASES, NVFLARE_REEXPORTS
from flruntime.problems import JsonPath, Problem, format_path
from flruntime.validation import Report, validate_job


@dataclass(frozen=True)
class Rewrite:
    """One class path replaced in a config file."""

    file: str
    line: int
    path: JsonPath
    old: str
    new: str

    def format(self) -> str:
        """``FILE:LINE: $.path: old -> new``."""
        return f"{self.file}:{self.line}: {format_path(self.path)}: {self.old} -> {self.new}"


@dataclass
class ConversionReport:
    """What :func:`convert_job` did.

    Attributes:
        source: the NVFlare job folder.
        output: the converted copy.
        rewrites: the class paths replaced.
        original: the validation report of the source folder.
        converted: the validation report of the copy.
        wrapped: the app's name when ``source`` was a legacy single-app folder wrapped into a job, else None.
    """

    source: Path
    output: Path
    rewrites: list[Rewrite] = field(default_factory=list)
    original: Report | None = None
    converted: Report | None = None
    wrapped: str | None = None

    @property
    def unsupported(self) -> list[Problem]:
        """NVFlare classes left in the copy that flruntime does not support yet."""
        return [p for p in (self.converted.problems if self.converted else []) if p.code == "unsupported"]

    @property
    def same_validation(self) -> bool:
        """True when the copy has the same problems as the original (same file, line, path, code, message)."""

        def key(report: Report | None) -> list[tuple[Any, ...]]:
            problems = report.problems if report else []
            return sorted((p.file, p.line, p.path, p.code, p.message, p.severity) for p in problems)

        return key(self.original) == key(self.converted)


def _strings(node: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def config_files(job_dir: Path) -> list[Path]:
    """The server and client config files of every app of a job folder."""
    folder, _ = discover(job_dir)
    found: list[Path] = []
    for app in folder.apps.values():
        for side in ("server", "client"):
            path = app.config_file(side)
            if path is not None and path not in found:
                found.append(path)
    return found


def plan(job_dir: Path) -> dict[Path, list[Rewrite]]:
    """Return the rewrites converting ``job_dir`` needs, by config file (nothing is changed)."""
    out: dict[Path, list[Rewrite]] = {}
    for path in config_files(job_dir):
        display = str(path.relative_to(job_dir))
        source, _ = load_file(path, display)
        if source is None:
            continue
        for where, value in _strings(source.data):
            target = NVFLARE_ALIASES.get(NVFLARE_REEXPORTS.get(value, value))  # a re-exported path too
            if target is not None:
                line = source.where(where)[0]
                out.setdefault(path, []).append(Rewrite(display, line, where, value, target))
    return out


def _copy(source: Path, output: Path) -> None:
    shutil.copytree(source, output, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder, _dirs, files in os.walk(output):  # a read-only source (e.g. a shared corpus) gives a writable copy
        os.chmod(folder, os.stat(folder).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        for name in files:
            target = os.path.join(folder, name)
            os.chmod(target, os.stat(target).st_mode | stat.S_IWUSR)


def convert_job(job_dir: str | Path, output: str | Path, *, force: bool = False) -> ConversionReport:
    """Copy an NVFlare job folder to ``output`` with flruntime's class paths in place of NVFlare's.

    Args:
        job_dir: the job folder (NVFlare's job layout, a flat template, or a legacy single app, which is wrapped).
        output: the folder to create.
        force: replace ``output`` if it exists.

    Returns:
        What was rewritten, and both validation reports.

    Raises:
        UsageError: ``job_dir`` is not a folder, or ``output`` exists (without ``force``) or lies inside it.
    """
    source, target = Path(job_dir), Path(output)
    if not source.is_dir():
        raise UsageError(f"'{source}' is not a job folder")
    if target.resolve().is_relative_to(source.resolve()):
        raise UsageError(f"the output folder '{target}' must not be inside the job folder '{source}'")
    if target.exists():
        if not force:
            raise UsageError(f"'{target}' already exists (use --force to replace it)")
        shutil.rmtree(target)
    if legacy_app(source):
        name = source.resolve().name
        _copy(source, target / name)
        meta = {"name": name, "resource_spec": {}, "deploy_map": {name: ["@ALL"]}, "min_clients": 1}
        (target / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        report = ConversionReport(source, target, original=validate_job(target), wrapped=name)
    else:
        report = ConversionReport(source, target, original=validate_job(source))
        _copy(source, target)
    for path, rewrites in plan(target).items():
        set_scalars(path, {r.path: r.new for r in rewrites}, rewrites[0].file)
        report.rewrites.extend(rewrites)
    report.converted = validate_job(target)
    return report
