"""NVFlare's recipe API (2.7+) run by ``flruntime run``: recipe scripts in the shape of NVFlare's documentation.

PyTorch FedAvg with server-side MLflow tracking (``add_experiment_tracking``) and with MLflow receivers on the
sites (``analytics_receiver=False``) against a real ``mlflow server``; NumPy FedAvg with cross-site evaluation
(in process and launched); NumPy cross-site evaluation of saved models; a run in a ``PocEnv`` (real processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflowkit import free_port, start_server, stop_server

from flruntime.environments import PocEnv, ProdEnv, SimEnv
from flruntime.errors import JobApiError

MODEL = """
import torch


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
"""

PT_CLIENT = """
import torch
from model import TinyNet

import nvflare.client as flare
from nvflare.client.tracking import SummaryWriter


def main():
    flare.init()
    site = flare.get_site_name()
    gen = torch.Generator().manual_seed(sum(map(ord, site)))
    x = torch.randn(32, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    net = TinyNet()
    writer = SummaryWriter()
    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        net.load_state_dict(input_model.params)
        with torch.no_grad():
            accuracy = float((net(x).argmax(dim=1) == y).float().mean())
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(5):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
        writer.add_scalar("train_loss", float(loss), input_model.current_round)
        flare.send(
            flare.FLModel(params=net.state_dict(), metrics={"accuracy": accuracy}, meta={"NUM_STEPS_CURRENT_ROUND": 5})
        )


if __name__ == "__main__":
    main()
"""

SERVER_TRACKING_JOB = """
import argparse

from model import TinyNet

from nvflare.app_opt.pt.recipes import FedAvgRecipe
from nvflare.recipe import SimEnv, add_experiment_tracking


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking_uri", required=True)
    parser.add_argument("--workspace", default="/tmp/nvflare/simulation")
    args = parser.parse_args()

    recipe = FedAvgRecipe(
        name="fedavg_mlflow",
        min_clients=2,
        num_rounds=2,
        initial_model=TinyNet(),
        train_script="client.py",
    )
    add_experiment_tracking(
        recipe,
        "mlflow",
        tracking_config={
            "tracking_uri": args.tracking_uri,
            "kw_args": {"experiment_name": "nvflare-fedavg-experiment", "run_name": "nvflare-fedavg-run"},
        },
    )
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=args.workspace))
    print("Job Status is:", run.get_status())
    print("Result can be found in :", run.get_result())


if __name__ == "__main__":
    main()
"""

SITE_TRACKING_JOB = """
import argparse

from model import TinyNet

from nvflare.apis.analytix import ANALYTIC_EVENT_TYPE
from nvflare.app_opt.pt.recipes import FedAvgRecipe
from nvflare.app_opt.tracking.mlflow.mlflow_receiver import MLflowReceiver
from nvflare.recipe import SimEnv


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking_uri", required=True)
    parser.add_argument("--workspace", default="/tmp/nvflare/simulation")
    args = parser.parse_args()

    recipe = FedAvgRecipe(
        name="fedavg_mlflow_client",
        min_clients=2,
        num_rounds=2,
        initial_model=TinyNet(),
        train_script="client.py",
        analytics_receiver=False,  # no server-side tracking
    )
    for i in range(2):
        site_name = f"site-{i + 1}"
        receiver = MLflowReceiver(
            tracking_uri=args.tracking_uri,
            events=[ANALYTIC_EVENT_TYPE],  # the site's local events
            kw_args={"experiment_name": f"{site_name}-experiment", "run_name": f"{site_name}-run"},
        )
        recipe.job.to(receiver, site_name, id="mlflow_receiver")
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=args.workspace))
    print("Job Status is:", run.get_status())


if __name__ == "__main__":
    main()
"""

NP_CLIENT = """
import numpy as np

import nvflare.client as flare
from nvflare.client.tracking import SummaryWriter


def main():
    flare.init()
    writer = SummaryWriter()
    last = None
    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        if flare.is_submit_model():  # cross-site evaluation asks for the site's model
            flare.send(flare.FLModel(params={"numpy_key": last}))
            continue
        weights = input_model.params["numpy_key"]
        last = weights + 1
        writer.add_scalar("weight_mean", float(np.mean(last)), input_model.current_round)
        flare.send(
            flare.FLModel(
                params={"numpy_key": last}, metrics={"accuracy": float(np.mean(weights))},
                meta={"NUM_STEPS_CURRENT_ROUND": 1},
            )
        )


if __name__ == "__main__":
    main()
"""

NP_JOB = """
import argparse

from nvflare.app_common.np.recipes import NumpyFedAvgRecipe
from nvflare.recipe import SimEnv
from nvflare.recipe.utils import add_cross_site_evaluation


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_clients", type=int, default=2)
    parser.add_argument("--num_rounds", type=int, default=2)
    parser.add_argument("--workspace", default="/tmp/nvflare/simulation")
    parser.add_argument("--launch_external_process", action="store_true")
    args = parser.parse_args()

    recipe = NumpyFedAvgRecipe(
        name="hello-numpy",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        initial_model=[[1.0, 2.0], [3.0, 4.0]],
        train_script="client.py",
        launch_external_process=args.launch_external_process,
    )
    add_cross_site_evaluation(recipe)
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace))
    print("Job Status is:", run.get_status())
    print("Result can be found in :", run.get_result())


