"""Shared parts of the runtime benchmarks: the same FedAvg job for flruntime and for NVFlare 2.9.

``bench/round_overhead.py`` and ``bench/big_model.py`` import this module; it is not part of the
flruntime package. It does four things:

1. Writes one job folder per tool. Both jobs run scatter-and-gather FedAvg with the tool's own
   ``ScatterAndGather`` workflow, ``InTimeAccumulateWeightedAggregator`` (``WEIGHT_DIFF``) and
   ``FullModelShareableGenerator``; only the two model-specific parts live in the job's ``custom/``
   folder, written here for each tool's API:

   * a persistor whose initial model is a few float32 arrays of zeros (sizes chosen by the caller)
     and whose ``save`` writes the round and the first value of the first array to a small JSON
     file (so the final model can be checked: it must equal ``rounds * step``);
   * an executor whose one local "step" returns the difference ``+step`` for every parameter
     (``NUM_STEPS_CURRENT_ROUND`` = 1), and appends ``round receive_time return_time`` (Unix time) to
     ``<trace_dir>/<site>.txt`` each time it runs.

2. Runs a command as a fresh process (the tool's own CLI, so interpreter start and imports are
   included) with a time limit, sampling the resident set size of the whole process tree (the
   process and all its descendants, e.g. NVFlare's per-client worker processes) every
   ``SAMPLE_S`` seconds with psutil. The peak of the sum is reported; shared pages count once per
   process, so for multi-process trees it is an upper bound of physical memory.

3. Reads the executor traces: per round, the earliest time any client received the task.

4. Reads NVFlare's server log: the timestamps of ``Round N started.`` / ``Round N finished.``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_NVFLARE_PYTHON = REPO_ROOT / ".venv-nvflare" / "bin" / "python"
NVFLARE_SETUP = "python3 -m venv .venv-nvflare && .venv-nvflare/bin/pip install nvflare==2.9.0"
SAMPLE_S = 0.02
CUSTOM_MODULE = "bench_fedavg"
RESULT_FILE = "final_model.json"
STEP = 1.0

NVFLARE_WORKFLOW = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
NVFLARE_AGGREGATOR = (
    "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
)
NVFLARE_GENERATOR = "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"

FLRUNTIME_CUSTOM = textwrap.dedent(
    '''\
    """The model-specific parts of the FedAvg benchmark job, for flruntime (written by bench/_fedavg_jobs.py)."""

    import json
    import time
    from pathlib import Path

    import numpy as np

    from flruntime.roles import Executor, ModelPersistor
    from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType


    class ZerosPersistor(ModelPersistor):
        """Starts from float32 zeros; remembers the first value of the last saved model."""

        def __init__(self, sizes: list[int], result_file: str):
            self.sizes = list(sizes)
            self.result_file = result_file

        def load(self, ctx):
            return ModelMessage({f"p{i}": np.zeros(n, dtype=np.float32) for i, n in enumerate(self.sizes)})

        def save(self, model, ctx):
            first = float(model.params["p0"][0])
            record = {"round": model.current_round, "p0_first": first}
            Path(self.result_file).write_text(json.dumps(record), encoding="utf-8")


    class StepExecutor(Executor):
        """One local step: every parameter moves by ``step``; the difference is returned."""

        def __init__(self, step: float, trace_dir: str):
            self.step = step
            self.trace_dir = trace_dir

        def execute(self, task, data, ctx):
            received = time.time()
            diff = {name: np.full(v.shape, self.step, dtype=np.float32) for name, v in (data.params or {}).items()}
            reply = ModelMessage(diff, ParamsType.DIFF, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 1})
            with open(Path(self.trace_dir) / f"{ctx.site}.txt", "a", encoding="utf-8") as fh:
                fh.write(f"{data.current_round} {received:.6f} {time.time():.6f}\\n")
            return reply
    '''
)

NVFLARE_CUSTOM = textwrap.dedent(
    '''\
    """The model-specific parts of the FedAvg benchmark job, for NVFlare (written by bench/_fedavg_jobs.py)."""

    import json
    import os
    import time

    import numpy as np

    from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
    from nvflare.apis.executor import Executor
    from nvflare.apis.fl_constant import ReturnCode
    from nvflare.apis.shareable import make_reply
    from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
    from nvflare.app_common.abstract.model_persistor import ModelPersistor


    class ZerosPersistor(ModelPersistor):
        """Starts from float32 zeros; remembers the first value of the last saved model."""

        def __init__(self, sizes, result_file):
            super().__init__()
            self.sizes = list(sizes)
            self.result_file = result_file

        def load_model(self, fl_ctx):
            weights = {f"p{i}": np.zeros(n, dtype=np.float32) for i, n in enumerate(self.sizes)}
            return make_model_learnable(weights, {})

        def save_model(self, model, fl_ctx):
            first = float(model[ModelLearnableKey.WEIGHTS]["p0"][0])
            record = {"round": fl_ctx.get_prop("current_round"), "p0_first": first}
            with open(self.result_file, "w", encoding="utf-8") as fh:
                json.dump(record, fh)


    class StepExecutor(Executor):
        """One local step: every parameter moves by ``step``; the difference is returned."""

        def __init__(self, step, trace_dir):
            super().__init__()
            self.step = step
            self.trace_dir = trace_dir

        def execute(self, task_name, shareable, fl_ctx, abort_signal):
            received = time.time()
            if task_name != "train":
                return make_reply(ReturnCode.TASK_UNKNOWN)
            rnd = shareable.get_header("current_round")
            weights = from_shareable(shareable).data
            diff = {name: np.full(v.shape, self.step, dtype=np.float32) for name, v in weights.items()}
            reply = DXO(DataKind.WEIGHT_DIFF, diff, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 1}).to_shareable()
            site = fl_ctx.get_identity_name()
            with open(os.path.join(self.trace_dir, f"{site}.txt"), "a", encoding="utf-8") as fh:
                fh.write(f"{rnd} {received:.6f} {time.time():.6f}\\n")
            return reply
    '''
)


@dataclass
class JobSpec:
    """What both generated jobs run."""

    sizes: list[int]
    num_rounds: int
    min_clients: int
    step: float = STEP
    wait_time_after_min_received: float = 0
    task_check_period: float | None = None  # None: the workflow's default
    resident: bool = False  # initial model written to (np.full) so its pages are resident, as a trained model's are


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _workflow_args(spec: JobSpec) -> dict[str, Any]:
    args: dict[str, Any] = {
        "min_clients": spec.min_clients,
        "num_rounds": spec.num_rounds,
        "wait_time_after_min_received": spec.wait_time_after_min_received,
        "aggregator_id": "aggregator",
        "persistor_id": "persistor",
        "shareable_generator_id": "shareable_generator",
        "train_task_name": "train",
        "train_timeout": 0,
    }
    if spec.task_check_period is not None:
        args["task_check_period"] = spec.task_check_period
    return args


def _server_config(spec: JobSpec, result_file: Path, key: str, classes: tuple[str, str, str]) -> dict[str, Any]:
    """The server config; ``key`` is "path" (a class path) or "name" (flruntime's short names)."""
    workflow, aggregator, generator = classes
    return {
        "format_version": 2,
        "workflows": [{"id": "scatter_and_gather", key: workflow, "args": _workflow_args(spec)}],
        "components": [
            {
                "id": "persistor",
                "path": f"{CUSTOM_MODULE}.ZerosPersistor",
                "args": {"sizes": spec.sizes, "result_file": str(result_file)},
            },
            {"id": "shareable_generator", key: generator, "args": {}},
            {"id": "aggregator", key: aggregator, "args": {"expected_data_kind": "WEIGHT_DIFF"}},
        ],
    }


def _client_config(spec: JobSpec, trace_dir: Path) -> dict[str, Any]:
    executor = {"path": f"{CUSTOM_MODULE}.StepExecutor", "args": {"step": spec.step, "trace_dir": str(trace_dir)}}
    return {"format_version": 2, "executors": [{"tasks": ["train"], "executor": executor}]}


@dataclass
class JobFolder:
    """A generated job and where its run leaves its traces."""

    job: Path
    trace_dir: Path
    result_file: Path


def write_job(root: Path, tool: str, spec: JobSpec) -> JobFolder:
    """Write the benchmark job for ``tool`` ("flruntime" or "nvflare") under ``root``."""
    job = root / f"{tool}_job"
    trace_dir = root / f"{tool}_trace"
    trace_dir.mkdir(parents=True)
    result_file = root / f"{tool}_{RESULT_FILE}"
    app = job / "app"
    meta: dict[str, Any] = {"name": f"bench_{tool}", "min_clients": spec.min_clients, "deploy_map": {"app": ["@ALL"]}}
    if tool == "flruntime":
        names = ("ScatterAndGather", "InTimeAccumulateWeightedAggregator", "FullModelShareableGenerator")
        server = _server_config(spec, result_file, "name", names)
        source = FLRUNTIME_CUSTOM
    elif tool == "nvflare":
        meta["resource_spec"] = {}
        classes = (NVFLARE_WORKFLOW, NVFLARE_AGGREGATOR, NVFLARE_GENERATOR)
        server = _server_config(spec, result_file, "path", classes)
        source = NVFLARE_CUSTOM
    else:
        raise ValueError(f"unknown tool {tool!r}")
    _write(job / "meta.json", meta)
    _write(app / "config" / "config_fed_server.json", server)
    _write(app / "config" / "config_fed_client.json", _client_config(spec, trace_dir))
    (app / "custom").mkdir(parents=True)
    if spec.resident:
        source = source.replace("np.zeros(n, dtype=np.float32)", "np.full(n, 0.0, dtype=np.float32)")
    (app / "custom" / f"{CUSTOM_MODULE}.py").write_text(source, encoding="utf-8")
    return JobFolder(job, trace_dir, result_file)


@dataclass
class ProcessRun:
    """One command run as a fresh process tree."""

    cmd: list[str]
    rc: int | None
    timed_out: bool
    start: float  # Unix time just before the process was started
    seconds: float  # wall time until the process exited (or was killed)
    peak_rss: int  # bytes, peak of the summed RSS of the process and its descendants
    peak_processes: int
    output_tail: str
    killed: str = ""  # why the benchmark killed the tree ("" when it exited by itself)

    @property
    def ok(self) -> bool:
        """True when the process exited 0 by itself."""
        return self.rc == 0 and not self.killed


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants until stopped."""

    def __init__(self, pid: int, max_rss: int | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.max_rss = max_rss
        self.peak = 0
        self.peak_processes = 0
        self.over_limit = False
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            total, count = 0, 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                    count += 1
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self.peak_processes = max(self.peak_processes, count)
            if self.max_rss is not None and total > self.max_rss:
                self.over_limit = True
                _kill_tree(self.pid)
                return
            self.stop.wait(SAMPLE_S)


def _kill_tree(pid: int) -> None:
    """Kill a process this module started and every descendant of it, one by one by pid."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def run_process(
    cmd: list[str], log_file: Path, timeout: float, cwd: Path, env: dict[str, str], max_rss: int | None = None
) -> ProcessRun:
    """Run ``cmd`` with its output in ``log_file``; kill its tree after ``timeout`` s or above ``max_rss`` bytes."""
    with open(log_file, "wb") as out:
        start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        sampler = _TreeSampler(proc.pid, max_rss)
        sampler.start()
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            rc = proc.wait()
        seconds = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    killed = f"timed out after {timeout:g} s" if timed_out else ""
    if sampler.over_limit:
        killed = f"process tree RSS over the limit of {max_rss / 2**30:.1f} GiB" if max_rss else "RSS limit"
    text = log_file.read_text(encoding="utf-8", errors="replace")
    return ProcessRun(cmd, rc, timed_out, start, seconds, sampler.peak, sampler.peak_processes, text[-4000:], killed)


