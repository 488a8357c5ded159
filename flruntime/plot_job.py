"""``flruntime plot``: a job's results as PNG files for reports and for people without the dashboard.

``JOB_RESULT_DIR`` is a downloaded federation job (``flruntime job download``) or a simulator workspace:

- **training curves**, one figure per metric tag with one line per site (x: the step the metric was logged
  with). From ``metrics.jsonl`` (a federation job: every numeric tracking record the server received); in a
  simulator workspace from its MLflow stores (``server/mlflow.db`` and site-side ``<site>/mlflow.db``: one run
  per site, tagged ``site``), else from ``results.json``'s ``round_metrics`` (the clients' weighted mean per
  round, one line labelled ``mean of clients``) when the job tracked nothing in MLflow.
- **system metrics**: CPU %, RSS MiB (and GPU utilisation / memory when sampled) per site over time, from
  ``sites/<site>/stats.jsonl``, else from the ``system/...`` records of the metrics.
- **cross-site validation**: one annotated heatmap per metric (rows: data sites, columns: models) from
  ``cross_site_val/cross_val_results.json`` (``server/cross_site_val/`` in a simulator workspace).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from flruntime.errors import FLRuntimeError, UsageError
from flruntime.exit_codes import ExitCode
from flruntime.plots import cross_site_figure, curve_figure, panels_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: A tag's points per site: ``{site: [(x, value), ...]}``.
SiteSeries = dict[str, list[tuple[float, float]]]

#: The system quantities drawn, in panel order, with their axis labels.
SYSTEM_PANELS = {
    "cpu_percent": "CPU %",
    "rss_mib": "RSS MiB",
    "gpu_util_percent": "GPU utilisation %",
    "gpu_mem_mib": "GPU memory MiB",
}
SYSTEM_PREFIX = "system/"
MEAN_LABEL = "mean of clients"
CROSS_SITE = ("cross_site_val/cross_val_results.json", "server/cross_site_val/cross_val_results.json")


class NothingToPlot(FLRuntimeError):
    """The folder holds no metrics, no system metrics and no cross-site results."""

    exit_code = ExitCode.INVALID_JOB


@dataclass
class JobResults:
    """What :func:`read_job_results` found in a job's result folder.

    Attributes:
        folder: the folder read.
        sources: the files the data came from, relative to ``folder``.
        curves: ``{tag: {site: [(step, value), ...]}}``, each series sorted by step.
        system: ``{quantity: {site: [(seconds since the first sample, value), ...]}}`` (keys of SYSTEM_PANELS).
        cross_site: ``results[data_site][model][metric]``.
    """

    folder: Path
    sources: list[str] = field(default_factory=list)
    curves: dict[str, SiteSeries] = field(default_factory=dict)
    system: dict[str, SiteSeries] = field(default_factory=dict)
    cross_site: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plot:
    """One figure to write as ``name`` (a file name)."""

    name: str
    figure: Figure


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: skipped
        if isinstance(row, dict):
            out.append(row)
    return out


def _mlflow_records(db: Path) -> list[dict[str, Any]]:
    """Every metric point of every run in an MLflow SQLite store, as ``metrics.jsonl`` records."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    records: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for run in client.search_runs(experiments) if experiments else []:
        if not run.data.metrics:
            continue
        site = run.data.tags.get("site") or run.info.run_name or run.info.run_id
        if seen.setdefault(site, run.info.run_id) != run.info.run_id:  # the same site in another job / experiment
            site = f"{site} ({run.info.run_name or run.info.run_id})"
        for key in run.data.metrics:
            for m in client.get_metric_history(run.info.run_id, key):
                records.append({"site": site, "tag": key, "value": m.value, "step": m.step, "time": m.timestamp / 1000})
    return records


