"""The admin side of the server: submit, list, abort, wait for and download jobs with an admin's kit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc

from flruntime.errors import ConfigError, TransportError, UsageError
from flruntime.federation.archive import unzip_to, zip_folder
from flruntime.federation.client import explain
from flruntime.federation.jobs import JobStatus
from flruntime.federation.kit import Kit, load_kit
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.streaming import assemble, control, iter_bytes, read_control
from flruntime.validation import validate_job


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
        """Check a job folder here, upload it, and return its job id.

        Raises:
            ConfigError: the job is invalid (checked here first, then by the server).
            TransportError: the server could not be reached.
        """
        report = validate_job(job_dir)
        if report.errors:
            raise ConfigError(report.errors)
        data = zip_folder(job_dir)
        try:
            reply = read_control(self.stub.stream_in("SubmitJob", iter_bytes(data, name=report.job.name), self.timeout))
        except grpc.RpcError as exc:
            raise self._fail(exc) from exc
        if not reply.get("ok"):
            raise UsageError("; ".join(reply.get("errors") or ["the server refused the job"]))
        return str(reply["job_id"])

    def list_jobs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Return the server's job records (all, or one)."""
        try:
            reply = self.stub.unary("ListJobs", control(job_id=job_id), self.timeout)
        except grpc.RpcError as exc:
            raise self._fail(exc) from exc
        return list(json.loads(reply)["jobs"])

    def job(self, job_id: str) -> dict[str, Any]:
        """Return one job's record.

        Raises:
            UsageError: no such job.
        """
        found = self.list_jobs(job_id)
        if not found:
            raise UsageError(f"no job with id {job_id} (list them with `flruntime job list`)")
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
        """Abort a job.

        Raises:
            UsageError: unknown or already finished.
        """
        try:
            reply = read_control(self.stub.unary("AbortJob", control(job_id=job_id), self.timeout))
        except grpc.RpcError as exc:
            raise self._fail(exc) from exc
        if not reply.get("ok"):
            raise UsageError(str(reply.get("error")))

    def download(self, job_id: str, dest: str | Path) -> Path:
        """Download a job's server workspace into ``dest/<job_id>`` and return that folder."""
        try:
            head, buf = assemble(iter(self.stub.stream_out("DownloadJob", control(job_id=job_id), self.timeout)))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise UsageError(str(exc.details())) from exc
            raise self._fail(exc) from exc
        if buf is None:
            raise TransportError(f"the server sent nothing for job {job_id}")
        return unzip_to(buf.data(), Path(dest) / job_id, label=f"download of job {job_id}")


__all__ = ["AdminSession"]
