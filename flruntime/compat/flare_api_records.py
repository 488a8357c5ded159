"""flruntime's job records in the shapes NVFlare's FLARE API returns them (job meta, ``list_jobs`` rows)."""

from __future__ import annotations

import datetime
from typing import Any


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat()


def _duration(seconds: float | None) -> str:
    return "N/A" if seconds is None else str(datetime.timedelta(seconds=seconds))


def job_meta(record: dict[str, Any]) -> dict[str, Any]:
    """A job's meta as NVFlare's ``get_job_meta`` gives it, from a record of ``list_jobs(meta=True)``.

    The submitted meta file's keys (``deploy_map``, ``min_clients``, ``resource_spec``, ...) and NVFlare's job keys
    (``job_id``, ``name``, ``status``, ``submitter_name`` / ``_org`` / ``_role``, ``submit_time`` (epoch),
    ``submit_time_iso``, ``start_time`` (local ``YYYY-MM-DD HH:MM:SS.ffffff`` or ""), ``duration``
    (``H:MM:SS.ffffff`` or ``N/A``), ``cloned_from``), plus flruntime's ``sites``, ``rounds``, ``end_time``
    (epoch or None), ``resumed_from`` and ``error`` where there is one.
    """
    meta = dict(record.get("meta") or {})
    start = record.get("start_time")
    meta.update(
        {
            "name": record["name"],
            "job_id": record["job_id"],
            "submitter_name": record.get("submitter", ""),
            "submitter_org": record.get("submitter_org", ""),
            "submitter_role": record.get("submitter_role", ""),
            "status": record["status"],
            "submit_time": record["submit_time"],
            "submit_time_iso": _iso(float(record["submit_time"])),
            "start_time": str(datetime.datetime.fromtimestamp(float(start))) if start is not None else "",
            "duration": _duration(record.get("duration")),
            "sites": list(record.get("sites") or []),
            "rounds": record.get("rounds", 0),
            "end_time": record.get("end_time"),
        }
    )
    if record.get("origin"):
        meta["resumed_from" if record.get("resume") else "cloned_from"] = record["origin"]
    if record.get("error"):
        meta["error"] = record["error"]
    return meta


def job_summary(record: dict[str, Any]) -> dict[str, Any]:
    """One row of NVFlare's ``list_jobs``: ``job_id``, ``job_name``, ``status``, ``submit_time`` (ISO), ``duration``."""
    return {
        "job_id": record["job_id"],
        "job_name": record["name"],
        "status": record["status"],
        "submit_time": _iso(float(record["submit_time"])),
        "duration": _duration(record.get("duration")),
    }


def app_of(meta: dict[str, Any], site: str) -> str:
    """The app a job's deploy map sends to ``site`` (``server`` or a client), or ``?``."""
    deploy_map = meta.get("deploy_map")
    for app, sites in deploy_map.items() if isinstance(deploy_map, dict) else []:
        names = [s for s in sites if isinstance(s, str)] if isinstance(sites, list) else []
        if site in names or any(s.upper() == "@ALL" for s in names):
            return str(app)
    return "?"
