"""Helpers for Client API tests: FedAvg jobs whose clients run a training script (in process or launched).

Every script "trains" by adding its site number k to every parameter and reports k local steps, so after
a FedAvg round each parameter grows by the step-weighted mean Σk·k / Σk of the sites that contributed.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

NVF_SAG = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
NVF_INPROC = "nvflare.app_common.executors.in_process_client_api_executor.InProcessClientAPIExecutor"
NVF_PT_INPROC = "nvflare.app_opt.pt.in_process_client_api_executor.PTInProcessClientAPIExecutor"
NVF_LAUNCHER_EXEC = "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor"
NVF_PT_LAUNCHER_EXEC = "nvflare.app_opt.pt.client_api_launcher_executor.PTClientAPILauncherExecutor"
NVF_SUBPROCESS = "nvflare.app_common.launchers.subprocess_launcher.SubprocessLauncher"
NVF_FILE_PIPE = "nvflare.fuel.utils.pipe.file_pipe.FilePipe"
NVF_CELL_PIPE = "nvflare.fuel.utils.pipe.cell_pipe.CellPipe"

#: The initial global model (a 3 → 2 linear layer, named like torch.nn.Linear's state_dict).
INITIAL = {"weight": [[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], "bias": [0.25, -0.25]}

PARTS = textwrap.dedent(
    '''
    """Server parts: a persistor that starts from fixed params and saves the final model."""

    import numpy as np

    from flruntime.roles import ModelPersistor
    from flruntime.runtime.messages import ModelMessage


    class FixedPersistor(ModelPersistor):
        def __init__(self, params: dict) -> None:
            self.params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}

        def load(self, ctx):
            return ModelMessage({k: v.copy() for k, v in self.params.items()})

        def save(self, model, ctx):
            np.savez(ctx.workspace / "final.npz", **model.params)
    '''
)

#: A numpy training script; writes its pid to OUT/pids.txt and "clean-exit" to OUT/exit.txt when done.
NUMPY_SCRIPT = textwrap.dedent(
    """
    import argparse
    import os
    import sys

    import numpy as np

    import flruntime.client as flare

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="")
    parser.add_argument("--crash-round", type=int, default=-1)
    parser.add_argument("--crash-site", default="site-1")
    parser.add_argument("--fail-round", type=int, default=-1)
    parser.add_argument("--stop-after", type=int, default=-1)
    parser.add_argument("--freeze-round", type=int, default=-1)
    parser.add_argument("--send-full", action="store_true")
    args = parser.parse_args()
    argv = sys.argv[1:]  # read before flare.init(): other sites' scripts may set sys.argv after it

    flare.init()
    site = flare.get_site_name()
    k = int(site.rsplit("-", 1)[1])
    if args.out:
        with open(os.path.join(args.out, "pids.txt"), "a") as fh:
            fh.write(f"{os.getpid()}\\n")
    done = 0
    while flare.is_running():
        model = flare.receive()
        assert flare.is_train() and not flare.is_evaluate() and flare.get_task_name() == "train"
        assert flare.get_job_id() == flare.system_info()["job_id"]
        rnd = model.current_round
        if site == args.crash_site and rnd == args.crash_round:
            marker = os.path.join(args.out, "crashed.txt")
            if not os.path.exists(marker):
                open(marker, "w").write(str(__import__("time").time()))
                os._exit(3)
        if site == args.crash_site and rnd == args.freeze_round:
            import signal
            os.kill(os.getpid(), signal.SIGSTOP)
        if site == args.crash_site and rnd == args.fail_round:
            raise ValueError(f"{site} cannot train round {rnd}")
        params = {n: np.asarray(v) + k for n, v in model.params.items()}
        flare.send(flare.FLModel(params=params, metrics={"loss": 1.0 / k}, meta={"NUM_STEPS_CURRENT_ROUND": k}))
        done += 1
        if site == args.crash_site and done == args.stop_after:
            break
    if args.out:
        with open(os.path.join(args.out, "exit.txt"), "a") as fh:
            fh.write(f"clean-exit {site} argv={argv}\\n")
    """
)

#: A PyTorch training script: state_dict in, state_dict out (FULL; the API sends DIFF when asked to).
TORCH_SCRIPT = textwrap.dedent(
    """
    import torch

    import flruntime.client as flare

    flare.init()
    k = int(flare.get_site_name().rsplit("-", 1)[1])
    net = torch.nn.Linear(3, 2)
    while flare.is_running():
        model = flare.receive()
        assert all(isinstance(v, torch.Tensor) for v in model.params.values()), model.params
        net.load_state_dict(model.params)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(k)
        steps = torch.tensor(k)
        flare.send(flare.FLModel(params=net.state_dict(), metrics={"acc": torch.tensor(0.5)},
                                 meta={"NUM_STEPS_CURRENT_ROUND": int(steps)}))
    """
)


def expected_model(rounds: list[list[int]]) -> dict[str, np.ndarray]:
    """The global model after rounds in which the given sites contributed (each adds Σk·k / Σk)."""
    shift = sum(sum(k * k for k in sites) / sum(sites) for sites in rounds)
    return {name: np.asarray(value, dtype=np.float32) + np.float32(shift) for name, value in INITIAL.items()}


def client_job(
    root: Path,
    executor: dict[str, Any],
    *,
    components: list[dict[str, Any]] | None = None,
    scripts: dict[str, str] | None = None,
    num_rounds: int = 2,
    min_clients: int = 2,
    expected_data_kind: str = "WEIGHT_DIFF",
    ignore_result_error: bool | None = None,
) -> Path:
    """Write a FedAvg job whose client app runs ``executor`` for the ``train`` task."""
    app = root / "app"
    (app / "config").mkdir(parents=True)
    (app / "custom").mkdir(parents=True)
    (app / "custom" / "parts.py").write_text(PARTS)
    for name, text in (scripts or {"train.py": NUMPY_SCRIPT}).items():
        (app / "custom" / name).write_text(text)
    server = {
        "format_version": 2,
        "workflows": [
            {
                "id": "sag",
                "path": NVF_SAG,
                "args": {
                    "min_clients": min_clients,
                    "num_rounds": num_rounds,
                    "wait_time_after_min_received": 0,
                    "persistor_id": "persistor",
                    "ignore_result_error": ignore_result_error,
                },
            }
        ],
        "components": [
            {"id": "persistor", "path": "parts.FixedPersistor", "args": {"params": INITIAL}},
            {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
            {
                "id": "aggregator",
                "name": "InTimeAccumulateWeightedAggregator",
                "args": {"expected_data_kind": expected_data_kind},
            },
        ],
    }
    client = {
        "format_version": 2,
        "executors": [{"tasks": ["train"], "executor": executor}],
        "components": components or [],
    }
    meta = {"name": root.name, "min_clients": min_clients, "deploy_map": {"app": ["@ALL"]}}
    (root / "meta.json").write_text(json.dumps(meta))
    (app / "config" / "config_fed_server.json").write_text(json.dumps(server))
    (app / "config" / "config_fed_client.json").write_text(json.dumps(client))
    return root


def final_model(workspace: Path) -> dict[str, np.ndarray]:
    """The global model the server saved at the end of the run."""
    with np.load(workspace / "server" / "final.npz") as data:
        return {k: data[k] for k in data.files}


def assert_model(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same variables, same values (float32 tolerance)."""
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def alive(pid: int) -> bool:
    """True when a process with this id exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
