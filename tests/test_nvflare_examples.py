"""NVFlare 2.4.2's hello-pt and hello-tf2 jobs, written on NVFlare's component API, run unchanged (but for data).

Their ``custom/`` code subclasses ``nvflare.apis.executor.Executor``, ``ModelLocator``, ``ModelPersistor`` and
``Filter`` and uses ``DXO``, ``Shareable``, ``FLContext``, ``fobs`` and ``PTModelPersistenceFormatManager``;
flruntime's ``nvflare`` shim provides them. See tests/nvcodekit.py for the one change to each copy.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from flruntime.compat import fobs
from flruntime.runtime.simulator import simulate
from tests import nvcodekit
from tests.fedkit import FAST_ENV, flr, free_port

#: hello-tf2's Net passes ``input_shape`` to its Flatten layer, which Keras 3 warns about (NVFlare's code, unchanged)
KERAS_INPUT_SHAPE = "ignore:Do not pass an `input_shape`/`input_dim` argument to a layer:UserWarning"


def _cross_val(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_hello_pt_runs_in_the_simulator_with_cross_site_evaluation(tmp_path: Path):
    import torch

    job = nvcodekit.hello_pt(tmp_path / "hello-pt")
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.rounds_completed, result.error) == ("FINISHED:COMPLETED", 2, "")
    matrix = _cross_val(tmp_path / "ws" / "server" / "cross_site_val" / "cross_val_results.json")
    assert sorted(matrix) == ["site-1", "site-2"]
    for site in ("site-1", "site-2"):
        assert sorted(matrix[site]) == ["SRV_server", "site-1", "site-2"]  # the PTModelLocator found the model
        assert all(0.0 <= m["val_acc"] <= 1.0 for m in matrix[site].values())
    saved = torch.load(tmp_path / "ws" / "server" / "FL_global_model.pt", weights_only=True)
    assert sorted(saved["model"]) == sorted(
        f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for kind in ("weight", "bias")
    )
    local = torch.load(tmp_path / "ws" / "site-1" / "models" / "local_model.pt", weights_only=True)
    assert set(local["model"]) == set(saved["model"])  # the trainer's own save under get_run_dir()


def test_hello_pt_252_runs_its_own_script_in_the_job_its_job_api_exports(tmp_path: Path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)  # the script saves ./cifar_net.pth where it runs
    job = nvcodekit.hello_pt_252(tmp_path / "hello-pt_cifar10_fedavg")
    result = simulate(job, workspace=tmp_path / "ws", progress=None)  # the deploy map names site-1 and site-2
    assert (result.status, result.rounds_completed, result.error) == ("FINISHED:COMPLETED", 2, "")
    saved = torch.load(tmp_path / "ws" / "server" / "FL_global_model.pt", weights_only=True)
    assert sorted(saved["model"]) == sorted(
        f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for kind in ("weight", "bias")
    )
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    for site in ("site-1", "site-2"):  # the script's SummaryWriter reached the server's TensorBoard receiver
        assert list((tmp_path / "ws" / "server" / "tb_events" / site).glob("events.out.tfevents.*")), site


@pytest.mark.filterwarnings(KERAS_INPUT_SHAPE)
def test_hello_tf2_runs_in_the_simulator_and_its_persistor_writes_fobs(tmp_path: Path):
    job = nvcodekit.hello_tf2(tmp_path / "hello-tf2")
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.rounds_completed, result.error) == ("FINISHED:COMPLETED", 3, "")
    with open(tmp_path / "ws" / "server" / "tf2weights.fobs", "rb") as f:
        model = fobs.load(f)
    weights = model["weights"]
    # the example names each weight after the layer at the weight's index: 4 arrays of its Net
    assert {k: v.shape for k, v in weights.items()} == {
        "flatten": (784, 128),
        "dense": (128,),
        "dropout": (128, 10),
        "dense_1": (10,),
    }
    assert all(np.isfinite(v).all() for v in weights.values())
    assert np.abs(weights["dense"]).sum() > 0  # trained biases, not the zero initial ones


@pytest.fixture
def poc(tmp_path: Path):
    env = {**os.environ, **FAST_ENV, "FLRUNTIME_POC_WORKSPACE": str(tmp_path / "poc")}
    env.pop("FLRUNTIME_ADMIN_KIT", None)
    out = flr("poc", "prepare", "-n", "2", "--port", str(free_port()), env=env)
    assert out.returncode == 0, out.stderr
    out = flr("poc", "start", env=env)
    assert out.returncode == 0, out.stderr
    log = tmp_path / "poc" / "example_project" / "prod_00" / "server" / "log.txt"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(re.findall(r"client 'site-\d' \(org \S+\) registered", log.read_text())) >= 2):
        assert time.monotonic() < deadline, "the POC clients did not register"
        time.sleep(0.2)
    yield env
    flr("poc", "stop", env=env)


def _submit(job: Path, env: dict[str, str], dest: Path) -> Path:
    out = flr("job", "submit", "-j", str(job), "--wait", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    done = re.match(r"submitted job (\S+)\njob \1: FINISHED:COMPLETED\n$", out.stdout)
    assert done, out.stdout
    out = flr("job", "download", done.group(1), "-o", str(dest), env=env)
    assert out.returncode == 0, out.stderr
    return dest / done.group(1)


@pytest.mark.slow
@pytest.mark.filterwarnings(KERAS_INPUT_SHAPE)
def test_hello_pt_and_hello_tf2_run_in_poc_mode(poc, tmp_path: Path):
    folder = _submit(nvcodekit.hello_pt(tmp_path / "hello-pt"), poc, tmp_path / "dl")
    matrix = _cross_val(folder / "cross_site_val" / "cross_val_results.json")
    assert {site: sorted(models) for site, models in matrix.items()} == {
        "site-1": ["SRV_server", "site-1", "site-2"],
        "site-2": ["SRV_server", "site-1", "site-2"],
    }
    folder = _submit(nvcodekit.hello_tf2(tmp_path / "hello-tf2"), poc, tmp_path / "dl")
    with open(folder / "tf2weights.fobs", "rb") as f:
        assert sorted(fobs.load(f)["weights"]) == ["dense", "dense_1", "dropout", "flatten"]
