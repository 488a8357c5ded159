"""The in-time weighted aggregator (NVFlare's ``InTimeAccumulateWeightedAggregator``)."""

from __future__ import annotations

import logging
import re
import threading
from typing import Literal

import numpy as np
from flruntime.components.aggregators.weighted import Fold, WeightedSum

from flruntime.roles import Aggregator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType
from flruntime.runtime.streamed import Discard, ResultSink
from flruntime.transport.codec import ArraySpec

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

    Results that stream in (:meth:`open_contribution`, the federation's uploads) are folded in piece by
    piece as their bytes arrive, so the server holds the running sum and no result. A stream that breaks
    off leaves what arrived in the sum; when the client sends the result again it is completed from there
    (exactly as if it had come whole). When the round is aggregated with a result still incomplete, each
    value is divided by the weights of the results that reached it (a warning names the site and the share
    that arrived), and a variable that an incomplete result alone reached in part is left out.
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
        self._open: dict[str, tuple[Fold, list[ArraySpec]]] = {}
        self._round = 0  # which round's sum a stream writes to (reset() starts the next)
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
            if site in self._sites or site in self._open:
                log.warning("rejecting a second result from %s in this round", site)
                return False
            self._sites.add(site)
            self._sum.add(result.params, self.weight_of(site, result), self.exclude, self.weigh_by_local_iter)
        return True

    def open_contribution(
        self, site: str, result: ModelMessage, arrays: list[ArraySpec], ctx: RunContext
    ) -> ResultSink | None:
        """Fold a result in as its arrays arrive.

        None (the result comes whole, to :meth:`accept`) when it carries ``bytes`` values, or when a subclass
        changed :meth:`accept` (the HE aggregator, a custom check): streaming would go around it.
        """
        if type(self).accept is not InTimeAccumulateWeightedAggregator.accept:
            return None
        if any(spec.dtype is None for spec in arrays):
            return None
        reason = rejection(result, self.expected, ctx)
        if reason:
            log.warning("rejecting result from %s: %s", site, reason)
            return Discard()
        weight = self.weight_of(site, result)
        with self._lock:
            if self._aggregate is not None:
                log.warning("rejecting result from %s: this round was already aggregated", site)
                return Discard()
            if site in self._sites:
                log.warning("rejecting a second result from %s in this round", site)
                return Discard()
            opened = self._open.get(site)
            if opened is not None:
                fold, before = opened
                if before != arrays or fold.weight != weight:
                    log.warning("rejecting a result from %s: it is not the one whose upload broke off", site)
                    return Discard()
                log.info("%s sent its result again: completing it from %.0f%%", site, 100 * fold.fraction)
            else:
                try:
                    shapes = [(a.name, a.dtype, a.shape) for a in arrays if a.dtype is not None]
                    fold = self._sum.begin(shapes, weight, self.exclude, self.weigh_by_local_iter)
                except ValueError as exc:
                    log.warning("rejecting result from %s: %s", site, exc)
                    return Discard()
                self._open[site] = (fold, arrays)
            return _Contribution(self, site, fold, self._round)

    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """Return the weighted mean of the accepted results (same params type as they had)."""
        with self._lock:
            if self._aggregate is None:  # the sums are divided in place: no model-sized copy
                for site, (fold, _) in self._open.items():
                    log.warning(
                        "round %s: the result of %s is incomplete (its upload broke off); the %.1f%% of its values "
                        "that arrived are averaged in",
                        ctx.current_round,
                        site,
                        100 * fold.fraction,
                    )
                params = self._sum.mean(in_place=True, partial=[fold for fold, _ in self._open.values()])
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
            self._open = {}
            self._round += 1


class _Contribution:
    """A result streaming into an :class:`InTimeAccumulateWeightedAggregator`'s running sum."""

    def __init__(self, owner: InTimeAccumulateWeightedAggregator, site: str, fold: Fold, round_: int) -> None:
        self.owner, self.site, self.fold, self.round = owner, site, fold, round_

    def _live(self) -> bool:
        return self.owner._round == self.round and self.owner._aggregate is None

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Fold a piece in (dropped once the round was aggregated)."""
        with self.owner._lock:
            if self._live():
                self.fold.write(name, start, values)

    def close(self) -> bool:
        """Count the result when it arrived whole before the round was aggregated."""
        with self.owner._lock:
            if not self._live() or not self.fold.complete:
                return False
            self.fold.commit()
            self.owner._open.pop(self.site, None)
            self.owner._sites.add(self.site)
            return True

    def fail(self, reason: str) -> None:
        """Keep what arrived; the client may send the result again."""
        log.warning(
            "the result of %s broke off after %.1f%% of its values (%s); they stay in the sum until it is sent "
            "again or the round ends",
            self.site,
            100 * self.fold.fraction,
            reason,
        )
