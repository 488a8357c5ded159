"""The persistor filter of HE jobs (NVFlare's ``HEModelSerializeFilter``): the server stores encrypted globals."""

from __future__ import annotations

from flruntime.he import packing
from flruntime.he.contexts import server_context
from flruntime.roles import PersistorFilter
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage


class HEModelSerializeFilter(PersistorFilter):
    """Keeps encrypted global models encrypted on their way into and out of the persistor.

    In flruntime an encrypted model is already serialised (ciphertext bytes per variable plus the layout in
    meta, see :mod:`flruntime.he.packing`), so ``FL_global_model.pt`` holds the ciphertexts as they are and
    a loaded one comes back ready to send; this filter checks that a model it passes is whole.

    Args:
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`); checked at start.
    """

    def __init__(self, tenseal_context_file: str = "server_context.tenseal") -> None:
        self.tenseal_context_file = tenseal_context_file

    def preflight(self, ctx: RunContext) -> None:
        """Check that the server has its public context (and no secret key)."""
        server_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Check the public context."""
        server_context(self.tenseal_context_file, ctx)

    def _checked(self, model: ModelMessage) -> ModelMessage:
        if packing.is_encrypted(model.meta):
            packing.blobs_of(model.params or {}, packing.Packing.from_meta(model.meta))
        return model

    def process_post_load(self, model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return a loaded model as it is (ciphertexts stay bytes until the aggregator needs them)."""
        return self._checked(model)

    def process_pre_save(self, model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return a model to save as it is: its encrypted variables are ciphertext bytes."""
        return self._checked(model)
