"""An Ignite handler streaming a MONAI engine's loss and metrics to the FL system (NVFlare's ``NVFlareStatsHandler``).

Attached to a bundle's trainer and evaluator (``MonaiAlgo`` calls ``attach`` on the stats sender the
:class:`~flruntime.components.monai.client_algo_executor.ClientAlgoExecutor` hands it), it sends every
iteration's loss and every epoch's metrics as analytics records: through a ``MetricsSender`` when
``metrics_sender_id`` names one (the spleen jobs' ``MetricsSender → MemoryPipe → MetricRelay`` path),
else straight onto the site's event bus as ``analytix_log_stats`` (what NVFlare's ``AnalyticsSender`` does).
A value that cannot be sent (not a number, not finite) is skipped with a warning; it never stops training.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from flruntime.components.widgets.metric_relay import MetricsSender
from ignite.engine import Engine, Events
from ignite.engine.events import CallableEventWithFilter

from flruntime.graph.refs import Ref
from flruntime.runtime.context import RunContext
from flruntime.tracking.emit import emit
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

log = logging.getLogger(__name__)

DEFAULT_TAG = "Loss"
Send = Callable[[str, Any, AnalyticsDataType, int], None]


def _first(output: Any) -> Any:
    """The default ``output_transform``: MONAI engines' decollated output, first item (which holds the loss)."""
    return output[0]


def _same(epoch: int) -> int:
    return epoch


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0
    return isinstance(value, (numbers.Real, np.generic))


class NVFlareStatsHandler:
    """Sends a MONAI/Ignite engine's iteration loss and epoch metrics as analytics records.

    Args:
        iteration_log: send ``output_transform(engine.state.output)`` after every iteration (or, given an
            Ignite event filter ``f(engine, event) -> bool``, after the iterations it lets through).
        epoch_log: send ``engine.state.metrics`` and ``state_attributes`` after every epoch (or a filter).
        output_transform: turns the engine's output into a scalar (sent as ``tag_name``) or a dict of scalars
            (each sent under its key; other values are skipped).
        global_epoch_transform: turns the engine's epoch into the step of epoch records.
        state_attributes: ``engine.state`` attributes sent after every epoch (missing ones are skipped).
        state_attributes_type: the data type of those records (default ``SCALAR``).
        tag_name: the tag of a scalar iteration output.
        metrics_sender_id: a ``MetricsSender`` to send through; without one, records fire on the site's bus.
    """

    def __init__(
        self,
        iteration_log: bool | Callable[[Engine, int], bool] = True,
        epoch_log: bool | Callable[[Engine, int], bool] = True,
        output_transform: Callable[[Any], Any] = _first,
        global_epoch_transform: Callable[[int], int] = _same,
        state_attributes: Sequence[str] | None = None,
        state_attributes_type: AnalyticsDataType | str | None = None,
        tag_name: str = DEFAULT_TAG,
        metrics_sender_id: Annotated[str, Ref(MetricsSender)] | None = None,
    ) -> None:
        self.iteration_log = iteration_log
        self.epoch_log = epoch_log
        self.output_transform = output_transform
        self.global_epoch_transform = global_epoch_transform
        self.state_attributes = list(state_attributes or [])
        self.state_attributes_type = AnalyticsDataType(state_attributes_type or AnalyticsDataType.SCALAR)
        self.tag_name = tag_name
        self.metrics_sender_id = metrics_sender_id or None
        self._send: Send | None = None
        self._warned: set[str] = set()
        self.sent = 0

    def setup(self, ctx: RunContext) -> None:
        """Choose where records go: the metrics sender, or the site's event bus."""
        if self.metrics_sender_id:
            sender = ctx.component(self.metrics_sender_id, MetricsSender)

            def through_sender(tag: str, value: Any, data_type: AnalyticsDataType, step: int) -> None:
                sender.add(tag, value, data_type, global_step=step)

            self._send = through_sender
        else:

            def on_bus(tag: str, value: Any, data_type: AnalyticsDataType, step: int) -> None:
                emit(ctx, AnalyticsRecord.make(tag, value, data_type, LogWriterName.MLFLOW, step))

            self._send = on_bus

    def teardown(self, ctx: RunContext) -> None:
        """Stop sending (events of engines still attached are ignored)."""
        self._send = None

    def attach(self, engine: Engine) -> None:
        """Register the iteration and epoch handlers on ``engine`` (once, however often it is called)."""
        if self.iteration_log and not engine.has_event_handler(self.iteration_completed, Events.ITERATION_COMPLETED):
            event: CallableEventWithFilter = Events.ITERATION_COMPLETED
            if callable(self.iteration_log):
                event = Events.ITERATION_COMPLETED(event_filter=self.iteration_log)
            engine.add_event_handler(event, self.iteration_completed)
        if self.epoch_log and not engine.has_event_handler(self.epoch_completed, Events.EPOCH_COMPLETED):
            event = Events.EPOCH_COMPLETED
            if callable(self.epoch_log):
                event = Events.EPOCH_COMPLETED(event_filter=self.epoch_log)
            engine.add_event_handler(event, self.epoch_completed)

    def _once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.log(level, message, *args)

    def _emit(self, tag: str, value: Any, data_type: AnalyticsDataType, step: int) -> None:
        if self._send is None:
            return  # not set up (or the run ended): there is nowhere to send to
        try:
            self._send(tag, value, data_type, step)
            self.sent += 1
        except (TypeError, ValueError) as exc:
            self._once(f"bad:{tag}", logging.WARNING, "NVFlareStatsHandler: not sending '%s': %s", tag, exc)

    def epoch_completed(self, engine: Engine) -> None:
        """Send the engine's metrics and the chosen state attributes, at step ``global_epoch_transform(epoch)``."""
        step = self.global_epoch_transform(engine.state.epoch)
        for name, value in engine.state.metrics.items():
            if _is_scalar(value):
                self._emit(name, value, AnalyticsDataType.SCALAR, step)
        for attr in self.state_attributes:
            value = getattr(engine.state, attr, None)
            if value is not None:
                self._emit(attr, value, self.state_attributes_type, step)

    def iteration_completed(self, engine: Engine) -> None:
        """Send ``output_transform(engine.state.output)`` at step ``engine.state.iteration``."""
        output = self.output_transform(engine.state.output)
        if output is None:
            return
        step = engine.state.iteration
        if isinstance(output, dict):
            skipped = []
            for name in sorted(output):
                if _is_scalar(output[name]):
                    self._emit(str(name), output[name], AnalyticsDataType.SCALAR, step)
                else:
                    skipped.append(str(name))
            if skipped:
                what = type(engine).__name__
                message = "NVFlareStatsHandler: %s output items %s are not scalars; not sent"
                self._once(f"skip:{what}", logging.INFO, message, what, ", ".join(skipped))
        elif _is_scalar(output):
            self._emit(self.tag_name, output, AnalyticsDataType.SCALAR, step)
        else:
            message = "NVFlareStatsHandler: the iteration output is a %s, not a scalar; not sent"
            self._once("skip:output", logging.WARNING, message, type(output).__name__)
