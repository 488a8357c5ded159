"""The admin side of the server: submit, list, abort, wait for and download jobs with an admin's kit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc

from flruntime.errors import AuthError, ConfigError, TransportError, UsageError
from flruntime.federation.archive import unzip_to, zip_folder
from flruntime.federation.jobs import JobStatus
from flruntime.federation.kit import Kit, load_kit
from flruntime.jobproc.check import check_job
from flruntime.packages import as_job_folder
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.retry import explain
from flruntime.transport.streaming import assemble, control, iter_bytes, read_control


class CommandFailed(UsageError):
    """The server could not do an admin command (an unknown job id, a running job to delete, ...).

    Args:
        message: the server's one-line reason.
        code: the reason in one word: ``no_job``, ``no_site``, ``job_running``, ``job_finished``, ``no_results``
            or "" (anything else).
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class AdminSession:
    """A connection to the server with an admin's startup kit.

    Args:
        kit: the admin's kit (a folder or a loaded kit).
        timeout: seconds each call may take.

    Raises:
        UsageError: not an admin kit.
    """

    def __init__(self, kit: Kit | str | Path, timeout: float = 60.0) -> None:
        self.kit = kit if isinstance(kit, Kit) else load_kit(kit)
        if self.kit.type != "admin":
            raise UsageError(f"{self.kit.root}: this is the kit of {self.kit.type} '{self.kit.name}', not of an admin")
        self.timeout = timeout
        self.channel = secure_channel(
            self.kit.target, self.kit.cert, self.kit.key, self.kit.root_cert, self.kit.server_name
        )
        self.stub = Stub(self.channel)

    def __enter__(self) -> AdminSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.channel.close()

    def _fail(self, exc: grpc.RpcError) -> TransportError:
        return TransportError(explain(exc, self.kit.target))

    def submit(self, job_dir: str | Path) -> str:
        """Check a job folder (or a package: verified, then exported to one) here, upload it, return its job id.

        Raises:
            ConfigError: the job is invalid (checked here first, then by the server).
            PackageError: a package does not match its manifest.
            TransportError: the server could not be reached.
        """
        with as_job_folder(job_dir) as folder:
            report = check_job(folder)  # custom/ code is imported in a short-lived child, never here
            if report.error_problems:
                raise ConfigError(report.error_problems)
            data = zip_folder(folder)
        try:
            reply = read_control(self.stub.stream_in("SubmitJob", iter_bytes(data, name=report.name), self.timeout))
        except grpc.RpcError as exc:
            raise self._fail(exc) from exc
        if not reply.get("ok"):
            error = "; ".join(reply.get("errors") or ["the server refused the job"])
            raise AuthError(error) if reply.get("refused") else UsageError(error)
        return str(reply["job_id"])

    def command(self, command: str, **args: Any) -> dict[str, Any]:
        """Run an admin command on the server and return its reply.

        Raises:
            AuthError: this admin's role may not run it.
            CommandFailed: the server could not do it (an unknown job id, a running job to delete, ...).
            TransportError: the server could not be reached.
        """
        request = control(command=command, args=args)
        try:
            reply = json.loads(self.stub.unary("Command", request, self.timeout))
        except grpc.RpcError as exc:
            raise self._fail(exc) from exc
        if not reply.get("ok"):
            error = str(reply.get("error") or f"{command} failed")
            raise AuthError(error) if reply.get("refused") else CommandFailed(error, str(reply.get("code") or ""))
        return dict(reply)

    def list_jobs(self, job_id: str | None = None, meta: bool = False) -> list[dict[str, Any]]:
        """Return the server's job records (all, or one), oldest first.

        Args:
            job_id: only this job.
            meta: add each job's meta file as submitted (``meta``) and its submitter's role (``submitter_role``).
        """
        return list(self.command("list_jobs", job_id=job_id, **({"meta": True} if meta else {}))["jobs"])

    def job(self, job_id: str, meta: bool = False) -> dict[str, Any]:
        """Return one job's record (with ``meta``: as :meth:`list_jobs` gives it).

        Raises:
            CommandFailed: no such job (code ``no_job``).
        """
        found = self.list_jobs(job_id, meta=meta)
        if not found:
            raise CommandFailed(f"no job with id {job_id} (list them with `flruntime job list`)", "no_job")
        return found[0]

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 1.0) -> dict[str, Any]:
        """Wait until a job finished and return its record.

        Raises:
            TransportError: ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec = self.job(job_id)
            if JobStatus(rec["status"]).finished:
                return rec
            if deadline is not None and time.monotonic() > deadline:
                raise TransportError(f"job {job_id} is still {rec['status']} after {timeout:.0f} s")
            time.sleep(poll)

    def abort(self, job_id: str) -> None:
        """Abort a submitted or running job."""
        self.command("abort_job", job_id=job_id)

    def clone(self, job_id: str) -> str:
        """Submit a copy of a job (same folder); return the new job's id."""
        return str(self.command("clone_job", job_id=job_id)["job_id"])

    def resume(self, job_id: str) -> str:
        """Submit a job that continues a finished (e.g. aborted) one from its last saved state; return its id."""
        return str(self.command("resume_job", job_id=job_id)["job_id"])

    def delete(self, job_id: str) -> None:
        """Delete a job that is not running: its record, folder and results."""
        self.command("delete_job", job_id=job_id)

    def check_status(self, target: str = "server", sites: list[str] | None = None) -> dict[str, Any]:
        """The server's status (running jobs, clients) or, for ``client``, the named clients' status."""
        reply = self.command("check_status", target=target, sites=sites)
        reply.pop("ok", None)
        return reply

    def list_sites(self) -> list[dict[str, Any]]:
        """Every participant site: name, type, org, online, last_seen_s, jobs, version, resources."""
        return list(self.command("list_sites")["sites"])

    def show_errors(self, job_id: str) -> dict[str, list[str]]:
        """Error lines of a job, by site (``server`` and each client)."""
        return dict(self.command("show_errors", job_id=job_id)["errors"])

    def show_stats(self, job_id: str) -> dict[str, Any]:
        """A job's progress on the server and each client's system metrics (CPU, memory, GPU when present)."""
        return dict(self.command("show_stats", job_id=job_id)["stats"])

    def logs(self, job_id: str, site: str = "server", offset: int = 0) -> tuple[str, int]:
        """A job's log on the server or a site from byte ``offset``: (text, the offset to continue from)."""
        reply = self.command("job_logs", job_id=job_id, site=site, offset=offset)
        return str(reply["text"]), int(reply["offset"])

    def dashboard_url(self) -> str:
        """A one-time link that logs this admin into the server's web dashboard (valid for a few minutes).

        Raises:
            UsageError: the server runs no dashboard.
        """
        return str(self.command("dashboard_login")["url"])

    def shutdown_clients(self, sites: list[str] | None = None) -> list[str]:
        """Ask clients (all when None) to shut down; return those told (the others are offline)."""
        return list(self.command("shutdown", target="client", sites=sites)["sites"])

    def restart_clients(self, sites: list[str] | None = None) -> list[str]:
        """Ask clients (all when None) to restart; return those told."""
        return list(self.command("restart", target="client", sites=sites)["sites"])

    def download(self, job_id: str, dest: str | Path, with_job: bool = False) -> Path:
        """Download a job's server workspace (with every site's log) into ``dest/<job_id>``; return that folder.

        Args:
            job_id: the job.
            dest: the folder to download into.
            with_job: NVFlare's layout: the submitted job folder in ``job/``, the workspace in ``workspace/``.

        Raises:
            AuthError: this admin may not download it.
            CommandFailed: no such job (code ``no_job``), or no results yet (``no_results``).
        """
        request = control(job_id=job_id, **({"with_job": True} if with_job else {}))
        try:
            head, buf = assemble(iter(self.stub.stream_out("DownloadJob", request, self.timeout)))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise CommandFailed(str(exc.details()), "no_job") from exc
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise CommandFailed(str(exc.details()), "no_results") from exc
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise AuthError(str(exc.details())) from exc
            raise self._fail(exc) from exc
        if buf is None:
            raise TransportError(f"the server sent nothing for job {job_id}")
        return unzip_to(buf.data(), Path(dest) / job_id, label=f"download of job {job_id}")


#: The Python session API: ``with flruntime.Session(kit) as s: s.wait(s.submit(job)); s.download(...)``.
Session = AdminSession


__all__ = ["AdminSession", "CommandFailed", "Session"]
