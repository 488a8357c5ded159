"""The server's record of submitted jobs: one folder per job under ``WORKSPACE/jobs/<id>/``.

``job.json`` holds the record (kept on every change), ``job/`` the submitted job folder; the job's run
(models, results, its log) goes to ``WORKSPACE/<id>/`` as in NVFlare. Records survive a server restart: a job
that was dispatched or running when the server stopped is marked ``FINISHED:ABORTED`` with that reason,
submitted ones wait again.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

JOBS = "jobs"
RECORD = "job.json"
FOLDER = "job"


class JobStatus(StrEnum):
    """A job's status (NVFlare's names)."""

    SUBMITTED = "SUBMITTED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    COMPLETED = "FINISHED:COMPLETED"
    ABORTED = "FINISHED:ABORTED"
    EXECUTION_EXCEPTION = "FINISHED:EXECUTION_EXCEPTION"

    @property
    def finished(self) -> bool:
        """True for the three ``FINISHED:`` states."""
        return self.value.startswith("FINISHED:")


@dataclass
class JobRecord:
    """One submitted job.

    Attributes:
        job_id: its id.
        name: the job's name (meta.json ``name`` or its folder's).
        submitter: who submitted it (an admin's name).
        submit_time: when (seconds since the epoch).
        status: its status.
        sites: the client sites it was deployed to.
        start_time: when it started running (epoch seconds), or None.
        end_time: when it finished, or None.
        error: why it failed, if it did.
        rounds: rounds completed (from the server's round events).
    """

    job_id: str
    name: str
    submitter: str
    submit_time: float
    status: JobStatus = JobStatus.SUBMITTED
    sites: list[str] = field(default_factory=list)
    start_time: float | None = None
    end_time: float | None = None
    error: str = ""
    rounds: int = 0

    @property
    def duration(self) -> float | None:
        """Seconds it ran (so far), or None before it started."""
        if self.start_time is None:
            return None
        return (self.end_time or time.time()) - self.start_time

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-compatible data (with ``duration``)."""
        return {**asdict(self), "status": str(self.status), "duration": self.duration}


class JobStore:
    """Job records and folders in a workspace.

    Args:
        workspace: the server's workspace.
    """

    def __init__(self, workspace: Path) -> None:
        self.root = workspace / JOBS
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, JobRecord] = {}
        for path in sorted(self.root.glob(f"*/{RECORD}")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                data.pop("duration", None)
                rec = JobRecord(**{**data, "status": JobStatus(data["status"])})
            except (OSError, ValueError, TypeError, KeyError):
                continue
            if rec.status in (JobStatus.DISPATCHED, JobStatus.RUNNING):
                rec.status = JobStatus.ABORTED
                rec.error = "the server stopped while the job ran"
                rec.end_time = rec.end_time or time.time()
                self._save(rec)
            self._records[rec.job_id] = rec

    def folder(self, job_id: str) -> Path:
        """The submitted job folder of ``job_id``."""
        return self.root / job_id / FOLDER

    def new_id(self) -> str:
        """Return a fresh job id."""
        return str(uuid.uuid4())

    def add(self, rec: JobRecord) -> None:
        """Store a new record."""
        with self._lock:
            self._records[rec.job_id] = rec
            self._save(rec)

    def update(self, rec: JobRecord, **changes: Any) -> None:
        """Change fields of a record and keep it."""
        with self._lock:
            for key, value in changes.items():
                setattr(rec, key, value)
            self._save(rec)

    def get(self, job_id: str) -> JobRecord | None:
        """Return a record by id (None when unknown)."""
        with self._lock:
            return self._records.get(job_id)

    def all(self) -> list[JobRecord]:
        """Every record, oldest first."""
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.submit_time)

    def next_submitted(self) -> JobRecord | None:
        """The oldest job still waiting to run."""
        return next((r for r in self.all() if r.status == JobStatus.SUBMITTED), None)

    def _save(self, rec: JobRecord) -> None:
        path = self.root / rec.job_id / RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec.as_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
