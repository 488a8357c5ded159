"""The server's job process: one job's workflows, aggregator, persistor, filters and receivers.

Started by the server (:mod:`flruntime.federation.runner`) with ``python -m flruntime.jobproc``. It builds the
job's server app, listens on a port of its own for the job's clients (mutual TLS with the server's certificate,
:class:`~flruntime.jobproc.service.CertificateGate`), waits for them to join, runs the
:class:`~flruntime.runtime.server.ServerEngine` and reports to its parent over the status channel:
``ready`` (its port), ``joined``, ``running``, ``round``, then ``outcome`` (status and error). Commands from the
parent arrive on stdin: ``abort``, ``gone`` / ``back`` (a client's heartbeats stopped / resumed), ``failed`` (a
client's job process died: its tasks fail with the reason).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from flruntime.config.job import discover
from flruntime.events.bus import Event, EventBus
from flruntime.events.types import EventType
from flruntime.jobproc.control import follow
from flruntime.jobproc.metrics import METRICS_FILE, MetricsFile
from flruntime.jobproc.service import CertificateGate, Gate, JobService, LocalGate
from flruntime.jobproc.status import StatusWriter
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import ServerContext
from flruntime.runtime.lifecycle import preflight_components
from flruntime.runtime.server import RunStatus, ServerEngine
from flruntime.transport.grpc_link import JOB_METHODS, OPTIONS, generic_handler, server_credentials
from flruntime.validation import build_job_site

log = logging.getLogger(__name__)

#: Seconds the job's port stays open at most after the job ended, so that every client hears of the end and
#: sends its last report (the port closes as soon as all did).
LINGER = 3.0


class ServerJob:
    """Runs one job's server side in this process (see the module docstring for the spec's fields)."""

    def __init__(self, spec: dict[str, Any], status: StatusWriter | None) -> None:
        self.spec = spec
        self.status = status
        self.job_id = str(spec["job_id"])
        self.job_dir = Path(spec["job_dir"])
        self.run_dir = Path(spec["run_dir"])
        self.sites: dict[str, str] = {str(k): str(v) for k, v in dict(spec.get("sites") or {}).items()}
        self.abort = threading.Event()
        self.comm = Communicator()
        self.engine: ServerEngine | None = None
        self.joined: set[str] = set()
        self._cond = threading.Condition()

    def _send(self, kind: str, **fields: Any) -> None:
        if self.status is not None:
            self.status.send(kind, **fields)

    # --- commands from the parent -----------------------------------------------------------------------

    def commands(self) -> dict[str, Any]:
        """The handlers of the parent's commands."""
        return {
            "abort": lambda m: self.stop("aborted"),
            "gone": lambda m: self._gone(str(m.get("site"))),
            "back": lambda m: self._back(str(m.get("site"))),
            "failed": lambda m: self.comm.fail(str(m.get("site")), str(m.get("reason"))),
        }

    def stop(self, why: str) -> None:
        """Abort the job (the parent asked, or went away)."""
        log.info("job %s: %s", self.job_id, why)
        self.abort.set()
        if self.engine is not None:
            self.engine.abort()
        with self._cond:
            self._cond.notify_all()

    def _gone(self, site: str) -> None:
        self.comm.remove(site)
        with self._cond:
            self.joined.discard(site)

    def _back(self, site: str) -> None:
        if self.engine is not None and site in self.sites:
            self.comm.register(site)
            self._joined(site)
            log.info("job %s: '%s' is back", self.job_id, site)

    def _joined(self, site: str) -> None:
        with self._cond:
            self.joined.add(site)
            self._cond.notify_all()
        self._send("joined", site=site)

    # --- the run ----------------------------------------------------------------------------------------

    def _gate(self) -> Gate:
        return CertificateGate(self.sites, self.job_id) if self.spec.get("tls") else LocalGate(list(self.sites))

    def _listen(self, service: JobService) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16 + 2 * len(self.sites)), options=OPTIONS)
        server.add_generic_rpc_handlers([generic_handler(service, JOB_METHODS)])
        address = str(self.spec.get("listen") or "0.0.0.0:0")
        tls = self.spec.get("tls")
        if tls:
            creds = server_credentials(tls["cert"].encode(), tls["key"].encode(), tls["root"].encode())
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        server.start()
        return server, port

    def _wait_for_clients(self, need: int) -> str:
        """Wait until every site joined, or at least ``need`` at the dispatch timeout; the failure, or ""."""
        deadline = time.monotonic() + float(self.spec.get("dispatch_timeout", 60.0))
        with self._cond:
            while not self.abort.is_set():
                if len(self.joined) == len(self.sites):
                    return ""
                if time.monotonic() >= deadline:
                    if len(self.joined) >= need:
                        return ""
                    missing = ", ".join(sorted(set(self.sites) - self.joined))
                    return f"only {len(self.joined)} of the {need} clients needed joined the job ({missing} did not)"
                self._cond.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
        return ""

    def run(self) -> None:
        """Build, wait for clients, run; every ending is reported as an ``outcome``."""
        status, error = RunStatus.EXECUTION_EXCEPTION, ""
        server: grpc.Server | None = None
        service: JobService | None = None
        try:
            meta = discover(self.job_dir)[0].meta_data
            need = int(meta.get("min_clients") or len(self.sites))
            graph = build_job_site(self.job_dir, "server", job_id=self.job_id, workspace=str(self.run_dir))
            bus = EventBus("server")
            bus.subscribe(EventType.ROUND_STARTED, lambda e: self._send("round_started", round=e.data.get("round")))
            bus.subscribe(EventType.ROUND_DONE, self._round_done)
            metrics = MetricsFile(self.run_dir / METRICS_FILE)
            for name in (EventType.ANALYTIX_LOG_STATS, EventType.FED_ANALYTIX_LOG_STATS):
                bus.subscribe(name, metrics.on_event)
            ctx = ServerContext(
                self.job_id,
                "server",
                self.run_dir,
                graph.app_dir,
                bus,
                abort=self.abort,
                resume=self.spec.get("resume", False),
            )
            preflight_components(graph.objects(), ctx)
            service = JobService(
                self.job_id,
                self.comm,
                self._gate(),
                self.run_dir,
                bus,
                on_join=self._joined,
                stream_results=bool(self.spec.get("stream_results", True)),
                max_concurrent_uploads=int(self.spec.get("max_concurrent_uploads", 1)),
            )
            server, port = self._listen(service)
            self._send("ready", port=port)
            why = self._wait_for_clients(need)
            if self.abort.is_set():
                status, error = RunStatus.ABORTED, "aborted"
            elif why:
                error = why
                log.error("job %s: %s", self.job_id, why)
            else:
                self.engine = ServerEngine(graph, ctx, self.comm)
                self._send("running", sites=sorted(self.joined))
                log.info("job %s: running with %s", self.job_id, ", ".join(sorted(self.joined)))
                outcome = self.engine.run()
                status, error = outcome.status, outcome.error
                log.info("job %s: %s after %.1f s", self.job_id, outcome.status, outcome.seconds)
        except Exception as exc:  # the job's code or config: the job fails, with the reason
            log.exception("job %s: the server side failed", self.job_id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.comm.shutdown()
            self._send("outcome", status=str(status), error=error)
            if server is not None:
                if not self.abort.is_set() and service is not None:  # until every client finished its part
                    with self._cond:
                        joined = set(self.joined)
                    missing = service.wait_ended(joined, LINGER)
                    if missing:
                        log.info("job %s: %s did not finish within %g s of the job's end", self.job_id, missing, LINGER)
                server.stop(1.0).wait()

    def _round_done(self, event: Event) -> None:
        contributors = sorted(event.data.get("contributors", []) or [])
        log.info(
            "job %s: round %s done with %s",
            self.job_id,
            event.data.get("round"),
            ", ".join(contributors) or "no contributions",
        )
        self._send("round", round=event.data.get("round"), contributors=contributors)


def main(spec: dict[str, Any], stdin: Any) -> int:
    """Run the server side of a job; 0 when it ran to an outcome (the outcome says how it went)."""
    status = StatusWriter.from_env()
    job = ServerJob(spec, status)
    follow(stdin, job.commands(), on_end=lambda: job.stop("the server process went away"))
    job.run()
    return 0


__all__ = ["ServerJob", "main"]
