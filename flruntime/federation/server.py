"""The federation server: accepts clients and admins over gRPC with mutual TLS and runs submitted jobs.

Clients register, send heartbeats (which also tell them which jobs to run or abort), fetch a job's folder,
join the job, pull tasks and push results as chunked streams, and send federated events. Admins submit, list,
abort and download jobs. Every call is authenticated by the certificate the TLS handshake verified: its
name must be a participant of the project (the server kit's list) of the right type, and a client can only
speak for itself. Jobs run one at a time, each with its own :class:`~flruntime.runtime.communicator.
Communicator` and the same :class:`~flruntime.runtime.server.ServerEngine` as the simulator.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from flruntime.dashboard import DEFAULT_HOST, ENV_DASHBOARD_HOST, ENV_DASHBOARD_PORT, start_dashboard
from flruntime.errors import UsageError
from flruntime.events.types import EventType
from flruntime.federation.commands import AdminCommands
from flruntime.federation.jobs import SITE_LOG, SITE_STATS, JobStore, site_dir
from flruntime.federation.kit import Kit, Member
from flruntime.federation.metrics import system_records
from flruntime.federation.policy import AUDIT_FILE, AuditLog
from flruntime.federation.runner import JobRun, JobRunner, Settings, SiteState
from flruntime.runtime.communicator import Shutdown
from flruntime.runtime.messages import TaskResult
from flruntime.runtime.streamed import ResultSink
from flruntime.transport.codec import ArraySpec, CodecError
from flruntime.transport.grpc_link import OPTIONS, generic_handler, identity, server_credentials
from flruntime.transport.streaming import as_dict, control, iter_bytes, iter_message, read_control, receive

if TYPE_CHECKING:
    from flruntime.dashboard.service import Dashboard

log = logging.getLogger(__name__)


class FederationServer(JobRunner):
    """Serves one project's clients and admins and runs its jobs.

    Args:
        kit: the server's startup kit.
        workspace: where jobs and runs are kept (default: the kit folder).
        settings: timing.
    """

    def __init__(self, kit: Kit, workspace: Path | None = None, settings: Settings | None = None) -> None:
        if kit.type != "server":
            raise UsageError(f"{kit.root}: this is the kit of {kit.type} '{kit.name}', not of a server")
        self.kit = kit
        self.workspace = workspace or kit.root
        self.settings = settings or Settings()
        self.store = JobStore(self.workspace)
        self.audit = AuditLog(self.workspace / AUDIT_FILE)
        self.commands = AdminCommands(self)
        self.started = time.monotonic()
        self._lock = threading.Condition()
        self._sites: dict[str, SiteState] = {}
        self._runs: dict[str, JobRun] = {}
        self._stop = threading.Event()
        self._uploads = threading.Semaphore(self.settings.max_concurrent_uploads)
        self._grpc: grpc.Server | None = None
        self._threads: list[threading.Thread] = []
        self.ports: list[int] = []
        self.dashboard: Dashboard | None = None

    # --- life cycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on the kit's client port (and admin port) and start the job and heartbeat loops.

        With ``FLRUNTIME_DASHBOARD_PORT`` set, the web dashboard is served too (:mod:`flruntime.dashboard`).
        """
        if ENV_DASHBOARD_PORT in os.environ:
            host = os.environ.get(ENV_DASHBOARD_HOST) or DEFAULT_HOST
            self.dashboard = start_dashboard(self, os.environ[ENV_DASHBOARD_PORT], host)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=OPTIONS)
        server.add_generic_rpc_handlers([generic_handler(self)])
        creds = server_credentials(self.kit.cert, self.kit.key, self.kit.root_cert)
        ports = [self.kit.port] + ([self.kit.admin_port] if self.kit.admin_port not in (0, self.kit.port) else [])
        for port in ports:
            bound = server.add_secure_port(f"0.0.0.0:{port}", creds)
            if bound == 0:
                server.stop(None)
                self._stop_dashboard()
                raise UsageError(f"cannot listen on port {port}: it is in use (stop what uses it or change the port)")
            self.ports.append(bound)
        server.start()
        self._grpc = server
        for target, name in ((self._job_loop, "jobs"), (self._watch_heartbeats, "heartbeats")):
            thread = threading.Thread(target=target, name=f"server:{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "server '%s' of project '%s' listening on port(s) %s (mutual TLS; %d participant(s) may connect)",
            self.kit.name,
            self.kit.project,
            ", ".join(map(str, self.ports)),
            len(self.kit.members),
        )

    def stop(self, grace: float = 5.0) -> None:
        """Abort running jobs, stop listening and close the job store."""
        self._stop.set()
        self._stop_dashboard()
        with self._lock:
            runs = list(self._runs.values())
            self._lock.notify_all()
        for run in runs:
            run.abort.set()
            run.comm.shutdown()
            if run.engine is not None:
                run.engine.abort()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        for thread in self._threads:
            thread.join(timeout=grace + 30)
        self.store.close()
        log.info("server '%s' stopped", self.kit.name)

    def _stop_dashboard(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None

    def wait(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set."""
        while not stop.wait(1.0):
            pass

    # --- identity ------------------------------------------------------------------------------------

    def _who(self, context: grpc.ServicerContext, call: str, *types: str) -> Member:
        ident = identity(context)
        if ident is None:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, call, context.peer(), "it sent no certificate")
        member = self.kit.members.get(ident.name)
        if member is None:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                call,
                ident.peer,
                f"'{ident.name}' is not a participant of project '{self.kit.project}'",
            )
        if member.type not in types:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                call,
                ident.peer,
                f"'{ident.name}' is a {member.type}; {call} is for {' or '.join(types)}s",
            )
        if member.type == "admin" and ident.role != member.role:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                call,
                ident.peer,
                f"'{ident.name}' presented role '{ident.role}', the project has '{member.role}'",
            )
        if member.org and ident.org != member.org:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                call,
                ident.peer,
                f"'{ident.name}' presented org '{ident.org}', the project has '{member.org}'",
            )
        return member

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode, call: str, peer: str, why: str) -> NoReturn:
        log.warning("refused %s from %s: %s", call, peer, why)
        context.abort(code, f"refused by server '{self.kit.name}': {why}")
        raise AssertionError("unreachable")  # context.abort raises

    # --- clients ---------------------------------------------------------------------------------------

    def register(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client announces itself."""
        who = self._who(context, "Register", "client")
        req = read_control(request)
        resources = as_dict(req.get("resources"))
        with self._lock:
            before = self._sites.get(who.name)
            self._sites[who.name] = SiteState(
                who.name, context.peer(), time.monotonic(), True, who.org, str(req.get("version", "")), resources
            )
            self._lock.notify_all()
        again = " again" if before is not None else ""
        log.info("client '%s' (org %s) registered%s from %s", who.name, who.org, again, context.peer())
        return control(
            server=self.kit.name, project=self.kit.project, heartbeat_interval=self.settings.heartbeat_interval
        )

    def _seen(self, site: str, context: grpc.ServicerContext) -> bool:
        """Note a heartbeat; False when the site never registered with this server (it restarted)."""
        with self._lock:
            entry = self._sites.get(site)
            if entry is None:
                return False
            if not entry.online:
                log.info("client '%s' is back (heartbeat from %s)", site, context.peer())
            entry.last_seen, entry.online = time.monotonic(), True
            self._lock.notify_all()
            return True

    def heartbeat(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client says it is alive and which jobs it runs; the reply says which jobs to start or abort."""
        who = self._who(context, "Heartbeat", "client")
        if not self._seen(who.name, context):  # this server does not know it yet: it must register (resources...)
            return control(register=True, heartbeat_interval=self.settings.heartbeat_interval)
        running = set(read_control(request).get("jobs", []))
        with self._lock:
            entry = self._sites[who.name]
            entry.jobs = sorted(running)
            action, entry.action = entry.action, ""
            for jid in running:  # back after being considered gone: its job engine takes tasks again
                run = self._runs.get(jid)
                if run is not None and who.name in run.rec.sites and who.name not in run.joined and run.engine:
                    run.comm.register(who.name)
                    run.joined.add(who.name)
                    log.info("job %s: '%s' is back", jid, who.name)
            wanted = {
                jid: run.rec.name
                for jid, run in self._runs.items()
                if who.name in run.rec.sites and not run.comm.is_shut_down and not run.abort.is_set()
            }
        deploy = [{"job_id": jid, "name": name} for jid, name in wanted.items() if jid not in running]
        abort = sorted(running - wanted.keys())
        if action:
            log.info("client '%s': told to %s", who.name, action)
        return control(deploy=deploy, abort=abort, heartbeat_interval=self.settings.heartbeat_interval, action=action)

    def _run_for(self, context: grpc.ServicerContext, job_id: Any) -> JobRun | None:
        with self._lock:
            return self._runs.get(str(job_id))

    def get_app(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream a job's folder to a client it is deployed to."""
        who = self._who(context, "GetApp", "client")
        job_id = read_control(request).get("job_id")
        run = self._run_for(context, job_id)
        if run is None or who.name not in run.rec.sites:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} is not running for '{who.name}'")
        assert run is not None
        yield from iter_bytes(run.archive, name=run.rec.name)

    def join(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client's engine for a job is ready for tasks."""
        who = self._who(context, "Join", "client")
        job_id = read_control(request).get("job_id")
        run = self._run_for(context, job_id)
        if run is None or who.name not in run.rec.sites:
            return control(ok=False, reason=f"job {job_id} is not running for '{who.name}'")
        run.comm.register(who.name)
        with self._lock:
            run.joined.add(who.name)
            self._lock.notify_all()
        log.info("job %s: '%s' joined", job_id, who.name)
        return control(ok=True)

    def pull(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream a client's next task of a job (or say there is none / the job ended)."""
        who = self._who(context, "Pull", "client")
        req = read_control(request)
        run = self._run_for(context, req.get("job_id"))
        if run is None:
            yield control(kind="shutdown")
            return
        wait = min(max(float(req.get("timeout", 1.0)), 0.0), 30.0)
        task = run.comm.pull(who.name, wait)
        if task is None:
            yield control(kind="none")
            return
        if isinstance(task, Shutdown):
            yield control(kind="shutdown")
            return
        delivered = False
        try:
            yield from iter_message(task, kind="task")
            delivered = True
        finally:
            if not delivered:
                log.warning(
                    "job %s: task '%s' did not reach '%s' (the stream broke)", run.rec.job_id, task.name, who.name
                )

    def submit(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """Receive a task result as a chunked stream: folded into the aggregate as it arrives, or whole."""
        who = self._who(context, "Submit", "client")

        def open_sink(head: dict[str, Any], message: Any, arrays: list[ArraySpec]) -> ResultSink | None:
            result = self._own_result(context, who, message)
            run = self._run_for(context, head.get("job_id"))
            return run.comm.open_stream(result, arrays) if run is not None else None

        try:  # results held whole are bounded by _uploads: the others wait, flow-controlled, in their streams
            got = receive(request_iterator, open_sink if self.settings.stream_results else None, whole=self._uploads)
        except CodecError as exc:
            log.warning("refused a result from '%s': %s", who.name, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if got.accepted is not None:
            return control(accepted=got.accepted)
        result = self._own_result(context, who, got.message)
        run = self._run_for(context, got.head.get("job_id"))
        if run is None:
            return control(accepted=False, reason="the job is not running")
        return control(accepted=run.comm.submit(result))

    def _own_result(self, context: grpc.ServicerContext, who: Member, result: Any) -> TaskResult:
        """``result`` when it is a task result of the caller's own site (the call is aborted otherwise)."""
        if not isinstance(result, TaskResult):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a task result")
        assert isinstance(result, TaskResult)
        if result.site != who.name:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "Submit",
                context.peer(),
                f"'{who.name}' sent a result in the name of '{result.site}'",
            )
        return result

    def event(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A federated event from a client's job."""
        who = self._who(context, "Event", "client")
        req = read_control(request)
        run = self._run_for(context, req.get("job_id"))
        if run is not None:
            run.comm.deliver_event(who.name, str(req.get("name", "")), dict(req.get("data") or {}))
        return control(ok=run is not None)

    def report(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client's log lines and system metrics for a job, kept in ``WORKSPACE/<job>/sites/<site>/``."""
        who = self._who(context, "Report", "client")
        req = read_control(request)
        job_id = str(req.get("job_id", ""))
        run_dir = self.workspace / job_id
        if not job_id or "/" in job_id or job_id.startswith(".") or not run_dir.is_dir():
            return control(ok=False)
        folder = site_dir(self.workspace, job_id, who.name)
        folder.mkdir(parents=True, exist_ok=True)
        lines = [str(line) for line in req.get("lines", [])]
        if lines:
            with (folder / SITE_LOG).open("a", encoding="utf-8") as f:
                f.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        stats = [s for s in req.get("stats", []) if isinstance(s, dict)]
        if stats:
            with (folder / SITE_STATS).open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(s) + "\n" for s in stats))
            run = self._run_for(context, job_id)
            if run is not None and run.bus is not None:  # into the job's tracking receivers, like other metrics
                for sample in stats:
                    step = run.samples.get(who.name, 0)
                    run.samples[who.name] = step + 1
                    for record in system_records(sample, step):
                        run.bus.fire(EventType.FED_ANALYTIX_LOG_STATS, origin=who.name, record=record)
        return control(ok=True)

    # --- admins --------------------------------------------------------------------------------------

    def _admin(self, context: grpc.ServicerContext, call: str) -> Member:
        return self._who(context, call, "admin")

    def submit_job(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """Store an uploaded job folder (a zip stream), check it, and queue it."""
        return self.commands.submit(self._admin(context, "SubmitJob"), request_iterator)

    def command(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Run an admin command (JSON ``{"command": ..., "args": {...}}``): authorised, audited, JSON reply."""
        return self.commands.run(self._admin(context, "Command"), request)

    def download_job(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Stream a job's server workspace (models, results, every site's log) as a zip."""
        who = self._admin(context, "DownloadJob")
        data, error = self.commands.download(who, read_control(request))
        if error:
            context.abort(
                grpc.StatusCode.NOT_FOUND if error.startswith("no job") else grpc.StatusCode.PERMISSION_DENIED, error
            )
        yield from iter_bytes(data)

    def sites_of(self, named: list[str], deploy_map: dict[str, list[str]]) -> list[str]:
        """The client sites a job's deploy map names (``@ALL``: every client of the project)."""
        every = any(s.upper() == "@ALL" for sites in deploy_map.values() for s in sites)
        clients = [m.name for m in self.kit.members.values() if m.type == "client"]
        return clients if every else [s for s in named if s in clients] or named

    def abort(self, job_id: str) -> bool:
        """Abort a dispatched or running job; False when it is not running."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is None:
                return False
            run.abort.set()
            if run.engine is not None:
                run.engine.abort()
            self._lock.notify_all()
        return True

    def snapshot(self) -> dict[str, Any]:
        """The server's view of its sites and running jobs (for check_status and list_sites)."""
        now = time.monotonic()
        with self._lock:
            sites = {
                name: {
                    "name": name,
                    "org": e.org,
                    "online": e.online,
                    "last_seen_s": round(now - e.last_seen, 1),
                    "jobs": list(e.jobs),
                    "version": e.version,
                    "resources": dict(e.resources),
                }
                for name, e in self._sites.items()
            }
            running = [
                {"job_id": jid, "name": r.rec.name, "status": str(r.rec.status), "rounds": r.rec.rounds}
                for jid, r in self._runs.items()
            ]
        return {"sites": sites, "running": running, "uptime_s": round(now - self.started, 1)}

    def wake(self) -> None:
        """Wake the job loop (a job was submitted)."""
        with self._lock:
            self._lock.notify_all()

    def tell(self, sites: list[str], action: str) -> list[str]:
        """Ask clients to shut down or restart with their next heartbeat; return those that will be told."""
        told = []
        with self._lock:
            for site in sites:
                entry = self._sites.get(site)
                if entry is not None and entry.online:
                    entry.action = action
                    told.append(site)
        return told

    def _watch_heartbeats(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.heartbeat_interval / 2)):
            now = time.monotonic()
            gone: list[str] = []
            with self._lock:
                for entry in self._sites.values():
                    if entry.online and now - entry.last_seen > self.settings.heartbeat_timeout:
                        entry.online = False
                        gone.append(entry.name)
                runs = list(self._runs.values())
            for site in gone:
                log.warning(
                    "client '%s': no heartbeat for %.0f s; considered gone", site, self.settings.heartbeat_timeout
                )
                for run in runs:
                    run.comm.remove(site)
                    with self._lock:
                        run.joined.discard(site)


__all__ = ["FederationServer", "Settings"]
