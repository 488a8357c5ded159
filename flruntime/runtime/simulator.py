"""The simulator: a whole job on one machine, by default in one process with clients as threads.

The same engines, components and messages as POC and production (every task and result goes through
the wire codec); only the transport differs. Each site gets a folder in the workspace with its log,
and the run ends with ``results.json`` at the workspace root. How clients run is a :class:`Clients`:
threads of this process (:class:`ThreadClients`, the default: fast), or job processes as in a deployment
(:class:`flruntime.jobproc.simulate.ProcessClients`, ``flruntime simulate --processes``).

A job with HE components (a class taking ``tenseal_context_file``) runs without keys of its own: when no
``he_context_dir`` is given (nor ``FLRUNTIME_HE_DIR``, nor a context file in an app's ``config/``), the simulator
makes a CKKS key for the run in ``<workspace>/he_context/`` (what ``flruntime he keys`` writes) and installs it like
``--he-context-dir``: the public context to the server, the secret one to the clients. NVFlare's simulator does not
support HE at all.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from flruntime.errors import ConfigError, UsageError
from flruntime.events.bus import Event, EventBus
from flruntime.events.types import EventType
from flruntime.graph.locate import ImportPolicy
from flruntime.plots import plot_round_metrics
from flruntime.runtime.client import ClientEngine
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import RunContext, ServerContext
from flruntime.runtime.lifecycle import preflight_components
from flruntime.runtime.log_context import site_of
from flruntime.runtime.server import RunStatus, ServerEngine
from flruntime.transport.inprocess import InProcessConnection
from flruntime.validation import Report, build_job_site, validate_job

SIM_JOB_ID = "simulate_job"
MARKER = ".flruntime-workspace"
RESULTS_FILE = "results.json"
#: Where the simulator puts the CKKS key it makes for an HE job run without ``--he-context-dir``.
HE_CONTEXT_DIR = "he_context"

log = logging.getLogger(__name__)


@dataclass
class SimulationResult:
    """The summary written to ``results.json``."""

    job: str
    status: str
    workspace: str
    clients: list[str]
    rounds_completed: int = 0
    num_rounds: int | None = None
    seconds: float = 0.0
    seconds_per_round: float | None = None
    time_to_first_task: float | None = None
    best_metric: float | None = None
    error: str = ""
    late_results: int = 0
    round_metrics: list[dict[str, float]] = field(default_factory=list)
    bytes_to_clients: int = 0
    bytes_to_server: int = 0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the job completed."""
        return self.status == RunStatus.COMPLETED


class _SiteFilter(logging.Filter):
    """Passes records logged from a site's threads (thread names start with the site name)."""

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    def filter(self, record: logging.LogRecord) -> bool:
        return site_of(record.threadName or "") == self.site


class _Progress:
    """Prints round progress (round, clients done, seconds per round) from the server's events."""

    def __init__(self, bus: EventBus, clients: int, out: TextIO | None) -> None:
        self.out = out
        self.clients = clients
        self.round_start = 0.0
        self.done = 0
        self.rounds = 0
        self.durations: list[float] = []
        self.metrics: list[dict[str, float]] = []
        self.best: float | None = None
        self.first_task: float | None = None
        self.t0 = time.monotonic()
        bus.subscribe(EventType.ROUND_STARTED, self.started)
        bus.subscribe(EventType.AFTER_CONTRIBUTION_ACCEPT, self.contributed)
        bus.subscribe(EventType.ROUND_DONE, self.finished)
        bus.subscribe(EventType.GLOBAL_BEST_MODEL_AVAILABLE, self.best_model)

    def _print(self, text: str, final: bool = False) -> None:
        if self.out is None:
            return
        if self.out.isatty():
            self.out.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.out.write(text + "\n")
        self.out.flush()

    def started(self, event: Event) -> None:
        self.round_start = time.monotonic()
        if self.first_task is None:
            self.first_task = self.round_start - self.t0
        self.done = 0
        self._print(f"round {event.data['round']}: 0/{self.clients} clients done")

    def contributed(self, event: Event) -> None:
        self.done += 1
        self._print(f"round in progress: {self.done}/{self.clients} clients done")

    def finished(self, event: Event) -> None:
        took = time.monotonic() - self.round_start
        self.durations.append(took)
        self.rounds += 1
        got = len(event.data.get("contributors", []))
        metrics = dict(event.data.get("metrics") or {})
        if metrics:
            self.metrics.append({"round": event.data["round"], **metrics})
        shown = "".join(f", {k} {v:.4g}" for k, v in sorted(metrics.items()))
        self._print(f"round {event.data['round']} done: {got}/{self.clients} clients, {took:.2f} s{shown}", final=True)

    def best_model(self, event: Event) -> None:
        metric = event.data.get("metric")
        if isinstance(metric, (int, float)):
            self.best = float(metric)


