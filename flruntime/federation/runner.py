"""Running submitted jobs on the server: the scheduler loop, dispatching a job to its clients, running it.

:class:`JobRunner` is the part of :class:`~flruntime.federation.server.FederationServer` that turns queued job
records into runs; it shares the server's lock, sites and runs.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.errors import ConfigError, UsageError
from flruntime.events.bus import Event, EventBus
from flruntime.events.types import EventType
from flruntime.federation.archive import zip_folder
from flruntime.federation.jobs import JobRecord, JobStatus, JobStore
from flruntime.federation.metrics import METRICS_FILE, MetricsFile
from flruntime.federation.scheduling import GPUS, blocked_by_resources, custom_modules
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import ServerContext
from flruntime.runtime.lifecycle import preflight_components
from flruntime.runtime.server import ServerEngine
from flruntime.transport.streaming import as_dict
from flruntime.validation import build_job_site, validate_job

log = logging.getLogger(__name__)

#: The largest job folder an admin may upload (zip bytes).
MAX_UPLOAD = 1024**3


@dataclass
class Settings:
    """Timing of the federation.

    Attributes:
        heartbeat_interval: seconds between a client's heartbeats (the server tells clients).
        heartbeat_timeout: a client silent this long is considered gone.
        dispatch_timeout: how long a job waits for its clients to come online and join.
        max_upload: the largest job archive an admin may submit (bytes).
        max_jobs: jobs that may run at the same time (when their clients, resources and code allow).
        max_concurrent_uploads: task results held whole at the same time (a result the workflow cannot fold
            in as it streams is held whole until it is aggregated, so this bounds the server's memory then);
            streamed results hold a chunk each and are not counted.
        stream_results: fold results into the aggregate while they arrive, when the job's workflow and
            aggregator can (no server result filters); False: receive each result whole first.
    """

    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    dispatch_timeout: float = 60.0
    max_upload: int = MAX_UPLOAD
    max_concurrent_uploads: int = 1
    max_jobs: int = 2
    stream_results: bool = True


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
    """A job being dispatched or run."""

    rec: JobRecord
    comm: Communicator
    archive: bytes
    abort: threading.Event
    joined: set[str] = field(default_factory=set)
    engine: ServerEngine | None = None
    modules: set[str] = field(default_factory=set)
    gpus: dict[str, int] = field(default_factory=dict)
    bus: EventBus | None = None
    samples: dict[str, int] = field(default_factory=dict)


class JobRunner:
    """Schedules, dispatches and runs jobs (mixed into the federation server, whose state it uses)."""

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

    def _blocked(self, rec: JobRecord) -> str:
        """Why ``rec`` cannot start now ("" when it can)."""
        folder = self.store.folder(rec.job_id)
        try:
            meta = validate_job(folder, job_id=rec.job_id).job.meta_data
        except Exception as exc:  # a job folder gone bad on disk
            return f"its folder cannot be read ({exc})"
        need = int(meta.get("min_clients") or len(rec.sites))
        mandatory = [str(m) for m in meta.get("mandatory_clients") or []]
        modules = custom_modules(folder)
        with self._lock:
            online = [s for s in rec.sites if (e := self._sites.get(s)) is not None and e.online]
            resources = {s: self._sites[s].resources for s in online}
            used: dict[str, int] = {}
            clash: set[str] = set()
            for run in self._runs.values():
                clash |= modules & run.modules
                for site, want in run.gpus.items():
                    used[site] = used.get(site, 0) + want
        if len(online) < need:
            return f"{len(online)} of the {need} clients it needs are online"
        missing = [m for m in mandatory if m not in online]
        if missing:
            return f"mandatory client(s) {', '.join(missing)} not online"
        spec = as_dict(meta.get("resource_spec"))
        why = blocked_by_resources(spec, online, resources, used)
        if why:
            return why
        if clash:
            return f"a running job's custom code has the same module(s) {', '.join(sorted(clash))}"
        return ""

    def _launch(self, rec: JobRecord) -> None:
        folder = self.store.folder(rec.job_id)
        if self.store.get(rec.job_id) is None or not folder.is_dir():  # deleted meanwhile
            return
        meta = validate_job(folder, job_id=rec.job_id).job.meta_data
        spec = as_dict(meta.get("resource_spec"))
        gpus = {s: int(v.get(GPUS, 0) or 0) for s, v in spec.items() if isinstance(v, dict)}
        run = JobRun(
            rec, Communicator(), zip_folder(folder), threading.Event(), modules=custom_modules(folder), gpus=gpus
        )
        with self._lock:
            self._runs[rec.job_id] = run
        self.store.update(rec, status=JobStatus.DISPATCHED)
        thread = threading.Thread(
            target=self._run_job, args=(run, meta), name=f"server:job-{rec.job_id[:8]}", daemon=True
        )
        thread.start()

    def _wait_for(self, run: JobRun, what: str, need: int, pool: Any) -> bool:
        """Wait (up to the dispatch timeout) until ``pool()`` holds all sites, or at least ``need`` at the end."""
        deadline = time.monotonic() + self.settings.dispatch_timeout
        with self._lock:
            while not (self._stop.is_set() or run.abort.is_set()):
                have = pool()
                if len(have) == len(run.rec.sites):
                    return True
                if time.monotonic() >= deadline:
                    if len(have) >= need:
                        return True
                    missing = sorted(set(run.rec.sites) - set(have))
                    run.rec.error = (
                        f"only {len(have)} of the {need} clients needed {what} ({', '.join(missing)} did not)"
                    )
                    return False
                self._lock.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
        return False

    def _run_job(self, run: JobRun, meta: dict[str, Any]) -> None:
        rec = run.rec
        run_dir = self.workspace / rec.job_id
        if rec.resume and rec.origin and (self.workspace / rec.origin).is_dir() and not run_dir.exists():
            shutil.copytree(self.workspace / rec.origin, run_dir, ignore=shutil.ignore_patterns("sites", "log.txt"))
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            self._dispatch_and_run(run, meta, run_dir)
        except Exception as exc:  # a bug in the job runner must not stop the server
            log.exception("job %s: the server failed to run it", rec.job_id)
            self.store.update(
                rec, status=JobStatus.EXECUTION_EXCEPTION, end_time=time.time(), error=f"{type(exc).__name__}: {exc}"
            )
        finally:
            run.comm.shutdown()
            with self._lock:
                self._runs.pop(rec.job_id, None)
                self._lock.notify_all()
            logging.getLogger().removeHandler(handler)
            handler.close()

    def _dispatch_and_run(self, run: JobRun, meta: dict[str, Any], run_dir: Path) -> None:
        rec, comm = run.rec, run.comm
        folder = self.store.folder(rec.job_id)
        need = int(meta.get("min_clients") or len(rec.sites))
        try:
            log.info("job %s (%s): dispatching to %s", rec.job_id, rec.name, ", ".join(rec.sites))
            graph = build_job_site(folder, "server", job_id=rec.job_id, workspace=str(run_dir))
            bus = EventBus("server")
            bus.subscribe(
                EventType.ROUND_STARTED,
                lambda e: log.info("job %s: round %s started", rec.job_id, e.data.get("round")),
            )
            bus.subscribe(EventType.ROUND_DONE, lambda e: self._round_done(rec, e))
            metrics = MetricsFile(run_dir / METRICS_FILE)
            for name in (EventType.ANALYTIX_LOG_STATS, EventType.FED_ANALYTIX_LOG_STATS):
                bus.subscribe(name, metrics.on_event)
            run.bus = bus
            ctx = ServerContext(rec.job_id, "server", run_dir, graph.app_dir, bus, abort=run.abort, resume=rec.resume)
            preflight_components(graph.objects(), ctx)
            ready = self._wait_for(run, "joined the job", need, lambda: sorted(run.joined))
            if run.abort.is_set():
                self.store.update(rec, status=JobStatus.ABORTED, end_time=time.time(), error=rec.error or "aborted")
                return
            if not ready:
                log.error("job %s: %s", rec.job_id, rec.error)
                self.store.update(rec, status=JobStatus.EXECUTION_EXCEPTION, end_time=time.time())
                return
            run.engine = ServerEngine(graph, ctx, comm)
            self.store.update(rec, status=JobStatus.RUNNING, start_time=time.time())
            log.info("job %s (%s): running with %s", rec.job_id, rec.name, ", ".join(sorted(run.joined)))
            outcome = run.engine.run()
            self.store.update(rec, status=JobStatus(str(outcome.status)), end_time=time.time(), error=outcome.error)
            log.info("job %s (%s): %s after %.1f s", rec.job_id, rec.name, outcome.status, outcome.seconds)
        except (ConfigError, UsageError) as exc:
            log.error("job %s: %s", rec.job_id, exc)
            self.store.update(rec, status=JobStatus.EXECUTION_EXCEPTION, end_time=time.time(), error=str(exc))

    def _round_done(self, rec: JobRecord, event: Event) -> None:
        self.store.update(rec, rounds=rec.rounds + 1)
        log.info(
            "job %s: round %s done with %s",
            rec.job_id,
            event.data.get("round"),
            ", ".join(sorted(event.data.get("contributors", []))) or "no contributions",
        )
