"""End to end: the fedavg_pt template (the README's main job) in the simulator against centralised training."""

import json

import pytest
import torch

from flruntime.graph.locate import job_imports
from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

pytestmark = pytest.mark.slow

ROUNDS, SITES = 20, 4


def test_fedavg_pt_matches_central_training(tmp_path):
    job = create_job(
        "fedavg_pt", tmp_path / "job", overrides={"num_rounds": ROUNDS, "alpha": 100.0, "lr": 0.1, "num_sites": SITES}
    )
    result = simulate(job, n_clients=SITES, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    assert result.rounds_completed == ROUNDS and len(result.round_metrics) == ROUNDS
    with job_imports(job / "app" / "custom"):
        from central import central_accuracy
        from digits_data import central_datasets
        from fedavg_net import DigitsCNN
        from training import accuracy

        net = DigitsCNN()
        saved = torch.load(tmp_path / "ws/server/FL_global_model.pt", weights_only=True)
        net.load_state_dict(saved["model"])
        federated = accuracy(net, central_datasets()[1])
        central = central_accuracy(ROUNDS, lr=0.1)
    assert federated >= 0.95, f"federated accuracy {federated:.4f} on the held-out set"
    assert federated >= central - 0.02, f"federated {federated:.4f} vs central {central:.4f} after {ROUNDS} epochs"

    matrix = json.loads((tmp_path / "ws/server/cross_site_val/cross_val_results.json").read_text())
    sites = [f"site-{k}" for k in range(1, SITES + 1)]
    models = {*sites, "SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt"}
    assert sorted(matrix) == sites
    for site in sites:
        assert set(matrix[site]) == models
        assert all(0.0 <= m["val_acc"] <= 1.0 for m in matrix[site].values())
    assert (tmp_path / "ws/server/cross_site_val/cross_val_results.png").stat().st_size > 0
    assert (tmp_path / "ws/training_curve.png").stat().st_size > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ws/server/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fedavg_pt").experiment_id])
    by_site = {r.data.tags["site"]: r for r in runs}
    assert set(by_site) == {*sites, "server"}
    for site in sites:
        history = client.get_metric_history(by_site[site].info.run_id, "val_acc_global_model")
        assert sorted(m.step for m in history) == list(range(ROUNDS))
        assert set(by_site[site].data.metrics) == {
            "val_acc_global_model",
            "val_acc_local_model",
            "train_loss",
            "learning_rate",
            "diff_norm",
            "global_round",
            "global_epoch",
        }


def test_cifar10_variant_says_what_is_missing(tmp_path):
    import importlib.util

    job = create_job("fedavg_pt", tmp_path / "job", overrides={"app_script": "train_cifar10.py", "num_rounds": 1})
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    log = (tmp_path / "ws/site-1/log.txt").read_text()
    if importlib.util.find_spec("torchvision") is None:
        assert "train_cifar10.py needs torchvision: pip install torchvision" in log
    else:
        assert "CIFAR-10 data not found under" in log and "this script never downloads" in log
