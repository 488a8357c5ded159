"""What the dashboard shows, read from the server's state and its workspace (no web framework here).

* sites: every client of the project with the server's view of it (online, last heartbeat, version) and its
  latest system-metrics sample (``WORKSPACE/<job>/sites/<site>/stats.jsonl`` of the job it runs, else of the
  last job it ran);
* jobs: the job store's records;
* a job's curves: ``WORKSPACE/<job>/metrics.jsonl``, one trace per site per tag (read incrementally);
* its cross-site matrix: ``WORKSPACE/<job>/cross_site_val/cross_val_results.json``;
* its logs: the last lines of the server's and each site's ``log.txt``;
* its models: model files in the run folder and its ``models/`` folder.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flruntime.federation.jobs import JobRecord
from flruntime.jobproc.metrics import METRICS_FILE, SITE_LOG, SITE_STATS, SITES, site_dir

if TYPE_CHECKING:
    from flruntime.dashboard.host import DashboardHost

#: Lines of each log the job page shows.
LOG_LINES = 200
#: Where the cross-site evaluation writes its matrix, in a job's run folder.
CROSS_VAL_FILE = Path("cross_site_val") / "cross_val_results.json"
#: File suffixes offered as model downloads.
MODEL_SUFFIXES = frozenset({".pt", ".pth", ".npy", ".npz", ".safetensors", ".ckpt", ".onnx", ".h5", ".tenseal"})
#: The run folder's sub-folder searched for models too (the numpy persistor's default).
MODELS_DIR = "models"
#: System-metric keys of a site's sample, as the dashboard shows them.
STAT_KEYS = ("cpu_percent", "rss_mib", "mem_percent", "gpu_util_percent", "gpu_mem_mib")
#: Earlier jobs searched for a site's last sample when it runs none.
STATS_LOOKBACK = 20
#: Jobs whose curves are kept in memory between polls (the least recently read are dropped).
CURVES_KEPT = 32


def run_dir(server: DashboardHost, job_id: str) -> Path:
    """A job's run folder on the server."""
    return server.workspace / job_id


def last_json_line(path: Path, block: int = 8192) -> dict[str, Any] | None:
    """The last complete JSON object line of a JSON-lines file (None: missing, empty or unreadable)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - block, 0))
            data = f.read()
    except OSError:
        return None
    for line in reversed(data.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def tail(path: Path, lines: int = LOG_LINES, max_bytes: int = 2 * 2**20) -> str:
    """The last ``lines`` lines of a text file (at most ``max_bytes`` read; missing: "")."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines and end - pos < max_bytes:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


# --- sites and jobs ---------------------------------------------------------------------------------------


def _stats_sample(server: DashboardHost, site: str, running: list[str], records: list[JobRecord]) -> dict | None:
    candidates = [*running, *(r.job_id for r in records if site in r.sites and r.job_id not in running)]
    for job_id in candidates[:STATS_LOOKBACK]:
        sample = last_json_line(site_dir(server.workspace, job_id, site) / SITE_STATS)
        if sample is not None:
            out = {k: sample[k] for k in STAT_KEYS if isinstance(sample.get(k), (int, float))}
            out["time"] = sample.get("time")
            out["job_id"] = job_id
            return out
    return None


def site_rows(server: DashboardHost, records: list[JobRecord] | None = None) -> list[dict[str, Any]]:
    """Every client of the project: org, online, last heartbeat, version, jobs and latest system metrics."""
    seen = server.snapshot()["sites"]
    newest_first = list(reversed(records if records is not None else server.store.all()))
    now = time.time()
    rows = []
    for member in server.kit.members.values():
        if member.type != "client":
            continue
        entry = seen.get(member.name, {})
        last_seen_s = entry.get("last_seen_s")
        jobs = [str(j) for j in entry.get("jobs", [])]
        rows.append(
            {
                "name": member.name,
                "org": member.org,
                "online": bool(entry.get("online", False)),
                "last_seen_s": last_seen_s,
                "last_heartbeat": None if last_seen_s is None else round(now - float(last_seen_s), 3),
                "version": entry.get("version") or "",
                "jobs": jobs,
                "resources": entry.get("resources") or {},
                "stats": _stats_sample(server, member.name, jobs, newest_first),
            }
        )
    return sorted(rows, key=lambda r: r["name"])


