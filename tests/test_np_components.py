"""NVFlare's numpy demo components (NPTrainer, NPValidator, NPFormatter) and InitializeGlobalWeights."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flruntime.components.executors.np_trainer import NPTrainer
from flruntime.components.executors.np_validator import NPValidator, weights_metric
from flruntime.components.persistors.np_file import NUMPY_KEY, initial_array
from flruntime.components.widgets.np_formatter import NPFormatter
from flruntime.components.workflows.initialize_global_weights import InitializeGlobalWeights

import flruntime
from flruntime.events.bus import EventBus
from flruntime.events.types import EventType
from flruntime.graph.locate import ImportPolicy, LocateError, locate
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType
from flruntime.runtime.simulator import simulate

NV_NP = "nvflare.app_common.np."
NV_TRAINER = NV_NP + "np_trainer.NPTrainer"
NV_VALIDATOR = NV_NP + "np_validator.NPValidator"
NV_FORMATTER = NV_NP + "np_formatter.NPFormatter"
NV_INIT = "nvflare.app_common.workflows.initialize_global_weights.InitializeGlobalWeights"
NV_SAG = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"


def _task_ctx(tmp_path: Path, task: str, site: str = "site-1", **headers: Any) -> TaskContext:
    run = RunContext("job", site, tmp_path / site, tmp_path / "app", EventBus(site))
    return TaskContext(run, task, "t1", dict(headers))


def _model(array: Any, **extra: Any) -> ModelMessage:
    return ModelMessage({NUMPY_KEY: np.asarray(array, dtype=np.float32), **extra}, ParamsType.FULL)


# ---------------------------------------------------------------- NPTrainer


def test_trainer_adds_delta_keeps_the_local_model_and_submits_it(tmp_path: Path) -> None:
    trainer = NPTrainer(delta=2.5)
    out = trainer.execute("train", _model([[1, 2], [3, 4]], other=np.ones(2)), _task_ctx(tmp_path, "train"))
    assert out.params_type == ParamsType.FULL
    assert out.meta == {MetaKey.NUM_STEPS_CURRENT_ROUND.value: 1}
    assert out.params is not None
    np.testing.assert_array_equal(out.params[NUMPY_KEY], [[3.5, 4.5], [5.5, 6.5]])
    np.testing.assert_array_equal(out.params["other"], [1.0, 1.0])  # other variables pass through
    saved = tmp_path / "site-1" / "model" / "best_numpy.npy"
    np.testing.assert_array_equal(np.load(saved), out.params[NUMPY_KEY])
    submitted = trainer.execute("submit_model", ModelMessage(), _task_ctx(tmp_path, "submit_model"))
    assert submitted.params is not None and list(submitted.params) == [NUMPY_KEY]
    np.testing.assert_array_equal(submitted.params[NUMPY_KEY], out.params[NUMPY_KEY])


def test_trainer_custom_names_and_folder(tmp_path: Path) -> None:
    trainer = NPTrainer(train_task_name="fit", submit_model_task_name="best", model_name="m.npy", model_dir="d")
    trainer.execute("fit", _model([1.0]), _task_ctx(tmp_path, "fit"))
    assert (tmp_path / "site-1" / "d" / "m.npy").is_file()
    assert trainer.execute("best", ModelMessage(), _task_ctx(tmp_path, "best")).params is not None


@pytest.mark.parametrize(
    ("task", "data", "error"),
    [
        pytest.param("train", ModelMessage(), "NPTrainer: no model weights in the task data", id="empty"),
        pytest.param(
            "train",
            ModelMessage({NUMPY_KEY: np.ones(2)}, ParamsType.DIFF),
            "NPTrainer: the task data must be a FULL model (NVFlare's WEIGHTS), got DIFF",
            id="diff",
        ),
        pytest.param(
            "train",
            ModelMessage({"w": np.ones(2)}),
            "NPTrainer: 'numpy_key' not found in the model (it has ['w'])",
            id="no-numpy-key",
        ),
        pytest.param(
            "validate",
            _model([1.0]),
            "NPTrainer handles tasks 'train' and 'submit_model', not 'validate'",
            id="unknown-task",
        ),
    ],
)
def test_trainer_refuses(tmp_path: Path, task: str, data: ModelMessage, error: str) -> None:
    with pytest.raises(ValueError) as info:
        NPTrainer().execute(task, data, _task_ctx(tmp_path, task))
    assert str(info.value) == error


def test_trainer_submit_before_training_and_bad_args(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="this site has not trained yet"):
        NPTrainer().execute("submit_model", ModelMessage(), _task_ctx(tmp_path, "submit_model"))
    with pytest.raises(TypeError, match="delta must be an instance of float or int, got str"):
        NPTrainer(delta="1")  # type: ignore[arg-type]


def test_trainer_sleep_ends_on_abort(tmp_path: Path) -> None:
    ctx = _task_ctx(tmp_path, "train")
    threading.Timer(0.05, ctx.abort.set).start()
    with pytest.raises(RuntimeError, match="NPTrainer: task 'train' was aborted"):
        NPTrainer(sleep_time=30).execute("train", _model([1.0]), ctx)


# ---------------------------------------------------------------- NPValidator


def test_validator_metric_is_computed_from_the_weights(tmp_path: Path) -> None:
    ctx = _task_ctx(tmp_path, "validate", _model_owner_="site-2")
    out = NPValidator(epsilon=0).execute("validate", _model([[1, 2], [3, 4]]), ctx)
    assert out.params is None
    assert out.metrics == {"accuracy": pytest.approx(2.5)}  # (1 + 2 + 3 + 4) / 4
    noisy = [NPValidator().execute("validate", _model([[1, 2], [3, 4]]), ctx).metrics for _ in range(20)]
    values = [m["accuracy"] for m in noisy if m is not None]
    assert all(2.5 <= v < 3.5 for v in values) and len(set(values)) > 1


def test_validator_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NPValidator handles task 'check', not 'validate'"):
        NPValidator(validate_task_name="check").execute("validate", _model([1.0]), _task_ctx(tmp_path, "validate"))
    with pytest.raises(ValueError, match="'numpy_key' not found"):
        NPValidator().execute("validate", ModelMessage({"w": np.ones(1)}), _task_ctx(tmp_path, "validate"))
    with pytest.raises(ValueError, match="maximum is 0"):
        weights_metric(np.zeros(3))
    with pytest.raises(ValueError, match="epsilon must be a number >= 0"):
        NPValidator(epsilon=-1)


# ---------------------------------------------------------------- NPFormatter


def test_formatter_collects_validation_results(tmp_path: Path) -> None:
    bus = EventBus("server")
    ctx = RunContext("job", "server", tmp_path, tmp_path, bus)
    formatter = NPFormatter()
    formatter.setup(ctx)
    for client, owner, acc in (("site-2", "site-1", 0.5), ("site-1", "SRV_server", 0.75), ("site-1", "site-2", 1)):
        bus.fire(EventType.VALIDATION_RESULT_RECEIVED, model_owner=owner, data_client=client, metrics={"acc": acc})
    expected = "{'site-1': {'SRV_server': {'acc': 0.75}, 'site-2': {'acc': 1}}, 'site-2': {'site-1': {'acc': 0.5}}}"
    assert formatter.format() == expected
    formatter.teardown(ctx)
    bus.fire(EventType.VALIDATION_RESULT_RECEIVED, model_owner="x", data_client="y", metrics={})
    assert formatter.format() == expected


# ---------------------------------------------------------------- names


def test_nvflare_paths_and_short_names() -> None:
    policy = ImportPolicy()
    for path, cls in (
        (NV_TRAINER, NPTrainer),
        (NV_VALIDATOR, NPValidator),
        (NV_FORMATTER, NPFormatter),
        (NV_INIT, InitializeGlobalWeights),
    ):
        assert locate(path, policy).cls is cls
        if cls is not NPTrainer:
            assert locate(cls.__name__, policy, by_name=True).cls is cls
    with pytest.raises(LocateError, match="NVFlare name 'NPTrainer' is defined in several modules"):
        locate("NPTrainer", policy, by_name=True)


def test_initialize_global_weights_args() -> None:
    assert InitializeGlobalWeights.sent_tasks({}) == {"get_weights"}
    assert InitializeGlobalWeights.sent_tasks({"task_name": "w"}) == {"w"}
    assert InitializeGlobalWeights(weights_client_name=["a", "b"]).clients == ["a", "b"]
    with pytest.raises(ValueError, match="invalid weight_method 'last'"):
        InitializeGlobalWeights(weight_method="last")
    with pytest.raises(ValueError, match="weight_method 'client' needs weights_client_name: one client name"):
        InitializeGlobalWeights(weight_method="client", weights_client_name=["a"])


# ---------------------------------------------------------------- jobs in the simulator


def _write_job(root: Path, server: dict[str, Any], client: dict[str, Any], custom: str = "") -> Path:
    (root / "app" / "config").mkdir(parents=True)
    meta = {"name": root.name, "min_clients": 2, "deploy_map": {"app": ["@ALL"]}}
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "app" / "config" / "config_fed_server.json").write_text(json.dumps(server))
    (root / "app" / "config" / "config_fed_client.json").write_text(json.dumps(client))
    if custom:
        (root / "app" / "custom").mkdir()
        (root / "app" / "custom" / "init_parts.py").write_text(textwrap.dedent(custom))
    return root


def _sag(**args: Any) -> dict[str, Any]:
    base = {"min_clients": 2, "num_rounds": 2, "wait_time_after_min_received": 0, "persistor_id": "persistor"}
    return {"id": "sag", "path": NV_SAG, "args": base | args}


SHAREABLE = {
    "id": "shareable_generator",
    "path": "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator",
}
AGGREGATOR = {
    "id": "aggregator",
    "path": "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator",
    "args": {"expected_data_kind": "WEIGHTS"},
}


def test_numpy_cross_site_job_runs(tmp_path: Path) -> None:
    """sag_cross_np's shape: NPTrainer / NPValidator on the clients, NPFormatter and CSE on the server."""
    server = {
        "format_version": 2,
        "workflows": [
            _sag(),
            {
                "id": "cse",
                "path": "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval",
                "args": {"model_locator_id": "model_locator", "formatter_id": "formatter"},
            },
        ],
        "components": [
            {"id": "persistor", "path": "nvflare.app_common.np.np_model_persistor.NPModelPersistor"},
            SHAREABLE,
            AGGREGATOR,
            {"id": "model_locator", "path": "nvflare.app_common.np.np_model_locator.NPModelLocator"},
            {"id": "formatter", "path": NV_FORMATTER},
            {"id": "json_generator", "name": "ValidationJsonGenerator"},
        ],
    }
    client = {
        "format_version": 2,
        "executors": [
            {"tasks": ["train", "submit_model"], "executor": {"path": NV_TRAINER, "args": {"delta": 1}}},
            {"tasks": ["validate"], "executor": {"path": NV_VALIDATOR, "args": {"epsilon": 0}}},
        ],
    }
    job = _write_job(tmp_path / "np_cross", server, client)
    assert flruntime.validate_job(job).problems == []
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    final = initial_array() + 2  # two rounds, every site adds 1, the mean adds 1
    np.testing.assert_array_equal(np.load(tmp_path / "ws/server/models/server.npy"), final)
    for site in ("site-1", "site-2"):
        np.testing.assert_array_equal(np.load(tmp_path / f"ws/{site}/model/best_numpy.npy"), final)
    matrix = json.loads((tmp_path / "ws/server/cross_site_val/cross_val_results.json").read_text())
    expected = {"accuracy": pytest.approx(weights_metric(final))}
    assert matrix == {s: {"SRV_server": expected, "site-1": expected, "site-2": expected} for s in ("site-1", "site-2")}
    assert (
        "cross-site validation results: {'site-1': {'SRV_server': {'accuracy'"
        in (tmp_path / "ws/server/log.txt").read_text()
    )


