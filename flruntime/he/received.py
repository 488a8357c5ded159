"""What a client received with a task, kept for the result filter of the same task.

The server of an HE job never divides or multiplies ciphertexts (see :mod:`flruntime.he.packing`), so it
cannot add an encrypted *difference* to the encrypted global model. Instead a client's
``HEModelEncryptor`` encrypts ``global + difference`` (the client's new local model) for a ``WEIGHT_DIFF``
result: the weighted mean of those is the new global model. The global model a client received is known to
it — its ``HEModelDecryptor`` (task data filter) decrypted it — and is kept here, by job, site and task id,
until the result filter of the same task takes it. A site runs one task at a time, so only its last task's
model is kept (a ``validate`` task's, whose result is not encrypted, is dropped with the next task).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flruntime.he.packing import Var
from flruntime.runtime.context import TaskContext

#: Tasks kept per site.
KEEP = 1


@dataclass(frozen=True)
class Received:
    """The global model of one task, as the client got it.

    Attributes:
        model_id: the global model's id (``he_model_id`` in its meta; "" for a plaintext model without one).
        values: variable name → float64 values (flat), the model as decrypted (or as sent in the clear).
        weight: the encrypted global model's total weight (the sum of the clients' weights that made it), used
            to keep the next encrypted values near the model's magnitude; None for a plaintext model.
        excluded: the regular expression of variables the server's HE aggregator excludes ("" for none).
    """

    model_id: str
    values: Mapping[str, np.ndarray]
    weight: float | None
    excluded: str


_lock = threading.Lock()
_kept: dict[tuple[str, str], OrderedDict[str, Received]] = {}


def remember(ctx: TaskContext, received: Received) -> None:
    """Keep what a client received with task ``ctx`` (the site's oldest kept tasks are dropped)."""
    with _lock:
        site = _kept.setdefault((ctx.run.job_id, ctx.site), OrderedDict())
        site[ctx.task_id] = received
        site.move_to_end(ctx.task_id)
        while len(site) > KEEP:
            site.popitem(last=False)


def take(ctx: TaskContext) -> Received | None:
    """Return (and forget) what the client received with task ``ctx``, or None."""
    with _lock:
        site = _kept.get((ctx.run.job_id, ctx.site))
        return site.pop(ctx.task_id, None) if site else None


def flat_values(flat: np.ndarray, variables: list[Var]) -> dict[str, np.ndarray]:
    """Views of a flat vector, one per variable (flattened)."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for var in variables:
        out[var.name] = flat[offset : offset + var.size]
        offset += var.size
    return out


def plain_values(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Private float64 copies of plaintext parameters (the training code may change the originals in place)."""
    out: dict[str, np.ndarray] = {}
    for name, value in params.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            out[name] = np.array(arr, dtype=np.float64).reshape(-1)
    return out
