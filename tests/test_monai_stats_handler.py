"""NVFlareStatsHandler on real Ignite engines: which records it sends, where to, and when it sends nothing."""

import logging
import math
import time

import pytest
import torch
from flruntime.components.monai.stats_handler import NVFlareStatsHandler
from flruntime.components.widgets.metric_relay import MetricRelay, MetricsSender
from ignite.engine import Engine, Events

from flruntime.events.bus import EventBus
from flruntime.events.types import EventType
from flruntime.pipes.memory import MemoryPipe
from flruntime.runtime.context import RunContext

DATA = [1.0, 2.0, 3.0]


def context(tmp_path, components=None):
    return RunContext("job", "site-1", tmp_path, tmp_path, EventBus("site-1"), components=dict(components or {}))


def collect(ctx):
    records = []
    ctx.bus.subscribe(EventType.ANALYTIX_LOG_STATS, lambda event: records.append(event.data["record"]))
    return records


def trainer(output=lambda batch: [torch.tensor(batch / 10)]):
    """An engine whose output is ``output(batch)`` (a list, as a MONAI engine's decollated output is).

    Its epoch metrics and learning rate follow the epoch, so the test can predict them.
    """
    engine = Engine(lambda engine, batch: output(batch))

    @engine.on(Events.EPOCH_COMPLETED)
    def _metrics(engine):
        engine.state.metrics = {"val_mean_dice": engine.state.epoch / 10, "per_class": torch.tensor([0.1, 0.2])}
        engine.state.learning_rate = 0.01 / engine.state.epoch

    return engine


def simple(records):
    return [(r["tag"], r["step"], round(r["value"], 6), r["data_type"]) for r in records]


def test_iteration_loss_and_epoch_metrics_go_to_the_site_bus(tmp_path):
    ctx = context(tmp_path)
    records = collect(ctx)
    handler = NVFlareStatsHandler(state_attributes=["learning_rate", "not_there"], state_attributes_type="METRIC")
    handler.setup(ctx)
    engine = trainer()
    handler.attach(engine)
    handler.attach(engine)  # attaching twice registers once
    engine.run(DATA, max_epochs=2)
    iterations = [("Loss", i + 1, round(DATA[i % 3] / 10, 6), "SCALAR") for i in range(6)]
    assert simple(records) == [
        *iterations[:3],
        ("val_mean_dice", 1, 0.1, "SCALAR"),
        ("learning_rate", 1, 0.01, "METRIC"),
        *iterations[3:],
        ("val_mean_dice", 2, 0.2, "SCALAR"),
        ("learning_rate", 2, 0.005, "METRIC"),
    ]
    assert {r["writer"] for r in records} == {"MLFLOW"}
    assert handler.sent == len(records) == 10


def test_dict_output_sends_its_scalars_and_skips_the_rest(tmp_path, caplog):
    ctx = context(tmp_path)
    records = collect(ctx)
    handler = NVFlareStatsHandler(epoch_log=False)
    handler.setup(ctx)
    engine = trainer(lambda b: [{"loss": torch.tensor(b), "dice": b / 4, "pred": torch.zeros(2, 2)}])
    handler.attach(engine)
    with caplog.at_level(logging.INFO, logger="flruntime.components.monai.stats_handler"):
        engine.run(DATA[:2], max_epochs=1)
    assert simple(records) == [("dice", 1, 0.25, "SCALAR"), ("loss", 1, 1.0, "SCALAR"), ("dice", 2, 0.5, "SCALAR"),
                               ("loss", 2, 2.0, "SCALAR")]  # fmt: skip
    skipped = [r.getMessage() for r in caplog.records if "not scalars" in r.getMessage()]
    assert skipped == ["NVFlareStatsHandler: Engine output items pred are not scalars; not sent"]