INIT_PARTS = '''
    """A client that reports site-k's weights (k everywhere) for get_weights and adds 10 when training."""

    import numpy as np

    from flruntime.roles import Executor
    from flruntime.runtime.messages import ModelMessage, ParamsType


    class SiteWeights(Executor):
        def __init__(self, fail_site: str = "") -> None:
            self.fail_site = fail_site

        def execute(self, task, data, ctx):
            k = float(ctx.site.rsplit("-", 1)[1])
            if task == "get_weights":
                if ctx.site == self.fail_site:
                    return ModelMessage({"w": np.full(3, k)}, ParamsType.DIFF)
                return ModelMessage({"w": np.full(3, k, dtype=np.float32)})
            np.save(ctx.run.workspace / f"received_{ctx.current_round}.npy", data.params["w"])
            return ModelMessage({"w": data.params["w"] + 10}, meta={"NUM_STEPS_CURRENT_ROUND": 1})
'''


def _init_job(root: Path, init_args: dict[str, Any], fail_site: str = "") -> Path:
    server = {
        "format_version": 2,
        "workflows": [{"id": "pre_train", "name": "InitializeGlobalWeights", "args": init_args}, _sag(persistor_id="")],
        "components": [SHAREABLE, AGGREGATOR],
    }
    client = {
        "format_version": 2,
        "executors": [
            {
                "tasks": ["get_weights", "train"],
                "executor": {"path": "init_parts.SiteWeights", "args": {"fail_site": fail_site}},
            }
        ],
    }
    return _write_job(root, server, client, INIT_PARTS)


