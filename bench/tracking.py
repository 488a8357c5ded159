"""Benchmark: metrics per second delivered into MLflow by flruntime's and NVFlare's ``MLflowReceiver``.

The workload is what a server-side MLflow receiver gets from a federation: ``--sites`` sites (8 by
default) each log ``--scalars`` scalars (10) per step for ``--steps`` steps (1,000), one record per
value (``MLflowWriter.log_metric`` style: data type METRIC, writer MLFLOW), so 80,000 values by
default. Records arrive interleaved: step by step, site by site, scalar by scalar. The value of scalar
``k`` of site number ``s`` at step ``t`` is ``s * 1000 + k + t / 1024`` (exact in binary), so every
value read back can be checked.

The store is an embedded SQLite database in a fresh temporary folder for every run (each receiver's
default location), or, with ``--uri http://HOST:PORT``, a running MLflow tracking server (each run
writes its own experiment there).

What is timed, for each tool:

* setup (reported, not part of the throughput): constructing the receiver and starting it, which
  opens the store (SQLite: creates the schema). NVFlare's ``initialize`` also creates the experiment
  and one run per site here; flruntime creates them lazily, so its stream pays for that.
* stream: from the first record handed to the receiver until its end-of-run call has returned, that
  is, until every value is durably in the store and the runs are ended.
* fire: from the first record until the last one has been handed over (how long the caller, i.e. the
  server engine's event thread, was held up).

``metrics/s`` is the number of values found correct when read back divided by the stream seconds.

flruntime (in this process): ``flruntime.components.tracking.mlflow_receiver.MLflowReceiver`` is set
up with a ``RunContext`` and an ``EventBus`` for the server; every record is fired on the bus as the
server engine fires a client's federated event: ``bus.fire("fed.analytix_log_stats", origin=site,
record=record_dict)``, the record dict being ``AnalyticsRecord.to_dict()`` as it comes off the wire.
The stream ends when ``receiver.teardown(ctx)`` returns (its writer thread flushed and joined).

NVFlare 2.9.0 (a subprocess run by the interpreter of a separate virtual environment, see
``--nvflare-python``): ``bench/_nvflare_tracking.py`` builds the server job's FLContext (NVFlare's
``FLContextManager``, a real ``Workspace``, real ``Client`` objects behind a two-method stand-in
engine), constructs ``nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver``, calls
``initialize(fl_ctx)``, feeds ``save(fl_ctx, shareable, site)`` one shareable per value, built with
NVFlare's ``create_analytic_dxo(..., global_step=step)``, and calls ``finalize(fl_ctx)``. Both receivers
use their default ``buffer_flush_time`` of 1 s.

All records are built before the clock starts, for both tools. Afterwards this process reads every
run of the tool's experiment back with ``MlflowClient.get_metric_history`` and checks that each
(site, scalar, step) holds exactly one value, the one logged.

Output: a table (tool, setup, stream and fire seconds, metrics/s, values read back, correct), the
throughput ratio flruntime / NVFlare, then one JSON line with every number. ``--profile`` adds a
cProfile summary of one extra flruntime run (the event thread and the receiver's writer thread,
file:function). Without the NVFlare environment only flruntime's numbers are reported, with the
command that creates it. The exit status is 1 when flruntime's values do not all read back correctly.

Usage::

    python bench/tracking.py [--sites 8] [--scalars 10] [--steps 1000] [--uri http://127.0.0.1:5000]
                             [--repeat 1] [--nvflare-python PATH] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_NVFLARE_PYTHON = REPO_ROOT / ".venv-nvflare" / "bin" / "python"
NVFLARE_DRIVER = BENCH_DIR / "_nvflare_tracking.py"
NVFLARE_SETUP = "python3 -m venv .venv-nvflare && .venv-nvflare/bin/pip install nvflare==2.9.0 mlflow"
RUN_NAME = "bench"


def value_of(site: int, scalar: int, step: int) -> float:
    """Return the logged value of scalar ``scalar`` of site number ``site`` (1-based) at ``step``."""
    return site * 1000.0 + scalar + step / 1024


def site_names(count: int) -> list[str]:
    """Return the site names ``site-1`` .. ``site-<count>``."""
    return [f"site-{i}" for i in range(1, count + 1)]


@dataclass
class Readback:
    """What was found in the store for one run of the benchmark.

    Attributes:
        runs: MLflow runs in the tool's experiment.
        values: metric values read back, over every run and key of the experiment.
        correct: (site, scalar, step) triples holding exactly one value, the one logged.
        missing: triples with no value.
        duplicates: values beyond the first one for a triple.
        wrong: triples whose single value differs from the logged one, plus values in runs or keys
            that belong to no site or scalar.
        problems: the first few problems, in words.
    """

    runs: int = 0
    values: int = 0
    correct: int = 0
    missing: int = 0
    duplicates: int = 0
    wrong: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Keep ``text`` among the first few problems."""
        if len(self.problems) < 5:
            self.problems.append(text)


