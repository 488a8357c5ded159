"""Where a recipe runs: the simulator (:class:`SimEnv`) or a running federation (:class:`ProdEnv`, POC included).

``recipe.execute(env)`` exports the job folder and hands it to the environment; the :class:`Run` it returns
tells the job's status and, with :meth:`Run.get_result`, the folder of its results.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class Run(Protocol):
    """A job started by :meth:`FedAvgRecipe.execute`."""

    job_id: str

    def get_status(self) -> str:
        """The job's status (``RUNNING``, ``FINISHED:COMPLETED``, ...)."""

    def get_result(self, timeout: float | None = None) -> Path:
        """Wait for the job to finish and return the folder holding its results (the server's workspace)."""


@dataclass
class SimEnv:
    """Run in the simulator, in this process.

    Attributes:
        num_clients: simulated clients (default: the recipe's ``min_clients``).
        workspace: the simulator's workspace (default: ``/tmp/flruntime/simulate/<job name>``).
        threads: at most this many tasks at once.
    """

    num_clients: int | None = None
    workspace: str | Path | None = None
    threads: int | None = None

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Simulate the job now; the returned run has finished."""
        from flruntime.runtime.simulator import simulate

        result = simulate(
            job_dir, n_clients=self.num_clients or min_clients, workspace=self.workspace, threads=self.threads
        )
        return _SimRun(result)


@dataclass
class _SimRun:
    result: Any
    job_id: str = "simulate_job"

    def get_status(self) -> str:
        return str(self.result.status)

    def get_result(self, timeout: float | None = None) -> Path:
        return Path(self.result.workspace) / "server"


@dataclass
class ProdEnv:
    """Submit to a running federation with an admin's startup kit (a POC's admin kit works too).

    Attributes:
        kit: the admin's startup kit folder.
        download_dir: where :meth:`Run.get_result` downloads results (default: the kit's ``transfer/``).
        timeout: seconds each call to the server may take.
    """

    kit: str | Path
    download_dir: str | Path | None = None
    timeout: float = 60.0
    _session: Any = field(default=None, repr=False)

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Submit the job; the returned run follows it on the server."""
        from flruntime.federation.admin import AdminSession

        session = AdminSession(self.kit, timeout=self.timeout)
        job_id = session.submit(job_dir)
        dest = Path(self.download_dir) if self.download_dir else session.kit.root / "transfer"
        return _ProdRun(session, job_id, dest)


@dataclass
class _ProdRun:
    session: Any
    job_id: str
    dest: Path

    def get_status(self) -> str:
        return str(self.session.job(self.job_id)["status"])

    def get_result(self, timeout: float | None = None) -> Path:
        self.session.wait(self.job_id, timeout=timeout)
        return Path(self.session.download(self.job_id, self.dest))

    def abort(self) -> None:
        """Abort the job."""
        self.session.abort(self.job_id)


def export_dir(name: str) -> Path:
    """A fresh folder to export a recipe's job into when none is given."""
    return Path(tempfile.mkdtemp(prefix=f"flruntime-{name}-")) / name


__all__ = ["ProdEnv", "Run", "SimEnv"]
