"""IntimeModelSelector (best global model from client metrics) and ValidationJsonGenerator (the CSE matrix)."""

import json
from pathlib import Path

import numpy as np
import pytest
from flruntime.components.widgets.model_selector import IntimeModelSelectionHandler, IntimeModelSelector, metric_of
from flruntime.components.widgets.validation_json import ValidationJsonGenerator

from flruntime.events.bus import Event, EventBus
from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext
from flruntime.runtime.lifecycle import start_components, stop_components
from flruntime.runtime.messages import ModelMessage


def make_ctx(tmp_path: Path) -> RunContext:
    return RunContext("job", "server", tmp_path / "ws", tmp_path, EventBus("server"))


class Round:
    """Plays one round of the server's events for a selector."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.best: list[Event] = []
        ctx.bus.subscribe(EventType.GLOBAL_BEST_MODEL_AVAILABLE, self.best.append)

    def play(self, rnd: int, results: dict[str, dict], model: ModelMessage | None = None) -> None:
        self.ctx.bus.fire(EventType.ROUND_STARTED, round=rnd, model=model or ModelMessage({"r": np.array([rnd])}))
        for site, meta in results.items():
            self.ctx.bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site=site, result=ModelMessage({}, meta=meta))
        self.ctx.bus.fire(EventType.BEFORE_AGGREGATION, round=rnd)

    def fired(self) -> list[tuple[float, int]]:
        return [(e.data["metric"], e.data["round"]) for e in self.best]


def acc(value, steps=None, key="val_accuracy"):
    meta = {"initial_metrics": {key: value}}
    if steps is not None:
        meta["NUM_STEPS_CURRENT_ROUND"] = steps
    return meta


def test_fires_only_when_the_mean_beats_the_best_so_far(tmp_path):
    ctx = make_ctx(tmp_path)
    sel = IntimeModelSelector()
    sel.setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": acc(0.5), "b": acc(0.7)})
    rounds.play(1, {"a": acc(0.9), "b": acc(0.9)})
    rounds.play(2, {"a": acc(0.8), "b": acc(0.95)})  # 0.875 < 0.9
    rounds.play(3, {"a": acc(0.9), "b": acc(0.9)})  # equal is not better
    assert rounds.fired() == [(pytest.approx(0.6), 0), (0.9, 1)]
    assert rounds.best[1].data["model"].params["r"].tolist() == [1]  # the model of that round
    assert sel.best == 0.9 and sel.best_round == 1


def test_weights_local_steps_and_aggregation_weights(tmp_path):
    ctx = make_ctx(tmp_path)
    sel = IntimeModelSelector(weigh_by_local_iter=True, aggregation_weights={"a": 3.0})
    sel.setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": acc(1.0, steps=1), "b": acc(0.0, steps=2), "c": acc(0.5)})
    # weights: a 3·1, b 1·2, c 1·1 (no steps meta) → (3 + 0 + 0.5) / 6
    assert rounds.fired() == [(pytest.approx(3.5 / 6), 0)]


def test_local_steps_are_ignored_by_default(tmp_path):
    ctx = make_ctx(tmp_path)
    IntimeModelSelector().setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": acc(1.0, steps=9), "b": acc(0.0, steps=1)})
    assert rounds.fired() == [(0.5, 0)]


def test_negated_metric_and_plain_number_metric(tmp_path):
    ctx = make_ctx(tmp_path)
    IntimeModelSelector(validation_metric_name="loss", negate_key_metric=True).setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": {"loss": 2.0}})
    rounds.play(1, {"a": {"loss": 3.0}})
    rounds.play(2, {"a": {"loss": np.float32(1.0)}})
    assert rounds.fired() == [(2.0, 0), (1.0, 2)]  # the metric as reported, not negated


def test_missing_metrics_change_nothing_and_are_reported_once(tmp_path, caplog):
    ctx = make_ctx(tmp_path)
    IntimeModelSelector(key_metric="val_acc").setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": {}, "b": acc(0.4)})  # b reports another key
    rounds.play(1, {"a": {}, "b": acc(0.4, key="val_acc")})
    rounds.play(2, {"a": acc(True, key="val_acc")})  # a bool is not a metric
    assert rounds.fired() == [(0.4, 1)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "the result from a has no 'initial_metrics' metric (not repeated for this site)",
        "the 'initial_metrics' of b has no number 'val_acc': {'val_accuracy': 0.4} (not repeated for this site)",
    ]


def test_a_second_result_from_a_site_in_a_round_is_ignored(tmp_path):
    ctx = make_ctx(tmp_path)
    IntimeModelSelector().setup(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": acc(0.2)})
    ctx.bus.fire(EventType.ROUND_STARTED, round=1, model=ModelMessage({}))
    for value in (0.6, 1.0):
        ctx.bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site="a", result=ModelMessage({}, meta=acc(value)))
    ctx.bus.fire(EventType.BEFORE_AGGREGATION, round=1)
    assert rounds.fired() == [(0.2, 0), (0.6, 1)]


def test_teardown_unsubscribes_and_old_name_is_the_same_component(tmp_path, caplog):
    ctx = make_ctx(tmp_path)
    sel = IntimeModelSelectionHandler(key_metric="val_loss")
    assert isinstance(sel, IntimeModelSelector)
    assert "key_metric 'val_loss' looks like lower-is-better" in caplog.text
    sel.setup(ctx)
    sel.teardown(ctx)
    rounds = Round(ctx)
    rounds.play(0, {"a": acc(0.5, key="val_loss")})
    assert rounds.fired() == []


def test_metric_of():
    assert metric_of(3, "k") == 3.0 and metric_of({"k": np.float64(0.5)}, "k") == 0.5
    assert metric_of({"x": 1}, "k") is None and metric_of("0.5", "k") is None and metric_of(float("nan"), "k") is None


def test_validation_json_matrix_and_heatmap(tmp_path):
    ctx = make_ctx(tmp_path)
    gen = ValidationJsonGenerator()
    start_components([gen], ctx)
    for owner, client, value in [("site-1", "site-1", 0.5), ("SRV_server", "site-1", 0.25), ("site-1", "site-2", 1)]:
        ctx.bus.fire(
            EventType.VALIDATION_RESULT_RECEIVED, model_owner=owner, data_client=client, metrics={"acc": value}
        )
    ctx.bus.fire(
        EventType.VALIDATION_RESULT_RECEIVED, model_owner="x", data_client="site-2", metrics={"acc": np.float32(0.75)}
    )
    ctx.bus.fire(EventType.VALIDATION_RESULT_RECEIVED, model_owner="", data_client="site-2", metrics={"acc": 1.0})
    ctx.bus.fire(EventType.VALIDATION_RESULT_RECEIVED, model_owner="y", data_client="site-2", metrics=[1.0])
    stop_components([gen], ctx)
    path = tmp_path / "ws" / "cross_site_val" / "cross_val_results.json"
    assert json.loads(path.read_text()) == {
        "site-1": {"site-1": {"acc": 0.5}, "SRV_server": {"acc": 0.25}},
        "site-2": {"site-1": {"acc": 1}, "x": {"acc": 0.75}},
    }
    assert isinstance(json.loads(path.read_text())["site-2"]["x"]["acc"], float)
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ctx.bus.fire(EventType.END_RUN)  # torn down: no longer listening
    assert png.stat().st_size > 1000


def test_validation_json_is_written_even_when_empty(tmp_path):
    ctx = make_ctx(tmp_path)
    gen = ValidationJsonGenerator(results_dir="out/cse", json_file_name="matrix.json")
    start_components([gen], ctx)
    stop_components([gen], ctx)
    assert (tmp_path / "ws" / "out" / "cse" / "matrix.json").read_text() == "{}\n"
    assert not (tmp_path / "ws" / "out" / "cse" / "matrix.png").exists()  # nothing to draw
    with pytest.raises(ValueError, match="results_dir must be a relative path inside the workspace, got '/tmp'"):
        ValidationJsonGenerator(results_dir="/tmp")
