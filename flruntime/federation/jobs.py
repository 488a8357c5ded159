"""The server's job store: an SQLite database of job records plus one folder per job.

``WORKSPACE/jobs/jobs.db`` holds the records; ``WORKSPACE/jobs/<id>/job/`` the submitted job folder; the job's
run (models, results, logs) goes to ``WORKSPACE/<id>/`` as in NVFlare. Records survive a server restart: a job that
was dispatched or running when the server stopped is marked ``FINISHED:ABORTED`` with that reason (it can be cloned,
or resumed from its last saved global model), submitted ones wait again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

JOBS = "jobs"
DATABASE = "jobs.db"
FOLDER = "job"
STOPPED_WHILE_RUNNING = "the server stopped while the job ran"


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
        submitter_org: the submitter's organisation (org admins and leads manage their org's jobs).
        submit_time: when (seconds since the epoch).
        status: its status.
        sites: the client sites it is deployed to.
        start_time: when it started running (epoch seconds), or None.
        end_time: when it finished, or None.
        error: why it failed, if it did.
        rounds: rounds completed (from the server's round events).
        origin: the job it was cloned or resumed from, if any.
        resume: True when it continues ``origin``'s run from its last saved state.
    """

    job_id: str
    name: str
    submitter: str
    submit_time: float
    submitter_org: str = ""
    status: JobStatus = JobStatus.SUBMITTED
    sites: list[str] = field(default_factory=list)
    start_time: float | None = None
    end_time: float | None = None
    error: str = ""
    rounds: int = 0
    origin: str = ""
    resume: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds it ran (so far), or None before it started."""
        if self.start_time is None:
            return None
        return (self.end_time or time.time()) - self.start_time

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-compatible data (with ``duration``)."""
        return {**asdict(self), "status": str(self.status), "duration": self.duration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Rebuild a record from :meth:`as_dict`'s output (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = JobStatus(values.get("status", JobStatus.SUBMITTED))
        return cls(**values)


class JobStore:
    """Job records (SQLite) and folders in a server's workspace.

    Args:
        workspace: the server's workspace.
    """

    def __init__(self, workspace: Path) -> None:
        self.root = workspace / JOBS
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, name TEXT, submitter TEXT, submit_time REAL, "
            "status TEXT, record TEXT NOT NULL)"
        )
        for rec in self.all():
            if rec.status in (JobStatus.DISPATCHED, JobStatus.RUNNING):
                self.update(rec, status=JobStatus.ABORTED, error=STOPPED_WHILE_RUNNING, end_time=time.time())

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def folder(self, job_id: str) -> Path:
        """The submitted job folder of ``job_id``."""
        return self.root / job_id / FOLDER

    def new_id(self) -> str:
        """Return a fresh job id."""
        return str(uuid.uuid4())

    def _put(self, rec: JobRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
            (rec.job_id, rec.name, rec.submitter, rec.submit_time, str(rec.status), json.dumps(rec.as_dict())),
        )

    def add(self, rec: JobRecord) -> None:
        """Store a new record."""
        with self._lock:
            self._put(rec)

    def update(self, rec: JobRecord, **changes: Any) -> None:
        """Change fields of a record and store it."""
        with self._lock:
            for key, value in changes.items():
                setattr(rec, key, value)
            self._put(rec)

    def get(self, job_id: str) -> JobRecord | None:
        """Return a record by id (None when unknown)."""
        with self._lock:
            row = self._db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.from_dict(json.loads(row[0])) if row else None

    def all(self) -> list[JobRecord]:
        """Every record, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM jobs ORDER BY submit_time").fetchall()
        return [JobRecord.from_dict(json.loads(r[0])) for r in rows]

    def submitted(self) -> list[JobRecord]:
        """The jobs waiting to run, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM jobs WHERE status = ? ORDER BY submit_time", (str(JobStatus.SUBMITTED),)
            ).fetchall()
        return [JobRecord.from_dict(json.loads(r[0])) for r in rows]

    def delete(self, job_id: str, run_dir: Path | None = None) -> None:
        """Remove a record, its job folder and (when given) its run folder."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        shutil.rmtree(self.root / job_id, ignore_errors=True)
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)

    def copy_folder(self, source: str, target: str) -> None:
        """Give job ``target`` a copy of job ``source``'s folder."""
        shutil.copytree(self.folder(source), self.folder(target))
