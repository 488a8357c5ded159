"""NVFlare's FLModel workflows in the simulator: FedAvg, a user's ModelController, PTFedAvgEarlyStopping, Cyclic.

Every job names the classes by their NVFlare paths; a user's controller in ``custom/`` imports NVFlare's modules
(the ``nvflare`` shim stands in for NVFlare, which is not installed here).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from wfkit import NET, Engines, write_job

from flruntime.graph.locate import job_imports
from flruntime.runtime.server import RunStatus
from flruntime.runtime.simulator import SimulationResult, simulate
from flruntime.validation import validate_job

NVF_FEDAVG = "nvflare.app_common.workflows.fedavg.FedAvg"
NVF_EARLY = "nvflare.app_opt.pt.fedavg_early_stopping.PTFedAvgEarlyStopping"
NVF_CYCLIC = "nvflare.app_common.workflows.cyclic_ctl.CyclicController"
NVF_NP_PERSISTOR = "nvflare.app_common.np.np_model_persistor.NPModelPersistor"
NVF_INPROC = "nvflare.app_common.executors.in_process_client_api_executor.InProcessClientAPIExecutor"
NVF_FULL_GEN = "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"

#: NVFlare 2.5.2's hello-pt job as its job API exports it (``FedAvgJob(initial_model=SimpleNetwork(), n_clients=2,
#: num_rounds=2)`` and a ``ScriptRunner`` per site); the network and the training script are small stand-ins.
HELLO_PT = Path(__file__).resolve().parent / "data" / "hello-pt_cifar10_fedavg"

PARTS = textwrap.dedent(
    '''
    """Numpy parts: executors whose answers the tests can compute, and a float64 persistor."""

    import numpy as np

    from flruntime.roles import Executor, ModelPersistor
    from flruntime.runtime.messages import ModelMessage, ParamsType


    def site_number(site):
        return int(site.rsplit("-", 1)[1])


    class AddK(Executor):
        """train: the FULL model + k with k local steps, metric accuracy = accuracies[round] (else the round);
        validate: {"score": sum of the model + k}."""

        def __init__(self, accuracies=None):
            self.accuracies = accuracies

        def execute(self, task, data, ctx):
            k = site_number(ctx.site)
            if task == "validate":
                return ModelMessage(metrics={"score": float(sum(np.sum(v) for v in data.params.values())) + k})
            rnd = ctx.current_round
            accuracy = float(self.accuracies[rnd]) if self.accuracies else float(rnd)
            params = {n: np.asarray(v) + k for n, v in data.params.items()}
            return ModelMessage(params, ParamsType.FULL, metrics={"accuracy": accuracy},
                                meta={"NUM_STEPS_CURRENT_ROUND": k})


    class AppendDigit(Executor):
        """The relay: w becomes 10 w + k (so the model spells the order the clients had it in)."""

        def execute(self, task, data, ctx):
            return ModelMessage({"w": data.params["w"] * 10 + site_number(ctx.site)}, ParamsType.FULL)


    class DigitsPersistor(ModelPersistor):
        def load(self, ctx):
            return ModelMessage({"w": np.zeros(1, dtype=np.float64)})

        def save(self, model, ctx):
            np.save(ctx.workspace / "digits.npy", model.params["w"])
    '''
)

#: NVFlare 2.5's hello-fedavg-numpy training script, in its shape: +1 to the array, its mean as "accuracy".
HELLO_NUMPY_SCRIPT = textwrap.dedent(
    """
    import numpy as np

    import nvflare.client as flare

    flare.init()
    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        if input_model.params == {}:
            params = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
        else:
            params = np.array(input_model.params["numpy_key"], dtype=np.float32)
        flare.send(
            flare.FLModel(
                params={"numpy_key": params + 1},
                params_type="FULL",
                metrics={"accuracy": float(np.mean(params))},
                current_round=input_model.current_round,
            )
        )
    """
)

#: A user's own server workflow in custom/, written against NVFlare's modules.
USER_CONTROLLER = textwrap.dedent(
    '''
    """Samples clients to train, averages their models itself, then has every client validate the result."""

    import json
    import os
    import time

    import numpy as np

    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
    from nvflare.app_common.workflows.model_controller import ModelController


    class SampleAndValidate(ModelController):
        def __init__(self, *args, num_rounds=2, sample=2, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_rounds = num_rounds
            self.sample = sample

        def run(self):
            record = {"rounds": [], "validated": {}}
            model = self.load_model()
            for rnd in range(self.num_rounds):
                model.current_round, model.total_rounds = rnd, self.num_rounds
                clients = self.sample_clients(self.sample)
                results = self.send_model_and_wait(targets=clients, data=model)
                record["rounds"].append(
                    {
                        "sampled": clients,
                        "answered": sorted(r.meta["client_name"] for r in results),
                        "result_rounds": [r.current_round for r in results],
                        "sent_meta": [r.meta["props"] for r in results],
                    }
                )
                mean = np.mean([r.params["w"] for r in results], axis=0)
                model = FLModel(params={"w": mean}, params_type=ParamsType.FULL, meta={"round": rnd})

            def validated(result):
                record["validated"][result.meta["client_name"]] = result.metrics["score"]

            self.send_model(task_name="validate", data=model, callback=validated)
            while self.get_num_standing_tasks():
                time.sleep(0.01)
            self.save_model(model)
            with open(os.path.join(self.get_run_dir(), "controller.json"), "w") as f:
                json.dump(record, f)
    '''
)


def run(job: Path, tmp_path: Path, clients: int = 2) -> SimulationResult:
    return simulate(job, n_clients=clients, workspace=tmp_path / "ws", progress=None)


def server_file(tmp_path: Path, name: str) -> Path:
    return tmp_path / "ws" / "server" / name


def fedavg_job(root: Path, args: dict[str, Any], executor: dict[str, Any], *, clients: int = 2) -> Path:
    server = {
        "workflows": [{"id": "controller", "path": NVF_FEDAVG, "args": args}],
        "components": [{"id": "persistor", "path": "wf_parts.ZeroPersistor"}],
    }
    client = {"executors": [{"tasks": ["train"], "executor": executor}]}
    return write_job(root, server, client, min_clients=clients, custom={"nvf_parts.py": PARTS})


def test_fedavg_runs_nvflare_25s_hello_fedavg_numpy_job(tmp_path: Path) -> None:
    """FedAvg + NPModelPersistor + a Client API script, as NVFlare 2.5's job API exports hello-fedavg-numpy."""
    server = {
        "workflows": [{"id": "controller", "path": NVF_FEDAVG, "args": {"num_clients": 2, "num_rounds": 3}}],
        "components": [{"id": "persistor", "path": NVF_NP_PERSISTOR}],
    }
    client = {
        "executors": [{"tasks": ["*"], "executor": {"path": NVF_INPROC, "args": {"task_script_path": "src/train.py"}}}]
    }
    job = write_job(tmp_path / "job", server, client)
    (job / "app" / "custom" / "src").mkdir()
    (job / "app" / "custom" / "src" / "train.py").write_text(HELLO_NUMPY_SCRIPT)
    assert validate_job(job).problems == []
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert (result.rounds_completed, result.num_rounds) == (3, 3)
    # NPModelPersistor's 1..9 array, +1 by both clients in each of the 3 rounds
    want = np.arange(1, 10, dtype=np.float32).reshape(3, 3) + 3
    np.testing.assert_array_equal(np.load(server_file(tmp_path, "models/server.npy")), want)
    # the clients' metric (the mean of the model they received), averaged per round
    assert [m["accuracy"] for m in result.round_metrics] == [5.0, 6.0, 7.0]


