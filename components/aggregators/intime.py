"""The in-time weighted aggregator (NVFlare's ``InTimeAccumulateWeightedAggregator``)."""

from __future__ import annotations

import logging
import re
import threading
from typing import Literal

from flruntime.components.aggregators.weighted import WeightedSum

from flruntime.roles import Aggregator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

log = logging.getLogger(__name__)

DataKind = Literal["WEIGHTS", "WEIGHT_DIFF"]
_KIND_OF = {"WEIGHTS": ParamsType.FULL, "WEIGHT_DIFF": ParamsType.DIFF}


def rejection(result: ModelMessage, expected: ParamsType, ctx: RunContext) -> str:
    """Why a result cannot be aggregated this round ("" when it can): no params, wrong kind, another round."""
    if result.params is None:
        return "it has no parameters"
    if result.params_type != expected:
        want = "WEIGHT_DIFF" if expected is ParamsType.DIFF else "WEIGHTS"
        return f"expected {want} but got {result.params_type}"
    if ctx.current_round is not None and result.current_round not in (None, ctx.current_round):
        return f"it is for round {result.current_round}, not {ctx.current_round}"
    return ""


class InTimeAccumulateWeightedAggregator(Aggregator):
    """Averages client results as they arrive, weighted by local steps and per-site weights.

    Args:
        exclude_vars: a regular expression; variables it matches (``re.search``) are left out of the result.
        aggregation_weights: per-site weights (default 1.0 for every site).
        expected_data_kind: ``WEIGHT_DIFF`` (clients send differences) or ``WEIGHTS`` (full models).
        weigh_by_local_iter: multiply each result by its weight. False (NVFlare's HE setting): add the results
            as they are, still dividing by the sum of weights, because the clients already multiplied them.

    The weight of a result is ``aggregation_weights[site] × NUM_STEPS_CURRENT_ROUND`` (each 1.0 when absent);
    a variable's aggregate is ``Σ w·v / Σ w`` (``Σ v / Σ w`` without ``weigh_by_local_iter``), as in NVFlare.
    """

    def __init__(
        self,
        exclude_vars: str | None = None,
        aggregation_weights: dict[str, float] | None = None,
        expected_data_kind: DataKind = "WEIGHT_DIFF",
        weigh_by_local_iter: bool = True,
    ) -> None:
        if expected_data_kind not in _KIND_OF:
            raise ValueError(f"expected_data_kind must be WEIGHTS or WEIGHT_DIFF, got {expected_data_kind!r}")
        self.exclude = re.compile(exclude_vars) if exclude_vars else None
        self.aggregation_weights = dict(aggregation_weights or {})
        self.expected = _KIND_OF[expected_data_kind]
        self.weigh_by_local_iter = weigh_by_local_iter
        self._lock = threading.Lock()
        self._sum = WeightedSum()
        self._aggregate: ModelMessage | None = None
        self._sites: set[str] = set()
        self._missing_steps: dict[str, int] = {}

    def weight_of(self, site: str, result: ModelMessage) -> float:
        """Return the weight of one result: the site's aggregation weight × its local steps."""
        weight = float(self.aggregation_weights.get(site, 1.0))
        steps = result.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND)
        if steps is None:
            n = self._missing_steps[site] = self._missing_steps.get(site, 0) + 1
            if n <= 3:
                log.warning("result from %s has no %s; weighing it 1.0", site, MetaKey.NUM_STEPS_CURRENT_ROUND)
            steps = 1.0
        return weight * float(steps)

    def accept(self, site: str, result: ModelMessage, ctx: RunContext) -> bool:
        """Fold one result in; reject wrong kinds, empty params, other rounds and second contributions."""
        reason = rejection(result, self.expected, ctx)
        if reason:
            log.warning("rejecting result from %s: %s", site, reason)
            return False
        with self._lock:
            if site in self._sites:
                log.warning("rejecting a second result from %s in this round", site)
                return False
            self._sites.add(site)
            self._sum.add(result.params, self.weight_of(site, result), self.exclude, self.weigh_by_local_iter)
        return True

    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """Return the weighted mean of the accepted results (same params type as they had)."""
        with self._lock:
            if self._aggregate is None:  # the sums are divided in place: no model-sized copy
                params = self._sum.mean(in_place=True)
                self._aggregate = ModelMessage(
                    params, self.expected, meta={"num_contributions": self._sum.count}, current_round=ctx.current_round
                )
            return self._aggregate

    def reset(self, ctx: RunContext) -> None:
        """Start a new round."""
        with self._lock:
            self._sum = WeightedSum()
            self._aggregate = None
            self._sites = set()
