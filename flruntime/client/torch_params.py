"""PyTorch conveniences: hand a script tensors (state_dict-compatible) and take tensors back as numpy.

torch is imported only when a script asked for the ``pytorch`` exchange format; tensors a script sends are
recognised without importing torch (if torch was never imported, there are none).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "params_exchange_format 'pytorch' needs torch: pip install 'flruntime[pt]' (the pinned CPU build)"
        ) from exc
    return torch


def is_tensor(value: Any) -> bool:
    """True for a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_torch(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``params`` as torch tensors, each a copy (a script may change it in place). Bytes stay bytes."""
    torch = _torch()
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, (bytes, bytearray)) or is_tensor(value):
            out[name] = value
        else:
            out[name] = torch.from_numpy(np.array(value, copy=True))
    return out


def tensor_to_numpy(value: Any) -> np.ndarray:
    """Return a tensor's values as a numpy array (bfloat16 becomes float32, which numpy has)."""
    t = value.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return np.asarray(t.numpy())


def to_numpy(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``params`` with tensors and array-likes as numpy arrays (bytes stay bytes, lists of arrays lists)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, np.ndarray) or isinstance(value, (bytes, bytearray)):
            out[name] = value
        elif is_tensor(value):
            out[name] = tensor_to_numpy(value)
        elif isinstance(value, (list, tuple)) and all(hasattr(v, "shape") for v in value):
            # a Keras layer's get_weights(): its arrays stay apart (a TensorFlow executor flattens them)
            out[name] = [tensor_to_numpy(v) if is_tensor(v) else np.asarray(v) for v in value]
        else:
            out[name] = np.asarray(value)
    return out


def plain(value: Any) -> Any:
    """Return ``value`` with tensors and numpy scalars turned into Python numbers or lists (for metrics, meta)."""
    if is_tensor(value):
        return value.item() if value.numel() == 1 else value.detach().cpu().tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