if __name__ == "__main__":
    main()
"""

NP_CSE_JOB = """
import argparse

from nvflare.app_common.np.recipes import NumpyCrossSiteEvalRecipe
from nvflare.recipe import SimEnv


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--workspace", default="/tmp/nvflare/simulation")
    args = parser.parse_args()

    recipe = NumpyCrossSiteEvalRecipe(
        name="numpy-cse",
        min_clients=2,
        model_dir=args.model_dir,
        model_name={"model_1": "model_1.npy", "model_2": "model_2.npy"},
    )
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=args.workspace))
    print("Job Status is:", run.get_status())


if __name__ == "__main__":
    main()
"""

POC_JOB = """
import argparse

import numpy as np

from nvflare.app_common.np.recipes import NumpyFedAvgRecipe
from nvflare.recipe import PocEnv


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()

    recipe = NumpyFedAvgRecipe(
        name="hello-numpy-poc",
        min_clients=2,
        num_rounds=2,
        initial_model=[[1.0, 2.0], [3.0, 4.0]],
        train_script="client.py",
    )
    env = PocEnv(num_clients=2, port=args.port)
    run = recipe.execute(env)
    try:
        result = run.get_result(timeout=240)
        print("Job Status is:", run.get_status())
        print("Global model:", np.load(f"{result}/models/server.npy").tolist())
    finally:
        env.stop(clean_poc=True)


if __name__ == "__main__":
    main()
