"""The federation client: a long-lived process that keeps a site connected to its server and runs its jobs.

It registers with its certificate, sends heartbeats (whose replies name the jobs to start or abort), fetches
each job's folder, and runs each job in a job process of its own (:mod:`flruntime.jobproc.client_job`), which
talks to the job's service on the server directly. This process never imports a job's code: a job that
crashes, hangs or runs out of memory ends only its job process, and the server is told why
(``JobFailed``). When the server cannot be reached it retries with exponential backoff and registers again;
jobs the server no longer runs (after a server restart) are aborted.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from flruntime import __version__
from flruntime.config.job import discover
from flruntime.errors import UsageError
from flruntime.federation.archive import unzip_to
from flruntime.federation.kit import Kit, local_resources
from flruntime.jobproc.limits import memory_limit
from flruntime.jobproc.process import JobProcess
from flruntime.jobproc.watch import SiteJobWatch, progress_limit
from flruntime.transport.codec import CodecError
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.retry import TRANSIENT, Backoff, Refused, explain, retry
from flruntime.transport.streaming import as_dict, assemble, control, read_control

log = logging.getLogger(__name__)

T = TypeVar("T")


class FederationClient:
    """Keeps one client site connected and runs the jobs the server deploys to it.

    Args:
        kit: the client's startup kit.
        workspace: where job runs go (default: the kit folder).
        reconnect_max: the longest pause between reconnection attempts (seconds).
    """

    def __init__(self, kit: Kit, workspace: Path | None = None, reconnect_max: float = 30.0) -> None:
        if kit.type != "client":
            raise ValueError(f"{kit.root}: this is the kit of {kit.type} '{kit.name}', not of a client")
        self.kit = kit
        self.site = kit.name
        self.workspace = workspace or kit.root
        self.reconnect_max = reconnect_max
        self.heartbeat_interval = 5.0
        self.stop_event = threading.Event()
        self.channel = secure_channel(kit.target, kit.cert, kit.key, kit.root_cert, kit.server_name)
        self.stub = Stub(self.channel)
        self._jobs: dict[str, _JobRunner] = {}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self.refusal = ""
        self.action = ""

    def retry(self, what: str, call: Callable[[], T], give_up: Callable[[], bool] | None = None) -> T | None:
        """Call until it succeeds; transient failures wait with backoff; None when stopped or ``give_up()``.

        Raises:
            Refused: the server refused this participant.
        """
        return retry(what, call, self.kit.target, self.stop_event, give_up, self.reconnect_max, log.warning)

    def run(self) -> int:
        """Stay connected until :meth:`stop`; return 0, or 1 when the server refused this client."""
        try:
            while not self.stop_event.is_set():
                reply = self.retry("register", self._register)
                if reply is None:
                    break
                info = read_control(reply)
                self.heartbeat_interval = float(info.get("heartbeat_interval", 5.0))
                log.info(
                    "'%s' registered with server '%s' (project %s) at %s",
                    self.site,
                    info.get("server"),
                    info.get("project"),
                    self.kit.target,
                )
                self._heartbeats()
        except Refused as exc:
            self.refusal = str(exc)
            log.error("'%s': the server refused this client: %s", self.site, exc)
            return 1
        finally:
            self._abort_all("the client is stopping")
        return 0

    def _register(self) -> bytes:
        hello = control(site=self.site, version=__version__, resources=self.resources())
        return self.stub.unary("Register", hello, 30)

    def resources(self) -> dict[str, Any]:
        """The site's resources for the scheduler: ``local/resources.json`` of the kit, else no GPUs."""
        return {"num_of_gpus": 0, **local_resources(self.kit.root)}

    def _heartbeats(self) -> None:
        """Send heartbeats until stopped or the server is lost (then return to register again)."""
        while not self.stop_event.is_set():
            with self._lock:
                running = [jid for jid, r in self._jobs.items() if r.is_alive()]
            try:
                reply = read_control(self.stub.unary("Heartbeat", control(jobs=running), 30))
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    raise Refused(explain(exc, self.kit.target)) from exc
                log.warning("'%s' lost the server: %s; reconnecting", self.site, explain(exc, self.kit.target))
                return
            self.heartbeat_interval = float(reply.get("heartbeat_interval", self.heartbeat_interval))
            if reply.get("register"):
                log.warning("'%s': the server does not know this client (it restarted); registering again", self.site)
                return
            for job in reply.get("deploy", []):
                self._start_job(str(job["job_id"]), str(job.get("name", "")), int(job.get("port", 0) or 0))
            for job_id in reply.get("abort", []):
                self._abort(str(job_id), "the server no longer runs it")
            if reply.get("action") in ("shutdown", "restart"):
                self._act(str(reply["action"]))
                return
            self.stop_event.wait(self.heartbeat_interval)

    def _act(self, action: str) -> None:
        """Stop this client as an admin asked: ``shutdown`` for good (the kit's restart loop ends), or ``restart``."""
        log.warning("'%s': the server asked this client to %s", self.site, action)
        marker = self.kit.root / ("shutdown.fl" if action == "shutdown" else "restart.fl")
        try:
            marker.touch()
        except OSError as exc:  # a read-only kit (e.g. mounted from a Secret): the supervisor decides
            log.warning("'%s': cannot write %s: %s", self.site, marker, exc)
        self.action = action
        self.stop_event.set()

    def _start_job(self, job_id: str, name: str, port: int) -> None:
        with self._lock:
            current = self._jobs.get(job_id)
            if (current is not None and current.is_alive()) or job_id in self._done:
                return
            runner = _JobRunner(self, job_id, name, port)
            self._jobs[job_id] = runner
        log.info("'%s': starting job %s (%s)", self.site, job_id, name)
        runner.start()

    def _finished(self, job_id: str) -> None:
        with self._lock:
            self._done.add(job_id)

    def _abort(self, job_id: str, why: str) -> None:
        with self._lock:
            runner = self._jobs.get(job_id)
        if runner is not None and runner.is_alive():
            log.warning("'%s': aborting job %s: %s", self.site, job_id, why)
            runner.abort.set()

    def _abort_all(self, why: str) -> None:
        with self._lock:
            runners = list(self._jobs.values())
        for runner in runners:
            if runner.is_alive():
                runner.abort.set()
        for runner in runners:
            runner.join(timeout=30)

    def stop(self) -> None:
        """Ask :meth:`run` to return (running jobs are aborted)."""
        self.stop_event.set()

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


