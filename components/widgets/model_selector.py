"""Picks the best global model from the clients' validation metrics (NVFlare's ``IntimeModelSelector``).

In each round, clients validate the global model they received before training and send the metric
with their result (meta ``initial_metrics``). The selector averages those metrics as the results
arrive; before aggregation, when the mean beats the best so far, it fires
``GLOBAL_BEST_MODEL_AVAILABLE`` with ``{"metric", "round", "model"}`` — the model being the global
model of that round, the one the clients validated — and a persistor saves it as the best model.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from numbers import Real
from typing import Any

from flruntime.events.bus import Event, EventBus, Subscription
from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import MetaKey, ModelMessage

log = logging.getLogger(__name__)

_LOWER_IS_BETTER = re.compile(r"loss|err|(^|[^a-z])(mse|mae|rmse|nll|ce|bce|wer|cer|ppl|perplexity)([^a-z]|$)")


def metric_of(value: Any, key_metric: str) -> float | None:
    """Return the key metric from a metric value (a number, or a dict holding ``key_metric``), else None."""
    if isinstance(value, dict):
        value = value.get(key_metric)
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class IntimeModelSelector:
    """Fires ``GLOBAL_BEST_MODEL_AVAILABLE`` when a round's weighted mean validation metric is the best so far.

    Args:
        weigh_by_local_iter: weight each site's metric by its ``NUM_STEPS_CURRENT_ROUND`` too.
        aggregation_weights: per-site weights (1.0 for sites not named).
        validation_metric_name: the result meta key holding the metric (a number or a dict of metrics).
        key_metric: the metric to use when the meta holds a dict.
        negate_key_metric: lower is better (e.g. a loss): compare the negated metric.
    """

    def __init__(
        self,
        weigh_by_local_iter: bool = False,
        aggregation_weights: dict[str, float] | None = None,
        validation_metric_name: str = MetaKey.INITIAL_METRICS.value,
        key_metric: str = "val_accuracy",
        negate_key_metric: bool = False,
    ) -> None:
        self.weigh_by_local_iter = weigh_by_local_iter
        self.aggregation_weights = {k: float(v) for k, v in (aggregation_weights or {}).items()}
        self.validation_metric_name = validation_metric_name
        self.key_metric = key_metric
        self.negate_key_metric = negate_key_metric
        self.best: float | None = None
        self.best_round: int | None = None
        self._lock = threading.Lock()
        self._round: int | None = None
        self._model: ModelMessage | None = None
        self._sum = 0.0
        self._weights = 0.0
        self._seen: set[str] = set()
        self._warned: set[str] = set()
        self._subs: list[Subscription] = []
        self._bus: EventBus | None = None
        if not negate_key_metric and _LOWER_IS_BETTER.search(key_metric.lower()):
            log.warning(
                "key_metric '%s' looks like lower-is-better but higher values are treated as better; "
                "set negate_key_metric to true if lower values mean a better model",
                key_metric,
            )

    def setup(self, ctx: RunContext) -> None:
        """Follow the rounds on the server's bus."""
        self._bus = ctx.bus
        self._subs = [
            ctx.bus.subscribe(EventType.ROUND_STARTED, self._round_started),
            ctx.bus.subscribe(EventType.BEFORE_CONTRIBUTION_ACCEPT, self._contribution),
            ctx.bus.subscribe(EventType.BEFORE_AGGREGATION, self._before_aggregation),
        ]

    def teardown(self, ctx: RunContext) -> None:
        """Stop following events."""
        for sub in self._subs:
            sub.remove()
        self._subs = []

    def _round_started(self, event: Event) -> None:
        model = event.data.get("model")
        with self._lock:
            self._round = event.data.get("round")
            self._model = model if isinstance(model, ModelMessage) else None
            self._sum = self._weights = 0.0
            self._seen = set()

    def _warn_once(self, site: str, message: str, *args: Any) -> None:
        if site not in self._warned:
            self._warned.add(site)
            log.warning(message + " (not repeated for this site)", *args)

    def _contribution(self, event: Event) -> None:
        site = str(event.data.get("site", "?"))
        result = event.data.get("result")
        if not isinstance(result, ModelMessage):
            return
        raw = result.meta.get(self.validation_metric_name)
        value = metric_of(raw, self.key_metric)
        if value is None:
            if raw is None:
                self._warn_once(site, "the result from %s has no '%s' metric", site, self.validation_metric_name)
            else:
                self._warn_once(
                    site,
                    "the '%s' of %s has no number '%s': %r",
                    self.validation_metric_name,
                    site,
                    self.key_metric,
                    raw,
                )
            return
        weight = self.aggregation_weights.get(site, 1.0)
        if self.weigh_by_local_iter:
            weight *= float(result.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0))
        with self._lock:
            if site in self._seen:
                return
            self._seen.add(site)
            self._sum += (-value if self.negate_key_metric else value) * weight
            self._weights += weight

    def _before_aggregation(self, event: Event) -> None:
        with self._lock:
            if self._weights <= 0:
                return
            score = self._sum / self._weights
            self._sum = self._weights = 0.0
            if self.best is not None and score <= self.best:
                return
            self.best = score
            rnd = event.data.get("round", self._round)
            self.best_round = rnd
            model = self._model
        metric = -score if self.negate_key_metric else score
        log.info("new best validation metric %s at round %s", metric, rnd)
        if self._bus is not None:
            self._bus.fire(EventType.GLOBAL_BEST_MODEL_AVAILABLE, metric=metric, round=rnd, model=model)


class IntimeModelSelectionHandler(IntimeModelSelector):
    """The selector's former NVFlare name (deprecated there); the same component."""