def _results_json_records(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("round_metrics") or []
    except (ValueError, AttributeError):
        return []
    return [
        {"site": MEAN_LABEL, "tag": tag, "value": value, "step": row.get("round"), "time": None}
        for row in rows
        if isinstance(row, dict)
        for tag, value in row.items()
        if tag != "round"
    ]


def _metric_records(folder: Path, sources: list[str]) -> list[dict[str, Any]]:
    """The metric records of the folder's best source (see the module's docstring)."""
    from flruntime.jobproc.metrics import METRICS_FILE

    if (folder / METRICS_FILE).is_file():
        sources.append(METRICS_FILE)
        return _read_jsonl(folder / METRICS_FILE)
    records: list[dict[str, Any]] = []
    for db in [
        folder / "server" / "mlflow.db",
        *sorted(p for p in folder.glob("*/mlflow.db") if p.parent.name != "server"),
    ]:
        if db.is_file():
            try:
                found = _mlflow_records(db)
            except Exception as exc:  # no mlflow installed, a store of another MLflow version: results.json then
                log.warning(
                    "%s: cannot read the MLflow store (%s: %s)", db, type(exc).__name__, str(exc).split("\n")[0]
                )
                continue
            if found:
                sources.append(db.relative_to(folder).as_posix())
                records += found
    if not records and (folder / "results.json").is_file():
        records = _results_json_records(folder / "results.json")
        if records:
            sources.append("results.json")
    return records


def _curves(records: Iterable[dict[str, Any]]) -> dict[str, SiteSeries]:
    curves: dict[str, SiteSeries] = {}
    for rec in records:
        tag, value = rec.get("tag"), rec.get("value")
        if not isinstance(tag, str) or tag.startswith(SYSTEM_PREFIX) or not _number(value):
            continue
        series = curves.setdefault(tag, {}).setdefault(str(rec.get("site") or "?"), [])
        step = rec.get("step")
        series.append((float(step) if _number(step) else float(len(series)), float(value)))
    for by_site in curves.values():
        for series in by_site.values():
            series.sort(key=lambda p: p[0])
    return curves


def _system(folder: Path, records: list[dict[str, Any]], sources: list[str]) -> dict[str, SiteSeries]:
    """System samples per quantity and site: ``sites/<site>/stats.jsonl``, else the ``system/...`` records."""
    from flruntime.jobproc.metrics import SITE_STATS, SITES

    samples: list[tuple[str, str, float, float]] = []  # (quantity, site, time, value)
    for stats in sorted((folder / SITES).glob(f"*/{SITE_STATS}")):
        sources.append(stats.relative_to(folder).as_posix())
        for row in _read_jsonl(stats):
            if _number(row.get("time")):
                samples += [
                    (key, stats.parent.name, float(row["time"]), float(row[key]))
                    for key in SYSTEM_PANELS
                    if _number(row.get(key))
                ]
    if not samples:
        for rec in records:
            key = str(rec.get("tag", ""))[len(SYSTEM_PREFIX) :]
            if str(rec.get("tag", "")).startswith(SYSTEM_PREFIX) and key in SYSTEM_PANELS:
                if _number(rec.get("time")) and _number(rec.get("value")):
                    samples.append((key, str(rec.get("site") or "?"), float(rec["time"]), float(rec["value"])))
    if not samples:
        return {}
    t0 = min(s[2] for s in samples)
    system: dict[str, SiteSeries] = {}
    for key, site, t, value in samples:
        system.setdefault(key, {}).setdefault(site, []).append((round(t - t0, 3), value))
    for by_site in system.values():
        for series in by_site.values():
            series.sort(key=lambda p: p[0])
    return {key: system[key] for key in SYSTEM_PANELS if key in system}


def read_job_results(folder: str | Path) -> JobResults:
    """Read the metrics, system metrics and cross-site results of a job's result folder.

    Raises:
        UsageError: ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    out = JobResults(root)
    records = _metric_records(root, out.sources)
    out.curves = _curves(records)
    out.system = _system(root, records, out.sources)
    for rel in CROSS_SITE:
        path = root / rel
        if path.is_file():
            try:
                matrix = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(matrix, dict) and matrix:
                out.cross_site = matrix
                out.sources.append(rel)
                break
    return out


def _file_name(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "metric"
    name, n = f"{base}.png", 2
    while name in taken:
        name, n = f"{base}_{n}.png", n + 1
    taken.add(name)
    return name


def job_plots(results: JobResults) -> list[Plot]:
    """The figures of a job's results: one per metric tag, the system metrics, the cross-site heatmap."""
    plots: list[Plot] = []
    taken: set[str] = set()
    for tag in sorted(results.curves):
        fig = curve_figure(results.curves[tag], title=tag, xlabel="step", ylabel=tag)
        plots.append(Plot(_file_name(f"curve_{tag}", taken), fig))
    if results.system:
        panels = [(SYSTEM_PANELS[key], by_site) for key, by_site in results.system.items()]
        fig = panels_figure(panels, title="system metrics per site", xlabel="seconds since the first sample")
        plots.append(Plot(_file_name("system_metrics", taken), fig))
    heatmap = cross_site_figure(results.cross_site) if results.cross_site else None
    if heatmap is not None:
        plots.append(Plot(_file_name("cross_site_validation", taken), heatmap))
    return plots


def plot_job(folder: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the PNG files of a job's results into ``out`` (default ``folder/plots``); return their paths.

    Raises:
        UsageError: ``folder`` is not a folder.
        NothingToPlot: it holds nothing to plot.
    """
    results = read_job_results(folder)
    plots = job_plots(results)
    if not plots:
        raise NothingToPlot(
            f"{results.folder}: nothing to plot (no metrics.jsonl, MLflow store or results.json with metrics, "
            "no sites/*/stats.jsonl, no cross_site_val/cross_val_results.json)"
        )
    target = Path(out) if out is not None else results.folder / "plots"
    return [save_png(p.figure, target / p.name) for p in plots]