def test_fedavg_weights_results_by_their_local_steps(tmp_path: Path) -> None:
    job = fedavg_job(tmp_path / "job", {"num_clients": 3, "num_rounds": 2}, {"path": "nvf_parts.AddK"}, clients=3)
    result = run(job, tmp_path, clients=3)
    assert result.ok, result.error
    # site-k adds k with weight k: each round adds (1 + 4 + 9) / (1 + 2 + 3)
    np.testing.assert_allclose(np.load(server_file(tmp_path, "global.npy")), np.full(3, 2 * 14 / 6), rtol=1e-6)
    assert [m["accuracy"] for m in result.round_metrics] == [0.0, 1.0]


def test_fedavg_samples_num_clients_each_round(tmp_path: Path) -> None:
    job = fedavg_job(tmp_path / "job", {"num_clients": 1, "num_rounds": 3}, {"path": "nvf_parts.AddK"}, clients=3)
    result = run(job, tmp_path, clients=3)
    assert result.ok, result.error
    final = np.load(server_file(tmp_path, "global.npy"))
    # one client a round: the model grows by that client's k (1, 2 or 3) each round
    assert final[0] in {float(a + b + c) for a in (1, 2, 3) for b in (1, 2, 3) for c in (1, 2, 3)}
    log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert log.count("Returning a random subset of (1) clients.") == 3


