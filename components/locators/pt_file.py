"""Server PyTorch models for cross-site evaluation (NVFlare's ``PTFileModelLocator``)."""

from __future__ import annotations

from typing import Annotated

from flruntime.components.persistors.pt_file import PTFileModelPersistor

from flruntime.graph.refs import Ref
from flruntime.roles import ModelLocator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage


class PTFileModelLocator(ModelLocator):
    """Offers the global and best global model files a :class:`PTFileModelPersistor` saved.

    Args:
        pt_persistor_id: the PTFileModelPersistor whose files to offer.
    """

    def __init__(self, pt_persistor_id: Annotated[str, Ref(PTFileModelPersistor)]) -> None:
        self.pt_persistor_id = pt_persistor_id

    def _persistor(self, ctx: RunContext) -> PTFileModelPersistor:
        return ctx.component(self.pt_persistor_id, PTFileModelPersistor)

    def model_names(self, ctx: RunContext) -> list[str]:
        """The file names of the saved models that exist (``FL_global_model.pt``, ``best_FL_global_model.pt``)."""
        return self._persistor(ctx).model_names(ctx)

    def locate(self, name: str, ctx: RunContext) -> ModelMessage | None:
        """Return the saved model ``name`` (FULL, every variable), or None."""
        return self._persistor(ctx).get_model(name, ctx)
