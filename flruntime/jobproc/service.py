"""A job's own service: the tasks, results, events and reports of one running job, served by its job process.

The server's job process listens on a port of its own (mutual TLS with the server's certificate) and clients'
job processes talk to it directly, so a job's models never pass through the long-lived server process. Who may
call is decided by a gate: :class:`CertificateGate` (a deployment: the caller's verified certificate must name
one of the job's sites) or :class:`LocalGate` (the simulator's local socket: the calling site is named in the
call's metadata; only processes that can open the socket's private folder can call).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol

import grpc

from flruntime.events.bus import EventBus
from flruntime.events.types import EventType
from flruntime.jobproc.metrics import SITE_LOG, SITE_STATS, SITES, system_records
from flruntime.runtime.communicator import Communicator, Shutdown
from flruntime.runtime.messages import TaskResult
from flruntime.runtime.streamed import ResultSink
from flruntime.transport.codec import ArraySpec, CodecError
from flruntime.transport.grpc_link import SITE_HEADER, identity
from flruntime.transport.streaming import control, iter_message, read_control, receive

log = logging.getLogger(__name__)


class Gate(Protocol):
    """Decides who is calling a job's service."""

    def __call__(self, context: grpc.ServicerContext, call: str) -> str:
        """Return the calling site's name, or abort the call."""


def refuse(context: grpc.ServicerContext, code: grpc.StatusCode, call: str, who: str, why: str) -> NoReturn:
    """Log a refused call and abort it with ``why``."""
    log.warning("refused %s from %s: %s", call, who, why)
    context.abort(code, why)
    raise AssertionError("unreachable")  # context.abort raises


class CertificateGate:
    """Callers of a deployed job's port: the job's client sites, named by the certificate TLS verified.

    Args:
        sites: the job's sites and the organisation each belongs to (``""``: not checked).
        job_id: the job (for messages).
    """

    def __init__(self, sites: dict[str, str], job_id: str) -> None:
        self.sites = sites
        self.job_id = job_id

    def __call__(self, context: grpc.ServicerContext, call: str) -> str:
        """Return the caller's site, from its certificate, or abort the call."""
        ident = identity(context)
        if ident is None:
            refuse(context, grpc.StatusCode.UNAUTHENTICATED, call, context.peer(), "it sent no certificate")
        if ident.name not in self.sites:
            why = f"'{ident.name}' is not a site of job {self.job_id}"
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, call, ident.peer, why)
        org = self.sites[ident.name]
        if org and ident.org != org:
            why = f"'{ident.name}' presented org '{ident.org}', the project has '{org}'"
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, call, ident.peer, why)
        return ident.name


class LocalGate:
    """Callers of a job's local socket (the simulator's job processes): the site named in the call's metadata.

    Args:
        sites: the sites that may call.
    """

    def __init__(self, sites: list[str]) -> None:
        self.sites = set(sites)

    def __call__(self, context: grpc.ServicerContext, call: str) -> str:
        """Return the site the call's metadata names, or abort the call."""
        named = dict(context.invocation_metadata()).get(SITE_HEADER, "")
        site = named if isinstance(named, str) else named.decode()
        if site not in self.sites:
            why = f"'{site}' is not a site of the job"
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, call, context.peer(), why)
        return site