def clean_env() -> dict[str, str]:
    """The environment for a benchmarked process: this one without PYTHONPATH, quiet Python warnings.

    ``PYTHONDONTWRITEBYTECODE`` is dropped too: with it, an editable install (flruntime) compiles every
    module from source on every start while a pip-installed package (NVFlare) has its bytecode
    written at install time, which would not be a fair cold start.
    """
    dropped = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONWARNINGS"] = "ignore"
    return env


@dataclass
class Traces:
    """Executor traces: per round, when the first client received the task (Unix time)."""

    first_receive: dict[int, float] = field(default_factory=dict)
    last_return: dict[int, float] = field(default_factory=dict)
    tasks: int = 0
    sites: int = 0

    def round_period(self) -> float | None:
        """Mean time between the starts of consecutive rounds (seconds), or None with fewer than 2 rounds."""
        rounds = sorted(self.first_receive)
        if len(rounds) < 2:
            return None
        return (self.first_receive[rounds[-1]] - self.first_receive[rounds[0]]) / (rounds[-1] - rounds[0])


def read_traces(trace_dir: Path) -> Traces:
    """Read every ``<site>.txt`` the executors wrote."""
    traces = Traces()
    for path in sorted(trace_dir.glob("*.txt")):
        traces.sites += 1
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[0] == "None":
                continue
            rnd, received, returned = int(parts[0]), float(parts[1]), float(parts[2])
            traces.tasks += 1
            traces.first_receive[rnd] = min(traces.first_receive.get(rnd, received), received)
            traces.last_return[rnd] = max(traces.last_return.get(rnd, returned), returned)
    return traces


