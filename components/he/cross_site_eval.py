"""Cross-site evaluation of encrypted models (NVFlare's ``HECrossSiteModelEval``)."""

from __future__ import annotations

from typing import Annotated

from flruntime.components.workflows.cross_site_eval import CrossSiteModelEval

from flruntime.graph.refs import Ref
from flruntime.he.contexts import server_context
from flruntime.roles import ModelLocator
from flruntime.runtime.context import RunContext


class HECrossSiteModelEval(CrossSiteModelEval):
    """Cross-site evaluation where the models the server holds and forwards stay encrypted.

    Clients submit their models encrypted (``HEModelEncryptor`` on ``submit_model`` results) and decrypt
    the models they validate (``HEModelDecryptor`` on ``validate`` task data); the server's own models come
    encrypted from its persistor. The model files in ``cross_site_val/model_shareables`` hold ciphertexts.

    Args:
        tenseal_context_file: the public context (see :mod:`flruntime.he.contexts`); checked at start.
        **kwargs: the arguments of :class:`~flruntime.components.workflows.cross_site_eval.CrossSiteModelEval`.
    """

    def __init__(
        self,
        tenseal_context_file: str = "server_context.tenseal",
        task_check_period: float = 0.5,
        cross_val_dir: str = "cross_site_val",
        submit_model_timeout: float = 600,
        validation_timeout: float = 6000,
        model_locator_id: Annotated[str, Ref(ModelLocator)] = "",
        formatter_id: str = "",
        submit_model_task_name: str = "submit_model",
        validation_task_name: str = "validate",
        cleanup_models: bool = False,
        participating_clients: list[str] | None = None,
        wait_for_clients_timeout: float = 300,
    ) -> None:
        super().__init__(
            task_check_period,
            cross_val_dir,
            submit_model_timeout,
            validation_timeout,
            model_locator_id,
            formatter_id,
            submit_model_task_name,
            validation_task_name,
            cleanup_models,
            participating_clients,
            wait_for_clients_timeout,
        )
        self.tenseal_context_file = tenseal_context_file

    def preflight(self, ctx: RunContext) -> None:
        """Check that the server has its public context (and no secret key)."""
        server_context(self.tenseal_context_file, ctx)

    def setup(self, ctx: RunContext) -> None:
        """Check the public context."""
        server_context(self.tenseal_context_file, ctx)
