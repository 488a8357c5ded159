"""The server's admin commands: each one authorised by the caller's role and written to the audit log.

Every command returns JSON: ``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}``. The server passes in
the caller (a project member checked by the TLS handshake and the project list) and the raw request.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flruntime.config.job import find_config, legacy_app, legacy_problem
from flruntime.config.source import load_file
from flruntime.errors import UsageError
from flruntime.federation.archive import unzip_to, zip_folder, zip_folders
from flruntime.federation.jobs import JobRecord, JobStatus
from flruntime.federation.kit import Member
from flruntime.federation.policy import allowed
from flruntime.jobproc.check import CheckResult, check_job
from flruntime.jobproc.metrics import SITE_LOG, SITE_STATS, SITES, site_dir
from flruntime.transport.codec import CodecError
from flruntime.transport.streaming import as_dict, assemble, control, read_control

if TYPE_CHECKING:
    from flruntime.federation.server import FederationServer

log = logging.getLogger(__name__)

#: The most bytes of a log returned by one ``job_logs`` call.
LOG_CHUNK = 1024 * 1024


class Refused(Exception):
    """The caller may not do this (the message says why)."""


class Failed(Exception):
    """The command cannot be done (the message says why).

    Args:
        message: why, in one line.
        code: why, in one word for programs (sent as the reply's ``code``): ``no_job``, ``no_site``,
            ``job_running``, ``job_finished`` or "" (anything else).
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class AdminCommands:
    """Runs admin commands against a :class:`~flruntime.federation.server.FederationServer`."""

    def __init__(self, server: FederationServer) -> None:
        self.server = server
        self.handlers: dict[str, Callable[[Member, dict[str, Any]], dict[str, Any]]] = {
            "list_jobs": self._list_jobs,
            "abort_job": self._abort_job,
            "clone_job": self._clone_job,
            "resume_job": self._resume_job,
            "delete_job": self._delete_job,
            "check_status": self._check_status,
            "list_sites": self._list_sites,
            "show_errors": self._show_errors,
            "show_stats": self._show_stats,
            "job_logs": self._job_logs,
            "dashboard_login": self._dashboard_login,
            "shutdown": self._shutdown,
            "restart": self._restart,
        }

    # --- plumbing -----------------------------------------------------------------------------------

    def _check(self, who: Member, command: str, owner_org: str | None = None) -> None:
        why = allowed(who.role, who.org, command, owner_org)
        if why:
            raise Refused(why)

    def _audit(self, who: Member, command: str, args: dict[str, Any], result: str, detail: str = "") -> None:
        self.server.audit.write(who.name, who.org, who.role, command, args, result, detail)

    def run(self, who: Member, request: bytes) -> bytes:
        """Run one command from a JSON request ``{"command": name, "args": {...}}``."""
        try:
            req = read_control(request)
        except CodecError as exc:
            return control(ok=False, error=str(exc))
        command = str(req.get("command", ""))
        args = as_dict(req.get("args"))
        handler = self.handlers.get(command)
        if handler is None:
            return control(ok=False, error=f"unknown command '{command}'")
        try:
            reply = handler(who, args)
        except Refused as exc:
            self._audit(who, command, args, "refused", str(exc))
            log.warning("refused %s %s from %s: %s", command, json.dumps(args), who.name, exc)
            return control(ok=False, error=f"not authorised: {exc}", refused=True)
        except Failed as exc:
            self._audit(who, command, args, "failed", str(exc))
            return control(ok=False, error=str(exc), **({"code": exc.code} if exc.code else {}))
        self._audit(who, command, args, "ok")
        return json.dumps({"ok": True, **reply}).encode()

    def _job(self, job_id: Any) -> JobRecord:
        rec = self.server.store.get(str(job_id))
        if rec is None:
            raise Failed(f"no job with id {job_id}", code="no_job")
        return rec

    # --- jobs ---------------------------------------------------------------------------------------

    def submit(self, who: Member, stream: Iterator[bytes]) -> bytes:
        """Store an uploaded job (a zip stream), check it and queue it; nothing is kept when it is refused."""
        why = allowed(who.role, who.org, "submit_job")
        if why:
            for _ in stream:  # drain the upload
                pass
            self._audit(who, "submit_job", {}, "refused", why)
            return control(ok=False, errors=[f"not authorised: {why}"], refused=True)
        store = self.server.store
        try:
            head, buf = assemble(stream, limit=self.server.settings.max_upload)
            data = buf.data() if buf is not None else b""
        except CodecError as exc:
            self._audit(who, "submit_job", {}, "failed", str(exc))
            return control(ok=False, errors=[f"upload refused: {exc}"])
        name = str(head.get("name") or "")
        job_id = store.new_id()
        folder = store.folder(job_id)
        queued = False
        try:  # whatever happens before the job is queued, its folder goes again: no orphan in jobs/
            check = self._store_and_check(who, data, folder, job_id, name)
            if isinstance(check, list):  # refused: the one-line errors
                log.warning("refused a job from %s: %s", who.name, check[0])
                self._audit(who, "submit_job", {"name": name}, "failed", check[0])
                return control(ok=False, errors=check)
            sites = self.server.sites_of(check.client_sites, check.deploy_map)
            rec = JobRecord(job_id, name or check.name, who.name, time.time(), who.org, sites=sites)
            store.add(rec)
            queued = True
        finally:
            if not queued:
                shutil.rmtree(folder.parent, ignore_errors=True)
        log.info("job %s (%s) submitted by %s for %s", job_id, rec.name, who.name, ", ".join(sites))
        self._audit(who, "submit_job", {"name": rec.name, "job_id": job_id}, "ok")
        self.server.wake()
        return control(ok=True, job_id=job_id)

    def _store_and_check(
        self, who: Member, data: bytes, folder: Path, job_id: str, name: str
    ) -> CheckResult | list[str]:
        """Unpack an upload into ``folder`` and check it; its code is imported in a short-lived child, never here.

        A legacy single-app upload (``config/`` at the top, no meta file) is refused as NVFlare's submit refuses it,
        named by the name the upload gives (``name``), not by this server's folder.

        Returns:
            The check of a valid job, or the one-line errors that refuse it.
        """
        label = f"job upload from {who.name}"
        try:
            try:
                unzip_to(data, folder, label=label)
            except OSError as exc:  # an entry's name too long for this file system, the disk full, ...
                raise UsageError(f"{label}: cannot unpack it ({exc.strerror or type(exc).__name__})") from exc
            if legacy_app(folder):
                return [legacy_problem(name or "JOB_DIR").format()]
            check = check_job(folder, job_id=job_id)
        except UsageError as exc:
            return str(exc).splitlines() or ["the job was refused"]
        except Exception as exc:  # a bug: the submitter gets one line, the server log the traceback
            log.exception("checking a job from %s failed", who.name)
            return [f"the server could not check the job: {type(exc).__name__}: {exc}"]
        return check.errors or check

    def download(self, who: Member, args: dict[str, Any]) -> tuple[bytes, str]:
        """Zip a job's run folder for an admin; returns (bytes, "") or (b"", why not).

        With ``with_job`` in ``args`` the zip holds NVFlare's layout: the submitted folder in ``job/`` and the run
        folder in ``workspace/``.
        """
        try:
            rec = self._job(args.get("job_id"))
            self._check(who, "download_job", rec.submitter_org)
            run_dir = self.server.workspace / rec.job_id
            if not run_dir.is_dir():
                raise Failed(f"job {rec.job_id} has no results yet (status {rec.status})")
        except (Refused, Failed) as exc:
            result = "refused" if isinstance(exc, Refused) else "failed"
            self._audit(who, "download_job", args, result, str(exc))
            return b"", str(exc) if isinstance(exc, Failed) else f"not authorised: {exc}"
        self._audit(who, "download_job", args, "ok")
        if args.get("with_job"):
            return zip_folders({"job": self.server.store.folder(rec.job_id), "workspace": run_dir}), ""
        return zip_folder(run_dir), ""

    def _list_jobs(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "list_jobs")
        job_id = args.get("job_id")
        jobs = [r.as_dict() for r in self.server.store.all() if job_id in (None, r.job_id)]
        if args.get("meta"):  # each job's meta file as submitted, and its submitter's role
            members = self.server.kit.members
            for job in jobs:
                job["meta"] = self._meta_file(job["job_id"])
                submitter = members.get(job["submitter"])
                job["submitter_role"] = submitter.role if submitter is not None else ""
        return {"jobs": jobs}

    def _meta_file(self, job_id: str) -> dict[str, Any]:
        """The meta document of a stored job folder (empty when it cannot be read)."""
        path = find_config(self.server.store.folder(job_id), "meta")
        source = load_file(path, path.name)[0] if path is not None else None
        if source is None or not isinstance(source.data, dict):
            return {}
        return dict(json.loads(json.dumps(source.data, default=str)))  # YAML dates and the like as text

    def _abort_job(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        rec = self._job(args.get("job_id"))
        self._check(who, "abort_job", rec.submitter_org)
        if rec.status.finished:
            raise Failed(f"job {rec.job_id} already {rec.status}", code="job_finished")
        log.info("job %s: abort requested by %s", rec.job_id, who.name)
        if not self.server.abort(rec.job_id):
            self.server.store.update(
                rec, status=JobStatus.ABORTED, end_time=time.time(), error=f"aborted by {who.name}"
            )
        return {"job_id": rec.job_id}

    def _copy(self, who: Member, args: dict[str, Any], command: str, resume: bool) -> dict[str, Any]:
        old = self._job(args.get("job_id"))
        self._check(who, command, old.submitter_org)
        if resume and not old.status.finished:
            raise Failed(f"job {old.job_id} is {old.status}; only a finished job can be resumed")
        if resume and not (self.server.workspace / old.job_id).is_dir():
            raise Failed(f"job {old.job_id} never ran: there is nothing to resume")
        store = self.server.store
        job_id = store.new_id()
        store.copy_folder(old.job_id, job_id)
        rec = JobRecord(
            job_id, old.name, who.name, time.time(), who.org, sites=list(old.sites), origin=old.job_id, resume=resume
        )
        store.add(rec)
        log.info("job %s: %s of %s by %s", job_id, "resumption" if resume else "clone", old.job_id, who.name)
        self.server.wake()
        return {"job_id": job_id}

    def _clone_job(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        return self._copy(who, args, "clone_job", resume=False)

    def _resume_job(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        return self._copy(who, args, "resume_job", resume=True)

    def _delete_job(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        rec = self._job(args.get("job_id"))
        self._check(who, "delete_job", rec.submitter_org)
        if rec.status in (JobStatus.DISPATCHED, JobStatus.RUNNING):
            raise Failed(f"job {rec.job_id} is {rec.status}: abort it first", code="job_running")
        self.server.store.delete(rec.job_id, self.server.workspace / rec.job_id)
        return {"job_id": rec.job_id}

    # --- sites --------------------------------------------------------------------------------------

    def _clients(self, sites: list[str] | None) -> list[Member]:
        members = [m for m in self.server.kit.members.values() if m.type == "client"]
        if not sites:
            return members
        known = {m.name: m for m in members}
        unknown = [s for s in sites if s not in known]
        if unknown:
            raise Failed(
                f"no client named {', '.join(unknown)} in the project (clients: {', '.join(known)})", code="no_site"
            )
        return [known[s] for s in sites]

    def _site_rows(self, members: list[Member]) -> list[dict[str, Any]]:
        seen = self.server.snapshot()["sites"]
        rows = []
        for m in members:
            row = {"name": m.name, "type": m.type, "org": m.org, "online": False, "last_seen_s": None, "jobs": []}
            row.update({k: v for k, v in seen.get(m.name, {}).items() if k != "name"})
            rows.append(row)
        return rows

    def _check_status(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "check_status")
        snap = self.server.snapshot()
        clients = self._site_rows(self._clients(args.get("sites")))
        if args.get("target", "server") == "client":
            return {"clients": clients}
        kit = self.server.kit
        return {
            "server": kit.name,
            "project": kit.project,
            "status": "started",
            "uptime_s": snap["uptime_s"],
            "running_jobs": snap["running"],
            "clients": clients,
        }

    def _list_sites(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "list_sites")
        kit = self.server.kit
        server = {"name": kit.name, "type": "server", "org": "", "online": True, "last_seen_s": 0.0, "jobs": []}
        return {"sites": [server, *self._site_rows(self._clients(None))]}

    def _operate(self, who: Member, args: dict[str, Any], action: str) -> dict[str, Any]:
        if args.get("target", "client") != "client":
            raise Failed(f"{action} works on clients: {action} client [SITE ...]")
        members = self._clients(args.get("sites"))
        for m in members:
            self._check(who, action, m.org)
        told = self.server.tell([m.name for m in members], action)
        return {"sites": told, "offline": [m.name for m in members if m.name not in told]}

    def _shutdown(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        return self._operate(who, args, "shutdown")

    def _restart(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        return self._operate(who, args, "restart")

    # --- what happened in a job ------------------------------------------------------------------------

    def _logs_of(self, job_id: str) -> dict[str, Path]:
        run_dir = self.server.workspace / job_id
        found = {"server": run_dir / "log.txt"}
        sites = run_dir / SITES
        if sites.is_dir():
            for folder in sorted(sites.iterdir()):
                found[folder.name] = folder / SITE_LOG
        return {k: v for k, v in found.items() if v.is_file()}

    def _show_errors(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "show_errors")
        rec = self._job(args.get("job_id"))
        errors: dict[str, list[str]] = {}
        for site, path in self._logs_of(rec.job_id).items():
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if " ERROR " in ln]
            if lines:
                errors[site] = lines[-50:]
        if rec.error:
            errors.setdefault("server", []).append(f"job status {rec.status}: {rec.error}")
        return {"job_id": rec.job_id, "errors": errors}

    def _show_stats(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "show_stats")
        rec = self._job(args.get("job_id"))
        stats: dict[str, Any] = {
            "server": {"status": str(rec.status), "rounds": rec.rounds, "duration_s": rec.duration, "sites": rec.sites}
        }
        for site in rec.sites:
            path = site_dir(self.server.workspace, rec.job_id, site) / SITE_STATS
            if not path.is_file():
                continue
            samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if not samples:
                continue
            cpu = [float(s.get("cpu_percent", 0.0)) for s in samples]
            rss = [float(s.get("rss_mib", 0.0)) for s in samples]
            stats[site] = {
                "samples": len(samples),
                "cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
                "cpu_percent_max": round(max(cpu), 1),
                "rss_mib_max": round(max(rss), 1),
                "last": samples[-1],
            }
        return {"job_id": rec.job_id, "stats": stats}

    def _job_logs(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "job_logs")
        rec = self._job(args.get("job_id"))
        site = str(args.get("site") or "server")
        logs = self._logs_of(rec.job_id)
        if site not in logs:
            if site != "server" and site not in rec.sites:
                raise Failed(f"job {rec.job_id} does not run on '{site}' (sites: {', '.join(rec.sites)})")
            return {"text": "", "offset": 0, "finished": rec.status.finished}
        offset = max(int(args.get("offset") or 0), 0)
        with logs[site].open("rb") as f:
            f.seek(offset)
            data = f.read(LOG_CHUNK)
        return {
            "text": data.decode("utf-8", errors="replace"),
            "offset": offset + len(data),
            "finished": self._job(rec.job_id).status.finished,
        }

    # --- the web dashboard ------------------------------------------------------------------------------

    def _dashboard_login(self, who: Member, args: dict[str, Any]) -> dict[str, Any]:
        self._check(who, "dashboard_login")
        dashboard = self.server.dashboard
        if dashboard is None:
            raise Failed("the server runs no dashboard (start it with FLRUNTIME_DASHBOARD_PORT set, 0 for a free port)")
        return {"url": dashboard.login_url(who)}