def read_result(path: Path) -> dict[str, Any] | None:
    """The persistor's last record, or None when it never saved."""
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


_NVFLARE_ROUND = re.compile(
    r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:[,.]\d+)?).*?Round (\d+) (started|finished)\.", re.MULTILINE
)


def parse_time(text: str) -> float:
    """A log line's timestamp (``2026-01-02 03:04:05,678`` or with ``.``, or without a fraction) as Unix time."""
    text = text.replace(",", ".")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).timestamp()


@dataclass
class LogRounds:
    """Round start / finish times parsed from a server log (Unix time)."""

    started: dict[int, float] = field(default_factory=dict)
    finished: dict[int, float] = field(default_factory=dict)
    resolution: float = 1.0  # seconds: the log's timestamp resolution
    source: str = ""

    def mean_duration(self) -> float | None:
        """Mean of ``finished - started`` over the rounds that have both."""
        both = [self.finished[r] - self.started[r] for r in self.started if r in self.finished]
        return sum(both) / len(both) if both else None


def nvflare_log_rounds(workspace: Path) -> LogRounds:
    """Parse ``Round N started.`` / ``Round N finished.`` from the NVFlare simulator's server log."""
    candidates = sorted(workspace.rglob("log.txt"), key=lambda p: ("server" not in p.parts, len(p.parts)))
    rounds = LogRounds()
    for path in candidates:
        text = path.read_text(encoding="utf-8", errors="replace")
        matches = list(_NVFLARE_ROUND.finditer(text))
        if not matches:
            continue
        rounds.source = str(path)
        rounds.resolution = 0.001 if re.search(r"[,.]\d+$", matches[0].group(1)) else 1.0
        for m in matches:
            target = rounds.started if m.group(3) == "started" else rounds.finished
            target.setdefault(int(m.group(2)), parse_time(m.group(1)))
        break
    return rounds


