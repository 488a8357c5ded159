"""Where a recipe runs: the simulator, a POC on this machine, a federation.

:class:`SimEnv`, :class:`PocEnv` and :class:`ProdEnv`: one implementation serves flruntime's recipe
(:class:`flruntime.recipe.FedAvgRecipe`) and NVFlare's recipe API (``nvflare.recipe``, through the shim), with
NVFlare's argument names.

``recipe.execute(env)`` exports the job folder and hands it to ``env.deploy``; the :class:`Run` it returns
tells the job's id and status, waits for and fetches its results (:meth:`Run.get_result`: the server's folder
for the job, holding the global model) and aborts it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flruntime.errors import ConfigError, JobApiError, JobFailedError, TransportError, UsageError

#: The POC's (and NVFlare's) default admin.
DEFAULT_ADMIN_USER = "admin@nvidia.com"
#: Where :class:`SimEnv` runs a job without ``workspace`` / ``workspace_root``: ``<root>/<job name>``.
DEFAULT_SIM_ROOT = Path("/tmp/flruntime/simulate")


class ExecEnv:
    """Where a job runs (NVFlare's ``nvflare.recipe.spec.ExecEnv``).

    Args:
        extra: more properties (:meth:`get_extra_prop`).

    Raises:
        JobApiError: ``extra`` is not a dict.
    """

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        if extra is not None and not isinstance(extra, dict):
            raise JobApiError(f"extra must be dict but got {type(extra).__name__}")
        self.extra = dict(extra or {})

    def get_extra_prop(self, prop_name: str, default: Any = None) -> Any:
        """One of ``extra``'s properties."""
        return self.extra.get(prop_name, default)

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Start the job folder ``job_dir`` here; return its run."""
        raise NotImplementedError

    def get_job_status(self, job_id: str) -> str | None:
        """The job's status (``RUNNING``, ``FINISHED:COMPLETED``, ...)."""
        raise NotImplementedError

    def abort_job(self, job_id: str) -> None:
        """Abort the job."""
        raise NotImplementedError

    def get_job_result(self, job_id: str, timeout: float | None = None) -> Path | None:
        """Wait for the job to finish; return the folder of its results (None when ``timeout`` passed first)."""
        raise NotImplementedError


class Run:
    """A job started by ``recipe.execute(env)`` (NVFlare's ``nvflare.recipe.run.Run``)."""

    def __init__(self, env: ExecEnv, job_id: str) -> None:
        self.exec_env = env
        self.job_id = job_id

    def get_job_id(self) -> str:
        """The job's id (in the simulator: its name)."""
        return self.job_id

    def get_status(self) -> str | None:
        """The job's status (``RUNNING``, ``FINISHED:COMPLETED``, ...)."""
        return self.exec_env.get_job_status(self.job_id)

    def get_result(self, timeout: float | None = None) -> Path | None:
        """Wait for the job (``timeout`` seconds; None or 0: no limit) and return the folder of its results.

        The folder is the server's for the job: it holds the global model (``FL_global_model.pt``), the server's
        log and, with cross-site evaluation, ``cross_site_val/``. None when ``timeout`` passed first.
        """
        return self.exec_env.get_job_result(self.job_id, timeout=timeout)

    def abort(self) -> None:
        """Abort the job (a finished simulation has nothing to abort)."""
        self.exec_env.abort_job(self.job_id)


@contextlib.contextmanager
def _visible_gpus(gpu: str | Sequence[int] | None) -> Iterator[None]:
    if gpu is None or gpu == "":
        yield
        return
    ids = gpu if isinstance(gpu, str) else ",".join(str(g) for g in gpu)
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(part.strip() for part in ids.split(","))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def simulate_folder(
    job_dir: Path,
    *,
    workspace: Path,
    clients: list[str] | None = None,
    n_clients: int | None = None,
    threads: int | None = None,
    gpu: str | Sequence[int] | None = None,
    fail: bool = True,
) -> Any:
    """Run a job folder in the simulator, printing every problem of a job that does not validate.

    Args:
        job_dir: the job folder.
        workspace: the simulator's workspace.
        clients: the clients to simulate (wins over ``n_clients``).
        n_clients: simulate ``site-1`` .. ``site-N``.
        threads: at most this many client tasks at once.
        gpu: GPU ids the run may see (``CUDA_VISIBLE_DEVICES`` while it runs).
        fail: raise when the job does not complete.

    Returns:
        The simulator's :class:`~flruntime.runtime.simulator.SimulationResult`.

    Raises:
        ConfigError: the job is invalid.
        JobFailedError: with ``fail``, the job did not complete.
    """
    from flruntime.runtime.simulator import simulate

    try:
        with _visible_gpus(gpu):
            result = simulate(job_dir, clients=clients, n_clients=n_clients, threads=threads, workspace=workspace)
    except ConfigError as exc:
        for problem in exc.problems[1:]:
            print(f"flruntime: {problem.format()}", file=sys.stderr)
        raise
    if fail and not result.ok:
        raise JobFailedError(f"job {result.job} ended {result.status}: {result.error or 'see the site logs'}")
    return result


def _positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise JobApiError(f"{name} must be a non-negative int, got {value!r}")


class SimEnv(ExecEnv):
    """Run in the simulator, in this process (NVFlare's ``nvflare.recipe.SimEnv``).

    The run is over when ``execute`` returns.

    Args:
        num_clients: simulated clients ``site-1`` .. ``site-N`` (default: the job's named sites, else its
            ``min_clients``).
        clients: simulated client names instead.
        num_threads: at most this many client tasks at once (default: one per client).
        gpu_config: GPU ids the run may see (``"0,1"``); the clients are threads and share them.
        log_config: accepted; each site logs to ``<workspace>/<site>/log.txt``.
        workspace_root: the run's workspace is ``<workspace_root>/<job name>`` (default root
            ``/tmp/flruntime/simulate``).
        extra: more properties.
        workspace: the run's workspace itself (wins over ``workspace_root``).
        threads: flruntime's name for ``num_threads``.

    Raises:
        JobApiError: ``num_clients`` and ``clients`` disagree, or a bad number.
    """

    def __init__(
        self,
        *,
        num_clients: int | None = None,
        clients: list[str] | None = None,
        num_threads: int | None = None,
        gpu_config: str | None = None,
        log_config: str | None = None,
        workspace_root: str | Path | None = None,
        extra: dict[str, Any] | None = None,
        workspace: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(extra)
        _positive("num_clients", num_clients)
        _positive("num_threads", num_threads)
        if clients is not None and num_clients and len(clients) != num_clients:
            raise JobApiError(
                f"Inconsistent number of clients: num_clients={num_clients} but clients list has "
                f"{len(clients)} entries."
            )
        self.num_clients = num_clients
        self.clients = list(clients) if clients else None
        self.num_threads = num_threads if num_threads is not None else threads
        self.gpu_config = gpu_config
        self.log_config = log_config
        self.workspace_root = Path(workspace_root) if workspace_root else DEFAULT_SIM_ROOT
        self.workspace = Path(workspace) if workspace else None
        self._results: dict[str, Any] = {}

    @property
    def threads(self) -> int | None:
        """Flruntime's name for ``num_threads``."""
        return self.num_threads

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Simulate the job now; the returned run has finished (its status says how)."""
        name = Path(job_dir).name
        workspace = self.workspace or self.workspace_root / name
        n_clients = None if self.clients else self.num_clients or (None if _names_sites(job_dir) else min_clients)
        result = simulate_folder(
            Path(job_dir),
            workspace=workspace,
            clients=self.clients,
            n_clients=n_clients,
            threads=self.num_threads,
            gpu=self.gpu_config,
            fail=False,
        )
        self._results[name] = result
        return Run(self, name)

    def get_job_status(self, job_id: str) -> str | None:
        """The simulated job's final status (NVFlare's SimEnv answers None)."""
        result = self._results.get(job_id)
        return None if result is None else str(result.status)

    def abort_job(self, job_id: str) -> None:
        """Nothing to abort: a simulation has ended when ``execute`` returns."""
        print("abort is not supported in a simulation environment: the run has already ended", file=sys.stderr)

    def get_job_result(self, job_id: str, timeout: float | None = None) -> Path | None:
        """The server's folder of the simulation (``<workspace>/server``)."""
        result = self._results.get(job_id)
        workspace = Path(result.workspace) if result is not None else self.workspace or self.workspace_root / job_id
        return workspace / "server"


def _names_sites(job_dir: Path) -> bool:
    """True when the job's deploy map names its client sites (then they are the clients to simulate)."""
    import json

    try:
        deploy = json.loads((Path(job_dir) / "meta.json").read_text(encoding="utf-8")).get("deploy_map") or {}
    except (OSError, ValueError, AttributeError):
        return False
    sites = {s for targets in deploy.values() if isinstance(targets, list) for s in targets if isinstance(s, str)}
    return bool(sites - {"server"}) and not any(s.lower() == "@all" for s in sites)


class _Federation(ExecEnv):
    """A running federation reached with an admin's kit: submit, status, abort, results."""

    download_dir: Path | None = None
    timeout: float = 60.0

    def _kit(self) -> Path:
        raise NotImplementedError

    def _session(self) -> Any:
        from flruntime.federation.admin import AdminSession

        return AdminSession(self._kit(), timeout=self.timeout)

    def submit(self, job_dir: Path) -> Run:
        """Submit the job folder; return its run."""
        with self._session() as session:
            job_id = str(session.submit(job_dir))
        print(f"Submitted job '{Path(job_dir).name}' with ID: {job_id}")
        return Run(self, job_id)

    def get_job_status(self, job_id: str) -> str | None:
        """The job's status on the server."""
        with self._session() as session:
            return str(session.job(job_id)["status"])

    def abort_job(self, job_id: str) -> None:
        """Abort the job."""
        with self._session() as session:
            session.abort(job_id)

    def get_job_result(self, job_id: str, timeout: float | None = None) -> Path | None:
        """Wait for the job, download its results (default: into the kit's ``transfer/``) and return the folder."""
        with self._session() as session:
            try:
                session.wait(job_id, timeout=timeout or None)
            except TransportError as exc:
                if "still" not in str(exc):
                    raise
                print(f"job {job_id} did not finish within {timeout:g} s; call get_result() again to wait longer")
                return None
            dest = self.download_dir or session.kit.root / "transfer"
            return Path(session.download(job_id, dest))


def _check_username(kit: Path, username: str | None) -> None:
    if username is None:
        return
    from flruntime.federation.kit import load_kit

    name = load_kit(kit).name
    if username != name:
        raise JobApiError(f"username '{username}' is not the admin of the startup kit {kit} (it is '{name}')")


class ProdEnv(_Federation):
    """Submit to a running federation with an admin's startup kit (NVFlare's ``nvflare.recipe.ProdEnv``).

    Args:
        startup_kit_location: the admin's startup kit folder.
        login_timeout: accepted (flruntime has no login step: each call waits up to ``timeout``).
        username: the kit's admin (checked when given; default: whoever the kit is for).
        extra: more properties.
        download_dir: where :meth:`Run.get_result` downloads results (default: the kit's ``transfer/``).
        timeout: seconds each call to the server may take.

    Raises:
        JobApiError: no such kit folder, or ``username`` is not its admin.
    """

    def __init__(
        self,
        startup_kit_location: str | Path,
        login_timeout: float = 5.0,
        username: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        download_dir: str | Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(extra)
        kit = Path(startup_kit_location)
        if not kit.exists():
            raise JobApiError(f"startup_kit_location path does not exist: {kit}")
        if not (isinstance(login_timeout, (int, float)) and login_timeout > 0):
            raise JobApiError(f"login_timeout must be a positive number, got {login_timeout!r}")
        _check_username(kit, username)
        self.kit = kit
        self.startup_kit_location = str(kit)
        self.login_timeout = float(login_timeout)
        self.username = username
        self.download_dir = Path(download_dir) if download_dir else None
        self.timeout = timeout

    def _kit(self) -> Path:
        return self.kit

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Submit the job; the returned run follows it on the server."""
        return self.submit(job_dir)


class PocEnv(_Federation):
    """A fresh POC federation on this machine for each run (NVFlare's ``nvflare.recipe.PocEnv``).

    ``execute`` stops a POC running in the workspace, prepares a new one (``flruntime poc prepare``), starts the
    server and the clients as processes, waits until every client is connected and submits the job as
    ``admin@nvidia.com``. The federation keeps running after the job: :meth:`stop` ends it.

    Args:
        num_clients: clients ``site-1`` .. ``site-N``.
        clients: client names instead (``num_clients`` is then ignored).
        gpu_ids: not supported yet (refused).
        use_he: provision TenSEAL keys (HE jobs).
        docker_image: not supported (refused).
        project_conf_path: not supported (refused; use ``flruntime provision`` and :class:`ProdEnv`).
        username: the POC's admin, ``admin@nvidia.com``.
        extra: more properties.
        workspace: the POC workspace (default: ``$FLRUNTIME_POC_WORKSPACE``, else ``/tmp/flruntime/poc``).
        port: the server's port (its admin port is the next one; default 8002).
        timeout: seconds each call to the server may take.

    Raises:
        JobApiError: bad or inconsistent clients, or an option flruntime does not support.
    """

    def __init__(
        self,
        *,
        num_clients: int | None = 2,
        clients: list[str] | None = None,
        gpu_ids: list[int] | None = None,
        use_he: bool = False,
        docker_image: str | None = None,
        project_conf_path: str = "",
        username: str = DEFAULT_ADMIN_USER,
        extra: dict[str, Any] | None = None,
        workspace: str | Path | None = None,
        port: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        from flruntime.provision.poc import DEFAULT_PORT, default_workspace

        super().__init__(extra)
        if clients is not None and not clients:
            raise JobApiError("clients list cannot be empty")
        if clients is None and (isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1):
            raise JobApiError(f"num_clients must be greater than 0, got {num_clients!r}")
        for name, value in (
            ("gpu_ids", gpu_ids),
            ("docker_image", docker_image),
            ("project_conf_path", project_conf_path),
        ):
            if value:
                raise JobApiError(f"PocEnv {name} is not supported by flruntime")
        if username != DEFAULT_ADMIN_USER:
            raise JobApiError(f"the POC's admin is {DEFAULT_ADMIN_USER}, not '{username}'")
        self.clients = list(clients) if clients else None
        self.num_clients = len(clients) if clients else int(num_clients or 0)
        self.use_he = use_he
        self.username = username
        self.poc_workspace = Path(workspace) if workspace else default_workspace()
        self.port = port or DEFAULT_PORT
        self.timeout = timeout

    def _kit(self) -> Path:
        from flruntime.provision import poc

        for admin in poc.load(self.poc_workspace).admins:
            if admin.name == self.username:
                return admin.kit
        raise UsageError(f"no kit of {self.username} in the POC workspace {self.poc_workspace}")

    def deploy(self, job_dir: Path, min_clients: int) -> Run:
        """Start a fresh POC, wait for its clients, submit the job."""
        from flruntime.provision import poc

        self.stop(clean_poc=True)
        print(f"Preparing and starting a POC federation in {self.poc_workspace} ...")
        prepared = poc.prepare(
            self.poc_workspace, self.num_clients, self.port, he=self.use_he, force=True, names=self.clients
        )
        poc.start(prepared, prepared.select(), say=lambda line: None)
        self._wait_for_clients([m.name for m in prepared.members if m.type == "client"])
        print("POC federation started")
        return self.submit(job_dir)

    def _wait_for_clients(self, names: list[str], limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        missing = list(names)
        while True:
            try:
                with self._session() as session:
                    online = {s["name"] for s in session.list_sites() if s.get("online")}
                missing = [n for n in names if n not in online]
            except TransportError:
                pass  # the server is still starting
            if not missing:
                return
            if time.monotonic() > deadline:
                raise UsageError(f"POC clients {', '.join(missing)} did not connect within {limit:g} s")
            time.sleep(0.2)

    def stop(self, clean_poc: bool = False) -> None:
        """Stop the POC federation in the workspace (if one runs) and, with ``clean_poc``, remove the workspace."""
        from flruntime.provision import poc

        if not (self.poc_workspace / poc.MARKER).is_file():
            return
        prepared = poc.load(self.poc_workspace)
        if prepared.running():
            print(f"Stopping the POC federation in {self.poc_workspace} ...")
            poc.stop(prepared.sites, say=lambda line: None)
        if clean_poc:
            poc.clean(self.poc_workspace)


def export_dir(name: str) -> Path:
    """A fresh folder to export a recipe's job into when none is given."""
    return Path(tempfile.mkdtemp(prefix=f"flruntime-{name}-")) / name


__all__ = ["ExecEnv", "PocEnv", "ProdEnv", "Run", "SimEnv", "export_dir", "simulate_folder"]