def _client_names(report: Report, n: int | None, clients: list[str] | None) -> list[str]:
    if clients:
        names = clients
    elif n:
        names = [f"site-{i}" for i in range(1, n + 1)]
    else:
        names = report.job.client_sites()
    if not names:
        raise UsageError("no clients to simulate: pass -n N or -c site-1,site-2 (the deploy map names none)")
    missing = [c for c in names if report.job.app_for(c) is None]
    if missing:
        raise UsageError(f"the job has no app for clients {', '.join(missing)} (check its deploy_map)")
    if report.errors:
        raise ConfigError(report.errors)
    return names


def _prepare_workspace(workspace: Path, resume: bool) -> None:
    if workspace.exists() and not resume:
        if any(workspace.iterdir()) and not (workspace / MARKER).exists():
            raise UsageError(f"workspace '{workspace}' is not empty and was not made by flruntime; choose another -w")
        shutil.rmtree(workspace)
    if resume and not (workspace / MARKER).exists():
        raise UsageError(f"nothing to resume in '{workspace}' (no earlier simulator run there)")
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / MARKER).write_text("flruntime simulator workspace\n", encoding="utf-8")


def simulate(
    job_dir: str | Path,
    *,
    n_clients: int | None = None,
    clients: list[str] | None = None,
    threads: int | None = None,
    workspace: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    policy: ImportPolicy | None = None,
    resume: bool = False,
    progress: TextIO | None = sys.stderr,
    serialize: bool = True,
    he_context_dir: str | Path | None = None,
    client_runner: Clients | None = None,
) -> SimulationResult:
    """Run a job folder in the simulator.

    Args:
        job_dir: the job folder.
        n_clients: simulate ``site-1`` … ``site-N``.
        clients: simulate these client names (wins over ``n_clients``).
        threads: at most this many tasks run at the same time (default: one per client).
        workspace: where the run's folders go (default ``/tmp/flruntime/simulate/<job name>``).
        overrides: variable overrides (``-o``).
        policy: the import policy.
        resume: continue the run in ``workspace`` from its last saved global model.
        progress: where to print progress (None: quiet).
        serialize: send every task and result through the wire codec.
        he_context_dir: a folder made by ``flruntime he keys``: its ``server_context.tenseal`` is copied to
            ``<workspace>/server/startup/`` and its ``client_context.tenseal`` to every client's ``startup/``.
            None for an HE job: a key is made for the run in ``<workspace>/he_context/`` (see the module).
        client_runner: how the clients run (default: :class:`ThreadClients`, threads of this process).

    Returns:
        The run's summary (also written to ``<workspace>/results.json``).

    Raises:
        UsageError: bad clients, workspace, overrides or HE context folder, or a site's component refused to
            start (``preflight``, e.g. a missing key file).
        ConfigError: the job is invalid.
    """
    root = Path(job_dir)
    report = validate_job(root, overrides=overrides)
    names = _client_names(report, n_clients, clients)
    ws = Path(workspace) if workspace else Path("/tmp/flruntime/simulate") / report.job.name
    _prepare_workspace(ws, resume)
    policy = policy or ImportPolicy()
    result = SimulationResult(report.job.name, RunStatus.RUNNING, str(ws), names)
    handlers: list[logging.FileHandler] = []
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.setLevel(logging.INFO)
    for site in ["server", *names]:
        (ws / site).mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(ws / site / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_SiteFilter(site))
        root_logger.addHandler(handler)
        handlers.append(handler)
    if he_context_dir is None and _needs_he_keys(report):
        he_context_dir = _he_keys_for_run(ws, resume, progress)
    if he_context_dir is not None:
        from flruntime.he.contexts import install_contexts

        install_contexts(he_context_dir, ws, names)
    try:
        clients_of = client_runner or ThreadClients(threads, serialize)
        return _run(root, names, ws, dict(overrides or {}), policy, resume, progress, clients_of, result)
    finally:
        for handler in handlers:
            root_logger.removeHandler(handler)
            handler.close()
        root_logger.setLevel(old_level)


