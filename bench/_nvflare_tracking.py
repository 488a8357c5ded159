"""Drive NVIDIA FLARE 2.9.0's ``MLflowReceiver`` with a stream of metrics, for ``bench/tracking.py``.

This script is not part of the flruntime package and never imports it. ``bench/tracking.py`` runs it
with the Python interpreter of the separate NVFlare virtual environment (``.venv-nvflare/bin/python``,
with ``nvflare==2.9.0`` and ``mlflow`` installed) and reads the JSON it writes to ``--out``.

What it does, the way an NVFlare server job would:

1. Builds a throw-away server workspace (``nvflare.apis.workspace.Workspace`` wants ``startup/`` and
   ``local/`` folders) and the job's run folder, where the receiver puts its default SQLite store
   (``<run dir>/mlflow.db``) when no ``--uri`` is given.
2. Makes the server job's FLContext with NVFlare's own ``FLContextManager``: the engine, the job id,
   the identity ``server``, the process type ``SJ`` and the job's meta (name). The engine is a small
   stand-in offering only what the receiver calls: ``get_clients()`` (real ``nvflare.apis.client.Client``
   objects, one per site) and ``get_workspace()`` (the real ``Workspace``).
3. Builds every record beforehand (untimed) as NVFlare ships it: ``create_analytic_dxo(tag, value,
   METRIC, MLFLOW, global_step=step).to_shareable()`` -- one shareable per value, as
   ``MLflowWriter.log_metric`` sends them.
4. Times ``MLflowReceiver(...)`` + ``initialize(fl_ctx)`` (setup: the store, the experiment, one run per
   site), then, from the first ``save(fl_ctx, shareable, site)`` to ``finalize(fl_ctx)`` returning,
   the stream (``save`` flushes synchronously with ``log_batch``; ``finalize`` flushes the rest and
   ends the runs). As NVFlare's ``AnalyticsReceiver`` base does, an exception from ``save`` is caught
   and the stream goes on; such failures are counted and a few are reported.

The value of scalar ``k`` of site number ``s`` (1-based) at step ``t`` is ``s * 1000 + k + t / 1024``
(exact in binary floating point), the same formula as in ``bench/tracking.py``, which reads the store
back and checks every value.

Usage::

    .venv-nvflare/bin/python bench/_nvflare_tracking.py --root /tmp/x --out /tmp/x/result.json \\
        [--sites 8] [--scalars 10] [--steps 1000] [--uri http://127.0.0.1:5000] [--experiment NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from typing import Any


def value_of(site: int, scalar: int, step: int) -> float:
    """Return the logged value of scalar ``scalar`` of site number ``site`` at ``step``."""
    return site * 1000.0 + scalar + step / 1024


class StandInEngine:
    """The two engine methods ``MLflowReceiver`` calls on the server: the clients and the workspace."""

    def __init__(self, workspace: Any, clients: list[Any]) -> None:
        self._workspace = workspace
        self._clients = clients

    def get_workspace(self) -> Any:
        """Return the server's workspace."""
        return self._workspace

    def get_clients(self) -> list[Any]:
        """Return the job's clients."""
        return list(self._clients)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the stream once; return the timings and what the receiver reported."""
    import mlflow
    import nvflare
    from nvflare.apis.analytix import AnalyticsDataType, LogWriterName
    from nvflare.apis.client import Client
    from nvflare.apis.fl_constant import ProcessType, ReservedKey
    from nvflare.apis.fl_context import FLContextManager
    from nvflare.apis.job_def import JobMetaKey
    from nvflare.apis.utils.analytix_utils import create_analytic_dxo
    from nvflare.apis.workspace import Workspace
    from nvflare.app_opt.tracking.mlflow.mlflow_receiver import MLflowReceiver

    root = os.path.abspath(args.root)
    for folder in ("startup", "local"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    workspace = Workspace(root, "server")
    job_id = args.job_id
    os.makedirs(workspace.get_run_dir(job_id), exist_ok=True)
    sites = [f"site-{i}" for i in range(1, args.sites + 1)]
    engine = StandInEngine(workspace, [Client(name, str(uuid.uuid4())) for name in sites])
    manager = FLContextManager(
        engine=engine,
        identity_name="server",
        job_id=job_id,
        public_stickers={
            ReservedKey.PROCESS_TYPE: ProcessType.SERVER_JOB,
            ReservedKey.JOB_META: {JobMetaKey.JOB_NAME.value: args.job_name, JobMetaKey.JOB_ID.value: job_id},
        },
    )
    fl_ctx = manager.new_context()

    start = time.perf_counter()
    stream: list[tuple[str, Any]] = []
    for step in range(args.steps):
        for s, site in enumerate(sites, start=1):
            for k in range(args.scalars):
                dxo = create_analytic_dxo(
                    f"metric_{k}",
                    value_of(s, k, step),
                    AnalyticsDataType.METRIC,
                    LogWriterName.MLFLOW,
                    global_step=step,
                )
                stream.append((site, dxo.to_shareable()))
    build_s = time.perf_counter() - start

    start = time.perf_counter()
    receiver = MLflowReceiver(
        tracking_uri=args.uri or None,
        kw_args={"experiment_name": args.experiment, "run_name": "bench"},
        buffer_flush_time=args.buffer_flush_time,
    )
    receiver.initialize(fl_ctx)
    setup_s = time.perf_counter() - start

    errors = 0
    samples: list[str] = []
    start = time.perf_counter()
    for site, shareable in stream:
        try:
            receiver.save(fl_ctx, shareable, site)
        except Exception as exc:  # the AnalyticsReceiver base logs these and goes on
            errors += 1
            if len(samples) < 3:
                samples.append(f"{type(exc).__name__}: {exc}"[:300])
    fired = time.perf_counter()
    finalize_error = None
    try:
        receiver.finalize(fl_ctx)
    except Exception as exc:  # the base logs this too
        finalize_error = f"{type(exc).__name__}: {exc}"[:300]
    end = time.perf_counter()
    return {
        "tool": "nvflare",
        "version": nvflare.__version__,
        "mlflow_version": mlflow.__version__,
        "tracking_uri": mlflow.get_tracking_uri(),
        "experiment": args.experiment,
        "job_id": job_id,
        "values": len(stream),
        "build_s": build_s,
        "setup_s": setup_s,
        "fire_s": fired - start,
        "stream_s": end - start,
        "save_errors": errors,
        "save_error_samples": samples,
        "finalize_error": finalize_error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Stream metrics through NVFlare's MLflowReceiver.")
    parser.add_argument("--root", required=True, help="an empty folder for the server workspace")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--scalars", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--uri", default="", help="an MLflow tracking URI (default: the run dir's mlflow.db)")
    parser.add_argument("--experiment", default="bench-tracking-nvflare")
    parser.add_argument("--job-id", default=str(uuid.uuid4()))
    parser.add_argument("--job-name", default="bench_tracking")
    parser.add_argument("--buffer-flush-time", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