@dataclass
class RunResult:
    """One timed run of one tool."""

    tool: str
    setup_s: float
    fire_s: float
    stream_s: float
    values_sent: int
    readback: Readback
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    @property
    def metrics_per_s(self) -> float:
        """Values read back correctly per second of stream."""
        return self.readback.correct / self.stream_s if self.stream_s > 0 else 0.0


def read_back(uri: str, experiment: str, job_id: str, args: argparse.Namespace) -> Readback:
    """Read every run of ``experiment`` back and check each site's values against ``value_of``.

    A run belongs to a site when its name starts with ``<site>-<job id[:6]>-`` (the naming of both
    receivers).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    result = Readback()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        result.missing = args.sites * args.scalars * args.steps
        result.note(f"experiment {experiment!r} not found in {uri}")
        return result
    runs = list(client.search_runs([found.experiment_id], max_results=1000))
    result.runs = len(runs)
    keys = {f"metric_{k}": k for k in range(args.scalars)}
    # (site number, scalar) -> step -> values
    seen: dict[tuple[int, int], dict[int, list[float]]] = {}
    prefixes = {f"{site}-{job_id[:6]}-": i for i, site in enumerate(site_names(args.sites), start=1)}
    for run in runs:
        name = run.info.run_name or ""
        site = next((i for prefix, i in prefixes.items() if name.startswith(prefix)), None)
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            result.values += len(history)
            if site is None or key not in keys:
                result.wrong += len(history)
                result.note(f"{len(history)} values of {key!r} in run {name!r}, which is no site's")
                continue
            steps = seen.setdefault((site, keys[key]), {})
            for metric in history:
                steps.setdefault(metric.step, []).append(metric.value)
    for site in range(1, args.sites + 1):
        for k in range(args.scalars):
            steps = seen.get((site, k), {})
            for step in range(args.steps):
                got = steps.pop(step, [])
                if not got:
                    result.missing += 1
                    continue
                result.duplicates += len(got) - 1
                if got[0] == value_of(site, k, step):
                    result.correct += 1
                else:
                    result.wrong += 1
                    result.note(f"site-{site} metric_{k} step {step}: {got[0]} != {value_of(site, k, step)}")
            stray = sum(len(v) for v in steps.values())
            if stray:
                result.wrong += stray
                result.note(f"site-{site} metric_{k}: {stray} values at steps never logged")
    if result.missing:
        result.note(f"{result.missing} of {args.sites * args.scalars * args.steps} values missing")
    if result.duplicates:
        result.note(f"{result.duplicates} duplicate values")
    return result


# --- flruntime ------------------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile every thread started while installed (``threading.setprofile``), one profiler each.

    The hook runs at the first call in a new thread and enables a fresh ``cProfile.Profile``, which
    replaces the hook for that thread.
    """

    def __init__(self) -> None:
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        profiler = cProfile.Profile()
        with self._lock:
            self.profiles.append((threading.current_thread().name, profiler))
        profiler.enable()


