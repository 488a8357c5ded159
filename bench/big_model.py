"""Benchmark: one FedAvg round with a big model (25M and 250M float32 parameters), flruntime vs NVFlare 2.9.

The FedAvg job of ``bench/_fedavg_jobs.py`` (each tool's own ``ScatterAndGather``,
``InTimeAccumulateWeightedAggregator`` with ``WEIGHT_DIFF`` and ``FullModelShareableGenerator``; a
persistor of float32 zeros and an executor returning ``+1.0`` per parameter in ``custom/``) runs
with 2 clients (``--clients``) for one round (``--rounds``), once per model size (``--sizes``,
default ``25e6,250e6`` parameters). The parameters are split into ``--arrays`` equal float32
arrays (default 4; 250M parameters are 4 arrays of 62.5M, 1 GB in all). Each run is a cold command,
exactly as a user would type it::

    flruntime simulate JOB -n 2 -w WS
    .venv-nvflare/bin/nvflare simulator JOB -n 2 -t 2 -w WS

Before the sizes, each tool runs the same job with a 10-parameter model: its numbers are the
baseline that the "model copies" column subtracts. What is measured per tool and size:

* ``round_s``: the tool's own round time: for flruntime the ``seconds_per_round`` of its
  ``results.json`` (from the workflow's round start to its round done event: make the task data,
  send it to every client, run the executors, send the results back, aggregate, update the global
  model, persist it); for NVFlare the time between its server log's ``Round 0 started.`` and
  ``Round 0 finished.`` lines (millisecond timestamps), which span the same steps in its
  ``ScatterAndGather``. With more rounds, the mean over the rounds.
* ``round_extra_s``: ``round_s`` minus the baseline's ``round_s``: the part of the round that the
  model's size costs (NVFlare's round includes its clients' task polling, about 2-4 s with
  any model, which this takes out).
* ``wall_s``: wall time of the whole command (interpreter start to exit).
* ``time_to_first_task_s``: from the process start to the first executor receiving its task (the
  executors write a Unix timestamp per task); it includes making the initial model and, for a big
  model, serialising and sending it.
* ``peak_rss_mib``: peak of the summed RSS of the process and all its descendants (NVFlare's
  simulator runs its clients in worker processes), sampled every 20 ms with psutil; shared pages
  count once per process.
* ``model_copies``: ``(peak_rss - baseline peak_rss) / model bytes``: how many model-sized buffers the
  runtime holds at its peak, all processes together. One client round needs at least: the global
  model, each client's copy of it, each client's result and the aggregate.
* ``ok`` / ``error``: exit status 0 and the final model equal to ``rounds * 1.0``; otherwise what
  happened: the time limit (``--timeout``, default 600 s per run), the RSS limit (``--max-rss-gib``,
  default 18 GiB: the tree is killed above it to keep the machine usable), or the first error lines
  of the tool's console and logs.

``--profile`` then runs flruntime once more at the smallest size, in a fresh interpreter with
one cProfile profiler per thread (server and client engines), and prints the functions with the
most own time and the most cumulative time as ``file:function``.

The table puts both tools side by side with the ratio NVFlare / flruntime; the last line is one
JSON object with every number. Without the NVFlare environment, only flruntime is measured and the
command that creates the environment is printed.

Usage::

    python bench/big_model.py [--sizes 25e6,250e6] [--clients 2] [--rounds 1] [--arrays 4]
                              [--nvflare-python PATH] [--timeout 600] [--max-rss-gib 18] [--keep] [--profile]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fedavg_jobs as jobs  # noqa: E402

BASELINE_PARAMS = 10
FLOAT32_BYTES = 4


@dataclass
class SizeRun:
    """One tool at one model size."""

    tool: str
    params: int
    model_mib: float
    ok: bool
    round_s: float | None = None
    round_extra_s: float | None = None  # round_s minus the baseline's round_s
    wall_s: float | None = None
    time_to_first_task_s: float | None = None
    peak_rss_mib: float | None = None
    peak_processes: int | None = None
    model_copies: float | None = None
    bytes_to_clients: int | None = None  # flruntime's results.json
    bytes_to_server: int | None = None
    rc: int | None = None
    error: str = ""


def run_size(tool: str, params: int, args: argparse.Namespace, root: Path) -> SizeRun:
    """Generate the job for ``tool`` with a model of ``params`` float32 values, run it once, read its numbers."""
    root.mkdir(parents=True)
    spec = jobs.JobSpec(sizes=jobs.split(params, args.arrays), num_rounds=args.rounds, min_clients=args.clients)
    folder = jobs.write_job(root, tool, spec)
    ws = root / f"{tool}_ws"
    n = str(args.clients)
    if tool == "flruntime":
        cmd = [*jobs.flruntime_command(), "simulate", str(folder.job), "-n", n, "-w", str(ws)]
    else:
        cmd = [*jobs.nvflare_command(args.nvflare_python), "simulator", str(folder.job)]
        cmd += ["-n", n, "-t", n, "-w", str(ws)]
    max_rss = int(args.max_rss_gib * 2**30)
    run = jobs.run_process(cmd, root / f"{tool}_console.txt", args.timeout, root, jobs.clean_env(), max_rss)
    result = SizeRun(tool, params, params * FLOAT32_BYTES / 2**20, ok=False, rc=run.rc, wall_s=run.seconds)
    result.peak_rss_mib = jobs.mib(run.peak_rss)
    result.peak_processes = run.peak_processes
    traces = jobs.read_traces(folder.trace_dir)
    if traces.first_receive:
        result.time_to_first_task_s = min(traces.first_receive.values()) - run.start
    errors: list[str] = []
    if tool == "flruntime":
        summary_file = ws / "results.json"
        if summary_file.is_file():
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
            result.round_s = summary.get("seconds_per_round")
            result.bytes_to_clients = summary.get("bytes_to_clients")
            result.bytes_to_server = summary.get("bytes_to_server")
            if summary.get("error"):
                errors.append(str(summary["error"]))
    else:
        result.round_s = jobs.nvflare_log_rounds(ws).mean_duration()
    final = jobs.read_result(folder.result_file)
    expected = args.rounds * jobs.STEP
    if not run.ok:
        errors.insert(0, run.killed or f"exit status {run.rc}")
    if traces.tasks != args.rounds * args.clients:
        errors.append(f"{traces.tasks} of {args.rounds * args.clients} tasks ran")
    if final is None or abs(float(final["p0_first"]) - expected) > 1e-4:
        errors.append(f"final model {final} (expected p0_first={expected})")
    if errors:
        if tool == "nvflare":
            errors += jobs.nvflare_error_lines(ws, run.output_tail)
        else:
            errors += run.output_tail.strip().splitlines()[-5:]
    result.error = "; ".join(errors)
    result.ok = not errors
    return result


def _copies(run: SizeRun, baseline: SizeRun | None) -> float | None:
    if baseline is None or run.peak_rss_mib is None or baseline.peak_rss_mib is None or run.params <= 0:
        return None
    return (run.peak_rss_mib - baseline.peak_rss_mib) / run.model_mib


ROWS = [
    ("round time, own log (s)", "round_s", 3),
    ("round time - 10-param round (s)", "round_extra_s", 3),
    ("wall time, cold CLI (s)", "wall_s", 2),
    ("time to first task (s)", "time_to_first_task_s", 2),
    ("peak RSS, process tree (MiB)", "peak_rss_mib", 0),
    ("model copies at peak", "model_copies", 1),
]


def print_table(
    sizes: list[int], ours: dict[int, SizeRun], theirs: dict[int, SizeRun] | None
) -> dict[str, dict[str, float | None]]:
    """Print the side-by-side table; return the NVFlare / flruntime ratios by size and metric."""
    ratios: dict[str, dict[str, float | None]] = {}
    header = f"{'params':>8}  {'metric':<30} {'flruntime':>11} {'nvflare':>11} {'nv/fl':>8}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        mine, other = ours[size], (theirs or {}).get(size)
        label = f"{size / 1e6:g}M" if size >= 1e6 else str(size)
        ratios[str(size)] = {}
        for name, key, digits in ROWS:
            a = getattr(mine, key)
            b = getattr(other, key) if other else None
            r = jobs.ratio(b, a) if mine.ok and other is not None and other.ok else None
            ratios[str(size)][key] = r
            cells = f"{jobs.fmt(a, '', digits):>11} {jobs.fmt(b, '', digits):>11} {jobs.fmt(r, 'x', 1):>8}"
            print(f"{label:>8}  {name:<30} {cells}")
        status = f"{'ok' if mine.ok else 'FAILED'} / {('ok' if other.ok else 'FAILED') if other else '-'}"
        print(f"{label:>8}  {'run checked (fl / nv)':<30} {status:>23}")
    return ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="25e6,250e6", help="comma-separated parameter counts (default 25e6,250e6)")
    parser.add_argument("--clients", type=int, default=2, help="number of clients (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="FedAvg rounds per run (default 1)")
    parser.add_argument("--arrays", type=int, default=4, help="number of parameter arrays (default 4)")
    parser.add_argument("--nvflare-python", type=Path, default=jobs.DEFAULT_NVFLARE_PYTHON)
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a run is killed (default 600)")
    parser.add_argument("--max-rss-gib", type=float, default=18, help="kill a run whose tree RSS exceeds this")
    parser.add_argument("--keep", action="store_true", help="keep the generated jobs, workspaces and logs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile flruntime (all threads) at the smallest size and print hotspots",
    )
    args = parser.parse_args(argv)
    try:
        args.size_list = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated numbers, got {args.sizes!r}")
    if not args.size_list or min(args.size_list) < 1:
        parser.error("--sizes needs at least one size, each at least 1")
    if args.clients < 1 or args.rounds < 1 or args.arrays < 1:
        parser.error("--clients, --rounds and --arrays must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version = jobs.find_nvflare(args.nvflare_python)
    nv = version is not None
    tools = ["flruntime", "nvflare"] if nv else ["flruntime"]
    base = Path(tempfile.mkdtemp(prefix="bench_big_model_"))
    results: dict[str, dict[int, SizeRun]] = {tool: {} for tool in tools}
    baselines: dict[str, SizeRun] = {}
    try:
        for tool in tools:
            baselines[tool] = run_size(tool, BASELINE_PARAMS, args, base / f"{tool}_baseline")
            print(f"  {tool} baseline ({BASELINE_PARAMS} params): {_brief(baselines[tool])}", file=sys.stderr)
        for size in args.size_list:
            for tool in tools:
                run = run_size(tool, size, args, base / f"{tool}_{size}")
                run.model_copies = _copies(run, baselines[tool])
                base_round = baselines[tool].round_s
                if run.round_s is not None and base_round is not None:
                    run.round_extra_s = run.round_s - base_round
                results[tool][size] = run
                print(f"  {tool} {size:g} params: {_brief(run)}", file=sys.stderr, flush=True)
        print(f"\nFedAvg, {args.clients} clients, {args.rounds} round(s), float32 model in {args.arrays} arrays")
        print(f"flruntime (Python {platform.python_version()}) vs NVFlare {version or '(not installed)'}\n")
        ratios = print_table(args.size_list, results["flruntime"], results.get("nvflare"))
        for tool in tools:
            for size, run in results[tool].items():
                if not run.ok:
                    print(f"\n{tool} with {size:g} params FAILED: {run.error}")
        if args.profile:
            size = min(args.size_list)
            root = base / "profile"
            root.mkdir()
            spec = jobs.JobSpec(sizes=jobs.split(size, args.arrays), num_rounds=args.rounds, min_clients=args.clients)
            folder = jobs.write_job(root, "flruntime", spec)
            print(f"\nflruntime with {size:g} params: ", end="")
            print(jobs.profile_flruntime_threads(folder.job, args.clients, root, args.timeout))
        if args.keep:
            print(f"\nkept: {base}")
        record = {
            "bench": "big_model",
            "clients": args.clients,
            "rounds": args.rounds,
            "arrays": args.arrays,
            "python": platform.python_version(),
            "nvflare_version": version,
            "baseline": {tool: asdict(run) for tool, run in baselines.items()},
            "flruntime": {str(size): asdict(run) for size, run in results["flruntime"].items()},
            "nvflare": {str(size): asdict(run) for size, run in results["nvflare"].items()} if nv else None,
            "ratios_nvflare_over_flruntime": ratios if nv else None,
        }
        print(json.dumps(record), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def _brief(run: SizeRun) -> str:
    status = "ok" if run.ok else f"FAILED: {run.error[:300]}"
    return (
        f"round {jobs.fmt(run.round_s, ' s', 3)}, wall {jobs.fmt(run.wall_s, ' s', 2)}, "
        f"peak RSS {jobs.fmt(run.peak_rss_mib, ' MiB', 0)}, {status}"
    )


if __name__ == "__main__":
    sys.exit(main())
