"""Running submitted jobs on the server: the scheduler loop, and each job in a server job process of its own.

:class:`JobRunner` is the part of :class:`~flruntime.federation.server.FederationServer` that turns queued job
records into runs; it shares the server's lock, sites and runs. A run is a job process
(:mod:`flruntime.jobproc.server_job`) that holds the job's components and serves the job's clients on a port of
its own; this process only reads the job's ``meta.json``, never its code, and learns how the job goes from the
job process's status messages. A job process that dies, in any way, fails only its job.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.config.job import discover
from flruntime.federation.archive import zip_folder
from flruntime.federation.jobs import JobRecord, JobStatus, JobStore
from flruntime.federation.kit import Kit, local_resources
from flruntime.federation.scheduling import GPUS, blocked_by_resources
from flruntime.jobproc.control import Commander
from flruntime.jobproc.limits import memory_limit
from flruntime.jobproc.process import JobProcess
from flruntime.transport.streaming import as_dict

log = logging.getLogger(__name__)

#: The largest job folder an admin may upload (zip bytes).
MAX_UPLOAD = 1024**3

#: Seconds an aborted job's process has to end by itself before its process group is killed.
ABORT_GRACE = 10.0


@dataclass
class Settings:
    """Timing of the federation.

    Attributes:
        heartbeat_interval: seconds between a client's heartbeats (the server tells clients).
        heartbeat_timeout: a client silent this long is considered gone.
        dispatch_timeout: how long a job waits for its clients to come online and join.
        max_upload: the largest job archive an admin may submit (bytes).
        max_jobs: jobs that may run at the same time (when their clients and resources allow).
        max_concurrent_uploads: task results held whole at the same time (a result the workflow cannot fold
            in as it streams is held whole until it is aggregated, so this bounds the server's memory then);
            streamed results hold a chunk each and are not counted.
        stream_results: fold results into the aggregate while they arrive, when the job's workflow and
            aggregator can (no server result filters); False: receive each result whole first.
        job_ports: the ports job processes listen on (``(first, last)``), or None for any free port. Clients
            connect to them directly, so they must be reachable like the server's own port
            (``FLRUNTIME_JOB_PORTS=8200-8209``).
    """

    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    dispatch_timeout: float = 60.0
    max_upload: int = MAX_UPLOAD
    max_concurrent_uploads: int = 1
    max_jobs: int = 2
    stream_results: bool = True
    job_ports: tuple[int, int] | None = None


@dataclass
class SiteState:
    """What the server knows of a client site."""

    name: str
    peer: str
    last_seen: float
    online: bool = True
    org: str = ""
    version: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    action: str = ""  # "shutdown" or "restart", told with the next heartbeat


@dataclass
class JobRun:
    """A job being dispatched or run, as this process sees its job process.

    Attributes:
        rec: the job's record.
        archive: the job folder, zipped, for its clients.
        abort: set when the job is to be aborted.
        joined: the clients that joined the job (the job process says).
        port: the job process's port, once it listens (0 before).
        outcome: the job process's last word (status, error), once it gave one.
        gpus: GPUs the job takes per site.
        commander: writes commands to the job process.
        proc: the job process.
    """

    rec: JobRecord
    archive: bytes
    abort: threading.Event
    joined: set[str] = field(default_factory=set)
    port: int = 0
    outcome: dict[str, Any] | None = None
    gpus: dict[str, int] = field(default_factory=dict)
    commander: Commander = field(default_factory=lambda: Commander(None))
    proc: JobProcess | None = None

    @property
    def live(self) -> bool:
        """True while the job process serves the job's clients."""
        return bool(self.port) and self.outcome is None and not self.abort.is_set()


def job_ports(text: str | None) -> tuple[int, int] | None:
    """``"8200-8209"`` → ``(8200, 8209)``; ``"8200"`` → ``(8200, 8200)``; empty → None."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise ValueError(f"FLRUNTIME_JOB_PORTS: '{text}' is not a port range (write e.g. 8200-8209)") from None
    if not 0 < low <= high < 65536:
        raise ValueError(f"FLRUNTIME_JOB_PORTS: '{text}' is not a port range (write e.g. 8200-8209)")
    return low, high


class JobRunner:
    """Schedules jobs and runs each in a job process (mixed into the federation server, whose state it uses)."""

    kit: Kit
    store: JobStore
    settings: Settings
    workspace: Path
    _lock: threading.Condition
    _runs: dict[str, JobRun]
    _sites: dict[str, SiteState]
    _stop: threading.Event

    # --- jobs ---------------------------------------------------------------------------------------

    def _job_loop(self) -> None:
        """Start queued jobs, oldest first, as soon as each can run (several at once when allowed)."""
        waiting: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                self._schedule(waiting)
            except Exception:  # a bug here must not leave submitted jobs waiting forever unnoticed
                log.exception("the job scheduler failed; retrying")
                time.sleep(1.0)
            with self._lock:
                self._lock.wait(1.0)

    def _schedule(self, waiting: dict[str, str]) -> None:
        """One pass over the queue: start every job that can start now."""
        for rec in self.store.submitted():
            with self._lock:
                if rec.job_id in self._runs:
                    continue
                if len(self._runs) >= self.settings.max_jobs:
                    break
            why = self._blocked(rec)
            if why:
                if waiting.get(rec.job_id) != why:
                    log.info("job %s (%s) waits: %s", rec.job_id, rec.name, why)
                    waiting[rec.job_id] = why
                continue
            waiting.pop(rec.job_id, None)
            self._launch(rec)

    def _meta(self, rec: JobRecord) -> dict[str, Any]:
        """The job's ``meta.json`` (read as data: nothing of the job is imported here)."""
        return discover(self.store.folder(rec.job_id))[0].meta_data

    def _blocked(self, rec: JobRecord) -> str:
        """Why ``rec`` cannot start now ("" when it can)."""
        try:
            meta = self._meta(rec)
        except Exception as exc:  # a job folder gone bad on disk
            return f"its folder cannot be read ({exc})"
        need = int(meta.get("min_clients") or len(rec.sites))
        mandatory = [str(m) for m in meta.get("mandatory_clients") or []]
        with self._lock:
            online = [s for s in rec.sites if (e := self._sites.get(s)) is not None and e.online]
            resources = {s: self._sites[s].resources for s in online}
            used: dict[str, int] = {}
            for run in self._runs.values():
                for site, want in run.gpus.items():
                    used[site] = used.get(site, 0) + want
        if len(online) < need:
            return f"{len(online)} of the {need} clients it needs are online"
        missing = [m for m in mandatory if m not in online]
        if missing:
            return f"mandatory client(s) {', '.join(missing)} not online"
        return blocked_by_resources(as_dict(meta.get("resource_spec")), online, resources, used)

    def _launch(self, rec: JobRecord) -> None:
        folder = self.store.folder(rec.job_id)
        if self.store.get(rec.job_id) is None or not folder.is_dir():  # deleted meanwhile
            return
        spec = as_dict(self._meta(rec).get("resource_spec"))
        gpus = {s: int(v.get(GPUS, 0) or 0) for s, v in spec.items() if isinstance(v, dict)}
        run = JobRun(rec, zip_folder(folder), threading.Event(), gpus=gpus)
        with self._lock:
            self._runs[rec.job_id] = run
        self.store.update(rec, status=JobStatus.DISPATCHED)
        thread = threading.Thread(target=self._run_job, args=(run,), name=f"server:job-{rec.job_id[:8]}", daemon=True)
        thread.start()

    def _run_job(self, run: JobRun) -> None:
        rec = run.rec
        try:
            run_dir = self.workspace / rec.job_id
            if rec.resume and rec.origin and (self.workspace / rec.origin).is_dir() and not run_dir.exists():
                shutil.copytree(self.workspace / rec.origin, run_dir, ignore=shutil.ignore_patterns("sites", "log.txt"))
            run_dir.mkdir(parents=True, exist_ok=True)
            log.info("job %s (%s): dispatching to %s", rec.job_id, rec.name, ", ".join(rec.sites))
            self._run_process(run, run_dir)
        except Exception as exc:  # a bug in the job runner must not stop the server
            log.exception("job %s: the server failed to run it", rec.job_id)
            self.store.update(
                rec, status=JobStatus.EXECUTION_EXCEPTION, end_time=time.time(), error=f"{type(exc).__name__}: {exc}"
            )
        finally:
            if run.proc is not None:
                run.proc.terminate()
            run.commander.close()
            with self._lock:
                self._runs.pop(rec.job_id, None)
                self._lock.notify_all()

    def _listen_address(self) -> str:
        """Where the next job process listens: a free port of :attr:`Settings.job_ports`, else any port."""
        ports = self.settings.job_ports
        if ports is None:
            return "0.0.0.0:0"
        with self._lock:
            taken = {r.port for r in self._runs.values()}
        free = [p for p in range(ports[0], ports[1] + 1) if p not in taken]
        return f"0.0.0.0:{free[0] if free else 0}"

    def _run_process(self, run: JobRun, run_dir: Path) -> None:
        """Start the job's process, follow it to its end, and record the outcome."""
        rec = run.rec
        folder = self.store.folder(rec.job_id)
        resources = local_resources(self.kit.root)
        limit = memory_limit(resources, as_dict(self._meta(rec).get("resource_spec")), "server")
        spec = {
            "role": "server",
            "job_id": rec.job_id,
            "job_dir": str(folder),
            "run_dir": str(run_dir),
            "resume": rec.resume,
            "sites": {s: (m.org if (m := self.kit.members.get(s)) else "") for s in rec.sites},
            "tls": {"cert": self.kit.cert.decode(), "key": self.kit.key.decode(), "root": self.kit.root_cert.decode()},
            "listen": self._listen_address(),
            "dispatch_timeout": self.settings.dispatch_timeout,
            "stream_results": self.settings.stream_results,
            "max_concurrent_uploads": self.settings.max_concurrent_uploads,
        }
        proc = JobProcess(
            [sys.executable, "-m", "flruntime.jobproc"],
            cwd=run_dir,
            env=dict(os.environ),
            log_path=run_dir / "log.txt",
            memory_limit=limit,
            on_status=lambda message: self._on_status(run, message),
            name=f"server:job-{rec.job_id[:8]}",
        )
        run.proc = proc
        run.commander = Commander(proc.start(spec))
        log.info("job %s: server job process %d started", rec.job_id, proc.pid)
        aborted_at = None
        while proc.wait(1.0) is None:
            if (run.abort.is_set() or self._stop.is_set()) and aborted_at is None:
                aborted_at = time.monotonic()
                run.commander.send("abort")
            if aborted_at is not None and time.monotonic() - aborted_at > ABORT_GRACE:
                log.warning(
                    "job %s: its process did not end within %.0f s of the abort; killing it", rec.job_id, ABORT_GRACE
                )
                break
        proc.terminate()
        self._record_end(run, proc)

    def _record_end(self, run: JobRun, proc: JobProcess) -> None:
        rec, outcome = run.rec, run.outcome
        if outcome is not None:
            status, error = JobStatus(str(outcome.get("status"))), str(outcome.get("error") or "")
        elif run.abort.is_set():
            status, error = JobStatus.ABORTED, rec.error or "aborted"
        else:
            status, error = JobStatus.EXECUTION_EXCEPTION, f"server job process {proc.exit_cause()}"
        if status == JobStatus.ABORTED and not error:
            error = "aborted"
        self.store.update(rec, status=status, end_time=time.time(), error=error)
        logger = log.info if status == JobStatus.COMPLETED else log.error
        logger("job %s (%s): %s%s", rec.job_id, rec.name, status, f": {error}" if error else "")

    def _on_status(self, run: JobRun, message: dict[str, Any]) -> None:
        """What the job process says: it listens, a client joined, it runs, a round ended, how it ended."""
        rec, kind = run.rec, message.get("kind")
        if kind == "ready":
            with self._lock:
                run.port = int(message.get("port", 0) or 0)
                self._lock.notify_all()
            log.info("job %s: its process serves the job's clients on port %d", rec.job_id, run.port)
        elif kind == "joined":
            with self._lock:
                run.joined.add(str(message.get("site")))
                self._lock.notify_all()
            log.info("job %s: '%s' joined", rec.job_id, message.get("site"))
        elif kind == "running":
            self.store.update(rec, status=JobStatus.RUNNING, start_time=time.time())
            log.info("job %s (%s): running with %s", rec.job_id, rec.name, ", ".join(message.get("sites", [])))
        elif kind == "round_started":
            log.info("job %s: round %s started", rec.job_id, message.get("round"))
        elif kind == "round":
            self.store.update(rec, rounds=rec.rounds + 1)
            contributors = ", ".join(message.get("contributors", [])) or "no contributions"
            log.info("job %s: round %s done with %s", rec.job_id, message.get("round"), contributors)
        elif kind == "outcome":
            with self._lock:
                run.outcome = dict(message)
                self._lock.notify_all()
