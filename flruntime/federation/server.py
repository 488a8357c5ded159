"""The federation server: accepts clients and admins over gRPC with mutual TLS and runs submitted jobs.

Clients register, send heartbeats (which also tell them which jobs to run or abort), fetch a job's folder,
and report when a job failed on their side. Admins submit, list, abort and download jobs. Every call is
authenticated by the certificate the TLS handshake verified: its name must be a participant of the project (the
server kit's list) of the right type, and a client can only speak for itself. Each job runs in a job process of
its own (:mod:`flruntime.federation.runner`), which serves the job's tasks, results and events on its own port:
this process never imports a job's code and never holds its models.
"""

from __future__ import annotations

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
from flruntime.federation.commands import AdminCommands
from flruntime.federation.jobs import JobStore
from flruntime.federation.kit import Kit, Member
from flruntime.federation.policy import AUDIT_FILE, AuditLog
from flruntime.federation.runner import JobRun, JobRunner, Settings, SiteState
from flruntime.jobproc.metrics import SITE_LOG, site_dir
from flruntime.transport.grpc_link import OPTIONS, generic_handler, identity, server_credentials
from flruntime.transport.streaming import as_dict, control, iter_bytes, read_control

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
            run.commander.send("abort")
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
            back = []
            for jid in running:  # back after being considered gone: its job process takes it again
                run = self._runs.get(jid)
                if run is not None and who.name in run.rec.sites and who.name not in run.joined and run.live:
                    run.joined.add(who.name)
                    back.append(run)
            wanted = {jid: run for jid, run in self._runs.items() if who.name in run.rec.sites and run.live}
            # ended, its job process still tells the clients so (their pulls get "shutdown"): let them end
            ending = {jid for jid, run in self._runs.items() if run.outcome is not None and not run.abort.is_set()}
        for run in back:
            run.commander.send("back", site=who.name)
            log.info("job %s: '%s' is back", run.rec.job_id, who.name)
        deploy = [
            {"job_id": jid, "name": run.rec.name, "port": run.port} for jid, run in wanted.items() if jid not in running
        ]
        abort = sorted(running - wanted.keys() - ending)
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

    def job_failed(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A client's job process died or hung: its tasks of the job fail with the reason it gives."""
        who = self._who(context, "JobFailed", "client")
        req = read_control(request)
        reason = str(req.get("reason", ""))[:2000] or "its job process ended"
        run = self._run_for(context, req.get("job_id"))
        if run is None or who.name not in run.rec.sites:
            return control(ok=False)
        log.error("job %s: %s", run.rec.job_id, reason)
        with self._lock:
            run.joined.discard(who.name)
        run.commander.send("failed", site=who.name, reason=reason)
        folder = site_dir(self.workspace, run.rec.job_id, who.name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / SITE_LOG).open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR flruntime.federation.server: {reason}\n")
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
            if error.startswith("no job"):
                code = grpc.StatusCode.NOT_FOUND
            elif error.startswith("not authorised"):
                code = grpc.StatusCode.PERMISSION_DENIED
            else:  # no results yet
                code = grpc.StatusCode.FAILED_PRECONDITION
            context.abort(code, error)
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
            self._lock.notify_all()
        run.commander.send("abort")
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
                    if site in run.rec.sites:
                        run.commander.send("gone", site=site)
                    with self._lock:
                        run.joined.discard(site)


__all__ = ["FederationServer", "Settings"]
