"""The clients' result filter that weighs and encrypts model updates (NVFlare's ``HEModelEncryptor``)."""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any, Literal

import numpy as np

from flruntime.he import packing, received
from flruntime.he.contexts import LoadedContext, client_context
from flruntime.roles import Filter
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

log = logging.getLogger(__name__)

DataKind = Literal["WEIGHTS", "WEIGHT_DIFF"]
KINDS = {"WEIGHTS": ParamsType.FULL, "WEIGHT_DIFF": ParamsType.DIFF}


def params_types(data_kinds: list[DataKind] | None) -> set[ParamsType]:
    """The params types a filter with NVFlare's ``data_kinds`` handles (None: both)."""
    kinds: list[str] = list(data_kinds) if data_kinds else list(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"data_kinds must be WEIGHTS or WEIGHT_DIFF, got {unknown}")
    return {KINDS[k] for k in kinds}


class SecretContextFilter(Filter):
    """A client filter that needs the site's secret HE context: checked before the run, loaded at its start."""

    tenseal_context_file: str
    _context: LoadedContext | None

    def preflight(self, ctx: RunContext) -> None:
        """Check that this site has its secret context (before the run starts)."""
        client_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Load the site's secret context."""
        self._context = client_context(self.tenseal_context_file, ctx)


class HEModelEncryptor(SecretContextFilter):
    """Weighs a result's parameters and encrypts them with CKKS, packed into as few ciphertexts as possible.

    Each value is multiplied by the site's aggregation weight and, with ``weigh_by_local_iter``, by the
    result's ``NUM_STEPS_CURRENT_ROUND``; the weight travels in the clear in the layout, so the server only
    adds ciphertexts and whoever decrypts divides by the sum of the weights (see :mod:`flruntime.he.packing`).
    A ``WEIGHT_DIFF`` result is encrypted as the global model this site received with the task plus the
    difference (its new local model: the server cannot add an encrypted difference to its encrypted global
    model without a ciphertext multiplication), so ``HEModelDecryptor`` must be a task data filter of the same
    task; variables the server's aggregator excludes keep the received values. Variables left unencrypted
    travel weighted, in the clear, in their shape (differences stay differences).

    Args:
        tenseal_context_file: the context with the secret key (see :mod:`flruntime.he.contexts`).
        encrypt_layers: None: every variable; a list of variable names; or a regular expression string
            (``re.search``) selecting the variables to encrypt.
        aggregation_weights: per-site weights (1.0 for a site not listed); the server's aggregator must use
            the same ones.
        weigh_by_local_iter: multiply by the result's local steps before encrypting.
        data_kinds: params types to encrypt (``WEIGHT_DIFF``, ``WEIGHTS``; default both); others pass unchanged.
    """

    def __init__(
        self,
        tenseal_context_file: str = "client_context.tenseal",
        encrypt_layers: list[str] | str | None = None,
        aggregation_weights: dict[str, float] | None = None,
        weigh_by_local_iter: bool = True,
        data_kinds: list[DataKind] | None = None,
    ) -> None:
        if encrypt_layers is not None and not isinstance(encrypt_layers, (list, str)):
            raise TypeError(f"encrypt_layers must be a list of names or a regex string, got {type(encrypt_layers)}")
        if isinstance(encrypt_layers, list) and not all(isinstance(n, str) for n in encrypt_layers):
            raise TypeError("encrypt_layers must be a list of variable names (strings)")
        self.tenseal_context_file = tenseal_context_file
        self.encrypt_layers = encrypt_layers
        self.pattern = re.compile(encrypt_layers) if isinstance(encrypt_layers, str) and encrypt_layers else None
        self.aggregation_weights = dict(aggregation_weights or {})
        self.weigh_by_local_iter = weigh_by_local_iter
        self.types = params_types(data_kinds)
        self._context: LoadedContext | None = None

    def _selected(self, names: list[str]) -> list[str]:
        if self.pattern is not None:
            chosen = [n for n in names if self.pattern.search(n)]
            if not chosen:
                raise ValueError(f"No matching layers found with regex {self.pattern.pattern!r}")
            return chosen
        if isinstance(self.encrypt_layers, list):
            return [n for n in names if n in set(self.encrypt_layers)]
        return names

    def weight(self, data: ModelMessage, site: str) -> float:
        """The factor a result is multiplied by: the site's aggregation weight × its local steps."""
        weight = float(self.aggregation_weights.get(site, 1.0))
        if self.weigh_by_local_iter:
            steps = data.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND)
            if steps is None:
                raise ValueError(
                    f"the result has no {MetaKey.NUM_STEPS_CURRENT_ROUND} to weigh by (send it in the result's meta "
                    "or set weigh_by_local_iter to false)"
                )
            weight *= float(steps)
        return weight

    def process(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Return ``data`` with its selected parameters weighted and encrypted."""
        if data.params is None or data.params_type not in self.types:
            return data
        if packing.is_encrypted(data.meta):
            raise ValueError("the result is already encrypted")
        loaded = self._context or client_context(self.tenseal_context_file, ctx.run)
        self._context = loaded
        start = time.perf_counter()
        names = list(data.params)
        chosen = set(self._selected(names))
        if not chosen:
            raise ValueError("Nothing has been encrypted! Check encrypt_layers (names or regex)")
        weight = self.weight(data, ctx.site)
        got = received.take(ctx)
        variables = []
        for name in names:
            if name in chosen:
                arr = data.params[name]
                dtype = getattr(arr, "dtype", None)
                variables.append(packing.Var(name, tuple(getattr(arr, "shape", ())), str(dtype or "float64")))
        # the values are weighted and divided by a power of two near the expected sum of the weights (the
        # received global model's, else this site's own) so that their sum stays near the model's magnitude
        shift = packing.shift_for(got.weight if got is not None and got.weight else weight)
        factor = math.ldexp(weight, -shift)
        base, excluded = "", ""
        if data.params_type == ParamsType.DIFF:
            if got is None:
                raise ValueError(
                    "a WEIGHT_DIFF result is encrypted as the received global model plus the difference, "
                    f"but no global model was received with task '{ctx.task_name}': make HEModelDecryptor a task "
                    "data filter of this task"
                )
            parts = self._rebased(data.params, variables, got)
            base, excluded = got.model_id, got.excluded
        else:
            parts = [packing.Part(np.asarray(data.params[v.name])) for v in variables]
        layout = packing.Packing(variables, [], loaded.slots, loaded.fingerprint, weight, shift, base, excluded)
        blobs = packing.encrypt(parts, factor, loaded.engine)
        encrypted, layout = packing.to_params(blobs, layout)
        plain = [n for n in names if n not in chosen]
        params: dict[str, Any] = {n: encrypted[n] if n in chosen else data.params[n] * weight for n in names}
        out = data.copy()
        out.params = params  # ciphertexts travel as bytes (the codec's "bytes" arrays)
        out.meta = packing.encrypted_meta(data.meta, layout, plain)
        log.info(
            "%s: encrypted %d values of %d variables into %d ciphertexts (%.1f MB) in %.2f s",
            ctx.site,
            layout.total,
            len(variables),
            layout.n_chunks,
            sum(len(b) for b in blobs) / 1e6,
            time.perf_counter() - start,
        )
        return out

    @staticmethod
    def _rebased(params: dict[str, Any], variables: list[packing.Var], got: received.Received) -> list[packing.Part]:
        """The received global values plus the differences (excluded variables: the global values)."""
        pattern = re.compile(got.excluded) if got.excluded else None
        parts = []
        for var in variables:
            base = got.values.get(var.name)
            if base is None or base.size != var.size:
                raise ValueError(
                    f"variable '{var.name}' of the WEIGHT_DIFF result is not in the global model received "
                    "with the task (or has another shape)"
                )
            excluded = pattern is not None and pattern.search(var.name)
            parts.append(packing.Part(None if excluded else np.asarray(params[var.name]), base))
        return parts