def _takes_he_context(cls: type) -> bool:
    try:
        return "tenseal_context_file" in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): not an HE component
        return False


def _needs_he_keys(report: Report) -> bool:
    """True when the job has HE components and no context is given otherwise (``FLRUNTIME_HE_DIR``, app config/)."""
    from flruntime.he.contexts import ENV_DIR
    from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT

    if not any(_takes_he_context(found.cls) for app in report.apps for found in app.classes.values()):
        return False
    if os.environ.get(ENV_DIR):
        return False
    shipped = [a.config_dir / n for a in report.job.apps.values() for n in (SERVER_CONTEXT, CLIENT_CONTEXT)]
    return not any(p.is_file() for p in shipped)


def _he_keys_for_run(ws: Path, resume: bool, progress: TextIO | None) -> Path | None:
    """Make a CKKS key for this run in ``ws/he_context/`` and return that folder (None: keep the resumed run's).

    Raises:
        UsageError: TenSEAL is not installed.
    """
    from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT, write_keys

    folder = ws / HE_CONTEXT_DIR
    if resume and (ws / "server" / "startup" / SERVER_CONTEXT).is_file():  # a new key could not decrypt its model
        made = (folder / SERVER_CONTEXT).is_file() and (folder / CLIENT_CONTEXT).is_file()
        line = f"HE: no --he-context-dir given: the resumed run keeps its CKKS context ({ws / 'server' / 'startup'})"
        found = folder if made else None
    else:
        try:
            write_keys(folder, force=True)
        except ImportError as exc:
            raise UsageError(f"the job uses homomorphic encryption: {exc}") from exc
        line = f"HE: no --he-context-dir given: made a CKKS context for this run in {folder}"
        found = folder
    log.info("%s", line)
    if progress is not None:
        progress.write(line + "\n")
        progress.flush()
    return found


def _preflight(objects: Any, ctx: RunContext) -> None:
    """Run the site's component checks; a failure refuses the run with one line naming the site."""
    try:
        preflight_components(objects, ctx)
    except Exception as exc:
        raise UsageError(f"{ctx.site}: {exc}") from exc


class Clients(Protocol):
    """How the simulated clients run: started against the server's communicator, stopped when the job ends."""

    bytes_down: int
    bytes_up: int

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
        """Build and start every client (a client that cannot start raises ``UsageError`` naming it)."""

    def stop(self, aborted: bool) -> None:
        """Wait for the clients to end (told to stop at once when ``aborted``)."""


