"""Components written on NVFlare's component API (nvflare.apis, nvflare.app_common) run as flruntime components.

Each job here is our own, written the way NVFlare's documentation describes the classes: an Executor, a
DXOFilter, an Aggregator, a ModelPersistor, a ModelLocator, a widget (FLComponent) listening to events, a
Learner behind LearnerExecutor, a ModelLearner behind ModelLearnerExecutor. They import ``nvflare.*`` as users'
code does; NVFlare is not installed, so flruntime's shim answers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flruntime.compat import fobs
from flruntime.compat.component import DXOFilter, Signal
from flruntime.compat.constants import ReservedKey
from flruntime.compat.dxo import DXO, DataKind, from_shareable
from flruntime.compat.fl_context import FLContext, SiteState
from flruntime.compat.pt_format import PTModelPersistenceFormatManager
from flruntime.compat.shareable import Shareable, make_reply
from flruntime.runtime.simulator import simulate

PARTS = textwrap.dedent(
    '''
    """Our own NVFlare-API components (numpy)."""

    import json
    import os

    import numpy as np

    from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
    from nvflare.apis.dxo_filter import DXOFilter
    from nvflare.apis.event_type import EventType
    from nvflare.apis.executor import Executor
    from nvflare.apis.fl_component import FLComponent
    from nvflare.apis.fl_constant import FLContextKey, ReturnCode
    from nvflare.apis.fl_context import FLContext
    from nvflare.apis.shareable import Shareable, make_reply
    from nvflare.apis.signal import Signal
    from nvflare.app_common.abstract.aggregator import Aggregator
    from nvflare.app_common.abstract.model import ModelLearnable, make_model_learnable, model_learnable_to_dxo
    from nvflare.app_common.abstract.model_locator import ModelLocator
    from nvflare.app_common.abstract.model_persistor import ModelPersistor
    from nvflare.app_common.app_constant import AppConstants
    from nvflare.fuel.utils import fobs


    class NPPersistor(ModelPersistor):
        def __init__(self, size=3, panic=False):
            super().__init__()
            self.size = size
            self.panic = panic
            self.path = None

        def handle_event(self, event_type, fl_ctx):
            if event_type == EventType.START_RUN:
                self.path = os.path.join(fl_ctx.get_prop(FLContextKey.APP_ROOT), "global.fobs")

        def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
            if self.panic:
                self.system_panic("no initial model on purpose", fl_ctx)
            return make_model_learnable({"w": np.zeros(self.size, dtype=np.float32)}, {})

        def save_model(self, model_learnable: ModelLearnable, fl_ctx: FLContext):
            with open(self.path, "wb") as f:
                fobs.dump(model_learnable, f)


    class AddSiteTrainer(Executor):
        """Returns w + k for site-k, k local steps; TASK_UNKNOWN for any task but train."""

        def __init__(self):
            super().__init__()
            self.started = None

        def handle_event(self, event_type, fl_ctx):
            if event_type == EventType.START_RUN:
                fl_ctx.set_prop("trainer_started_as", fl_ctx.get_identity_name(), private=True, sticky=True)

        def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
            if task_name != "train":
                return make_reply(ReturnCode.TASK_UNKNOWN)
            if abort_signal.triggered:
                return make_reply(ReturnCode.TASK_ABORTED)
            dxo = from_shareable(shareable)
            if dxo.data_kind != DataKind.WEIGHTS:
                return make_reply(ReturnCode.BAD_TASK_DATA)
            site = fl_ctx.get_identity_name()
            assert fl_ctx.get_prop("trainer_started_as") == site  # sticky since START_RUN
            assert fl_ctx.get_peer_context().get_identity_name() == "server"
            k = int(site.rsplit("-", 1)[1])
            fl_ctx.set_prop("trained_round", shareable.get_header(AppConstants.CURRENT_ROUND), private=False)
            self.fire_event("_trained", fl_ctx)
            out = DXO(DataKind.WEIGHTS, {"w": dxo.data["w"] + k}, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: k})
            return out.to_shareable()


    class Doubler(DXOFilter):
        def __init__(self):
            super().__init__(supported_data_kinds=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF])

        def process_dxo(self, dxo, shareable, fl_ctx):
            dxo.data = {k: v * 2 for k, v in dxo.data.items()}
            return dxo


    class MeanAggregator(Aggregator):
        def __init__(self):
            super().__init__()
            self.seen = {}

        def accept(self, shareable, fl_ctx):
            site = fl_ctx.get_peer_context().get_identity_name()
            dxo = from_shareable(shareable)
            assert dxo.get_filter_history() == ["Doubler"]
            self.seen[site] = dxo.data["w"]
            return True

        def aggregate(self, fl_ctx):
            mean = np.mean(list(self.seen.values()), axis=0)
            self.seen = {}
            return DXO(DataKind.WEIGHTS, {"w": mean}).to_shareable()


    class EventRecorder(FLComponent):
        """Writes the events it heard (and what the trainer's own event carried) at END_RUN."""

        def __init__(self):
            super().__init__()
            self.events = []

        def handle_event(self, event_type, fl_ctx):
            if event_type == "_trained":
                self.events.append(f"_trained@{fl_ctx.get_prop('trained_round')}")
            elif event_type in (EventType.START_RUN, EventType.ABOUT_TO_END_RUN, EventType.END_RUN,
                                EventType.BEFORE_TASK_EXECUTION, EventType.AFTER_TASK_EXECUTION):
                self.events.append(event_type)
            if event_type == EventType.END_RUN:
                path = os.path.join(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()), "events.json")
                with open(path, "w") as f:
                    json.dump(self.events, f)


    class FileLocator(ModelLocator):
        def get_model_names(self, fl_ctx):
            return ["global"]

        def locate_model(self, model_name, fl_ctx):
            path = os.path.join(fl_ctx.get_engine().get_workspace().get_app_dir(fl_ctx.get_job_id()), "global.fobs")
            with open(path, "rb") as f:
                return model_learnable_to_dxo(fobs.load(f))
    '''
)


def _job(root: Path, server: dict[str, Any], client: dict[str, Any], parts: str = PARTS) -> Path:
    (root / "app" / "config").mkdir(parents=True)
    (root / "app" / "custom").mkdir(parents=True)
    (root / "app" / "custom" / "nvparts.py").write_text(parts)
    meta = {"name": root.name, "min_clients": 2, "deploy_map": {"app": ["@ALL"]}}
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "app" / "config" / "config_fed_server.json").write_text(json.dumps({"format_version": 2, **server}))
    (root / "app" / "config" / "config_fed_client.json").write_text(json.dumps({"format_version": 2, **client}))
    return root


def _sag(rounds: int = 2, persistor: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "components": [
            {"id": "persistor", "path": "nvparts.NPPersistor", "args": persistor or {}},
            {"id": "shareable_generator", "path": "FullModelShareableGenerator"},
            {"id": "aggregator", "path": "nvparts.MeanAggregator"},
            {"id": "recorder", "path": "nvparts.EventRecorder"},
        ],
        "workflows": [
            {
                "id": "sag",
                "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
                "args": {
                    "min_clients": 2,
                    "num_rounds": rounds,
                    "wait_time_after_min_received": 0,
                    "persistor_id": "persistor",
                },
            }
        ],
    }


CLIENT = {
    "executors": [{"tasks": ["train"], "executor": {"path": "nvparts.AddSiteTrainer"}}],
    "task_result_filters": [{"tasks": ["train"], "filters": [{"path": "nvparts.Doubler"}]}],
    "components": [{"id": "recorder", "path": "nvparts.EventRecorder"}],
}


def test_an_nvflare_api_job_trains_with_its_executor_filter_aggregator_and_persistor(tmp_path: Path):
    job = _job(tmp_path / "nvjob", _sag(rounds=2), CLIENT)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.error) == ("FINISHED:COMPLETED", "")
    with open(tmp_path / "ws" / "server" / "global.fobs", "rb") as f:
        saved = fobs.load(f)
    # each round: site-k sends (w + k) * 2 (the Doubler), the aggregator takes the mean: w -> 2w + 3
    np.testing.assert_allclose(saved["weights"]["w"], np.full(3, 9.0))
    events = json.loads((tmp_path / "ws" / "site-1" / "events.json").read_text())
    assert events == [
        "_start_run",
        "_before_task_execution",
        "_trained@0",
        "_after_task_execution",
        "_before_task_execution",
        "_trained@1",
        "_after_task_execution",
        "_about_to_end_run",
        "_end_run",
    ]
    assert json.loads((tmp_path / "ws" / "server" / "events.json").read_text()) == [
        "_start_run",
        "_about_to_end_run",
        "_end_run",
    ]


def test_an_executors_return_code_fails_its_task_with_that_code(tmp_path: Path):
    client = {"executors": [{"tasks": ["train", "other"], "executor": {"path": "nvparts.AddSiteTrainer"}}]}
    server = _sag(rounds=1)
    server["workflows"][0]["args"]["train_task_name"] = "other"
    server["components"][2] = {
        "id": "aggregator",
        "path": "InTimeAccumulateWeightedAggregator",
    }
    result = simulate(_job(tmp_path / "rc", server, client), n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert "AddSiteTrainer.execute('other') returned TASK_UNKNOWN" in result.error, result.error


def test_system_panic_fails_the_job_and_names_the_reason(tmp_path: Path):
    job = _job(tmp_path / "panic", _sag(rounds=1, persistor={"panic": True}), CLIENT)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert result.error == "system panic: NPPersistor: no initial model on purpose"


def test_cross_site_evaluation_with_an_nvflare_model_locator_and_learner_executor(tmp_path: Path):
    learner = textwrap.dedent(
        """
        from nvflare.apis.dxo import DXO, DataKind, from_shareable
        from nvflare.apis.fl_constant import ReturnCode
        from nvflare.apis.shareable import make_reply
        from nvflare.app_common.abstract.learner_spec import Learner
        from nvflare.app_common.app_constant import AppConstants, ValidateType


        class SiteLearner(Learner):
            def initialize(self, parts, fl_ctx):
                self.k = int(fl_ctx.get_identity_name().rsplit("-", 1)[1])
                self.local = None
                self.finalized = False

            def train(self, data, fl_ctx, abort_signal):
                w = from_shareable(data).data["w"]
                self.local = w + self.k
                return DXO(DataKind.WEIGHTS, {"w": self.local}, meta={"NUM_STEPS_CURRENT_ROUND": 1}).to_shareable()

            def get_model_for_validation(self, model_name, fl_ctx):
                if model_name != "best_model" or self.local is None:
                    return make_reply(ReturnCode.EXECUTION_RESULT_ERROR)
                return DXO(DataKind.WEIGHTS, {"w": self.local}).to_shareable()

            def validate(self, data, fl_ctx, abort_signal):
                assert data.get_header(AppConstants.VALIDATE_TYPE) == ValidateType.MODEL_VALIDATE
                w = from_shareable(data).data["w"]
                return DXO(DataKind.METRICS, {"score": float(w.mean()) * 10 + self.k}).to_shareable()
        """
    )
    server = _sag(rounds=1)
    server["components"][2] = {
        "id": "aggregator",
        "path": "InTimeAccumulateWeightedAggregator",
        "args": {"expected_data_kind": "WEIGHTS"},
    }
    server["components"].append({"id": "model_locator", "path": "nvparts.FileLocator"})
    server["components"].append(
        {"id": "json_generator", "path": "nvflare.app_common.widgets.validation_json_generator.ValidationJsonGenerator"}
    )
    server["workflows"].append(
        {
            "id": "cse",
            "path": "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval",
            "args": {"model_locator_id": "model_locator"},
        }
    )
    client = {
        "executors": [
            {
                "tasks": ["train", "submit_model", "validate"],
                "executor": {
                    "path": "nvflare.app_common.executors.learner_executor.LearnerExecutor",
                    "args": {"learner_id": "learner"},
                },
            }
        ],
        "components": [{"id": "learner", "path": "nvlearner.SiteLearner"}],
    }
    job = _job(tmp_path / "cse", server, client)
    (job / "app" / "custom" / "nvlearner.py").write_text(learner)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.error) == ("FINISHED:COMPLETED", "")
    matrix = json.loads((tmp_path / "ws" / "server" / "cross_site_val" / "cross_val_results.json").read_text())
    # global after one round: mean(1, 2) = 1.5; site-k's local model: k; score = 10 * mean + validating site
    assert matrix == {
        "site-1": {"SRV_global": {"score": 16.0}, "site-1": {"score": 11.0}, "site-2": {"score": 21.0}},
        "site-2": {"SRV_global": {"score": 17.0}, "site-1": {"score": 12.0}, "site-2": {"score": 22.0}},
    }


def test_a_model_learner_trains_and_validates_through_model_learner_executor(tmp_path: Path):
    learner = textwrap.dedent(
        """
        from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
        from nvflare.app_common.abstract.model_learner import ModelLearner


        class AddOne(ModelLearner):
            def initialize(self):
                self.info(f"{self.site_name} starts job {self.job_id}")
                self.rounds = []

            def train(self, model):
                self.rounds.append((model.current_round, model.total_rounds))
                diff = {k: v * 0 + 1.0 for k, v in model.params.items()}
                return FLModel(params=diff, params_type=ParamsType.DIFF, meta={"NUM_STEPS_CURRENT_ROUND": 1})

            def finalize(self):
                with open(self.app_root + "/rounds.txt", "w") as f:
                    f.write(repr(self.rounds))
        """
    )
    server = _sag(rounds=3)
    server["components"][2] = {
        "id": "aggregator",
        "path": "InTimeAccumulateWeightedAggregator",
        "args": {"expected_data_kind": "WEIGHT_DIFF"},
    }
    client = {
        "executors": [
            {
                "tasks": ["train"],
                "executor": {
                    "path": "nvflare.app_common.executors.model_learner_executor.ModelLearnerExecutor",
                    "args": {"learner_id": "learner"},
                },
            }
        ],
        "components": [{"id": "learner", "path": "nvlearner.AddOne"}],
    }
    job = _job(tmp_path / "ml", server, client)
    (job / "app" / "custom" / "nvlearner.py").write_text(learner)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.error) == ("FINISHED:COMPLETED", "")
    with open(tmp_path / "ws" / "server" / "global.fobs", "rb") as f:
        np.testing.assert_allclose(fobs.load(f)["weights"]["w"], np.full(3, 3.0))
    assert (tmp_path / "ws" / "site-2" / "rounds.txt").read_text() == "[(0, 3), (1, 3), (2, 3)]"


def test_a_non_component_where_an_executor_goes_is_refused_naming_both_apis(tmp_path: Path):
    from flruntime.validation import validate_job

    client = {"executors": [{"tasks": ["train"], "executor": {"path": "nvparts.EventRecorder"}}]}
    report = validate_job(_job(tmp_path / "bad", _sag(), client))
    lines = [p.format() for p in report.problems]
    assert any(
        "EventRecorder is not an executor (an executor must implement flruntime.roles.Executor or subclass "
        "nvflare.apis.executor.Executor)" in line
        for line in lines
    ), lines


def test_fobs_round_trips_the_types_examples_send_without_pickle():
    import pickle

    dxo = DXO(DataKind.COLLECTION, {"a": DXO(DataKind.WEIGHTS, {"w": np.arange(6, dtype=np.float16).reshape(2, 3)})})
    value = {
        "shareable": dxo.to_shareable(),
        "dxo": DXO(DataKind.METRICS, {"acc": 0.5}, meta={"round": 2}),
        "scalars": [np.float32(1.5), np.int64(7), float("nan"), float("inf")],
        "bytes": b"\x00\xff",
        "tuple": (1, "two"),
        "int_keys": {1: "one"},
    }
    back = fobs.loads(fobs.dumps(value))
    inner = from_shareable(back["shareable"]).data["a"]
    assert isinstance(back["shareable"], Shareable) and inner.data_kind == DataKind.WEIGHTS
    np.testing.assert_array_equal(inner.data["w"], np.arange(6, dtype=np.float16).reshape(2, 3))
    assert (back["dxo"].data, back["dxo"].meta) == ({"acc": 0.5}, {"round": 2})
    assert back["scalars"][:2] == [1.5, 7] and type(back["scalars"][0]) is np.float32
    assert np.isnan(back["scalars"][2]) and back["scalars"][3] == float("inf")
    assert (back["bytes"], back["tuple"], back["int_keys"]) == (b"\x00\xff", (1, "two"), {1: "one"})
    with pytest.raises(ValueError, match=r"^not fobs data written by flruntime \(no FOBS1 header\)$"):
        fobs.loads(pickle.dumps({"a": 1}))
    with pytest.raises(TypeError, match="fobs cannot serialise a builtins.object .register a Decomposer"):
        fobs.dumps({"x": object()})
    with pytest.raises(ValueError, match="^fobs data is truncated$"):
        fobs.loads(fobs.dumps(value)[:20])


def test_fobs_uses_registered_decomposers():
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    class PointDecomposer(fobs.Decomposer):
        def supported_type(self) -> type:
            return Point

        def decompose(self, target: Any, manager: Any = None) -> Any:
            return [target.x, target.y]

        def recompose(self, data: Any, manager: Any = None) -> Any:
            return Point(*data)

    fobs.register(PointDecomposer)
    back = fobs.loads(fobs.dumps({"p": Point(1, 2)}))
    assert (back["p"].x, back["p"].y) == (1, 2)


def test_fl_context_properties_sticky_and_private(tmp_path: Path):
    from flruntime.events.bus import EventBus
    from flruntime.runtime.context import RunContext

    state = SiteState(RunContext("job", "site-1", tmp_path, tmp_path, EventBus("site-1")))
    first = FLContext(state)
    first.set_prop("kept", 1, private=True, sticky=True)
    first.set_prop("gone", 2, private=False, sticky=False)
    first.set_prop(ReservedKey.IDENTITY_NAME, "site-1", private=False, sticky=False)
    assert first.get_all_public_props() == {"gone": 2, ReservedKey.IDENTITY_NAME: "site-1"}
    assert first.get_prop_detail("kept") == {"value": 1, "private": True, "sticky": True}
    second = FLContext(state)
    assert (second.get_prop("kept"), second.get_prop("gone", "default")) == (1, "default")
    second.remove_prop("kept")
    assert FLContext(state).get_prop("kept") is None


def test_signals_follow_their_parent_and_the_runs_abort():
    import threading

    abort = threading.Event()
    parent = Signal(event=abort)
    child = Signal(parent=parent)
    assert not child.triggered
    abort.set()
    assert parent.triggered and child.triggered
    own = Signal()
    own.trigger("stop")
    assert (own.triggered, own.value) == (True, "stop")
    own.reset()
    assert not own.triggered


def test_a_dxo_filter_filters_the_leaves_of_a_collection_of_its_kinds():
    class Negate(DXOFilter):
        def __init__(self) -> None:
            super().__init__([DataKind.WEIGHTS], [DataKind.WEIGHTS])

        def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
            return DXO(dxo.data_kind, {k: -v for k, v in dxo.data.items()}, dxo.meta)

    coll = DXO(
        DataKind.COLLECTION,
        {"a": DXO(DataKind.WEIGHTS, {"w": np.ones(2)}), "m": DXO(DataKind.METRICS, {"acc": 1.0})},
    )
    out = from_shareable(Negate().process(coll.to_shareable(), FLContext()))
    np.testing.assert_array_equal(out.data["a"].data["w"], -np.ones(2))
    assert out.data["a"].get_filter_history() == ["Negate"]
    assert out.data["m"].data == {"acc": 1.0}
    failed = make_reply("EXECUTION_EXCEPTION")
    assert Negate().process(failed, FLContext()) is failed  # replies with an error pass through
    with pytest.raises(ValueError, match=r"data kinds \['METRICS'\] are not supported by Negate"):
        DXOFilter.__init__(Negate.__new__(Negate), [DataKind.WEIGHTS], [DataKind.METRICS])


def test_pt_persistence_format_manager_reads_both_checkpoint_shapes():
    import torch

    state = {"layer.weight": torch.ones(2, 2), "layer.bias": torch.zeros(2)}
    for data in (state, {"model": state, "train_conf": {"lr": 0.1}, "meta_props": {"round": 3}}):
        manager = PTModelPersistenceFormatManager(data, default_train_conf={"train": {"model": "Net"}})
        ml = manager.to_model_learnable(exclude_vars="bias")
        assert list(ml["weights"]) == ["layer.weight"] and isinstance(ml["weights"]["layer.weight"], np.ndarray)
        ml["weights"]["layer.weight"] = ml["weights"]["layer.weight"] * 3
        manager.update(ml)
        saved = manager.to_persistence_dict()
        assert torch.equal(saved["model"]["layer.weight"], torch.full((2, 2), 3.0))
        assert saved["train_conf"] == data.get("train_conf", {"train": {"model": "Net"}})


CONTROLLER = textwrap.dedent(
    '''
    import numpy as np

    from nvflare.apis.dxo import DXO, DataKind, from_shareable
    from nvflare.apis.impl.controller import ClientTask, Controller, Task, TaskCompletionStatus
    from nvflare.apis.shareable import Shareable
    from nvflare.app_common.abstract.model import make_model_learnable
    from nvflare.app_common.app_constant import AppConstants


    class MyWorkflow(Controller):
        """Two broadcast rounds (mean of the results), then a relay and a send, as NVFlare documents them."""

        def __init__(self, rounds=2, persistor_id="persistor"):
            super().__init__()
            self.rounds = rounds
            self.persistor_id = persistor_id
            self.log = []

        def start_controller(self, fl_ctx):
            self.persistor = fl_ctx.get_engine().get_component(self.persistor_id)
            self.model = self.persistor.load_model(fl_ctx)
            self.clients = [c.name for c in fl_ctx.get_engine().get_clients()]

        def control_flow(self, abort_signal, fl_ctx):
            w = self.model["weights"]["w"]
            for r in range(self.rounds):
                data = DXO(DataKind.WEIGHTS, {"w": w}).to_shareable()
                data.set_header(AppConstants.CURRENT_ROUND, r)
                got = []
                task = Task("train", data, result_received_cb=lambda client_task, fl_ctx: got.append(client_task))
                self.broadcast_and_wait(task, fl_ctx, min_responses=2, abort_signal=abort_signal)
                assert task.completion_status == TaskCompletionStatus.OK
                w = np.mean([from_shareable(ct.result).data["w"] for ct in got], axis=0)
                self.log.append(sorted(ct.client.name for ct in got))

            def relay_cb(client_task, fl_ctx):  # the next client gets what the last one returned
                client_task.task.data = client_task.result

            relay = Task("train", DXO(DataKind.WEIGHTS, {"w": w}).to_shareable(), result_received_cb=relay_cb)
            self.relay_and_wait(relay, fl_ctx, targets=["site-2", "site-1"])
            self.log.append([ct.client.name for ct in relay.client_tasks])
            w = from_shareable(relay.data).data["w"]
            one = Task("train", DXO(DataKind.WEIGHTS, {"w": w}).to_shareable())
            self.send_and_wait(one, fl_ctx, targets=["site-1"])
            self.log.append(list(one.last_client_task_map))
            w = from_shareable(one.last_client_task_map["site-1"].result).data["w"]
            self.persistor.save_model(make_model_learnable({"w": w}, {"log": self.log}), fl_ctx)

        def stop_controller(self, fl_ctx):
            pass
    '''
)


def test_a_controller_workflow_broadcasts_relays_and_sends_tasks(tmp_path: Path):
    server = _sag()
    server["workflows"] = [{"id": "mine", "path": "nvcontroller.MyWorkflow", "args": {"rounds": 2}}]
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "nvparts.AddSiteTrainer"}}]}
    job = _job(tmp_path / "ctl", server, client)
    (job / "app" / "custom" / "nvcontroller.py").write_text(CONTROLLER)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.error) == ("FINISHED:COMPLETED", "")
    with open(tmp_path / "ws" / "server" / "global.fobs", "rb") as f:
        saved = fobs.load(f)
    # two rounds of mean(w + 1, w + 2): 1.5, 3.0; relay through site-2 then site-1: +2 +1 = 6.0; send to site-1: 7.0
    np.testing.assert_allclose(saved["weights"]["w"], np.full(3, 7.0))
    assert saved["meta"]["log"] == [["site-1", "site-2"], ["site-1", "site-2"], ["site-2", "site-1"], ["site-1"]]


def test_an_nvflare_widget_hears_tracking_events_as_analytics_dxos(tmp_path: Path):
    from flruntime.compat.adapters import adapt
    from flruntime.compat.analytix import AnalyticsData
    from flruntime.compat.component import FLComponent
    from flruntime.compat.constants import FLContextKey
    from flruntime.events.bus import EventBus
    from flruntime.events.types import EventType
    from flruntime.runtime.context import RunContext
    from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

    heard: list[tuple[str, str, Any, int | None, str]] = []

    class Receiver(FLComponent):
        def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
            if event_type == EventType.FED_ANALYTIX_LOG_STATS:
                shareable = fl_ctx.get_prop(FLContextKey.EVENT_DATA)
                data = AnalyticsData.from_dxo(from_shareable(shareable), receiver=LogWriterName.MLFLOW)
                site = shareable.get_peer_prop(ReservedKey.IDENTITY_NAME)
                heard.append((site, data.tag, data.value, data.step, str(data.data_type)))

    run = RunContext("job", "server", tmp_path, tmp_path, EventBus("server"))
    wrapper = adapt(Receiver())
    wrapper.setup(run)
    record = AnalyticsRecord.make("loss", 0.25, AnalyticsDataType.SCALAR, LogWriterName.TORCH_TB, 3)
    run.bus.fire(EventType.FED_ANALYTIX_LOG_STATS, origin="site-1", record=record)
    wrapper.teardown(run)
    run.bus.fire(EventType.FED_ANALYTIX_LOG_STATS, origin="site-1", record=record)  # no longer heard
    # a TensorBoard scalar, converted for an MLflow-style receiver: a METRIC
    assert heard == [("site-1", "loss", 0.25, 3, "METRIC")]