def test_event_filters_and_global_epoch_transform(tmp_path):
    ctx = context(tmp_path)
    records = collect(ctx)
    handler = NVFlareStatsHandler(
        iteration_log=lambda engine, event: event % 2 == 0,
        epoch_log=lambda engine, event: event == 2,
        global_epoch_transform=lambda epoch: epoch + 100,
        tag_name="train_loss",
    )
    handler.setup(ctx)
    engine = trainer()
    handler.attach(engine)
    engine.run(DATA, max_epochs=2)
    assert [(r["tag"], r["step"]) for r in records] == [
        ("train_loss", 2),
        ("train_loss", 4),
        ("train_loss", 6),
        ("val_mean_dice", 102),
    ]


def test_a_bad_value_is_skipped_with_one_warning_and_training_goes_on(tmp_path, caplog):
    ctx = context(tmp_path)
    records = collect(ctx)
    handler = NVFlareStatsHandler(epoch_log=False)
    handler.setup(ctx)
    engine = trainer(lambda b: [torch.tensor(math.nan if b > 1 else b)])
    handler.attach(engine)
    with caplog.at_level(logging.WARNING, logger="flruntime.components.monai.stats_handler"):
        state = engine.run(DATA, max_epochs=1)
    assert state.iteration == 3
    assert simple(records) == [("Loss", 1, 1.0, "SCALAR")]
    assert [r.getMessage() for r in caplog.records] == [
        "NVFlareStatsHandler: not sending 'Loss': Loss: nan is not a finite number"
    ]


def test_nothing_is_sent_without_a_sender(tmp_path):
    ctx = context(tmp_path)
    records = collect(ctx)
    handler = NVFlareStatsHandler()  # never set up: no sender, no site
    engine = trainer()
    handler.attach(engine)
    assert engine.run(DATA, max_epochs=2).iteration == 6
    assert (handler.sent, records) == (0, [])
    handler.setup(ctx)
    handler.teardown(ctx)  # after the run ends, engines still attached send nothing
    engine.run(DATA, max_epochs=3)
    assert (handler.sent, records) == (0, [])


def test_nothing_is_attached_when_logging_is_off(tmp_path):
    handler = NVFlareStatsHandler(iteration_log=False, epoch_log=False)
    engine = trainer()
    handler.attach(engine)
    assert not engine.has_event_handler(handler.iteration_completed)
    assert not engine.has_event_handler(handler.epoch_completed)


def test_through_metrics_sender_memory_pipe_and_metric_relay(tmp_path):
    """The spleen jobs' chain: handler → MetricsSender → MemoryPipe → MetricRelay → analytix_log_stats on the site."""
    parts = {
        "metrics_sender_pipe": MemoryPipe(token="job", mode="ACTIVE"),
        "metrics_relay_pipe": MemoryPipe(token="job", mode="PASSIVE"),
    }
    parts["metric_relay"] = MetricRelay(pipe_id="metrics_relay_pipe", fed_event=False, read_interval=0.01)
    parts["metrics_sender"] = MetricsSender(pipe_id="metrics_sender_pipe")
    parts["log_writer"] = NVFlareStatsHandler(metrics_sender_id="metrics_sender")
    ctx = context(tmp_path, parts)
    records = collect(ctx)
    for part in parts.values():
        part.setup(ctx)
    try:
        engine = trainer()
        parts["log_writer"].attach(engine)
        engine.run(DATA, max_epochs=2)
        deadline = time.monotonic() + 10
        while len(records) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for part in reversed(parts.values()):
            if hasattr(part, "teardown"):
                part.teardown(ctx)
    assert parts["metric_relay"].relayed == 8
    assert [(r["tag"], r["step"]) for r in records] == [
        ("Loss", 1),
        ("Loss", 2),
        ("Loss", 3),
        ("val_mean_dice", 1),
        ("Loss", 4),
        ("Loss", 5),
        ("Loss", 6),
        ("val_mean_dice", 2),
    ]
    # MetricsSender does not forward the handler's writer (as in NVFlare): records arrive as TensorBoard SCALARs
    assert {(r["writer"], r["data_type"]) for r in records} == {("TORCH_TENSORBOARD", "SCALAR")}


def test_a_missing_metrics_sender_fails_setup(tmp_path):
    handler = NVFlareStatsHandler(metrics_sender_id="metrics_sender")
    with pytest.raises(KeyError, match="no MetricsSender with id 'metrics_sender'"):
        handler.setup(context(tmp_path))