class _JobRunner(threading.Thread):
    """Runs one job on this site: fetch its folder, run it in a job process, tell the server if that fails."""

    def __init__(self, client: FederationClient, job_id: str, name: str, port: int) -> None:
        super().__init__(name=f"{client.site}:job-{job_id[:8]}", daemon=True)
        self.client = client
        self.job_id = job_id
        self.job_name = name
        self.port = port
        self.abort = threading.Event()

    def run(self) -> None:
        site = self.client.site
        run_dir = self.client.workspace / self.job_id
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            data = self.client.retry(f"job {self.job_id}: fetching the job", self._fetch, self.abort.is_set)
            if data is None:
                return
            job_dir = unzip_to(data, run_dir / "job", label=f"job {self.job_id}")
            try:
                why = self._run_process(job_dir, run_dir)
            except UsageError as exc:  # a limit of the job or the site that cannot be read
                why = f"{site}: {exc}"
            if why:
                log.error("job %s: %s", self.job_id, why)
                self._tell_server(why)
        except Refused as exc:
            log.error("job %s: '%s': the server refused: %s", self.job_id, site, exc)
        except Exception:  # a bug here must not stop the site
            log.exception("job %s: '%s' failed to run it", self.job_id, site)
        finally:
            self.client._finished(self.job_id)

    def _run_process(self, job_dir: Path, run_dir: Path) -> str:
        """Run the job in a job process until it ends or is aborted; why it failed on this site ("" if not)."""
        kit, site = self.client.kit, self.client.site
        resources = self.client.resources()
        meta = discover(job_dir)[0].meta_data
        limit = memory_limit(resources, as_dict(meta.get("resource_spec")), site)
        timeout = progress_limit(meta, resources)
        host = kit.target.rsplit(":", 1)[0]
        spec = {
            "role": "client",
            "job_id": self.job_id,
            "site": site,
            "job_dir": str(job_dir),
            "run_dir": str(run_dir),
            "target": f"{host}:{self.port}",
            "tls": {
                "cert": kit.cert.decode(),
                "key": kit.key.decode(),
                "root": kit.root_cert.decode(),
                "server_name": kit.server_name,
            },
        }
        watch = SiteJobWatch(site, timeout)
        proc = JobProcess(
            [sys.executable, "-m", "flruntime.jobproc"],
            cwd=run_dir,
            env=dict(os.environ),
            log_path=run_dir / "log.txt",
            memory_limit=limit,
            on_status=watch.on_status,
            name=f"{site}:job-{self.job_id[:8]}",
        )
        proc.start(spec)
        log.info("job %s: '%s' runs it in job process %d", self.job_id, site, proc.pid)
        why = watch.watch(proc, self.abort)
        log.info("job %s: '%s' done (its job process %s)", self.job_id, site, proc.exit_cause())
        return why

    def _tell_server(self, why: str) -> None:
        request = control(job_id=self.job_id, reason=why)
        try:
            self.client.retry(
                f"job {self.job_id}: reporting the failure",
                lambda: self.client.stub.unary("JobFailed", request, 30),
                self.abort.is_set,
            )
        except grpc.RpcError as exc:
            log.warning("job %s: the server was not told: %s", self.job_id, explain(exc, self.client.kit.target))

    def _fetch(self) -> bytes:
        head, buf = assemble(iter(self.client.stub.stream_out("GetApp", control(job_id=self.job_id), 300)))
        if buf is None:
            raise CodecError("the server sent no job folder")
        return buf.data()


__all__ = ["Backoff", "FederationClient", "Refused", "TRANSIENT", "explain"]