class JobService:
    """Serves one job's clients: join, pull tasks, submit results, events, log lines and system metrics.

    Args:
        job_id: the job.
        comm: the job's communicator.
        gate: who may call.
        run_dir: the job's run folder on the server (``sites/<site>/`` gets what each site reports).
        bus: the server's event bus (system metrics become tracking records on it).
        on_join: called with a site's name when it joins.
        stream_results: fold results into the aggregate while they arrive (when the workflow can).
        max_concurrent_uploads: results held whole at the same time.
    """

    def __init__(
        self,
        job_id: str,
        comm: Communicator,
        gate: Gate,
        run_dir: Path,
        bus: EventBus | None = None,
        on_join: Callable[[str], None] | None = None,
        stream_results: bool = True,
        max_concurrent_uploads: int = 1,
    ) -> None:
        self.job_id = job_id
        self.comm = comm
        self.gate = gate
        self.run_dir = run_dir
        self.bus = bus
        self.on_join = on_join
        self.stream_results = stream_results
        self.joined: set[str] = set()
        self._uploads = threading.Semaphore(max_concurrent_uploads)
        self._samples: dict[str, int] = {}
        self._lock = threading.Lock()
        self._reporting: set[str] = set()
        self._ended: set[str] = set()
        self._ended_cond = threading.Condition(self._lock)

    def _site_ended(self, site: str) -> None:
        with self._ended_cond:
            self._ended.add(site)
            self._ended_cond.notify_all()

    def wait_ended(self, sites: set[str], timeout: float) -> str:
        """Wait until each of ``sites`` finished its part, at most ``timeout`` s; those that did not, or "".

        A site's part ends with its last report (its log lines and last sample), or, for a site that does
        not report, when it pulled the job's end.
        """
        deadline = time.monotonic() + timeout
        with self._ended_cond:
            while not sites <= self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ", ".join(f"'{s}'" for s in sorted(sites - self._ended))
                self._ended_cond.wait(left)
            return ""

    def _same_job(self, context: grpc.ServicerContext, job_id: Any) -> None:
        if job_id is not None and str(job_id) != self.job_id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"this is job {self.job_id}, not {job_id}")

    def join(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client's engine for the job is ready for tasks."""
        site = self.gate(context, "Join")
        req = read_control(request)
        self._same_job(context, req.get("job_id"))
        self.comm.register(site)
        with self._lock:
            self.joined.add(site)
            if req.get("reports"):
                self._reporting.add(site)
        log.info("job %s: '%s' joined", self.job_id, site)
        if self.on_join is not None:
            self.on_join(site)
        return control(ok=True)

    def pull(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream a client's next task (or say there is none / the job ended)."""
        site = self.gate(context, "Pull")
        req = read_control(request)
        self._same_job(context, req.get("job_id"))
        wait = min(max(float(req.get("timeout", 1.0)), 0.0), 30.0)
        task = self.comm.pull(site, wait)
        if task is None:
            yield control(kind="none")
            return
        if isinstance(task, Shutdown):
            with self._lock:
                reporting = site in self._reporting
            if not reporting:
                self._site_ended(site)
            yield control(kind="shutdown")
            return
        delivered = False
        try:
            yield from iter_message(task, kind="task")
            delivered = True
        finally:
            if not delivered:
                log.warning("job %s: task '%s' did not reach '%s' (the stream broke)", self.job_id, task.name, site)

    def submit(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """Receive a task result as a chunked stream: folded into the aggregate as it arrives, or whole."""
        site = self.gate(context, "Submit")

        def open_sink(head: dict[str, Any], message: Any, arrays: list[ArraySpec]) -> ResultSink | None:
            return self.comm.open_stream(self._own_result(context, site, message), arrays)

        try:  # results held whole are bounded by _uploads: the others wait, flow-controlled, in their streams
            got = receive(request_iterator, open_sink if self.stream_results else None, whole=self._uploads)
        except CodecError as exc:
            log.warning("job %s: refused a result from '%s': %s", self.job_id, site, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if got.accepted is not None:
            return control(accepted=got.accepted)
        return control(accepted=self.comm.submit(self._own_result(context, site, got.message)))

    def _own_result(self, context: grpc.ServicerContext, site: str, result: Any) -> TaskResult:
        """``result`` when it is a task result of the caller's own site (the call is aborted otherwise)."""
        if not isinstance(result, TaskResult):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a task result")
        assert isinstance(result, TaskResult)
        if result.site != site:
            why = f"'{site}' sent a result in the name of '{result.site}'"
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, "Submit", context.peer(), why)
        return result

    def event(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A federated event from a client's job."""
        site = self.gate(context, "Event")
        req = read_control(request)
        self._same_job(context, req.get("job_id"))
        self.comm.deliver_event(site, str(req.get("name", "")), dict(req.get("data") or {}))
        return control(ok=True)

    def report(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client's log lines and system metrics for the job, kept in ``sites/<site>/`` of the run folder."""
        site = self.gate(context, "Report")
        req = read_control(request)
        self._same_job(context, req.get("job_id"))
        self.keep_report(site, [str(line) for line in req.get("lines", [])], req.get("stats", []))
        if req.get("final"):
            self._site_ended(site)
        return control(ok=True)

    def keep_report(self, site: str, lines: list[str], stats: list[Any]) -> None:
        """Append a site's log lines and system samples to its files; the samples also become tracking records."""
        folder = self.run_dir / SITES / site
        folder.mkdir(parents=True, exist_ok=True)
        if lines:
            with (folder / SITE_LOG).open("a", encoding="utf-8") as f:
                f.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        samples = [s for s in stats if isinstance(s, dict)]
        if not samples:
            return
        with (folder / SITE_STATS).open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(s) + "\n" for s in samples))
        if self.bus is None:
            return
        for sample in samples:  # into the job's tracking receivers, like other metrics
            with self._lock:
                step = self._samples.get(site, 0)
                self._samples[site] = step + 1
            for record in system_records(sample, step):
                self.bus.fire(EventType.FED_ANALYTIX_LOG_STATS, origin=site, record=record)


__all__ = ["CertificateGate", "Gate", "JobService", "LocalGate", "refuse"]
