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

#: Meta key naming one encrypted global model.
MODEL_ID = packing.MODEL_ID


class HEModelShareableGenerator(ShareableGenerator):
    """Makes an encrypted aggregate the new global model, without decrypting or computing anything.

    The aggregate's ciphertexts already hold the new global model's encrypted variables (a weighted sum with
    its weight; for ``WEIGHT_DIFF`` the clients encrypted the received global model plus their difference, see
    ``HEModelEncryptor``), so from the first aggregate on the server's global model is encrypted and stays so.
    Plaintext variables are replaced (full weights) or updated by the mean difference. The task data carries
    the global model as it is (ciphertext bytes and the layout in meta) and, when the server's HE aggregator
    excludes variables, their pattern, which the clients' encryptors apply.

    Args:
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`).
    """

    def __init__(self, tenseal_context_file: str = "server_context.tenseal") -> None:
        self.tenseal_context_file = tenseal_context_file
        self._context: LoadedContext | None = None

    def preflight(self, ctx: RunContext) -> None:
        """Check that the server has its public context (and no secret key)."""
        server_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Load the public context."""
        self._context = server_context(self.tenseal_context_file, ctx)

    @staticmethod
    def _excluded(ctx: RunContext) -> str:
        """The pattern of the variables the server's HE aggregator excludes ("" for none)."""
        from flruntime.components.he.aggregator import HEInTimeAccumulateWeightedAggregator

        for component in ctx.components.values():
            if isinstance(component, HEInTimeAccumulateWeightedAggregator) and component.exclude is not None:
                return component.exclude.pattern
        return ""

    def to_task_data(self, global_model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the global model (encrypted or, before the first aggregate, plaintext) as FULL task data."""
        meta = dict(global_model.meta)
        excluded = self._excluded(ctx)
        if excluded:
            meta[packing.EXCLUDE_META] = excluded
        return ModelMessage(dict(global_model.params or {}), ParamsType.FULL, meta=meta)

    def update(self, global_model: ModelMessage, aggregate: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the new (encrypted) global model: the aggregate's ciphertexts and the updated plaintext variables."""
        if not packing.is_encrypted(aggregate.meta):
            raise ValueError(
                f"expected encryption algorithm {packing.ALGORITHM} but got "
                f"{aggregate.meta.get('PROCESSED_ALGORITHM')!r} "
                "(is the aggregator HEInTimeAccumulateWeightedAggregator?)"
            )
        layout = packing.Packing.from_meta(aggregate.meta)
        encrypted = {v.name for v in layout.vars}
        if packing.is_encrypted(global_model.meta) and not packing.Packing.from_meta(global_model.meta).same_layout(
            layout
        ):
            raise ValueError("the aggregate's encrypted variables differ from the encrypted global model's")
        params: dict[str, Any] = dict(global_model.params or {})
        agg = aggregate.params or {}
        if aggregate.params_type == ParamsType.DIFF:
            current = str(global_model.meta.get(MODEL_ID) or "")
            if layout.base != current:
                raise ValueError(
                    "the aggregated results were added to another global model than the current one "
                    f"({layout.base or 'plaintext'!r} instead of {current or 'plaintext'!r})"
                )
            missing = [v.name for v in layout.vars if v.name not in params]
            if missing:
                raise KeyError(f"the aggregated difference has variable '{missing[0]}' the global model lacks")
        for name, value in agg.items():
            if name in encrypted:
                params[name] = value
            elif aggregate.params_type == ParamsType.FULL:
                params[name] = value
            elif name not in params:
                raise KeyError(f"the aggregated difference has variable '{name}' the global model lacks")
            else:
                old = np.asarray(params[name])
                params[name] = (old + value).astype(old.dtype, copy=False)
        out_layout = layout.with_chunks(layout.chunk_bytes, base="", excluded="")
        meta = packing.encrypted_meta(
            packing.plain_meta(global_model.meta), out_layout, [n for n in params if n not in encrypted]
        )
        meta.pop(packing.EXCLUDE_META, None)
        meta[MODEL_ID] = uuid.uuid4().hex
        return ModelMessage(params, ParamsType.FULL, meta=meta, current_round=ctx.current_round)
