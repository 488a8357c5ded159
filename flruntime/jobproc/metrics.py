"""A job's metrics on the server: kept in ``WORKSPACE/<job>/metrics.jsonl``, and system metrics as tracking records.

Every numeric tracking record of a job is kept; the sites' system metrics become tracking records too, so they
reach the job's MLflow / TensorBoard / W&B receivers like the training metrics. Each line of ``metrics.jsonl`` is
``{"site", "tag", "value", "step", "time"}`` (dict-valued records are split into ``tag/key`` lines); the dashboard
and ``flruntime plot`` draw the curves from it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from flruntime.events.bus import Event
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

METRICS_FILE = "metrics.jsonl"

#: Where the server keeps what each site reported of a job: ``WORKSPACE/<job>/sites/<site>/{log.txt,stats.jsonl}``.
SITES = "sites"
SITE_LOG = "log.txt"
SITE_STATS = "stats.jsonl"


def site_dir(workspace: Path, job_id: str, site: str) -> Path:
    """Where the server keeps what a site reported of a job (its log lines, its system metrics)."""
    return workspace / job_id / SITES / site


#: System metrics a site samples, as the tracking tags they become.
SYSTEM_TAGS = {
    "cpu_percent": "system/cpu_percent",
    "rss_mib": "system/rss_mib",
    "mem_percent": "system/mem_percent",
    "gpu_mem_mib": "system/gpu_mem_mib",
    "gpu_util_percent": "system/gpu_util_percent",
}


class MetricsFile:
    """Appends the numeric records of tracking events to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        """Event handler: keep the event's record when it is a number or a dict of numbers."""
        raw = event.data.get("record")
        if not isinstance(raw, dict):
            return
        try:
            record = AnalyticsRecord.from_dict(raw)
        except (KeyError, TypeError, ValueError):
            return
        if record.data_type in (AnalyticsDataType.SCALAR, AnalyticsDataType.METRIC):
            values = {record.tag: record.value}
        elif record.data_type in (AnalyticsDataType.SCALARS, AnalyticsDataType.METRICS):
            values = {
                f"{record.tag}/{k}" if record.tag not in ("metrics", "") else k: v for k, v in record.value.items()
            }
        else:
            return
        now = round(time.time(), 3)
        lines = [
            json.dumps({"site": event.origin, "tag": tag, "value": value, "step": record.step, "time": now})
            for tag, value in values.items()
        ]
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file (missing: no metrics)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def system_records(sample: dict[str, Any], step: int) -> list[dict[str, Any]]:
    """A site's system-metrics sample as tracking records (MLflow style metrics, ``system/...`` tags)."""
    records = []
    for key, tag in SYSTEM_TAGS.items():
        value = sample.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            records.append(
                AnalyticsRecord.make(tag, value, AnalyticsDataType.METRIC, LogWriterName.MLFLOW, step).to_dict()
            )
    return records