_FLRUNTIME_WORKFLOW = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d+) .*workflow '[^']+' started", re.MULTILINE)


def log_first_round_start(tool: str, workspace: Path) -> float | None:
    """Unix time at which the server log says the workflow began its first round, or None.

    NVFlare: the first ``Round N started.`` line. flruntime logs no line per round; its
    ``workflow '...' started`` line (just before the persistor loads the initial model) is used.
    """
    if tool == "nvflare":
        rounds = nvflare_log_rounds(workspace)
        return min(rounds.started.values()) if rounds.started else None
    log = workspace / "server" / "log.txt"
    if not log.is_file():
        return None
    match = _FLRUNTIME_WORKFLOW.search(log.read_text(encoding="utf-8", errors="replace"))
    return parse_time(match.group(1)) if match else None


def nvflare_error_lines(workspace: Path, console: str, limit: int = 5) -> list[str]:
    """The first few ERROR / exception lines of an NVFlare run (console and logs), for reporting failures."""
    lines: list[str] = []
    texts = [console] + [p.read_text(encoding="utf-8", errors="replace") for p in sorted(workspace.rglob("log.txt"))]
    for text in texts:
        for line in text.splitlines():
            if (" ERROR " in line or "Error:" in line or "Exception" in line) and line.strip() not in lines:
                lines.append(line.strip()[:400])
                if len(lines) >= limit:
                    return lines
    return lines


def flruntime_command() -> list[str]:
    """The ``flruntime`` console script of this interpreter's environment (``python -m flruntime`` fallback)."""
    import sys

    script = Path(sys.executable).parent / "flruntime"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "flruntime"]


def nvflare_command(python: Path) -> list[str]:
    """The ``nvflare`` console script next to the NVFlare environment's interpreter."""
    script = python.parent / "nvflare"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "nvflare.cli"]


def nvflare_available(python: Path) -> bool:
    """Whether ``python`` exists and imports nvflare."""
    if not python.is_file():
        return False
    proc = subprocess.run([str(python), "-c", "import nvflare"], capture_output=True, check=False)
    return proc.returncode == 0


