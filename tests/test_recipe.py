import json
import sys
import textwrap

import pytest

import flruntime
from flruntime.errors import UsageError
from flruntime.recipe import FedAvgRecipe
from flruntime.tracking.add import add_experiment_tracking

NET = textwrap.dedent(
    """
    import torch


    class TinyNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)
    """
)
SCRIPT = textwrap.dedent(
    """
    import argparse

    import torch

    import flruntime.client as flare

    parser = argparse.ArgumentParser()
    parser.add_argument("--step", type=float, default=1.0)
    args = parser.parse_args()
    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        params = {k: v + args.step for k, v in model.params.items()}
        flare.send(flare.FLModel(params=params, metrics={"val_acc": 0.5}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
    """
)


@pytest.fixture
def code(tmp_path, monkeypatch):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "tiny_net.py").write_text(NET)
    (folder / "train.py").write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "tiny_net", raising=False)
    yield folder
    sys.modules.pop("tiny_net", None)


def test_recipe_exports_a_valid_job_and_runs_it(tmp_path, code):
    import torch
    from tiny_net import TinyNet

    torch.manual_seed(0)
    net = TinyNet()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    recipe = FedAvgRecipe(
        "tiny", min_clients=2, num_rounds=3, initial_model=net, train_script=code / "train.py", train_args="--step 0.5"
    )
    job = recipe.export(tmp_path / "job")
    assert flruntime.validate_job(job).valid
    assert sorted(p.name for p in (job / "app/custom").iterdir()) == ["initial_model.pt", "tiny_net.py", "train.py"]
    result = recipe.run(tmp_path / "job", workspace=tmp_path / "ws", progress=None)
    assert result.ok and result.rounds_completed == 3
    saved = torch.load(tmp_path / "ws/server/FL_global_model.pt", weights_only=True)["model"]
    for name, value in initial.items():  # the initial weights came from the instance; each round adds 0.5
        torch.testing.assert_close(saved[name], value + 1.5)


def test_recipe_with_tracking_and_cross_site_eval(tmp_path, code):
    from tiny_net import TinyNet

    recipe = FedAvgRecipe("tiny", 2, 1, TinyNet(), code / "train.py", cross_site_eval=True)
    add_experiment_tracking(recipe, "tensorboard")
    job = recipe.export(tmp_path / "job")
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    assert [c["id"] for c in server["components"]][-3:] == ["model_locator", "json_generator", "receiver"]
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["tasks"] == ["train", "validate", "submit_model"]
    assert [c["id"] for c in client["components"]] == ["event_to_fed"]
    assert flruntime.validate_job(job).valid


def test_recipe_refuses_a_model_defined_elsewhere(tmp_path, code):
    import torch

    with pytest.raises(UsageError, match="define Linear in a module next to train.py"):
        FedAvgRecipe("x", 1, 1, torch.nn.Linear(2, 1), code / "train.py").export(tmp_path / "job")
    with pytest.raises(UsageError, match="train_script '.*nope.py' does not exist"):
        FedAvgRecipe("x", 1, 1, "tiny_net.TinyNet", code / "nope.py").export(tmp_path / "job")


def test_recipe_execute_in_the_simulator_and_in_a_federation(tmp_path, code):
    import torch
    from tiny_net import TinyNet

    from flruntime.environments import ProdEnv, SimEnv
    from tests.fedkit import Federation

    torch.manual_seed(0)
    net = TinyNet()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    recipe = FedAvgRecipe("tiny", min_clients=2, num_rounds=2, initial_model=net, train_script=code / "train.py")
    sim = recipe.execute(SimEnv(workspace=tmp_path / "sim"), job_dir=tmp_path / "sim_job")
    assert sim.get_status() == "FINISHED:COMPLETED"
    sim_model = torch.load(sim.get_result() / "FL_global_model.pt", weights_only=True)["model"]

    fed = Federation(tmp_path / "fed", ["site-1", "site-2"])
    try:
        for name in ("server", "site-1", "site-2"):
            fed.start(name)
        fed.wait_log("server", r"listening on port")
        run = recipe.execute(ProdEnv(fed.kit("admin@acme.org"), download_dir=tmp_path / "results"))
        result = run.get_result(timeout=300)
        assert run.get_status() == "FINISHED:COMPLETED"
        assert result == tmp_path / "results" / run.job_id
        prod_model = torch.load(result / "FL_global_model.pt", weights_only=True)["model"]
    finally:
        fed.stop_all()
    for name, value in initial.items():  # each round adds 1.0 (the script's default step), both ways
        torch.testing.assert_close(sim_model[name], value + 2.0)
        torch.testing.assert_close(prod_model[name], value + 2.0)
