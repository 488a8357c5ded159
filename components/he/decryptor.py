"""The clients' task-data filter that decrypts the global model (NVFlare's ``HEModelDecryptor``)."""

from __future__ import annotations

import logging
import time

from flruntime.components.he.encryptor import DataKind, SecretContextFilter, params_types

from flruntime.he import packing, received
from flruntime.he.contexts import LoadedContext, client_context
from flruntime.runtime.context import TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage

log = logging.getLogger(__name__)


class HEModelDecryptor(SecretContextFilter):
    """Decrypts the CKKS ciphertexts of task data back into arrays of their original shapes and dtypes.

    The decrypted values are divided by the weight the layout states (see :mod:`flruntime.he.packing`).
    Task data without ``PROCESSED_KEYS`` passes unchanged (the first round's global model is plaintext). The
    global model is also kept for this task's ``HEModelEncryptor``, which adds a ``WEIGHT_DIFF`` result to it
    (see :mod:`flruntime.he.received`).

    Args:
        tenseal_context_file: the context with the secret key (see :mod:`flruntime.he.contexts`).
        data_kinds: params types to decrypt (``WEIGHT_DIFF``, ``WEIGHTS``; default both).
    """

    def __init__(self, tenseal_context_file: str = "client_context.tenseal", data_kinds: list[DataKind] | None = None):
        self.tenseal_context_file = tenseal_context_file
        self.types = params_types(data_kinds)
        self._context: LoadedContext | None = None

    def process(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Return ``data`` with its ciphertexts decrypted (unchanged when nothing is encrypted)."""
        if data.params is None or data.params_type not in self.types or not data.meta.get(MetaKey.PROCESSED_KEYS):
            if data.params and not data.meta.get(MetaKey.PROCESSED_KEYS):
                self._remember(ctx, data, received.plain_values(data.params), None)
            return data
        algorithm = data.meta.get(MetaKey.PROCESSED_ALGORITHM)
        if algorithm != packing.ALGORITHM:
            raise ValueError(f"the task data is processed with {algorithm!r}, not {packing.ALGORITHM}")
        loaded = self._context or client_context(self.tenseal_context_file, ctx.run)
        self._context = loaded
        layout = packing.Packing.from_meta(data.meta)
        if layout.fingerprint and layout.fingerprint != loaded.fingerprint:
            raise ValueError(
                f"the model was encrypted with a different context (fingerprint {layout.fingerprint}) than "
                f"{ctx.site}'s {loaded.path.name} ({loaded.fingerprint})"
            )
        start = time.perf_counter()
        blobs = packing.blobs_of(data.params, layout)
        flat = packing.decrypt_flat(blobs, layout, loaded)
        values = packing.unflatten(flat, layout.vars)
        out = data.copy()
        out.params = {n: values.get(n, v) for n, v in data.params.items()}
        out.meta = packing.plain_meta(data.meta)
        kept = received.plain_values({n: v for n, v in data.params.items() if n not in values})
        kept.update(received.flat_values(flat, layout.vars))  # flat is private: the params handed on are copies
        self._remember(ctx, data, kept, layout.weight)
        log.info(
            "%s: decrypted %d values from %d ciphertexts in %.2f s",
            ctx.site,
            layout.total,
            len(blobs),
            time.perf_counter() - start,
        )
        return out

    @staticmethod
    def _remember(ctx: TaskContext, data: ModelMessage, values: dict, weight: float | None) -> None:
        excluded = str(data.meta.get(packing.EXCLUDE_META) or "")
        received.remember(ctx, received.Received(str(data.meta.get(packing.MODEL_ID) or ""), values, weight, excluded))