"""


def flr_run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """``python -m flruntime run ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "flruntime", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    return folder


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``mlflow server`` for this module's tracking tests."""
    root = tmp_path_factory.mktemp("mlflow")
    port, store = free_port(), root / "store" / "mlflow.db"
    store.parent.mkdir()
    server = start_server(port, store, root / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


def _runs(uri: str, experiment: str) -> dict[str, dict[str, list[float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    out = {}
    for run in client.search_runs([found.experiment_id]):
        out[run.info.run_name] = {
            key: [m.value for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics
        }
    return out


def test_server_side_mlflow_tracking(tmp_path: Path, mlflow_uri: str) -> None:
    code = write(tmp_path / "code", model=MODEL, client=PT_CLIENT, job=SERVER_TRACKING_JOB)
    out = flr_run("job.py", "--tracking_uri", mlflow_uri, "--workspace", str(tmp_path / "ws"), cwd=code)
    assert out.returncode == 0, out.stderr
    server = tmp_path / "ws" / "fedavg_mlflow" / "server"
    assert out.stdout.splitlines()[-2:] == ["Job Status is: FINISHED:COMPLETED", f"Result can be found in : {server}"]
    runs = _runs(mlflow_uri, "nvflare-fedavg-experiment")
    assert sorted(runs) == [
        "server-simula-nvflare-fedavg-run",
        "site-1-simula-nvflare-fedavg-run",
        "site-2-simula-nvflare-fedavg-run",
    ]
    for site in ("site-1", "site-2"):
        assert len(runs[f"{site}-simula-nvflare-fedavg-run"]["train_loss"]) == 2
    assert (server / "FL_global_model.pt").is_file()
    assert sorted(p.name for p in (server / "tb_events").iterdir()) == ["site-1", "site-2"]  # 2.7's default receiver


def test_site_side_mlflow_receivers_without_server_tracking(tmp_path: Path, mlflow_uri: str) -> None:
    code = write(tmp_path / "code", model=MODEL, client=PT_CLIENT, job=SITE_TRACKING_JOB)
    out = flr_run("job.py", "--tracking_uri", mlflow_uri, "--workspace", str(tmp_path / "ws"), cwd=code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "Job Status is: FINISHED:COMPLETED"
    for site in ("site-1", "site-2"):
        runs = _runs(mlflow_uri, f"{site}-experiment")
        assert list(runs) == [f"{site}-simula-{site}-run"]
        assert len(runs[f"{site}-simula-{site}-run"]["train_loss"]) == 2
    server = tmp_path / "ws" / "fedavg_mlflow_client" / "server"
    assert (server / "FL_global_model.pt").is_file()
    assert not (server / "tb_events").exists() and not (server / "artifacts").exists()


@pytest.mark.parametrize("launched", [False, True], ids=["in-process", "external-process"])
def test_numpy_fedavg_with_cross_site_evaluation(tmp_path: Path, launched: bool) -> None:
    code = write(tmp_path / "code", client=NP_CLIENT, job=NP_JOB)
    args = ["job.py", "--workspace", str(tmp_path / "ws")] + (["--launch_external_process"] if launched else [])
    out = flr_run(*args, cwd=code)
    assert out.returncode == 0, out.stderr
    server = tmp_path / "ws" / "hello-numpy" / "server"
    assert out.stdout.splitlines()[-2:] == ["Job Status is: FINISHED:COMPLETED", f"Result can be found in : {server}"]
    np.testing.assert_array_equal(np.load(server / "models" / "server.npy"), [[3, 4], [5, 6]])  # +1 per round
    table = json.loads((server / "cross_site_val" / "cross_val_results.json").read_text())
    assert sorted(table) == ["site-1", "site-2"]
    for site in table:
        assert sorted(table[site]) == ["SRV_server", "site-1", "site-2"]
        assert all(set(metrics) == {"accuracy"} for metrics in table[site].values())


def test_numpy_cross_site_evaluation_of_saved_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    np.save(models / "model_1.npy", np.ones((2, 2), dtype=np.float32))
    np.save(models / "model_2.npy", np.full((2, 2), 5, dtype=np.float32))
    code = write(tmp_path / "code", job=NP_CSE_JOB)
    out = flr_run("job.py", "--model_dir", str(models), "--workspace", str(tmp_path / "ws"), cwd=code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "Job Status is: FINISHED:COMPLETED"
    server = tmp_path / "ws" / "numpy-cse" / "server"
    table = json.loads((server / "cross_site_val" / "cross_val_results.json").read_text())
    assert {site: sorted(row) for site, row in table.items()} == {
        "site-1": ["SRV_model_1", "SRV_model_2"],
        "site-2": ["SRV_model_1", "SRV_model_2"],
    }


@pytest.mark.slow
def test_a_recipe_in_a_poc_env(tmp_path: Path) -> None:
    from fedkit import FAST_ENV

    code = write(tmp_path / "code", client=NP_CLIENT, job=POC_JOB)
    env = {**FAST_ENV, "FLRUNTIME_POC_WORKSPACE": str(tmp_path / "poc")}
    out = flr_run("job.py", "--port", str(free_port()), cwd=code, env=env, timeout=400)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"Preparing and starting a POC federation in {tmp_path / 'poc'} ..."
    assert lines[1] == "POC federation started"
    assert lines[2].startswith("Submitted job 'hello-numpy-poc' with ID: ")
    assert lines[3:] == [
        "Job Status is: FINISHED:COMPLETED",
        "Global model: [[3.0, 4.0], [5.0, 6.0]]",
        f"Stopping the POC federation in {tmp_path / 'poc'} ...",
    ]
    assert not (tmp_path / "poc").exists()


# -- the recipe API's mistakes -----------------------------------------------------------------------------------


def test_recipe_exports_nvflare_27s_fedavg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flruntime.compat.jobapi.recipes import FedAvgRecipe

    code = write(tmp_path / "code", model=MODEL, client=PT_CLIENT)
    monkeypatch.chdir(code)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    from model import TinyNet

    recipe = FedAvgRecipe(name="pt", min_clients=2, initial_model=TinyNet(), train_script="client.py")
    root = recipe.export(str(tmp_path / "jobs"))
    sys.modules.pop("model", None)
    server = json.loads((root / "app/config/config_fed_server.json").read_text())
    assert [c["id"] for c in server["components"]] == [
        "json_generator",
        "model_selector",
        "receiver",
        "persistor",
        "locator",
        "shareable_generator",
        "aggregator",
    ]
    assert server["workflows"][0]["args"] == {
        "min_clients": 2,
        "num_rounds": 2,
        "wait_time_after_min_received": 0,
        "persistor_id": "persistor",
    }
    assert server["components"][3]["args"] == {"model": {"path": "model.TinyNet", "args": {}}}
    client = json.loads((root / "app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"] == {
        "path": "nvflare.app_opt.pt.in_process_client_api_executor.PTInProcessClientAPIExecutor",
        "args": {"task_script_path": "client.py"},
    }
    assert sorted(p.name for p in (root / "app/custom").iterdir()) == ["client.py", "model.py"]


def test_recipe_api_mistakes_are_one_line_value_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flruntime.compat.jobapi.recipes import NumpyFedAvgRecipe, Recipe, add_experiment_tracking

    monkeypatch.chdir(write(tmp_path / "code", client=NP_CLIENT))
    recipe = NumpyFedAvgRecipe(min_clients=1, train_script="client.py")
    cases = [
        (lambda: add_experiment_tracking(recipe, "neptune"), "Invalid tracking type: neptune"),
        (
            lambda: add_experiment_tracking(recipe, "mlflow", server_side=False),
            "At least one of server_side or client_side must be True",
        ),
        (
            lambda: SimEnv(num_clients=2, clients=["a", "b", "c"]),
            "Inconsistent number of clients: num_clients=2 but clients list has 3 entries.",
        ),
        (lambda: PocEnv(clients=[]), "clients list cannot be empty"),
        (lambda: PocEnv(gpu_ids=[0]), "PocEnv gpu_ids is not supported by flruntime"),
        (lambda: PocEnv(username="me"), "the POC's admin is admin@nvidia.com, not 'me'"),
        (
            lambda: ProdEnv(tmp_path / "no-kit"),
            f"startup_kit_location path does not exist: {tmp_path / 'no-kit'}",
        ),
        (lambda: Recipe(recipe.job).execute("sim"), "env must be SimEnv, PocEnv or ProdEnv, got str"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, JobApiError)
        assert str(info.value) == message
