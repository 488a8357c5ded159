"""``flruntime simulate --processes``: every simulated client in a job process, as in a deployment.

The server side stays in the simulator's process; it serves the job's clients on a Unix socket in a private
folder (:class:`~flruntime.jobproc.service.LocalGate`: no TLS, only this user's processes can open it). Each
client is the same job process a deployed site starts (:mod:`flruntime.jobproc.client_job`), watched the same
way (:class:`~flruntime.jobproc.watch.SiteJobWatch`): a client whose process dies or hangs fails its tasks with
the reason, and the job goes on or fails as ``min_clients`` decides.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from flruntime.config.job import discover
from flruntime.graph.locate import ImportPolicy
from flruntime.jobproc.process import JobProcess
from flruntime.jobproc.service import JobService, LocalGate
from flruntime.jobproc.watch import SiteJobWatch, on_statuses, progress_limit
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.simulator import SIM_JOB_ID
from flruntime.transport.grpc_link import JOB_METHODS, OPTIONS, generic_handler

log = logging.getLogger(__name__)


class ProcessClients:
    """Runs each simulated client in a job process (implements the simulator's ``Clients``).

    Args:
        progress_timeout: seconds a task's code may make no progress before its client fails (0: no limit;
            default: the job's ``progress_timeout``, else :data:`~flruntime.jobproc.watch.PROGRESS_TIMEOUT`).
        memory_limit: each client's job process memory limit in bytes (None: none).
    """

    def __init__(self, progress_timeout: float | None = None, memory_limit: int | None = None) -> None:
        self.progress_timeout = progress_timeout
        self.memory_limit = memory_limit
        self.bytes_down = 0
        self.bytes_up = 0
        self.failures: dict[str, str] = {}
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: grpc.Server | None = None
        self._folder: Path | None = None
        self._lock = threading.Lock()

    def start(
        self,
        root: Path,
        names: list[str],
        ws: Path,
        comm: Communicator,
        overrides: dict[str, Any],
        policy: ImportPolicy,
        resume: bool,
    ) -> None:
        """Serve the job on a private socket and start one job process per client."""
        if self.progress_timeout is None:
            self.progress_timeout = progress_limit(discover(root)[0].meta_data)
        self._folder = Path(tempfile.mkdtemp(prefix="flruntime-sim-"))  # short: a socket path has ≤ 107 bytes
        os.chmod(self._folder, 0o700)
        socket = f"unix:{self._folder / 'job.sock'}"
        service = JobService(SIM_JOB_ID, comm, LocalGate(names), ws / "server")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8 + 2 * len(names)), options=OPTIONS)
        server.add_generic_rpc_handlers([generic_handler(service, JOB_METHODS)])
        server.add_insecure_port(socket)
        server.start()
        self._server = server
        for site in names:  # registered now, so the workflow counts them; tasks wait until their process pulls
            comm.register(site)
        for site in names:
            spec = {
                "role": "client",
                "job_id": SIM_JOB_ID,
                "site": site,
                "job_dir": str(root),
                "run_dir": str(ws / site),
                "target": socket,
                "tls": None,
                "report": False,
                "resume": resume,
                "overrides": overrides,
                "allow": list(policy.extra_prefixes),
            }
            thread = threading.Thread(
                target=self._run, args=(site, spec, ws / site, comm), name=f"{site}:watch", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, site: str, spec: dict[str, Any], run_dir: Path, comm: Communicator) -> None:
        watch = SiteJobWatch(site, self.progress_timeout or 0.0)
        proc = JobProcess(
            [sys.executable, "-m", "flruntime.jobproc"],
            cwd=run_dir,
            env=dict(os.environ),
            log_path=run_dir / "log.txt",
            memory_limit=self.memory_limit,
            on_status=on_statuses(watch.on_status, lambda m: self._count(m)),
            name=f"{site}:job",
        )
        proc.start(spec)
        why = watch.watch(proc, self._abort)
        if why:
            log.error("%s", why)
            with self._lock:
                self.failures[site] = why
            comm.fail(site, why)

    def _count(self, message: dict[str, Any]) -> None:
        if message.get("kind") == "done":
            with self._lock:
                self.bytes_down += int(message.get("bytes_down", 0) or 0)
                self.bytes_up += int(message.get("bytes_up", 0) or 0)

    def stop(self, aborted: bool) -> None:
        """Wait for every client's process to end (ending them at once when ``aborted``), then close the socket."""
        if aborted:
            self._abort.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._abort.set()  # a process still running after that is ended
        for thread in self._threads:
            thread.join(timeout=30)
        if self._server is not None:
            self._server.stop(None).wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


__all__ = ["ProcessClients"]
