"""The server's in-time aggregator of encrypted results (NVFlare's ``HEInTimeAccumulateWeightedAggregator``).

It adds ciphertexts as results arrive and, at the end of the round, multiplies each sum by the plaintext
scalar ``1 / Σ weights``; it never holds a secret key. Memory is one model's ciphertexts (plus the result
being added), however many clients report.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flruntime.components.aggregators.intime import DataKind, InTimeAccumulateWeightedAggregator, rejection
from flruntime.components.aggregators.weighted import WeightedSum

from flruntime.he import packing
from flruntime.he.contexts import LoadedContext, server_context
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage

log = logging.getLogger(__name__)


class HEInTimeAccumulateWeightedAggregator(InTimeAccumulateWeightedAggregator):
    """Averages CKKS-encrypted results as they arrive (weights applied as plaintext scalars).

    Args:
        exclude_vars: a regular expression; matching plaintext variables are left out of the aggregate,
            matching encrypted ones get a zero difference (the global model keeps them). Only with
            ``WEIGHT_DIFF``.
        aggregation_weights: per-site weights; must match the clients' encryptors'.
        expected_data_kind: ``WEIGHT_DIFF`` or ``WEIGHTS``.
        weigh_by_local_iter: multiply each result by its weight on the server (False, the HE setting:
            clients already did, and the encrypted product would use up one more rescale).
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`).

    Results must come from clients with the same key (their contexts' fingerprints are compared: a result
    encrypted with another key is rejected) and the same variables in the same layout.
    """

    def __init__(
        self,
        exclude_vars: str | None = None,
        aggregation_weights: dict[str, float] | None = None,
        expected_data_kind: DataKind = "WEIGHT_DIFF",
        weigh_by_local_iter: bool = False,
        tenseal_context_file: str = "server_context.tenseal",
    ) -> None:
        super().__init__(exclude_vars, aggregation_weights, expected_data_kind, weigh_by_local_iter)
        if exclude_vars and expected_data_kind == "WEIGHTS":
            raise ValueError(
                "exclude_vars cannot be applied to packed ciphertexts of full WEIGHTS; use WEIGHT_DIFF "
                "(excluded variables then keep their global values)"
            )
        self.tenseal_context_file = tenseal_context_file
        self._context: LoadedContext | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._vectors: list[Any] = []
        self._layout: packing.Packing | None = None
        self._first = ""
        self._weight = 0.0
        self._plain = WeightedSum()
        self._count = 0

    def preflight(self, ctx: RunContext) -> None:
        """Check that the server has its public context (and no secret key)."""
        server_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Load the public context."""
        self._context = server_context(self.tenseal_context_file, ctx)

    def _check(self, site: str, result: ModelMessage, ctx: RunContext) -> packing.Packing | None:
        """The result's layout, or None (logged) when it cannot be aggregated."""
        reason = rejection(result, self.expected, ctx)
        if reason:
            log.warning("rejecting result from %s: %s", site, reason)
            return None
        if not packing.is_encrypted(result.meta):
            log.error(
                "rejecting result from %s: it is not %s-encrypted (is HEModelEncryptor on?)", site, packing.ALGORITHM
            )
            return None
        layout = packing.Packing.from_meta(result.meta)
        if self._layout is not None and layout.fingerprint != self._layout.fingerprint:
            log.error("rejecting result: %s encrypted with a different context than %s", site, self._first)
            return None
        if self._layout is not None and not layout.same_layout(self._layout):
            log.error("rejecting result from %s: its encrypted variables differ from %s's", site, self._first)
            return None
        return layout

    def accept(self, site: str, result: ModelMessage, ctx: RunContext) -> bool:
        """Add one encrypted result; reject wrong kinds, rounds, keys, layouts and second contributions."""
        loaded = self._context or server_context(self.tenseal_context_file, ctx)
        self._context = loaded
        with self._lock:
            layout = self._check(site, result, ctx)
            if layout is None:
                return False
            if site in self._sites:
                log.warning("rejecting a second result from %s in this round", site)
                return False
            assert result.params is not None
            weight = self.weight_of(site, result)
            try:
                vectors = packing.load(packing.blobs_of(result.params, layout), loaded.context)
            except Exception as exc:
                log.error("rejecting result from %s: its ciphertexts do not fit the server's context: %s", site, exc)
                return False
            if self.weigh_by_local_iter:
                vectors = [v * weight for v in vectors]
            if not self._vectors:
                self._vectors, self._layout, self._first = vectors, layout, site
            else:
                for acc, v in zip(self._vectors, vectors, strict=True):
                    acc += v
            encrypted = {v.name for v in layout.vars}
            plain = {n: v for n, v in result.params.items() if n not in encrypted}
            self._plain.add(plain, weight, self.exclude, self.weigh_by_local_iter)
            self._weight += weight
            self._count += 1
            self._sites.add(site)
        return True

    def _mask(self, layout: packing.Packing) -> np.ndarray | None:
        """1.0 for every encrypted value that is aggregated, 0.0 for excluded variables (None: none excluded)."""
        if self.exclude is None:
            return None
        flags = [np.full(v.size, 0.0 if self.exclude.search(v.name) else 1.0) for v in layout.vars]
        mask = np.concatenate(flags) if flags else np.zeros(0)
        return None if mask.all() else mask

    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """Return the weighted mean (still encrypted) of the accepted results."""
        with self._lock:
            if self._layout is None:
                raise RuntimeError("no encrypted result was accepted in this round")
            layout = self._layout
            scale = 1.0 / self._weight if self._weight else 1.0
            mask = self._mask(layout)
            means = []
            for j, acc in enumerate(self._vectors):
                part = None if mask is None else mask[j * layout.slots : (j + 1) * layout.slots]
                means.append(acc * scale if part is None or part.all() else acc * (part * scale).tolist())
            params, out_layout = packing.to_params(packing.serialize(means), layout)
            plain = self._plain.mean()
            all_params: dict[str, Any] = {**params, **plain}
            meta = packing.encrypted_meta({"num_contributions": self._count}, out_layout, list(plain))
            return ModelMessage(all_params, self.expected, meta=meta, current_round=ctx.current_round)

    def reset(self, ctx: RunContext) -> None:
        """Start a new round."""
        with self._lock:
            self._reset_state()
            self._sites = set[str]()
