"""Weighted averaging, accumulated in time: memory O(model) however many clients report.

The maths are pure functions over a running state so they can be tested against hand-computed means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from flruntime.runtime.messages import Params


@dataclass
class WeightedSum:
    """A running weighted sum per variable: ``total[k] = Σ w·v[k]`` and ``weight[k] = Σ w``."""

    total: dict[str, np.ndarray] = field(default_factory=dict)
    weight: dict[str, float] = field(default_factory=dict)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    count: int = 0

    def add(self, params: Params, weight: float, exclude: re.Pattern[str] | None = None, scale: bool = True) -> None:
        """Fold one contribution in; variables matching ``exclude`` are skipped.

        Args:
            params: the contribution's variables.
            weight: its weight (always added to the variable's sum of weights).
            exclude: variables whose name this pattern finds (``re.search``) are skipped.
            scale: multiply the values by ``weight`` (False: add them as they are, for contributions the
                clients already weighted, e.g. under homomorphic encryption; NVFlare's ``weigh_by_local_iter``).
        """
        for name, value in params.items():
            if exclude is not None and exclude.search(name):
                continue
            arr = np.asarray(value)
            acc_dtype = np.float64 if arr.dtype.kind in "iub" or arr.dtype == np.float64 else np.float32
            if name not in self.total:
                self.dtypes[name] = arr.dtype
                self.total[name] = np.asarray(np.multiply(arr, weight if scale else 1.0, dtype=acc_dtype))
                self.weight[name] = weight
            else:
                _add_scaled(self.total[name], arr, weight if scale else 1.0)
                self.weight[name] += weight
        self.count += 1

    def mean(self, in_place: bool = False) -> Params:
        """Return ``total / weight`` per variable, in the dtype the variable arrived in (floats stay floats).

        Args:
            in_place: divide the running sums themselves and hand them out (no model-sized copy); the sum
                is spent then.
        """
        out: Params = {}
        for name, total in self.total.items():
            w = self.weight[name]
            if in_place and w:
                total /= w
                value = total
            else:
                value = total / w if w else total
            dtype = self.dtypes[name]
            out[name] = value.astype(dtype, copy=False) if dtype.kind == "f" else value
        return out


#: Elements per block when folding a contribution in: bounds the temporary ``weight * value`` buffer.
BLOCK = 1 << 20


def _add_scaled(total: np.ndarray, value: np.ndarray, weight: float) -> None:
    """``total += weight * value`` in blocks, so no model-sized temporary is made."""
    flat_total = total.reshape(-1)
    flat_value = np.asarray(value).reshape(-1)
    for start in range(0, flat_total.size, BLOCK):
        part = flat_value[start : start + BLOCK]
        flat_total[start : start + BLOCK] += part * weight if weight != 1.0 else part


def weighted_mean(contributions: list[tuple[Params, float]], exclude: str | None = None) -> Params:
    """Return the weighted mean of several parameter dicts (a convenience over :class:`WeightedSum`)."""
    acc = WeightedSum()
    pattern = re.compile(exclude) if exclude else None
    for params, weight in contributions:
        acc.add(params, weight, pattern)
    return acc.mean()