class ThreadClients:
    """Every client as a thread of this process, over :class:`InProcessConnection` (the default: fastest).

    Args:
        threads: at most this many tasks run at the same time (None: one per client).
        serialize: send every task and result through the wire codec.
    """

    def __init__(self, threads: int | None = None, serialize: bool = True) -> None:
        self.threads = threads
        self.serialize = serialize
        self.bytes_down = 0
        self.bytes_up = 0
        self._engines: list[ClientEngine] = []
        self._connections: list[InProcessConnection] = []
        self._workers: list[threading.Thread] = []

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
        """Build every client's app and start its engine in a thread."""
        slots = threading.BoundedSemaphore(self.threads) if self.threads else None
        for site in names:
            graph = build_job_site(
                root, site, overrides=overrides, policy=policy, job_id=SIM_JOB_ID, workspace=str(ws / site)
            )
            conn = InProcessConnection(comm, serialize=self.serialize)
            ctx = RunContext(
                SIM_JOB_ID, site, ws / site, graph.app_dir, EventBus(site), abort=threading.Event(), resume=resume
            )
            _preflight(graph.objects(), ctx)
            self._engines.append(ClientEngine(graph, ctx, conn, task_slots=slots))
            self._connections.append(conn)
            comm.register(site)
        self._workers = [
            threading.Thread(target=e.run, name=f"{e.ctx.site}:engine", daemon=True) for e in self._engines
        ]
        for w in self._workers:
            w.start()

    def stop(self, aborted: bool) -> None:
        """Wait for the engines' threads (aborting them first when ``aborted``)."""
        if aborted:
            for e in self._engines:
                e.ctx.abort.set()
        for w in self._workers:
            w.join(timeout=60)
        self.bytes_down = sum(c.bytes_down for c in self._connections)
        self.bytes_up = sum(c.bytes_up for c in self._connections)


def _run(
    root: Path,
    names: list[str],
    ws: Path,
    overrides: dict[str, Any],
    policy: ImportPolicy,
    resume: bool,
    progress: TextIO | None,
    clients: Clients,
    result: SimulationResult,
) -> SimulationResult:
    start = time.monotonic()
    server_graph = build_job_site(
        root, "server", overrides=overrides, policy=policy, job_id=SIM_JOB_ID, workspace=str(ws / "server")
    )
    comm = Communicator()
    abort = threading.Event()
    server_ctx = ServerContext(
        SIM_JOB_ID, "server", ws / "server", server_graph.app_dir, EventBus("server"), abort=abort, resume=resume
    )
    _preflight(server_graph.objects(), server_ctx)
    tracker = _Progress(server_ctx.bus, len(names), progress)
    tracker.t0 = start  # time to first task counts building the job too
    clients.start(root, names, ws, comm, overrides, policy, resume)
    server = ServerEngine(server_graph, server_ctx, comm)
    try:
        outcome = server.run()
    except KeyboardInterrupt:
        server.abort()
        comm.shutdown()
        raise
    finally:
        clients.stop(abort.is_set())
    result.status = str(outcome.status)
    result.error = outcome.error
    result.seconds = round(time.monotonic() - start, 3)
    result.rounds_completed = tracker.rounds
    result.num_rounds = server_ctx.total_rounds
    result.seconds_per_round = round(sum(tracker.durations) / len(tracker.durations), 4) if tracker.durations else None
    result.time_to_first_task = round(tracker.first_task, 3) if tracker.first_task is not None else None
    result.best_metric = tracker.best
    result.late_results = len(comm.late)
    result.bytes_to_clients = clients.bytes_down
    result.bytes_to_server = clients.bytes_up
    result.round_metrics = tracker.metrics
    if plot_round_metrics(tracker.metrics, ws / "training_curve.png", title=f"{result.job}: client metrics per round"):
        result.files["training_curve.png"] = str(ws / "training_curve.png")
    for name in (
        "FL_global_model.pt",
        "best_FL_global_model.pt",
        "cross_site_val/cross_val_results.json",
        "cross_site_val/cross_val_results.png",
        "mlflow.db",
    ):
        if (ws / "server" / name).exists():
            result.files[name] = str(ws / "server" / name)
    (ws / RESULTS_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    if progress is not None:
        best = f", best metric {result.best_metric:.4g}" if result.best_metric is not None else ""
        progress.write(
            f"{result.job}: {result.status} after {result.rounds_completed} round(s) in "
            f"{result.seconds:.1f} s{best}; results in {ws / RESULTS_FILE}\n"
        )
    return result