def nvflare_version(python: Path) -> str:
    """NVFlare's installed version in that environment."""
    code = "from importlib.metadata import version; print(version('nvflare'))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def ratio(nvflare: float | None, flruntime: float | None) -> float | None:
    """``nvflare / flruntime`` or None when either is missing or zero."""
    if nvflare is None or flruntime is None or flruntime <= 0:
        return None
    return nvflare / flruntime


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    """A number for the table, or ``-``."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def mib(n: int | None) -> float | None:
    """Bytes to MiB."""
    return None if n is None else n / 2**20


# Runs flruntime's simulator in a fresh interpreter with one cProfile profiler per thread (the
# server's main thread and every client engine thread), then writes the merged statistics.
_PROFILE_ALL_THREADS = textwrap.dedent(
    """\
    import cProfile, pstats, sys, threading
    job, clients, workspace, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    profilers = []

    def _start(*_):
        sys.setprofile(None)
        prof = cProfile.Profile()
        profilers.append(prof)
        prof.enable()

    main = cProfile.Profile()
    profilers.append(main)
    threading.setprofile(_start)
    main.enable()
    from flruntime.runtime.simulator import simulate
    result = simulate(job, n_clients=clients, workspace=workspace, progress=None)
    main.disable()
    stats = pstats.Stats(main)
    for prof in profilers[1:]:
        prof.create_stats()
        stats.add(prof)
    stats.dump_stats(out)
    print(result.status, result.seconds, result.seconds_per_round)
    """
)


def profile_flruntime_threads(job: Path, clients: int, root: Path, timeout: float, top: int = 15) -> str:
    """Profile a flruntime simulator run over all its threads; return the top functions as text.

    The run is in-process (``flruntime.runtime.simulator.simulate``) in a fresh interpreter, so
    imports are included; each thread gets its own cProfile profiler and the statistics are added
    together, so "own time" sums over threads that may have run at the same time.
    """
    import pstats
    import sys

    out = root / "threads.prof"
    cmd = [sys.executable, "-c", _PROFILE_ALL_THREADS, str(job), str(clients), str(root / "ws_profile"), str(out)]
    run = run_process(cmd, root / "profile_console.txt", timeout, root, clean_env())
    if not out.is_file():
        return f"profiling failed (exit {run.rc}): {run.output_tail[-800:]}"
    stats = pstats.Stats(str(out))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    lines = [
        f"cProfile of flruntime's simulator, all threads ({clients} clients, {run.seconds:.2f} s under the profiler; "
        f"status, seconds, seconds per round: {run.output_tail.strip().splitlines()[-1] if run.output_tail else '?'}):"
    ]
    for title, index in (("own time", 2), ("cumulative", 3)):
        lines.append(f"  top {top} by {title} (seconds, calls, file:function):")
        entries = [kv for kv in raw.items() if index == 2 or not kv[0][0].startswith(("<frozen", "<string>", "~"))]
        for (file, line, func), (_cc, nc, tt, ct, _callers) in sorted(
            entries, key=lambda kv: kv[1][index], reverse=True
        )[:top]:
            where = f"{short_path(file)}:{func}" + (f" (line {line})" if line else "")
            lines.append(f"    {tt if index == 2 else ct:8.3f}  {nc:>8}  {where}")
    return "\n".join(lines)


def short_path(file: str) -> str:
    """A source path relative to site-packages, the standard library or the repository."""
    for marker in ("/site-packages/", "/lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def find_nvflare(python: Path) -> str | None:
    """Return the NVFlare version of the venv at ``python``, or None (saying how to create the venv)."""
    if nvflare_available(python):
        return nvflare_version(python)
    print(f"NVFlare not found at {python}; create it with:\n  {NVFLARE_SETUP}\n", file=sys.stderr)
    return None


def vm_hwm(pid: int) -> int | None:
    """The kernel's peak RSS (``VmHWM``) of ``pid`` in bytes, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


MIB = 2**20


def split(params: int, arrays: int) -> list[int]:
    """Split ``params`` into ``arrays`` sizes that differ by at most one."""
    arrays = max(1, min(arrays, params))
    base, extra = divmod(params, arrays)
    return [base + (1 if i < extra else 0) for i in range(arrays)]


def seconds(a: float | None, b: float | None) -> float | None:
    """``b - a`` rounded to milliseconds, or None when either is unknown."""
    return None if a is None or b is None else round(b - a, 3)


def peak_fields(peak_rss: int, vm_hwm: int | None) -> dict[str, float | None]:
    """A process's peak memory for a JSON record (MiB): the larger of the sampled peak and VmHWM, and each."""
    return {
        "peak_rss_mib": round(max(peak_rss, vm_hwm or 0) / MIB, 1),
        "sampled_rss_mib": round(peak_rss / MIB, 1),
        "vm_hwm_mib": None if vm_hwm is None else round(vm_hwm / MIB, 1),
    }