def flruntime_stream(site_count: int, scalars: int, steps: int) -> list[tuple[str, dict[str, Any]]]:
    """Return every (site, record dict) in arrival order, as the server engine gets them off the wire."""
    from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

    stream = []
    sites = site_names(site_count)
    for step in range(steps):
        for s, site in enumerate(sites, start=1):
            for k in range(scalars):
                record = AnalyticsRecord.make(
                    f"metric_{k}", value_of(s, k, step), AnalyticsDataType.METRIC, LogWriterName.MLFLOW, step
                )
                stream.append((site, record.to_dict()))
    return stream


def run_flruntime(
    args: argparse.Namespace, root: Path, experiment: str, profiles: ThreadProfiles | None = None
) -> RunResult:
    """Stream the workload through flruntime's MLflowReceiver once (profiled when ``profiles`` is given)."""
    from flruntime.components.tracking.mlflow_receiver import MLflowReceiver

    from flruntime.events.bus import EventBus
    from flruntime.events.types import EventType
    from flruntime.runtime.context import RunContext

    job_id = str(uuid.uuid4())
    workspace, app_dir = root / "server", root / "app"
    app_dir.mkdir(parents=True)
    ctx = RunContext(job_id, "server", workspace, app_dir, EventBus("server"))
    stream = flruntime_stream(args.sites, args.scalars, args.steps)
    event = str(EventType.FED_ANALYTIX_LOG_STATS)
    fire = ctx.bus.fire

    start = time.perf_counter()
    receiver = MLflowReceiver(
        tracking_uri=args.uri or None, kw_args={"experiment_name": experiment, "run_name": RUN_NAME}
    )
    if profiles is not None:
        threading.setprofile(profiles.hook)
    try:
        receiver.setup(ctx)
    finally:
        threading.setprofile(None)
    setup_s = time.perf_counter() - start
    if not receiver.active:
        raise RuntimeError("flruntime's MLflowReceiver did not start (see the log above)")

    main_profile = cProfile.Profile() if profiles is not None else None
    if main_profile is not None:
        main_profile.enable()
    start = time.perf_counter()
    for site, record in stream:
        fire(event, origin=site, record=record)
    fired = time.perf_counter()
    if main_profile is not None and profiles is not None:
        main_profile.disable()  # teardown only waits for the writer thread, profiled on its own
        profiles.profiles.insert(0, ("event thread, until the last record is handed over", main_profile))
    receiver.teardown(ctx)
    end = time.perf_counter()

    notes = []
    if receiver.dropped:
        notes.append(f"receiver reports {receiver.dropped} records dropped")
    if receiver.written != len(stream):
        notes.append(f"receiver reports {receiver.written} records written of {len(stream)}")
    uri = str(receiver.uri)
    readback = read_back(uri, experiment, job_id, args)
    return RunResult("flruntime", setup_s, fired - start, end - start, len(stream), readback, uri, notes)


# --- NVFlare --------------------------------------------------------------------------------------


def nvflare_versions(python: Path) -> tuple[str | None, str]:
    """Return (NVFlare version, "") when ``python`` has NVFlare and MLflow, else (None, why not)."""
    if not python.is_file():
        return None, f"no NVFlare environment at {python}; create it with:\n  {NVFLARE_SETUP}"
    code = "import nvflare, mlflow; print(nvflare.__version__, mlflow.__version__)"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, (
            f"{python} cannot import nvflare and mlflow ({last}); install them with:\n"
            f"  {python.parent / 'pip'} install nvflare==2.9.0 mlflow"
        )
    return proc.stdout.split()[0], ""


