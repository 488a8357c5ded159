"""The server's shareable generator for encrypted aggregates (NVFlare's ``HEModelShareableGenerator``)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from flruntime.he import packing
from flruntime.he.contexts import LoadedContext, server_context
from flruntime.roles import ShareableGenerator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType

#: Meta key naming one encrypted global model (lets the generator reuse its ciphertexts next round).
MODEL_ID = "he_model_id"


class HEModelShareableGenerator(ShareableGenerator):
    """Applies an encrypted aggregate to the global model without decrypting anything.

    A difference is added to the global model in the encrypted domain: ciphertext + plaintext in the
    first round (the initial model is plaintext), ciphertext + ciphertext afterwards, so from the first
    aggregate on the server's global model is encrypted and stays so. Full weights replace it. The task
    data carries the global model as it is (ciphertext bytes and the layout in meta).

    Args:
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`).
    """

    def __init__(self, tenseal_context_file: str = "server_context.tenseal") -> None:
        self.tenseal_context_file = tenseal_context_file
        self._context: LoadedContext | None = None
        self._cached: tuple[str, list[Any]] = ("", [])

    def preflight(self, ctx: RunContext) -> None:
        """Check that the server has its public context (and no secret key)."""
        server_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Load the public context."""
        self._context = server_context(self.tenseal_context_file, ctx)

    def to_task_data(self, global_model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the global model (encrypted or, before the first aggregate, plaintext) as FULL task data."""
        return ModelMessage(dict(global_model.params or {}), ParamsType.FULL, meta=dict(global_model.meta))

    def _global_vectors(self, model: ModelMessage, layout: packing.Packing, context: Any) -> list[Any]:
        token, vectors = self._cached
        if token and model.meta.get(MODEL_ID) == token:
            return vectors
        own = packing.Packing.from_meta(model.meta)
        if not own.same_layout(layout):
            raise ValueError("the aggregate's encrypted variables differ from the encrypted global model's")
        return packing.load(packing.blobs_of(model.params or {}, own), context)

    def update(self, global_model: ModelMessage, aggregate: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the new (encrypted) global model: the old one plus an aggregated difference, or full weights."""
        if not packing.is_encrypted(aggregate.meta):
            raise ValueError(
                f"expected encryption algorithm {packing.ALGORITHM} but got "
                f"{aggregate.meta.get('PROCESSED_ALGORITHM')!r} "
                "(is the aggregator HEInTimeAccumulateWeightedAggregator?)"
            )
        loaded = self._context or server_context(self.tenseal_context_file, ctx)
        self._context = loaded
        layout = packing.Packing.from_meta(aggregate.meta)
        encrypted = {v.name for v in layout.vars}
        params: dict[str, Any] = dict(global_model.params or {})
        agg = aggregate.params or {}
        for name, value in agg.items():
            if name in encrypted:
                continue
            if aggregate.params_type == ParamsType.FULL:
                params[name] = value
            elif name not in params:
                raise KeyError(f"the aggregated difference has variable '{name}' the global model lacks")
            else:
                old = np.asarray(params[name])
                params[name] = (old + value).astype(old.dtype, copy=False)
        diffs = packing.load(packing.blobs_of(agg, layout), loaded.context)
        if aggregate.params_type == ParamsType.FULL:
            new = diffs
        elif packing.is_encrypted(global_model.meta):
            new = diffs
            for d, g in zip(new, self._global_vectors(global_model, layout, loaded.context), strict=True):
                d += g
        else:
            missing = [v.name for v in layout.vars if v.name not in params]
            if missing:
                raise KeyError(f"the aggregated difference has variable '{missing[0]}' the global model lacks")
            flat = packing.flatten(params, layout.vars)
            new = [d + flat[j * layout.slots : (j + 1) * layout.slots] for j, d in enumerate(diffs)]
        blobs, out_layout = packing.to_params(packing.serialize(new), layout)
        params.update(blobs)
        token = uuid.uuid4().hex
        self._cached = (token, new)
        meta = packing.encrypted_meta(
            packing.plain_meta(global_model.meta), out_layout, [n for n in params if n not in encrypted]
        )
        meta[MODEL_ID] = token
        return ModelMessage(params, ParamsType.FULL, meta=meta, current_round=ctx.current_round)
