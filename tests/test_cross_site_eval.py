"""Cross-site evaluation end to end: FedAvg with a PyTorch persistor and model selector, then CSE."""

import json

import numpy as np
import pytest
import torch
from flruntime.components.workflows.cross_site_eval import CrossSiteModelEval
from wfkit import NET, Engines, write_job

from flruntime.cli.main import main
from flruntime.runtime.messages import ModelMessage
from flruntime.runtime.server import RunStatus
from flruntime.runtime.simulator import simulate
from flruntime.transport.codec import decode

NV = "nvflare.app_common."
CLIENT = {"executors": [{"tasks": ["train", "submit_model", "validate"], "executor": {"path": "wf_parts.CSEExecutor"}}]}


def pt_job(root):
    """FedAvg (3 rounds) on Net's 3 zero weights, then CSE; every class named by its NVFlare path."""
    server = {
        "num_rounds": 3,
        "workflows": [
            {
                "id": "fedavg",
                "path": NV + "workflows.scatter_and_gather.ScatterAndGather",
                "args": {"min_clients": 2, "num_rounds": "{num_rounds}", "persistor_id": "persistor"},
            },
            {
                "id": "cse",
                "path": NV + "workflows.cross_site_model_eval.CrossSiteModelEval",
                "args": {"model_locator_id": "model_locator", "submit_model_timeout": 600},
            },
        ],
        "components": [
            {
                "id": "persistor",
                "path": "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
                "args": {"model": {"path": "net.Net", "args": {"n_in": 2}}},
            },
            {
                "id": "shareable_generator",
                "path": NV + "shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator",
            },
            {
                "id": "aggregator",
                "path": NV + "aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator",
            },
            {
                "id": "model_selector",
                "path": NV + "widgets.intime_model_selector.IntimeModelSelector",
                "args": {"key_metric": "val_acc"},
            },
            {
                "id": "model_locator",
                "path": "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator",
                "args": {"pt_persistor_id": "persistor"},
            },
            {"id": "json_generator", "path": NV + "widgets.validation_json_generator.ValidationJsonGenerator"},
        ],
    }
    return write_job(root, server, CLIENT, custom={"net.py": NET})