def test_fedavg_takes_the_later_fedavg_arguments(tmp_path: Path) -> None:
    """An initial ``model``, ``exclude_vars``, ``aggregation_weights``, and ``save_filename`` without a persistor."""
    args = {
        "num_clients": 2,
        "num_rounds": 2,
        "model": {"w": [0.0, 0.0], "b": [0.0]},
        "exclude_vars": "^b$",
        "aggregation_weights": {"site-1": 3.0},
        "save_filename": "final.pt",
    }
    server = {"workflows": [{"id": "controller", "path": NVF_FEDAVG, "args": args}]}
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "nvf_parts.AddK"}}]}
    job = write_job(tmp_path / "job", server, client, custom={"nvf_parts.py": PARTS})
    result = run(job, tmp_path)
    assert result.ok, result.error
    saved = torch.load(server_file(tmp_path, "final.pt"), weights_only=True)
    # site-1 weighs 3 × 1 step, site-2 1 × 2 steps: each round adds (3·1 + 2·2) / 5; b is not aggregated
    torch.testing.assert_close(saved["w"], torch.full((2,), 2 * 7 / 5))
    torch.testing.assert_close(saved["b"], torch.zeros(1))


@pytest.mark.parametrize(
    ("stop_cond", "patience", "rounds"),
    [("accuracy >= 2", None, 3), ("accuracy >= 9", None, 5), ("accuracy <= -1", 2, 3)],
    ids=["met-after-round-2", "never-met", "patience"],
)
def test_fedavg_stops_early(tmp_path: Path, stop_cond: str, patience: int | None, rounds: int) -> None:
    args = {"num_clients": 2, "num_rounds": 5, "stop_cond": stop_cond, "patience": patience}
    job = fedavg_job(tmp_path / "job", args, {"path": "nvf_parts.AddK"})
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert result.rounds_completed == rounds


@pytest.mark.parametrize(
    ("ignore", "status", "error", "expected"),
    [
        (
            False,
            "FINISHED:EXECUTION_EXCEPTION",
            "Result from site-1 is bad, error code: EXECUTION_EXCEPTION (RuntimeError: site-1 fails on purpose). "
            "FedAvg exiting at round 0.",
            None,
        ),
        (True, "FINISHED:COMPLETED", "", 2 * 2.5),
    ],
    ids=["fails-the-job", "ignored"],
)
def test_a_failed_result(tmp_path: Path, ignore: bool, status: str, error: str, expected: float | None) -> None:
    args = {"num_clients": 3, "num_rounds": 2, "ignore_result_error": ignore}
    job = fedavg_job(tmp_path / "job", args, {"path": "wf_parts.Trainer", "args": {"fail_site": "site-1"}}, clients=3)
    result = run(job, tmp_path, clients=3)
    assert (result.status, result.error) == (status, error)
    if expected is not None:  # the mean of site-2's and site-3's differences, each round
        np.testing.assert_array_equal(np.load(server_file(tmp_path, "global.npy")), np.full(3, expected))


