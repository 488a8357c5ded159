"""The server's in-time aggregator of encrypted results (NVFlare's ``HEInTimeAccumulateWeightedAggregator``).

It adds ciphertexts as results arrive and sums the weights the clients state in the clear; it never
multiplies a ciphertext and never holds a secret key. Whoever decrypts the aggregate divides by the sum of
the weights (see :mod:`flruntime.he.packing`). Memory is one model's ciphertexts (plus the ciphertext being
added), however many clients report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from flruntime.components.aggregators.intime import DataKind, InTimeAccumulateWeightedAggregator, rejection
from flruntime.components.aggregators.weighted import WeightedSum

from flruntime.he import packing
from flruntime.he.contexts import LoadedContext, server_context
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage

log = logging.getLogger(__name__)


class HEInTimeAccumulateWeightedAggregator(InTimeAccumulateWeightedAggregator):
    """Sums CKKS-encrypted results as they arrive; the weighted mean is taken after decryption.

    Each result's ciphertexts hold its values times its weight (``HEModelEncryptor`` weighs them; the weight
    travels in the clear with the layout), so the server adds ciphertexts and the weights; the aggregate says
    what to divide by. ``WEIGHT_DIFF`` results arrive as the global model plus the difference (see
    ``HEModelEncryptor``): the aggregate is the new global model's encrypted variables.

    Args:
        exclude_vars: a regular expression; matching plaintext variables are left out of the aggregate,
            matching encrypted ones keep their global values (the clients' encryptors, told through the task
            data, leave their differences out). Only with ``WEIGHT_DIFF``.
        aggregation_weights: per-site weights; the clients' encryptors apply theirs (a site whose stated weight
            differs from this one's is logged once).
        expected_data_kind: ``WEIGHT_DIFF`` or ``WEIGHTS``.
        weigh_by_local_iter: must be False (NVFlare's HE setting): the clients weigh their results before
            encrypting; weighing on the server would take a ciphertext multiplication.
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`).

    Results must come from clients with the same key (their contexts' fingerprints are compared: a result
    encrypted with another key is rejected), the same variables in the same layout and, for differences,
    the same global model.
    """

    def __init__(
        self,
        exclude_vars: str | None = None,
        aggregation_weights: dict[str, float] | None = None,
        expected_data_kind: DataKind = "WEIGHT_DIFF",
        weigh_by_local_iter: bool = False,
        tenseal_context_file: str = "server_context.tenseal",
    ) -> None:
        given = {"exclude_vars": exclude_vars, "expected_data_kind": expected_data_kind}
        for _, message in self.validate_args({**given, "weigh_by_local_iter": weigh_by_local_iter}):
            raise ValueError(message)
        super().__init__(exclude_vars, aggregation_weights, expected_data_kind, weigh_by_local_iter)
        self.tenseal_context_file = tenseal_context_file
        self._context: LoadedContext | None = None
        self._warned: set[str] = set()
        self._reset_state()

    @classmethod
    def validate_args(cls, args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The value rules the constructor enforces, for the validator (``validate_args`` hook)."""
        if args.get("exclude_vars") and args.get("expected_data_kind") == "WEIGHTS":
            yield (
                "exclude_vars",
                "exclude_vars cannot be applied to packed ciphertexts of full WEIGHTS; use WEIGHT_DIFF "
                "(excluded variables then keep their global values)",
            )
        if args.get("weigh_by_local_iter"):
            yield (
                "weigh_by_local_iter",
                "weigh_by_local_iter must be false for encrypted results: HEModelEncryptor weighs them before "
                "encrypting (weighing ciphertexts on the server would take a multiplication)",
            )

    def _reset_state(self) -> None:
        self._vectors: list[Any] = []
        self._layout: packing.Packing | None = None
        self._first = ""
        self._weight = 0.0
        self._shift = 0
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
        first = self._layout
        if first is not None and layout.fingerprint != first.fingerprint:
            log.error("rejecting result: %s encrypted with a different context than %s", site, self._first)
            return None
        if first is not None and not layout.same_layout(first):
            log.error("rejecting result from %s: its encrypted variables differ from %s's", site, self._first)
            return None
        if first is not None and layout.base != first.base:
            log.error("rejecting result from %s: it updates another global model than %s's", site, self._first)
            return None
        excluded = self.exclude.pattern if self.exclude is not None else ""
        if layout.excluded != excluded:
            log.error(
                "rejecting result from %s: its encryptor excluded %r, this aggregator excludes %r "
                "(the task data tells the clients: is HEModelShareableGenerator the shareable generator?)",
                site,
                layout.excluded,
                excluded,
            )
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
            weight = layout.weight
            expected = self.weight_of(site, result)
            if abs(weight - expected) > 1e-9 * max(abs(expected), 1.0) and site not in self._warned:
                self._warned.add(site)
                log.warning(
                    "%s weighed its result %g, this aggregator's weights give %g: the encryptor's weight is used "
                    "(check aggregation_weights and weigh_by_local_iter on both sides)",
                    site,
                    weight,
                    expected,
                )
            engine = loaded.engine
            try:
                if layout.version != packing.VERSION:
                    raise ValueError(f"layout version {layout.version}, this server reads {packing.VERSION}")
                vectors = engine.load(packing.blobs_of(result.params, layout))  # all checked before any is added
                if not self._vectors:
                    self._vectors = vectors
                    self._layout, self._first, self._shift = layout, site, layout.shift
                else:
                    if layout.shift < self._shift:  # this result's values are larger: bring the sum up to them
                        engine.double(self._vectors, self._shift - layout.shift)
                        self._shift = layout.shift
                    engine.add(self._vectors, vectors, layout.shift - self._shift)
            except Exception as exc:
                log.error("rejecting result from %s: its ciphertexts do not fit the server's context: %s", site, exc)
                return False
            encrypted = {v.name for v in layout.vars}
            plain = {n: v for n, v in result.params.items() if n not in encrypted}
            self._plain.add(plain, weight, self.exclude, False)
            self._weight += weight
            self._count += 1
            self._sites.add(site)
        return True

    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """Return the sum (still encrypted) of the accepted results, with the sum of their weights."""
        loaded = self._context or server_context(self.tenseal_context_file, ctx)
        with self._lock:
            if self._layout is None:
                raise RuntimeError("no encrypted result was accepted in this round")
            layout = self._layout.with_chunks([], weight=self._weight, shift=self._shift)
            params, out_layout = packing.to_params(loaded.engine.save(self._vectors), layout)
            plain = self._plain.mean()
            all_params: dict[str, Any] = {**params, **plain}
            meta = packing.encrypted_meta({"num_contributions": self._count}, out_layout, list(plain))
            return ModelMessage(all_params, self.expected, meta=meta, current_round=ctx.current_round)

    def reset(self, ctx: RunContext) -> None:
        """Start a new round."""
        with self._lock:
            self._reset_state()
            self._sites = set[str]()