def job_rows(records: Iterable[JobRecord]) -> list[dict[str, Any]]:
    """Job records for the jobs table, newest first."""
    return [{**r.as_dict(), "finished": r.status.finished} for r in sorted(records, key=lambda r: -r.submit_time)]


def model_files(folder: Path) -> list[str]:
    """Model files of a run folder (relative POSIX paths): at its top level and under ``models/``."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file()]
    models = folder / MODELS_DIR
    if models.is_dir():
        found += [p for p in models.rglob("*") if p.is_file()]
    return sorted(
        p.relative_to(folder).as_posix() for p in found if p.suffix.lower() in MODEL_SUFFIXES and not p.is_symlink()
    )


def log_tails(folder: Path, sites: list[str], lines: int = LOG_LINES) -> list[dict[str, str]]:
    """The last lines of the server's log and of each site's, server first."""
    out = [{"site": "server", "text": tail(folder / "log.txt", lines)}]
    reported = sorted(p.name for p in (folder / SITES).iterdir() if p.is_dir()) if (folder / SITES).is_dir() else []
    for site in sorted({*sites, *reported}):
        out.append({"site": site, "text": tail(folder / SITES / site / SITE_LOG, lines)})
    return out


# --- curves and the cross-site matrix -------------------------------------------------------------------


class _Series:
    __slots__ = ("inode", "offset", "traces")

    def __init__(self, inode: int) -> None:
        self.inode = inode
        self.offset = 0
        self.traces: dict[str, dict[str, tuple[list[Any], list[float]]]] = {}


class CurveReader:
    """Reads jobs' ``metrics.jsonl`` incrementally (only the bytes added since the last call)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[Path, _Series] = {}

    def curves(self, folder: Path) -> list[dict[str, Any]]:
        """``[{"tag", "traces": [{"site", "x", "y"}]}]``: training tags first, then ``system/...``, by name."""
        path = folder / METRICS_FILE
        with self._lock:
            try:
                info = path.stat()
            except OSError:
                self._series.pop(path, None)
                return []
            series = self._series.pop(path, None)  # put back last: the most recently read
            if series is None or series.inode != info.st_ino or info.st_size < series.offset:
                series = _Series(info.st_ino)
            self._series[path] = series
            while len(self._series) > CURVES_KEPT:
                self._series.pop(next(iter(self._series)))
            if info.st_size > series.offset:
                with path.open("rb") as f:
                    f.seek(series.offset)
                    data = f.read(info.st_size - series.offset)
                complete = data.rfind(b"\n") + 1  # a line being written is read next time
                series.offset += complete
                for line in data[:complete].splitlines():
                    _add(series, line)
            return [
                {
                    "tag": tag,
                    "traces": [{"site": s, "x": list(xy[0]), "y": list(xy[1])} for s, xy in sorted(sites.items())],
                }
                for tag, sites in sorted(series.traces.items(), key=lambda kv: (kv[0].startswith("system/"), kv[0]))
            ]


def _add(series: _Series, line: bytes) -> None:
    try:
        item = json.loads(line)
        tag, site, value = str(item["tag"]), str(item.get("site") or "server"), float(item["value"])
    except (ValueError, KeyError, TypeError):
        return
    xs, ys = series.traces.setdefault(tag, {}).setdefault(site, ([], []))
    step = item.get("step")
    xs.append(step if isinstance(step, (int, float)) else len(xs))
    ys.append(value)


def _model_order(name: str) -> tuple[bool, str]:
    return (not name.startswith("SRV_"), name)


def cross_val(folder: Path) -> list[dict[str, Any]]:
    """The cross-site matrix, one per metric: ``{"metric", "sites" (rows), "models" (columns), "z"}``."""
    try:
        data = json.loads((folder / CROSS_VAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    sites = sorted(k for k, v in data.items() if isinstance(v, dict))
    models = sorted({m for s in sites for m, r in data[s].items() if isinstance(r, dict)}, key=_model_order)
    metrics = sorted(
        {k for s in sites for r in data[s].values() if isinstance(r, dict) for k, v in r.items() if _number(v)}
    )
    out = []
    for metric in metrics:
        z = [[_cell(data[s].get(m), metric) for m in models] for s in sites]
        out.append({"metric": metric, "sites": sites, "models": models, "z": z})
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(result: Any, metric: str) -> float | None:
    value = result.get(metric) if isinstance(result, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
