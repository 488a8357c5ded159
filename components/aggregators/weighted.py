"""Weighted averaging, accumulated in time: memory O(model) however many clients report.

The maths are pure functions over a running state so they can be tested against hand-computed means.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from flruntime.runtime.messages import Params

log = logging.getLogger(__name__)


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

    def begin(
        self,
        arrays: list[tuple[str, np.dtype, tuple[int, ...]]],
        weight: float,
        exclude: re.Pattern[str] | None = None,
        scale: bool = True,
    ) -> Fold:
        """Start folding in a contribution whose arrays will arrive piece by piece (:class:`Fold`).

        Args:
            arrays: name, dtype and shape of each variable, in the order their pieces come.
            weight: the contribution's weight.
            exclude: variables whose name this pattern finds are skipped.
            scale: multiply the pieces by ``weight`` (as in :meth:`add`).

        Raises:
            ValueError: a variable whose shape differs from the one already summed (nothing is changed then).
        """
        sizes: dict[str, int] = {}
        for name, _, shape in arrays:
            if exclude is not None and exclude.search(name):
                continue
            if name in self.total and self.total[name].shape != tuple(shape):
                raise ValueError(f"'{name}' has shape {list(shape)}, the others sent {list(self.total[name].shape)}")
            sizes[name] = int(np.prod(shape))
        for name, dtype, shape in arrays:
            if name in sizes and name not in self.total:  # untouched zero pages until the pieces come
                self.dtypes[name] = np.dtype(dtype)
                acc = np.float64 if self.dtypes[name].kind in "iub" or self.dtypes[name] == np.float64 else np.float32
                self.total[name] = np.zeros(shape, dtype=acc)
        return Fold(self, sizes, weight, weight if scale else 1.0)

    def mean(self, in_place: bool = False, partial: Iterable[Fold] = ()) -> Params:
        """Return ``total / weight`` per variable, in the dtype the variable arrived in (floats stay floats).

        Args:
            in_place: divide the running sums themselves and hand them out (no model-sized copy); the sum
                is spent then.
            partial: folds that did not finish (their stream broke off): each value is divided by the
                weights of the contributions that reached it. A variable that some values of no contribution
                reached is left out.
        """
        reached: dict[str, list[tuple[int, float]]] = {}
        for fold in partial:
            for name, end in fold.done.items():
                if end:
                    reached.setdefault(name, []).append((end, fold.weight))
        out: Params = {}
        for name, total in self.total.items():
            w = self.weight.get(name)
            ends = reached.get(name)
            if ends:
                segments = _segments(total.size, w, ends)
                if segments is None:
                    log.warning("leaving '%s' out of the aggregate: only a broken-off result reached part of it", name)
                    continue
                value = total if in_place else total.copy()
                flat = value.reshape(-1)
                for start, end, weight in segments:
                    if weight:
                        flat[start:end] /= weight
            elif w is None:
                continue  # a partial contribution that never reached it
            elif in_place and w:
                total /= w
                value = total
            else:
                value = total / w if w else total
            dtype = self.dtypes[name]
            out[name] = value.astype(dtype, copy=False) if dtype.kind == "f" else value
        return out


class Fold:
    """One contribution going into a :class:`WeightedSum` piece by piece (made by :meth:`WeightedSum.begin`).

    Pieces of a variable come in order; a piece that repeats elements already folded in (the contribution sent
    again after its stream broke off) is folded from where the last one ended, so a resent contribution
    completes the first exactly.

    Attributes:
        sizes: elements of each variable it adds to.
        weight: its weight.
        factor: what its values are multiplied by (``weight``, or 1.0 for values the client weighted).
        done: elements of each variable folded in so far.
    """

    def __init__(self, acc: WeightedSum, sizes: dict[str, int], weight: float, factor: float) -> None:
        self.acc = acc
        self.sizes = sizes
        self.weight = weight
        self.factor = factor
        self.done = dict.fromkeys(sizes, 0)

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Fold elements ``[start, start + values.size)`` of ``name`` in (``total += factor * values``).

        Raises:
            ValueError: a piece that leaves a gap after what was folded, or runs past the variable's end.
        """
        if name not in self.sizes:
            return
        done, end = self.done[name], start + values.size
        if end > self.sizes[name]:
            raise ValueError(f"a piece of '{name}' runs past its {self.sizes[name]} elements")
        if start > done:
            raise ValueError(f"a piece of '{name}' starts at element {start}, after the {done} folded in")
        if end <= done:
            return
        _add_scaled(self.acc.total[name].reshape(-1)[done:end], values.reshape(-1)[done - start :], self.factor)
        self.done[name] = end

    @property
    def complete(self) -> bool:
        """True when every element of every variable was folded in."""
        return self.done == self.sizes

    @property
    def fraction(self) -> float:
        """The share of the contribution's elements folded in so far."""
        total = sum(self.sizes.values())
        return sum(self.done.values()) / total if total else 1.0

    def commit(self) -> None:
        """Count the complete contribution: its weight joins each variable's sum of weights.

        Raises:
            ValueError: when it is not complete.
        """
        if not self.complete:
            raise ValueError("the contribution is not complete")
        for name in self.sizes:
            self.acc.weight[name] = self.acc.weight.get(name, 0.0) + self.weight
        self.acc.count += 1


def _segments(size: int, full: float | None, ends: list[tuple[int, float]]) -> list[tuple[int, int, float]] | None:
    """Split ``[0, size)`` where partial contributions stop.

    Returns:
        ``(start, end, weight)`` per piece; None when some elements have no contribution at all (``full`` is
        None: no complete one).
    """
    cuts = sorted({0, size, *(min(end, size) for end, _ in ends)})
    segments = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        reach = [w for stop, w in ends if stop >= end]
        if full is None and not reach:
            return None
        segments.append((start, end, (full or 0.0) + sum(reach)))
    return segments


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
