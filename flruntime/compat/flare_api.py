"""NVFlare's FLARE API (``nvflare.fuel.flare_api.flare_api``) over flruntime's admin session.

Notebooks and pipelines written for NVFlare drive a federation with ``new_secure_session(username, kit)`` and the
returned :class:`Session`: ``submit_job``, ``monitor_job``, ``list_jobs``, ``get_job_meta``,
``download_job_result``, ... Each call is one (or a few) of flruntime's admin commands through
:class:`~flruntime.federation.admin.AdminSession`, so the server authorises it by the admin's role and writes it to
its audit log as it does for the console; replies come back in NVFlare's shapes (job meta dicts, ``SystemInfo``)
and failures as NVFlare's exceptions (:mod:`flruntime.compat.flare_api_spec`) with one-line messages.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from flruntime.errors import AuthError, ConfigError, FLRuntimeError, TransportError, UsageError
from flruntime.federation.admin import AdminSession, CommandFailed
from flruntime.federation.kit import Kit, load_kit
from flruntime.packages import PackageError
from flruntime.transport.retry import code_of

from .flare_api_records import app_of, job_meta, job_summary
from .flare_api_spec import (
    AuthenticationError,
    AuthorizationError,
    ClientInfo,
    InternalError,
    InvalidArgumentError,
    InvalidJobDefinition,
    InvalidTarget,
    JobInfo,
    JobNotDone,
    JobNotFound,
    MonitorReturnCode,
    NoConnection,
    ServerInfo,
    SessionClosed,
    SessionSpec,
    SystemInfo,
    TargetType,
)

T = TypeVar("T")

_TARGET_TYPES = [TargetType.ALL, TargetType.SERVER, TargetType.CLIENT]
_REFUSED_CONNECTION = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
_NOT_AUTHORISED = "not authorised: "


class Session(SessionSpec):
    """A FLARE API session: an admin's connection to the server, from the admin's startup kit.

    Args:
        username: the admin's name; it must be the kit's (None: the kit's).
        startup_path: the admin's startup kit folder (the one holding ``startup/fed_admin.json``).
        secure_mode: accepted for NVFlare's signature; flruntime always connects with mutual TLS.
        debug: print each command sent (``DEBUG: ...``).

    Raises:
        InvalidArgumentError: ``startup_path`` is not an admin's startup kit (or was changed since provisioning).
        AuthenticationError: ``username`` is not the kit's admin.
    """

    def __init__(
        self,
        username: str | None = None,
        startup_path: str | os.PathLike[str] | None = None,
        secure_mode: bool = True,
        debug: bool = False,
    ) -> None:
        if startup_path is None:
            raise InvalidArgumentError("startup_path is required: the folder of the admin's startup kit")
        try:
            kit = load_kit(Path(startup_path))
            self._admin = AdminSession(kit)
        except FLRuntimeError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        if username is not None and username != kit.name:
            self._admin.close()
            raise AuthenticationError(
                f"user not authenticated: the startup kit at {kit.root} is for '{kit.name}', not for '{username}'"
            )
        self.username = kit.name
        self.secure_mode = secure_mode
        self.debug = debug
        admin = kit.config.get("admin", {})
        self.upload_dir = str((kit.root / str(admin.get("upload_dir") or "transfer")).resolve())
        self.download_dir = str((kit.root / str(admin.get("download_dir") or "transfer")).resolve())
        os.makedirs(self.download_dir, exist_ok=True)
        self._default_timeout = self._admin.timeout
        self._closed = False

    @property
    def kit(self) -> Kit:
        """The admin's startup kit."""
        return self._admin.kit

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------------------

    def _run(self, action: str, call: Callable[[], T], job_id: str = "", submit: bool = False) -> T:
        """Make admin calls for ``action`` (NVFlare's command line), turning flruntime's errors into NVFlare's."""
        if self._closed:
            raise SessionClosed("session closed")
        if self.debug:
            print(f"DEBUG: {action}")
        try:
            return call()
        except CommandFailed as exc:
            if exc.code == "no_job":
                raise JobNotFound(f"no such job: {job_id}") from exc
            if exc.code == "job_running":
                raise JobNotDone(f"job {job_id} is still running") from exc
            if exc.code == "no_results":
                raise JobNotDone(str(exc)) from exc
            if exc.code == "no_site":
                raise InvalidTarget(str(exc)) from exc
            if submit:
                raise InvalidJobDefinition(f"invalid job definition: {exc}") from exc
            raise InternalError(f"{action}: {exc}") from exc
        except AuthError as exc:
            reason = str(exc).removeprefix(_NOT_AUTHORISED)
            raise AuthorizationError(f"user not authorized for the action '{action}: {reason}'") from exc
        except (ConfigError, PackageError) as exc:
            raise InvalidJobDefinition(f"invalid job definition: {exc}") from exc
        except UsageError as exc:  # the server refused a job it checked (submit), or an unexpected refusal
            if submit:
                raise InvalidJobDefinition(f"invalid job definition: {exc}") from exc
            raise InternalError(f"{action}: {exc}") from exc
        except TransportError as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.RpcError) and code_of(cause) in _REFUSED_CONNECTION:
                raise AuthenticationError(f"user not authenticated: {exc}") from exc
            raise NoConnection(str(exc)) from exc

    @staticmethod
    def _validate_job_id(job_id: Any) -> str:
        if not job_id:
            raise JobNotFound("job_id is required but not specified.")
        if not isinstance(job_id, str):
            raise JobNotFound(f"invalid job_id {job_id}")
        return job_id

    def try_connect(self, timeout: float) -> None:
        """Check within ``timeout`` seconds that the server answers and accepts this admin.

        Raises:
            SessionClosed: the session was closed.
            NoConnection: the server did not answer in time (the last reason is in the message).
            AuthenticationError: the server refused this admin.
        """
        if self._closed:
            raise SessionClosed("session closed")
        deadline = time.monotonic() + timeout
        per_call, self._admin.timeout = self._admin.timeout, max(timeout, 1.0)
        try:
            while True:
                try:
                    self._admin.check_status("server")
                    return
                except TransportError as exc:
                    cause = exc.__cause__
                    if isinstance(cause, grpc.RpcError) and code_of(cause) in _REFUSED_CONNECTION:
                        self.close()
                        raise AuthenticationError(f"user not authenticated: {exc}") from exc
                    if time.monotonic() >= deadline:
                        self.close()
                        raise NoConnection(f"cannot connect to FLARE in {timeout} seconds ({exc})") from exc
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))
        finally:
            self._admin.timeout = per_call

    def close(self) -> None:
        """Close the session (again: nothing happens); every later call raises :class:`SessionClosed`."""
        if not self._closed:
            self._closed = True
            self._admin.close()

    def set_timeout(self, value: float) -> None:
        """Give each call of this session at most ``value`` seconds (flruntime's default: 60)."""
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"timeout must be a positive number but got {value!r}")
        self._admin.timeout = float(value)

    def unset_timeout(self) -> None:
        """Go back to the default time per call."""
        self._admin.timeout = self._default_timeout

    # --- jobs ---------------------------------------------------------------------------------------

    def submit_job(self, job_definition_path: str | os.PathLike[str]) -> str:
        """Check a job folder here, upload it, and return its job id.

        A relative path that is not a folder here is looked up in the kit's upload folder (``transfer/``), as
        NVFlare does; a flruntime package (``.zip``) is accepted too.

        Raises:
            InvalidJobDefinition: no such folder, or the job is invalid (every problem is checked before upload).
            AuthorizationError: this admin's role may not submit jobs.
            NoConnection: the server could not be reached.
        """
        if not job_definition_path:
            raise InvalidJobDefinition("job_definition_path is required but not specified.")
        if not isinstance(job_definition_path, str | os.PathLike):
            raise InvalidJobDefinition(f"job_definition_path must be str but got {type(job_definition_path)}.")
        path = Path(job_definition_path)
        if not path.is_dir():
            in_upload = Path(self.upload_dir) / path
            if in_upload.is_dir():
                path = in_upload.resolve()
            elif not (path.is_file() and path.suffix == ".zip"):
                raise InvalidJobDefinition(f"job_definition_path '{job_definition_path}' is not a valid folder")
        return self._run(f"submit_job {path}", lambda: self._admin.submit(path), submit=True)

    def clone_job(self, job_id: str) -> str:
        """Submit a copy of a job; return the new job's id (its meta says ``cloned_from``)."""
        job_id = self._validate_job_id(job_id)
        return self._run(f"clone_job {job_id}", lambda: self._admin.clone(job_id), job_id)

    def get_job_meta(self, job_id: str) -> dict[str, Any]:
        """A job's meta (see :func:`job_meta`).

        Raises:
            JobNotFound: no job has this id.
        """
        job_id = self._validate_job_id(job_id)
        return job_meta(self._run(f"get_job_meta {job_id}", lambda: self._admin.job(job_id, meta=True), job_id))

    def list_jobs(
        self,
        detailed: bool = False,
        limit: int | None = None,
        id_prefix: str | None = None,
        name_prefix: str | None = None,
        reverse: bool = False,
    ) -> list[dict[str, Any]]:
        """The server's jobs, oldest first (NVFlare's rows, or with ``detailed`` each job's whole meta).

        Args:
            detailed: each job's meta (as :meth:`get_job_meta`) instead of its summary row (:func:`job_summary`).
            limit: at most this many (0 or None: all): the newest ones.
            id_prefix: only jobs whose id starts with this (any case).
            name_prefix: only jobs whose name starts with this (any case).
            reverse: newest first.
        """
        for name, value in (("detailed", detailed), ("reverse", reverse)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be bool but got {type(value)}")
        if limit is not None and not isinstance(limit, int):
            raise ValueError(f"limit must be None or int but got {type(limit)}")
        for name, prefix in (("id_prefix", id_prefix), ("name_prefix", name_prefix)):
            if prefix is not None and not isinstance(prefix, str):
                raise ValueError(f"{name} must be None or str but got {type(prefix)}")
        records = self._run("list_jobs", lambda: self._admin.list_jobs(meta=detailed))
        picked = [
            r
            for r in records
            if str(r["job_id"]).lower().startswith((id_prefix or "").lower())
            and str(r["name"]).lower().startswith((name_prefix or "").lower())
        ]
        picked.sort(key=lambda r: float(r.get("submit_time") or 0.0), reverse=reverse)
        if limit:
            picked = picked[:limit] if reverse else picked[-limit:]
        return [job_meta(r) if detailed else job_summary(r) for r in picked]

    def monitor_job(
        self,
        job_id: str,
        timeout: float = 0.0,
        poll_interval: float = 2.0,
        cb: Callable[..., bool] | None = None,
        *cb_args: Any,
        **cb_kwargs: Any,
    ) -> MonitorReturnCode:
        """Poll a job's meta until it finished, ``timeout`` seconds passed (0: never) or ``cb`` returned False.

        ``cb(session, job_id, job_meta, *cb_args, **cb_kwargs)`` is called after each poll.
        """
        start = time.monotonic()
        while True:
            if 0 < timeout < time.monotonic() - start:
                return MonitorReturnCode.TIMEOUT
            meta = self.get_job_meta(job_id)
            if cb is not None and not cb(self, job_id, meta, *cb_args, **cb_kwargs):
                return MonitorReturnCode.ENDED_BY_CB
            status = meta.get("status")
            if not status:
                raise InternalError(f"missing status in job {job_id}")
            if str(status).startswith("FINISHED"):
                return MonitorReturnCode.JOB_FINISHED
            time.sleep(poll_interval)

    def abort_job(self, job_id: str) -> None:
        """Abort a job (a finished one: nothing happens; a queued one never runs)."""
        job_id = self._validate_job_id(job_id)

        def abort() -> None:
            try:
                self._admin.abort(job_id)
            except CommandFailed as exc:
                if exc.code != "job_finished":
                    raise

        self._run(f"abort_job {job_id}", abort, job_id)

    def delete_job(self, job_id: str) -> None:
        """Delete a job that is not running: its record, folder and results.

        Raises:
            JobNotDone: it is running.
        """
        job_id = self._validate_job_id(job_id)
        self._run(f"delete_job {job_id}", lambda: self._admin.delete(job_id), job_id)

    def download_job_result(self, job_id: str) -> str:
        """Download a job into the kit's download folder; return ``DOWNLOAD_DIR/<job_id>``.

        It holds NVFlare's layout: ``job/`` (the submitted folder), ``workspace/`` (the server's run folder:
        its ``log.txt``, models, ``cross_site_val/``, and every site's log in ``sites/<site>/log.txt``) and
        ``meta.json`` (:meth:`get_job_meta`).

        Raises:
            JobNotFound: no job has this id.
            JobNotDone: the job has not started yet (no results).
        """
        job_id = self._validate_job_id(job_id)

        def download() -> tuple[Path, dict[str, Any]]:
            folder = self._admin.download(job_id, self.download_dir, with_job=True)
            return folder, job_meta(self._admin.job(job_id, meta=True))

        folder, meta = self._run(f"download_job {job_id}", download, job_id)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return str(folder)

    def get_available_apps_to_upload(self) -> list[str]:
        """The folders in the kit's upload folder (``transfer/``), which ``submit_job`` takes by name."""
        root = Path(self.upload_dir)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    # --- the system ---------------------------------------------------------------------------------

    def _metas(self, job_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not job_ids:
            return {}
        return {
            r["job_id"]: dict(r.get("meta") or {}) for r in self._admin.list_jobs(meta=True) if r["job_id"] in job_ids
        }

    def get_system_info(self) -> SystemInfo:
        """The server (``started`` while it runs a job), its connected clients and its running jobs."""
        status = self._run("check_status server", lambda: self._admin.check_status("server"))
        running = list(status.get("running_jobs") or [])
        metas = self._run("list_jobs -d", lambda: self._metas({str(j["job_id"]) for j in running}))
        now = time.time()
        server = ServerInfo("started" if running else "stopped", now - float(status.get("uptime_s") or 0.0))
        clients = [
            ClientInfo(str(c["name"]), now - float(c.get("last_seen_s") or 0.0))
            for c in status.get("clients") or []
            if c.get("online")
        ]
        jobs = [JobInfo(str(j["job_id"]), app_of(metas.get(str(j["job_id"]), {}), "server")) for j in running]
        return SystemInfo(server, clients, jobs)

    def get_connected_client_list(self) -> list[ClientInfo]:
        """The connected clients (:meth:`get_system_info`'s ``client_info``)."""
        return self.get_system_info().client_info

    def get_client_job_status(self, client_names: list[str] | None = None) -> list[dict[str, Any]]:
        """The jobs the clients (all, or those named) run: one dict per client and job.

        Each is ``{"client_name", "app_name", "job_id", "status": "started"}``, or ``{"client_name", "status":
        "no_jobs"}`` for a client that runs none and ``{"client_name", "status": "no_reply"}`` for one that is
        offline.

        Raises:
            InvalidTarget: a name is not a client of the project.
        """
        names = list(client_names or [])
        action = " ".join(["check_status", TargetType.CLIENT, *names])
        rows = list(self._run(action, lambda: self._admin.check_status("client", names or None)).get("clients") or [])
        ids = {str(j) for c in rows if c.get("online") for j in c.get("jobs") or []}
        metas = self._run("list_jobs -d", lambda: self._metas(ids))
        found: list[dict[str, Any]] = []
        for c in rows:
            name = str(c["name"])
            if not c.get("online"):
                found.append({"client_name": name, "status": "no_reply"})
            elif not c.get("jobs"):
                found.append({"client_name": name, "status": "no_jobs"})
            else:
                for jid in c["jobs"]:
                    app = app_of(metas.get(str(jid), {}), name)
                    found.append({"client_name": name, "app_name": app, "job_id": str(jid), "status": "started"})
        return found

    def _collect(
        self, command: str, job_id: str, target_type: str, targets: list[str] | None
    ) -> tuple[dict[str, Any], list[str]]:
        if not job_id:
            raise ValueError("job_id is required but not specified.")
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be str but got {type(job_id)}.")
        if target_type not in _TARGET_TYPES:
            raise ValueError(f"invalid target_type {target_type}: must be one of {_TARGET_TYPES}")
        names = list(targets or []) if target_type == TargetType.CLIENT else []
        action = " ".join([command, job_id, target_type, *names])
        sites = list(self._run(action, lambda: self._admin.job(job_id), job_id).get("sites") or [])
        collect = self._admin.show_stats if command == "show_stats" else self._admin.show_errors
        found: dict[str, Any] = self._run(action, lambda: collect(job_id), job_id)
        unknown = [n for n in names if n not in sites]
        if unknown:
            raise InvalidTarget(f"invalid client(s): {' '.join(unknown)} (job {job_id} runs on {', '.join(sites)})")
        picked: dict[str, Any] = {}
        if target_type in (TargetType.SERVER, TargetType.ALL) and "server" in found:
            picked["server"] = found["server"]
        if target_type in (TargetType.CLIENT, TargetType.ALL):
            picked.update({s: found[s] for s in names or sites if s in found})
        return picked, sites

    def show_stats(self, job_id: str, target_type: str, targets: list[str] | None = None) -> dict[str, Any]:
        """A job's progress on the server and each client's system metrics, keyed by target.

        ``server``: ``{"status", "rounds", "duration_s", "sites"}``; a client (once it sent metrics):
        ``{"samples", "cpu_percent_mean", "cpu_percent_max", "rss_mib_max", "last"}``. Finished jobs have stats too.

        Raises:
            ValueError: ``target_type`` is not ``server``, ``client`` or ``all``.
            InvalidTarget: a client the job does not run on.
        """
        return self._collect("show_stats", job_id, target_type, targets)[0]

    def show_errors(self, job_id: str, target_type: str, targets: list[str] | None = None) -> dict[str, Any]:
        """A job's error lines, keyed by target (``server`` and clients); targets without errors are left out."""
        return self._collect("show_errors", job_id, target_type, targets)[0]


def basic_cb_with_print(
    session: Session, job_id: str, job_meta: dict[str, Any], *cb_args: Any, **cb_kwargs: Any
) -> bool:
    """A ``monitor_job`` callback that prints the job's meta (while running: the first 3 times, then dots).

    Pass ``cb_run_counter={"count": 0}`` to count its calls across polls, as NVFlare's notebooks do.
    """
    counter = cb_kwargs.get("cb_run_counter")
    count = counter["count"] if isinstance(counter, dict) else 0
    if job_meta.get("status") == "RUNNING":
        if count < 3:
            print(job_meta)
        else:
            print(".", end="", flush=True)
    else:
        print("\n" + str(job_meta))
    if isinstance(counter, dict):
        counter["count"] = count + 1
    return True


def new_secure_session(
    username: str, startup_kit_location: str | os.PathLike[str], debug: bool = False, timeout: float = 10.0
) -> Session:
    """Open a session as ``username`` with the admin's startup kit and check within ``timeout`` s that it works.

    Raises:
        InvalidArgumentError: not an admin's startup kit.
        AuthenticationError: ``username`` is not the kit's admin, or the server refuses the kit.
        NoConnection: the server did not answer within ``timeout`` seconds.
    """
    session = Session(username=username, startup_path=startup_kit_location, secure_mode=True, debug=debug)
    session.try_connect(timeout)
    return session


def new_insecure_session(
    startup_kit_location: str | os.PathLike[str], debug: bool = False, timeout: float = 10.0
) -> Session:
    """As :func:`new_secure_session`, as the kit's admin (flruntime has no insecure mode: this is mutual TLS too)."""
    session = Session(username=None, startup_path=startup_kit_location, secure_mode=False, debug=debug)
    session.try_connect(timeout)
    return session


__all__ = [
    "Session",
    "app_of",
    "basic_cb_with_print",
    "job_meta",
    "job_summary",
    "new_insecure_session",
    "new_secure_session",
]