def test_a_users_model_controller_in_custom(tmp_path: Path) -> None:
    server = {
        "workflows": [{"id": "mine", "path": "my_controller.SampleAndValidate", "args": {"num_rounds": 3}}],
        "components": [{"id": "persistor", "path": "wf_parts.ZeroPersistor"}],
    }
    client = {"executors": [{"tasks": ["train", "validate"], "executor": {"path": "nvf_parts.AddK"}}]}
    custom = {"nvf_parts.py": PARTS, "my_controller.py": USER_CONTROLLER}
    job = write_job(tmp_path / "job", server, client, min_clients=3, custom=custom)
    assert validate_job(job).problems == []  # the controller's tasks are its own: no "no workflow sends" warning
    result = run(job, tmp_path, clients=3)
    assert result.ok, result.error
    record = json.loads(server_file(tmp_path, "controller.json").read_text())
    w = 0.0
    for rnd, entry in enumerate(record["rounds"]):
        sampled = entry["sampled"]
        assert len(sampled) == 2 and set(sampled) <= {"site-1", "site-2", "site-3"}
        assert entry["answered"] == sorted(sampled)
        assert entry["result_rounds"] == [rnd, rnd]
        assert entry["sent_meta"] == ([{"round": rnd - 1}] * 2 if rnd else [{}, {}])  # meta of the model sent
        w += np.mean([int(s[-1]) for s in sampled])  # each sampled client adds its k; the controller averages
    np.testing.assert_allclose(np.load(server_file(tmp_path, "global.npy")), np.full(3, w), rtol=1e-6)
    assert record["validated"] == pytest.approx({f"site-{k}": 3 * w + k for k in (1, 2, 3)})


@pytest.mark.parametrize(
    ("accuracies", "rounds", "best"),
    [([0.5, 2.0, 3.0, 0.1, 0.1], 3, 2), ([0.5, 2.0, 1.0], 3, 1)],
    ids=["stops-when-met", "keeps-the-best"],
)
def test_pt_fedavg_early_stopping(tmp_path: Path, accuracies: list[float], rounds: int, best: int) -> None:
    args = {
        "num_clients": 2,
        "num_rounds": len(accuracies),
        "stop_cond": "accuracy >= 3",
        "initial_model": {"path": "net.Net"},
    }
    server = {"workflows": [{"id": "controller", "path": NVF_EARLY, "args": args}]}
    client = {
        "executors": [{"tasks": ["train"], "executor": {"path": "nvf_parts.AddK", "args": {"accuracies": accuracies}}}]
    }
    job = write_job(tmp_path / "job", server, client, custom={"nvf_parts.py": PARTS, "net.py": NET})
    assert validate_job(job).problems == []
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert result.rounds_completed == rounds
    # Net's zero weights; each round adds (1·1 + 2·2) / 3; the best model is the one after round `best`
    saved = torch.load(server_file(tmp_path, "FL_global_model.pt"), weights_only=True)
    value = (best + 1) * 5 / 3
    assert sorted(saved) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(saved["fc.weight"], torch.full((1, 2), value))
    torch.testing.assert_close(saved["fc.bias"], torch.full((1,), value))
    meta = json.loads(server_file(tmp_path, "FL_global_model.pt.metadata").read_text())
    assert (meta["current_round"], meta["metrics"]) == (best, {"accuracy": accuracies[best]})


def cyclic_job(root: Path, args: dict[str, Any], clients: int = 3) -> Path:
    server = {
        "workflows": [{"id": "cyclic", "path": NVF_CYCLIC, "args": args}],
        "components": [
            {"id": "persistor", "path": "nvf_parts.DigitsPersistor"},
            {"id": "shareable_generator", "path": NVF_FULL_GEN},
        ],
    }
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "nvf_parts.AppendDigit"}}]}
    return write_job(root, server, client, min_clients=clients, custom={"nvf_parts.py": PARTS})


def digits(tmp_path: Path) -> str:
    return str(int(np.load(server_file(tmp_path, "digits.npy"))[0]))


@pytest.mark.parametrize(
    ("order", "want"), [(["site-2", "site-3", "site-1"], "231231"), ("FIXED", "123123")], ids=["list", "fixed"]
)
def test_cyclic_relays_the_model_through_the_clients_in_order(tmp_path: Path, order: Any, want: str) -> None:
    job = cyclic_job(tmp_path / "job", {"num_rounds": 2, "order": order})
    assert validate_job(job).problems == []
    result = run(job, tmp_path, clients=3)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert digits(tmp_path) == want