def run_nvflare(args: argparse.Namespace, root: Path, experiment: str) -> RunResult:
    """Stream the workload through NVFlare's MLflowReceiver once, in the NVFlare environment."""
    root.mkdir(parents=True)
    out = root / "result.json"
    cmd = [str(args.nvflare_python), str(NVFLARE_DRIVER), "--root", str(root / "workspace"), "--out", str(out)]
    cmd += ["--sites", str(args.sites), "--scalars", str(args.scalars), "--steps", str(args.steps)]
    cmd += ["--experiment", experiment]
    if args.uri:
        cmd += ["--uri", args.uri]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=root)
    (root / "console.txt").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"the NVFlare driver failed (exit {proc.returncode}):\n{tail}")
    data = json.loads(out.read_text(encoding="utf-8"))
    notes = []
    if data["save_errors"]:
        notes.append(f"save() raised {data['save_errors']} times, e.g. {data['save_error_samples']}")
    if data["finalize_error"]:
        notes.append(f"finalize() raised {data['finalize_error']}")
    readback = read_back(data["tracking_uri"], experiment, data["job_id"], args)
    return RunResult(
        f"nvflare {data['version']}",
        data["setup_s"],
        data["fire_s"],
        data["stream_s"],
        data["values"],
        readback,
        data["tracking_uri"],
        notes,
    )


# --- reporting ------------------------------------------------------------------------------------


