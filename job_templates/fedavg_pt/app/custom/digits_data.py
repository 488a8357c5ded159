"""Data for the fedavg_pt template: scikit-learn's bundled digits, split across sites by a Dirichlet(α) draw.

Every site computes the same split from the same seed, so no coordination is needed: site ``site-k``
takes shard ``k-1`` of ``num_sites``. A high ``alpha`` gives each site nearly every class in equal
shares (≈ IID); a low ``alpha`` gives each site a few classes (skewed). A fixed 20 % of the data is
held out as a test set that no site trains on.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

TEST_FRACTION = 0.2


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N×1×8×8 in [0, 1]
    return images, digits.target.astype(np.int64)


def train_test_indices(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return the fixed train and held-out test indices."""
    _, labels = _arrays()
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - TEST_FRACTION))
    return order[:cut], order[cut:]


def dirichlet_split(labels: np.ndarray, num_sites: int, alpha: float, seed: int = 0) -> list[np.ndarray]:
    """Split sample indices into ``num_sites`` disjoint shards with Dirichlet(``alpha``) class shares.

    Args:
        labels: the label of every sample to split.
        num_sites: how many shards.
        alpha: the Dirichlet concentration (> 0).
        seed: the random seed (every site must use the same).

    Returns:
        One index array per site; together they cover every sample exactly once.
    """
    if num_sites < 1 or alpha <= 0:
        raise ValueError(f"need num_sites >= 1 and alpha > 0, got {num_sites} and {alpha}")
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(num_sites)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(num_sites, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for site, part in enumerate(np.split(members, cuts)):
            shards[site].extend(part.tolist())
    return [np.array(sorted(s), dtype=np.int64) for s in shards]


def site_index(site_name: str) -> int:
    """Return the 0-based shard of ``site-K`` (K from 1)."""
    prefix, _, number = site_name.rpartition("-")
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"site name '{site_name}' does not end in -<number>; name sites site-1, site-2, ...")
    return int(number) - 1


def site_datasets(site_name: str, num_sites: int, alpha: float, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Return ``(train, test)`` for one site: its Dirichlet shard of the training data, and the shared test set."""
    index = site_index(site_name)
    if index >= num_sites:
        raise ValueError(f"{site_name} needs num_sites >= {index + 1} (set -o num_sites=N to the number of clients)")
    images, labels = _arrays()
    train_idx, test_idx = train_test_indices(seed)
    shard = train_idx[dirichlet_split(labels[train_idx], num_sites, alpha, seed)[index]]
    return _dataset(images, labels, shard), _dataset(images, labels, test_idx)


def central_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Return ``(train, test)`` with all training data in one place (the centralised baseline)."""
    images, labels = _arrays()
    train_idx, test_idx = train_test_indices(seed)
    return _dataset(images, labels, train_idx), _dataset(images, labels, test_idx)


def _dataset(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]))