def test_cyclic_random_order_never_repeats_a_client_across_rounds(tmp_path: Path) -> None:
    job = cyclic_job(tmp_path / "job", {"num_rounds": 4, "order": "RANDOM_WITHOUT_SAME_IN_A_ROW"})
    result = run(job, tmp_path, clients=3)
    assert result.ok, result.error
    spelt = digits(tmp_path)
    rounds = [spelt[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == ["1", "2", "3"] for r in rounds), spelt
    assert all(a[-1] != b[0] for a, b in zip(rounds, rounds[1:], strict=False)), spelt


def test_cyclic_skips_a_client_that_does_not_pick_its_task_up(tmp_path: Path) -> None:
    job = cyclic_job(tmp_path / "job", {"num_rounds": 2, "task_assignment_timeout": 1})
    engines = Engines(job, tmp_path / "ws", running=["site-1", "site-2"], registered=["site-3"])
    outcome = engines.run()
    assert outcome.status == RunStatus.COMPLETED, outcome.error
    assert digits(tmp_path) == "1212"


@pytest.mark.parametrize(
    ("path", "args", "message"),
    [
        (NVF_FEDAVG, {"persistor_id": "persistr"}, "$.workflows[0].args.persistor_id: persistor_id: no component"),
        (NVF_FEDAVG, {"stop_cond": "accuracy => 3"}, "$.workflows[0].args.stop_cond: Invalid operator symbol"),
        (NVF_EARLY, {"stop_cond": "accuracy>=3"}, "$.workflows[0].args.stop_cond: Invalid early_stop_condition"),
        (NVF_CYCLIC, {"order": "ROUND_ROBIN"}, "$.workflows[0].args.order: order must be in ('FIXED', 'RANDOM'"),
    ],
    ids=["persistor-typo", "fedavg-stop-cond", "early-stop-cond", "cyclic-order"],
)
def test_the_validator_reports_bad_arguments(tmp_path: Path, path: str, args: dict[str, Any], message: str) -> None:
    server = {
        "workflows": [{"id": "wf", "path": path, "args": args}],
        "components": [
            {"id": "persistor", "path": "wf_parts.ZeroPersistor"},
            {"id": "shareable_generator", "path": NVF_FULL_GEN},
        ],
    }
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "wf_parts.Trainer"}}]}
    job = write_job(tmp_path / "job", server, client)
    problems = [p.format() for p in validate_job(job).problems]
    assert len(problems) == 1 and message in problems[0], problems


def test_fedavg_without_a_persistor_validates(tmp_path: Path) -> None:
    """NVFlare 2.5's hello-fedavg-numpy has no persistor: the default ``persistor`` id may name nothing."""
    server = {"workflows": [{"id": "controller", "path": NVF_FEDAVG, "args": {"num_rounds": 1}}]}
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "wf_parts.Trainer"}}]}
    assert validate_job(write_job(tmp_path / "job", server, client)).problems == []


def replay_hello_pt(rounds: int) -> dict[str, torch.Tensor]:
    """The global model hello-pt's FedAvg should reach: each round, both sites train the model, then the mean."""
    custom = HELLO_PT / "app_site-1" / "custom"
    with job_imports(custom):
        spec = importlib.util.spec_from_file_location("hello_pt_script", custom / "src" / "hello-pt_cifar10_fl.py")
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    state = script.SimpleNetwork().state_dict()
    for _ in range(rounds):
        trained = []
        for site in ("site-1", "site-2"):
            net = script.SimpleNetwork()
            net.load_state_dict(state)
            x, y = script.data(site)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
            for _ in range(10):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                optimizer.step()
            trained.append(net.state_dict())
        state = {k: (trained[0][k] + trained[1][k]) / 2 for k in state}
    return state


def test_nvflare_252_hello_pt_job_as_its_job_api_exports_it(tmp_path: Path) -> None:
    assert validate_job(HELLO_PT).problems == []
    result = simulate(HELLO_PT, workspace=tmp_path / "ws", progress=None)  # the deploy map names site-1, site-2
    assert result.ok, result.error
    assert (result.clients, result.rounds_completed) == (["site-1", "site-2"], 2)
    saved = torch.load(server_file(tmp_path, "FL_global_model.pt"), weights_only=True)["model"]
    want = replay_hello_pt(rounds=2)
    assert sorted(saved) == sorted(want)
    for name, value in want.items():
        torch.testing.assert_close(torch.as_tensor(saved[name]), value, rtol=1e-5, atol=1e-6)
    # the model selector found a best model (by the sites' accuracy of the model they received); TB got both sites
    assert server_file(tmp_path, "best_FL_global_model.pt").is_file()
    assert sorted(p.name for p in server_file(tmp_path, "tb_events").iterdir()) == ["site-1", "site-2"]