def test_fedavg_then_cross_site_eval_in_the_simulator(tmp_path):
    result = simulate(pt_job(tmp_path / "job"), n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:COMPLETED", result.error
    server = tmp_path / "ws" / "server"
    # each round adds the mean of 1 and 2 to every weight; the received model's metric -(Σw - 4.5)² is best in
    # round 1, whose global model (1.5 everywhere) becomes the best model
    final = torch.load(server / "FL_global_model.pt", weights_only=True)["model"]
    best = torch.load(server / "best_FL_global_model.pt", weights_only=True)["model"]
    assert {k: v.tolist() for k, v in final.items()} == {"fc.weight": [[4.5, 4.5]], "fc.bias": [4.5]}
    assert {k: v.tolist() for k, v in best.items()} == {"fc.weight": [[1.5, 1.5]], "fc.bias": [1.5]}
    assert result.best_metric == 0.0
    # score = Σ model weights + k on site-k; client models: the round-2 global (3.0) + k; server: 4.5 and 1.5
    expected = {
        f"site-{k}": {
            "site-1": {"score": 12.0 + k},
            "site-2": {"score": 15.0 + k},
            "SRV_FL_global_model.pt": {"score": 13.5 + k},
            "SRV_best_FL_global_model.pt": {"score": 4.5 + k},
        }
        for k in (1, 2)
    }
    cse = server / "cross_site_val"
    assert json.loads((cse / "cross_val_results.json").read_text()) == expected
    assert result.files["cross_site_val/cross_val_results.json"] == str(cse / "cross_val_results.json")
    assert (cse / "cross_val_results.png").read_bytes()[:4] == b"\x89PNG"
    owners = ["SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt", "site-1", "site-2"]
    assert sorted(p.name for p in (cse / "model_shareables").iterdir()) == owners
    site1_model = decode((cse / "model_shareables" / "site-1").read_bytes())
    assert isinstance(site1_model, ModelMessage) and site1_model.params["fc.bias"].tolist() == [4.0]
    assert sorted(p.name for p in (cse / "result_shareables").iterdir()) == sorted(
        f"{site}_{owner}" for site in ("site-1", "site-2") for owner in owners
    )
    one = decode((cse / "result_shareables" / "site-2_SRV_best_FL_global_model.pt").read_bytes())
    assert isinstance(one, ModelMessage) and one.metrics == {"score": 6.5}


def np_job(root, cse_args, client_args=None, fedavg=True):
    workflows = [{"id": "cse", "name": "CrossSiteModelEval", "args": {"model_locator_id": "locator", **cse_args}}]
    if fedavg:
        args = {"min_clients": 2, "num_rounds": 1, "persistor_id": "persistor", "wait_time_after_min_received": 0}
        workflows.insert(0, {"id": "fedavg", "name": "ScatterAndGather", "args": args})
    server = {
        "workflows": workflows,
        "components": [
            {"id": "persistor", "name": "NPModelPersistor"},
            {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
            {"id": "aggregator", "name": "InTimeAccumulateWeightedAggregator"},
            {"id": "locator", "name": "NPModelLocator"},
            {"id": "json", "name": "ValidationJsonGenerator"},
        ],
    }
    client = {
        "executors": [
            {**CLIENT["executors"][0], "executor": {"path": "wf_parts.CSEExecutor", "args": client_args or {}}}
        ]
    }
    return write_job(root, server, client)


def test_a_failed_validation_is_recorded_empty_and_left_out_of_the_json(tmp_path):
    job = np_job(tmp_path / "job", {"cleanup_models": True}, {"fail_site": "site-2", "fail_owner": "site-1"})
    engines = Engines(job, tmp_path / "ws", running=["site-1", "site-2"], registered=[])
    outcome = engines.run()
    assert outcome.status == RunStatus.COMPLETED, outcome.error
    # NVFlare's initial array (Σ = 45, 9 values) + 1.5 per value after one round = 58.5; clients: 45 + 9k
    table = {
        "site-1": {"SRV_server": {"score": 59.5}, "site-1": {"score": 55.0}, "site-2": {"score": 64.0}},
        "site-2": {"SRV_server": {"score": 60.5}, "site-1": {}, "site-2": {"score": 65.0}},
    }
    cse = engines.server.graph.components["cse"]
    assert isinstance(cse, CrossSiteModelEval) and cse.results == table
    del table["site-2"]["site-1"]
    out = tmp_path / "ws" / "server" / "cross_site_val"
    assert json.loads((out / "cross_val_results.json").read_text()) == table
    assert not (out / "model_shareables").exists()  # cleanup_models
    assert sorted(p.name for p in (out / "result_shareables").iterdir()) == [
        "site-1_SRV_server",
        "site-1_site-1",
        "site-1_site-2",
        "site-2_SRV_server",
        "site-2_site-2",
    ]
    saved = np.load(tmp_path / "ws" / "server" / "models" / "server.npy")
    assert saved.dtype == np.float32 and saved.tolist() == [[2.5, 3.5, 4.5], [5.5, 6.5, 7.5], [8.5, 9.5, 10.5]]


def test_only_participating_clients_take_part(tmp_path):
    job = np_job(tmp_path / "job", {"participating_clients": ["site-1"]}, fedavg=False)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:COMPLETED", result.error
    out = tmp_path / "ws" / "server" / "cross_site_val" / "cross_val_results.json"
    # site-1 never trained: it submits zeros (score 0 + 1); no server model was saved, so none is validated
    assert json.loads(out.read_text()) == {"site-1": {"site-1": {"score": 1.0}}}
    server_log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert "cannot load model 'server'" in server_log
    assert "the model locator has no model 'server'; it is not validated" in server_log


def test_participating_clients_that_never_connect_fail_the_job(tmp_path):
    job = np_job(tmp_path / "job", {"participating_clients": ["site-1", "site-9"], "wait_for_clients_timeout": 0})
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert (
        result.error == "RuntimeError: cross-site evaluation: participating clients site-9 did not connect within 0.0 s"
    )
    assert json.loads((tmp_path / "ws" / "server" / "cross_site_val" / "cross_val_results.json").read_text()) == {}


def test_a_cross_site_evaluation_before_any_model_fails_the_job_and_names_why(tmp_path, capsys):
    # NVFlare's numpy parts, no training first: the clients have no local model, the server none to locate
    server = {
        "workflows": [{"id": "cse", "name": "CrossSiteModelEval", "args": {"model_locator_id": "locator"}}],
        "components": [{"id": "locator", "name": "NPModelLocator"}, {"id": "json", "name": "ValidationJsonGenerator"}],
    }
    client = {
        "executors": [
            {"tasks": ["submit_model"], "executor": {"path": NV + "np.np_trainer.NPTrainer"}},
            {"tasks": ["validate"], "executor": {"path": NV + "np.np_validator.NPValidator"}},
        ]
    }
    job, ws = tmp_path / "job", tmp_path / "ws"
    (job / "app" / "config").mkdir(parents=True)
    (job / "meta.json").write_text(json.dumps({"name": "cse_only", "deploy_map": {"app": ["@ALL"]}}))
    (job / "app" / "config" / "config_fed_server.json").write_text(json.dumps({"format_version": 2, **server}))
    (job / "app" / "config" / "config_fed_client.json").write_text(json.dumps({"format_version": 2, **client}))
    assert main(["simulate", str(job), "-n", "2", "-w", str(ws), "-q"]) == 3
    no_model = "EXECUTION_EXCEPTION: FileNotFoundError: NPTrainer: no local model at {} (this site has not trained yet)"
    error = (
        "RuntimeError: cross-site evaluation evaluated nothing: no client submitted a model ("
        + "; ".join(f"site-{k}: " + no_model.format(ws / f"site-{k}" / "model" / "best_numpy.npy") for k in (1, 2))
        + ") and the model locator found no server model (it has no model 'server')"
    )
    out, err = capsys.readouterr()
    assert out == f"cse_only: FINISHED:EXECUTION_EXCEPTION; results in {ws}/results.json\n"
    assert err == f"flruntime: the job did not complete: {error} (see {ws}/server/log.txt)\n"
    results = json.loads((ws / "results.json").read_text())
    assert (results["status"], results["error"]) == ("FINISHED:EXECUTION_EXCEPTION", error)
    assert json.loads((ws / "server" / "cross_site_val" / "cross_val_results.json").read_text()) == {}
    assert error.removeprefix("RuntimeError: ") in (ws / "server" / "log.txt").read_text()


def test_a_cross_site_evaluation_whose_every_validation_failed_fails_the_job(tmp_path):
    # site-1 submits its (untrained) model and cannot validate it; the server has no model to add
    cse_args = {"participating_clients": ["site-1"]}
    job = np_job(tmp_path / "job", cse_args, {"fail_site": "site-1", "fail_owner": "site-1"}, fedavg=False)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert result.error == (
        "RuntimeError: cross-site evaluation evaluated nothing: every validation of the 1 model(s) failed "
        "(model site-1 on site-1: EXECUTION_EXCEPTION: RuntimeError: cannot validate site-1)"
    )


def test_sent_tasks():
    assert CrossSiteModelEval.sent_tasks({}) == {"submit_model", "validate"}
    assert CrossSiteModelEval.sent_tasks({"validation_task_name": "val"}) == {"submit_model", "val"}


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"submit_model_timeout": -1}, "submit_model_timeout must not be negative, got -1"),
        ({"task_check_period": 0}, "task_check_period must be positive, got 0"),
        ({"cross_val_dir": "../x"}, "cross_val_dir must be a relative folder inside the workspace, got '../x'"),
    ],
)
def test_argument_checks(kwargs, text):
    with pytest.raises(ValueError) as info:
        CrossSiteModelEval(**kwargs)
    assert str(info.value) == text
