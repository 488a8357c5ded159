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
                self.total[name] = np.multiply(arr, weight if scale else 1.0, dtype=acc_dtype)
                self.weight[name] = weight
            else:
                self.total[name] += arr * weight if scale else arr
                self.weight[name] += weight
        self.count += 1

    def mean(self) -> Params:
        """Return ``total / weight`` per variable, in the dtype the variable arrived in (floats stay floats)."""
        out: Params = {}
        for name, total in self.total.items():
            w = self.weight[name]
            value = total / w if w else total
            dtype = self.dtypes[name]
            out[name] = value.astype(dtype, copy=False) if dtype.kind == "f" else value
        return out


def weighted_mean(contributions: list[tuple[Params, float]], exclude: str | None = None) -> Params:
    """Return the weighted mean of several parameter dicts (a convenience over :class:`WeightedSum`)."""
    acc = WeightedSum()
    pattern = re.compile(exclude) if exclude else None
    for params, weight in contributions:
        acc.add(params, weight, pattern)
    return acc.mean()
