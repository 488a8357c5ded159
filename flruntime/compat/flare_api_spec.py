"""The types of NVFlare's FLARE API (``nvflare.fuel.flare_api.api_spec``): return codes, errors, system info.

:mod:`flruntime.compat.flare_api` raises these errors, translated from flruntime's own (an unknown job id becomes
:class:`JobNotFound`, a role that may not run a command :class:`AuthorizationError`, ...), and returns these
info objects, so code written against NVFlare's API catches and reads what it expects.
"""

from __future__ import annotations

import enum
import time
from abc import ABC
from typing import Any


class MonitorReturnCode(int, enum.Enum):
    """How :meth:`~flruntime.compat.flare_api.Session.monitor_job` ended."""

    JOB_FINISHED = 0
    TIMEOUT = 1
    ENDED_BY_CB = 2


class NoConnection(Exception):
    """The server could not be reached."""


class SessionClosed(Exception):
    """The session was closed."""


class InvalidArgumentError(Exception):
    """An argument is not valid (the startup kit folder, a list option)."""


class InvalidJobDefinition(Exception):
    """The job folder is missing or invalid, or the server refused it."""


class JobNotFound(Exception):
    """No job has this id."""


class JobNotRunning(Exception):
    """The job is not running."""


class JobNotDone(Exception):
    """The job is still running (or has not run yet)."""


class InternalError(Exception):
    """The server failed for another reason."""


class AuthenticationError(Exception):
    """The server did not accept this admin (not a participant of the project, another role in the kit)."""


class AuthorizationError(Exception):
    """This admin's role may not run the command."""


class NoClientsAvailable(Exception):
    """No client is connected."""


class ClientsStillRunning(Exception):
    """Clients still run a job."""


class InvalidTarget(Exception):
    """A target (client name, target type) is not known."""


class NoReply(Exception):
    """A target did not reply."""


class TargetType:
    """The targets of ``show_stats``, ``show_errors``, ``restart``, ``shutdown``."""

    ALL = "all"
    SERVER = "server"
    CLIENT = "client"


def _when(epoch: float | None) -> str:
    return time.asctime(time.localtime(epoch)) if epoch is not None else "?"


class ServerInfo:
    """The server: ``status`` (``started`` while it runs a job, else ``stopped``) and ``start_time`` (epoch)."""

    def __init__(self, status: str, start_time: float) -> None:
        self.status = status
        self.start_time = start_time

    def __str__(self) -> str:
        return f"status: {self.status}, start_time: {_when(self.start_time)}"


class ClientInfo:
    """A connected client: ``name`` and ``last_connect_time`` (epoch of its last heartbeat)."""

    def __init__(self, name: str, last_connect_time: float) -> None:
        self.name = name
        self.last_connect_time = last_connect_time

    def __str__(self) -> str:
        return f"{self.name}(last_connect_time: {_when(self.last_connect_time)})"


class JobInfo:
    """A running job: ``job_id`` and ``app_name`` (the app its server side runs)."""

    def __init__(self, job_id: str, app_name: str) -> None:
        self.job_id = job_id
        self.app_name = app_name

    def __str__(self) -> str:
        return f"JobInfo:\n  job_id: {self.job_id}\n  app_name: {self.app_name}"


class SystemInfo:
    """What ``get_system_info`` returns: ``server_info``, ``client_info`` (connected clients), ``job_info``."""

    def __init__(self, server_info: ServerInfo, client_info: list[ClientInfo], job_info: list[JobInfo]) -> None:
        self.server_info = server_info
        self.client_info = client_info
        self.job_info = job_info

    def __str__(self) -> str:
        clients = "\n".join(str(c) for c in self.client_info)
        jobs = "\n".join(str(j) for j in self.job_info)
        return f"SystemInfo\nserver_info:\n{self.server_info}\nclient_info:\n{clients}\njob_info:\n{jobs}"


class SessionSpec(ABC):  # noqa: B024 - the type sessions implement, for annotations
    """The FLARE API session type; :class:`flruntime.compat.flare_api.Session` implements it."""


def job_monitor_cb_signature(
    session: SessionSpec, job_id: str, job_meta: dict[str, Any], *args: Any, **kwargs: Any
) -> bool:
    """The signature of a ``monitor_job`` callback: return False to stop monitoring.

    Args:
        session: the session monitoring.
        job_id: the job.
        job_meta: the job's meta, as ``get_job_meta`` returns it.
        *args: the ``cb_args`` given to ``monitor_job``.
        **kwargs: the ``cb_kwargs`` given to ``monitor_job``.
    """
    return True


__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ClientInfo",
    "ClientsStillRunning",
    "InternalError",
    "InvalidArgumentError",
    "InvalidJobDefinition",
    "InvalidTarget",
    "JobInfo",
    "JobNotDone",
    "JobNotFound",
    "JobNotRunning",
    "MonitorReturnCode",
    "NoClientsAvailable",
    "NoConnection",
    "NoReply",
    "ServerInfo",
    "SessionClosed",
    "SessionSpec",
    "SystemInfo",
    "TargetType",
    "job_monitor_cb_signature",
]