@pytest.mark.parametrize(
    ("init_args", "start"),
    [
        pytest.param({"weight_method": "client", "weights_client_name": "site-2"}, 2.0, id="named-client"),
        pytest.param({"weights_client_name": ["site-1"]}, 1.0, id="first-of-one"),
    ],
)
def test_initialize_global_weights_feeds_scatter_and_gather(tmp_path: Path, init_args: dict, start: float) -> None:
    job = _init_job(tmp_path / "init", init_args)
    assert flruntime.validate_job(job).problems == []
    ws = tmp_path / "ws"
    result = simulate(job, n_clients=2, workspace=ws, progress=None)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert "initial global weights from site-" in (ws / "server" / "log.txt").read_text()
    for site in ("site-1", "site-2"):  # round 0 starts from the chosen client's weights; each round adds 10
        np.testing.assert_array_equal(np.load(ws / site / "received_0.npy"), np.full(3, start))
        np.testing.assert_array_equal(np.load(ws / site / "received_1.npy"), np.full(3, start + 10))


def test_initialize_global_weights_fails_the_job_on_a_bad_answer(tmp_path: Path) -> None:
    job = _init_job(tmp_path / "init", {}, fail_site="site-1")
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert not result.ok
    assert "site-1 returned DIFF weights (FULL weights are needed)" in result.error