def median_run(runs: list[RunResult]) -> RunResult:
    """Return the run with the median stream time (the lower one of the middle two)."""
    return sorted(runs, key=lambda r: r.stream_s)[(len(runs) - 1) // 2]


def print_table(rows: list[RunResult]) -> None:
    header = (
        f"{'tool':<16} {'setup s':>8} {'stream s':>9} {'fire s':>8} {'metrics/s':>11} "
        f"{'values read back':>17} {'correct':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.tool:<16} {r.setup_s:8.3f} {r.stream_s:9.3f} {r.fire_s:8.3f} {r.metrics_per_s:11,.0f} "
            f"{r.readback.values:>17,} {r.readback.correct:>9,}"
        )


def _short(file: str) -> str:
    """Return ``file`` relative to site-packages, the repository or the standard library."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1]
    for root, label in ((str(REPO_ROOT) + "/", ""), (sysconfig.get_paths()["stdlib"] + "/", "stdlib/")):
        if file.startswith(root):
            return label + file[len(root) :]
    return file


def profile_summary(args: argparse.Namespace, base: Path, top: int) -> str:
    """Run flruntime once more under cProfile (event thread and writer thread); return the hot spots."""
    profiles = ThreadProfiles()
    result = run_flruntime(args, base / "profile", f"bench-tracking-profile-{uuid.uuid4().hex[:8]}", profiles)
    lines = [
        f"cProfile of one flruntime run ({result.stream_s:.2f} s stream under the profiler, "
        f"{result.readback.correct:,} values correct):"
    ]
    for name, profiler in profiles.profiles:
        stats = pstats.Stats(profiler, stream=io.StringIO())
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        total = sum(v[2] for v in raw.values())
        lines.append(f"  [{name}] {total:.2f} s of own time profiled")
        for title, index in (("own time", 2), ("cumulative", 3)):
            lines.append(f"    top {top} by {title} (seconds, calls, file:function):")
            ranked = sorted(raw.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
            for (file, line, func), (_cc, nc, tt, ct, _callers) in ranked:
                where = f"{_short(file)}:{func}" + (f" (line {line})" if line else "")
                lines.append(f"      {ct if index == 3 else tt:8.3f}  {nc:>8}  {where}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", type=int, default=8, help="sites logging metrics (default 8)")
    parser.add_argument("--scalars", type=int, default=10, help="scalars per site and step (default 10)")
    parser.add_argument("--steps", type=int, default=1000, help="steps (default 1000)")
    parser.add_argument("--uri", default="", help="an MLflow tracking server (http://...); default: embedded SQLite")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the median stream time is shown")
    parser.add_argument("--nvflare-python", type=Path, default=DEFAULT_NVFLARE_PYTHON)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the NVFlare run is killed")
    parser.add_argument("--profile", action="store_true", help="also profile one flruntime run (cProfile)")
    parser.add_argument("--top", type=int, default=15, help="functions per profile table (default 15)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and logs in the temporary folder")
    args = parser.parse_args(argv)
    for name in ("sites", "scalars", "steps", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.uri and not args.uri.startswith(("http://", "https://")):
        parser.error("--uri must be an http:// or https:// MLflow tracking server")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    nv_version, why_not = nvflare_versions(args.nvflare_python)
    if nv_version is None:
        print(f"{why_not}\nReporting flruntime only.\n", file=sys.stderr)
    base = Path(tempfile.mkdtemp(prefix="bench_tracking_"))
    tag = uuid.uuid4().hex[:8]
    ours: list[RunResult] = []
    theirs: list[RunResult] = []
    nv_error = ""
    status = 1
    try:
        for i in range(args.repeat):
            ours.append(run_flruntime(args, base / f"flruntime_{i}", f"bench-tracking-flruntime-{tag}-{i}"))
            print(f"  flruntime run {i + 1}/{args.repeat}: {ours[-1].stream_s:.3f} s", file=sys.stderr, flush=True)
            if nv_version is not None and not nv_error:
                try:
                    theirs.append(run_nvflare(args, base / f"nvflare_{i}", f"bench-tracking-nvflare-{tag}-{i}"))
                    print(
                        f"  nvflare run {i + 1}/{args.repeat}: {theirs[-1].stream_s:.3f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    nv_error = str(exc)
        total = args.sites * args.scalars * args.steps
        store = args.uri or "embedded SQLite (a fresh temp dir per run)"
        print(
            f"\nMLflow receivers: {args.sites} sites x {args.scalars} scalars x {args.steps} steps = {total:,} "
            f"values, one record each; store: {store}; median of {args.repeat} run(s)"
        )
        print(
            f"flruntime (Python {platform.python_version()}, MLflow {mlflow.__version__}) vs NVFlare "
            f"{nv_version or '(not available)'}\n"
        )
        mine = median_run(ours)
        other = median_run(theirs) if theirs else None
        print_table([mine] + ([other] if other else []))
        ratio = mine.metrics_per_s / other.metrics_per_s if other and other.metrics_per_s else None
        print()
        if args.repeat > 1:
            for runs in (ours, theirs):
                if runs:
                    times = sorted(r.stream_s for r in runs)
                    print(
                        f"{runs[0].tool}: stream s over {len(times)} runs: min {times[0]:.3f}, "
                        f"median {statistics.median(times):.3f}, max {times[-1]:.3f}"
                    )
        if ratio is not None:
            print(f"throughput ratio flruntime / NVFlare: {ratio:.2f}x")
        if nv_error:
            print(f"NVFlare run failed: {nv_error}")
        for r in [mine] + ([other] if other else []):
            for note in r.notes + r.readback.problems:
                print(f"{r.tool}: {note}")
        if args.profile:
            print("\n" + profile_summary(args, base, args.top))
        if args.keep:
            print(f"\nkept: {base}")
        record = {
            "bench": "tracking",
            "sites": args.sites,
            "scalars": args.scalars,
            "steps": args.steps,
            "values": total,
            "store": args.uri or "sqlite",
            "repeat": args.repeat,
            "python": platform.python_version(),
            "mlflow_version": mlflow.__version__,
            "nvflare_version": nv_version,
            "flruntime": _summary(mine, ours),
            "nvflare": _summary(other, theirs) if other else None,
            "nvflare_error": nv_error or None,
            "throughput_ratio_flruntime_over_nvflare": ratio,
        }
        print(json.dumps(record), flush=True)
        status = 0 if mine.readback.correct == total and not mine.readback.duplicates else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return status


def _summary(run: RunResult, runs: list[RunResult]) -> dict[str, Any]:
    return {
        "setup_s": run.setup_s,
        "stream_s": run.stream_s,
        "fire_s": run.fire_s,
        "metrics_per_s": run.metrics_per_s,
        "stream_s_all": [r.stream_s for r in runs],
        "values_sent": run.values_sent,
        "readback": asdict(run.readback),
        "notes": run.notes,
        "median_of": len(runs),
        "stream_s_stdev": statistics.stdev([r.stream_s for r in runs]) if len(runs) > 1 else None,
    }


if __name__ == "__main__":
    sys.exit(main())
