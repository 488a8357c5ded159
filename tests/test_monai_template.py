"""The monai_bundle template end to end: 2 sites × 2 rounds of a MONAI bundle in the simulator.

Checks that FedAvg improves the bundle's Dice on held-out synthetic volumes, that every site's iteration loss and
epoch metrics reached the server's MLflow store through NVFlareStatsHandler → MetricsSender → MemoryPipe →
MetricRelay → ConvertToFedEvent → MLflowReceiver, and that cross-site evaluation scored every model on every site.
"""

import json
import shutil

import pytest
import torch
from monai.fl.client import MonaiAlgo
from monai.fl.utils.constants import ExtraItems
from monai.fl.utils.exchange_object import ExchangeObject
from monaikit import BUNDLE, synthetic_data
from test_monai_bundle import bundle_network

from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

ROUNDS, EPOCHS, TRAIN, BATCH = 2, 5, 8, 2
ITERATIONS = ROUNDS * EPOCHS * TRAIN // BATCH
SITES = ("site-1", "site-2")
MODELS = ("SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt", *SITES)


def held_out_dice(app, data, weights):
    """val_mean_dice of ``weights`` on ``data`` with the bundle's own evaluator (MONAI's MonaiAlgo.evaluate)."""
    algo = MonaiAlgo(bundle_root=f"config/{BUNDLE}", config_train_filename=None, eval_kwargs={"dataset_dir": str(data)})
    algo.initialize(extra={ExtraItems.CLIENT_NAME: "held-out", ExtraItems.APP_ROOT: str(app)})
    try:
        return algo.evaluate(ExchangeObject(weights=weights)).metrics["val_mean_dice"]
    finally:
        algo.finalize()


def mlflow_metrics(ws):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'server' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("monai_bundle").experiment_id])
    return {
        run.data.tags["site"]: {
            name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
            for name in run.data.metrics
        }
        for run in runs
        if run.data.tags["site"] != "server"
    }


@pytest.mark.slow
def test_monai_bundle_template_in_the_simulator(tmp_path):
    overrides = {"num_rounds": ROUNDS, "local_epochs": EPOCHS, "num_train": TRAIN, "data_root": str(tmp_path / "data")}
    job = create_job("monai_bundle", tmp_path / "job", overrides=overrides)
    # the bundle ships initial weights, so the test knows the model FedAvg started from
    torch.manual_seed(0)
    initial = bundle_network(job / "app" / "config" / BUNDLE).state_dict()
    (job / "app" / "config" / BUNDLE / "models").mkdir()
    torch.save(initial, job / "app" / "config" / BUNDLE / "models" / "initial.pt")
    server_config = job / "app" / "config" / "config_fed_server.json"
    server = json.loads(server_config.read_text())
    server["components"][0]["args"]["source_ckpt_filename"] = "models/initial.pt"
    server_config.write_text(json.dumps(server))

    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    assert result.rounds_completed == ROUNDS
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == list(SITES)  # generated at the sites' start
    assert not (job / "app" / "config" / BUNDLE / "eval").exists()  # the sites wrote into their own copies
    for site in SITES:
        assert (tmp_path / "ws" / site / "app" / "config" / BUNDLE / "models" / "model.pt").is_file()

    # FedAvg improved on the initial model, measured on volumes no site has seen
    held_out = tmp_path / "held_out"
    synthetic_data().write_dataset(held_out, num_train=1, num_val=6, size=32, seed=12345)
    app = tmp_path / "eval_app"
    shutil.copytree(job / "app", app)
    final = torch.load(tmp_path / "ws" / "server" / "FL_global_model.pt", weights_only=True)["model"]
    before, after = held_out_dice(app, held_out, initial), held_out_dice(app, held_out, final)
    assert after > 0.5 and after > before + 0.2, (before, after)

    # every site's iteration loss and epoch metrics are in the server's MLflow store
    metrics = mlflow_metrics(tmp_path / "ws")
    assert sorted(metrics) == list(SITES)
    epochs = ROUNDS * EPOCHS
    for site, got in metrics.items():
        assert sorted(got) == ["learning_rate", "loss", "train_mean_dice", "val_mean_dice"], site
        assert [step for step, _ in got["loss"]] == list(range(1, ITERATIONS + 1))
        assert [step for step, _ in got["train_mean_dice"]] == list(range(1, epochs + 1))
        assert got["learning_rate"] == [(e, 0.01 * 0.5 ** (e // 10)) for e in range(1, epochs + 1)]
        # the received global model, validated before each round's training (steps 1 and 6), then the CSE models
        # (the last of these may still be on its way when the server stops recording: the job has ended by then)
        validations = got["val_mean_dice"]
        assert [step for step, _ in validations[:ROUNDS]] == [1, EPOCHS + 1]
        assert ROUNDS < len(validations) <= ROUNDS + len(MODELS)
        assert all(0.0 <= value <= 1.0 for _, value in validations)

    # cross-site evaluation: every site scored every model with the bundle's evaluator
    cse = json.loads((tmp_path / "ws" / "server" / "cross_site_val" / "cross_val_results.json").read_text())
    assert sorted(cse) == list(SITES)
    for site in SITES:
        assert sorted(cse[site]) == sorted(MODELS)
        assert all(set(scores) == {"val_mean_dice"} for scores in cse[site].values())
        assert cse[site]["SRV_FL_global_model.pt"]["val_mean_dice"] > 0.5
