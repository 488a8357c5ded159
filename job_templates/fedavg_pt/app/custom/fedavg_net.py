"""The models of the fedavg_pt template: a small CNN for 8×8 digits and one for 32×32 CIFAR-10 images."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Two conv layers and a linear head for 1×8×8 images (scikit-learn's digits), 10 classes.

    The initial weights come from ``seed`` (without touching the global random state), so the server's
    initial global model is the same in the simulator, POC and production.
    """

    def __init__(self, channels: int = 16, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(1, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, 2 * channels, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Linear(2 * channels * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of images."""
        return self.head(torch.flatten(self.features(x), 1))


class Cifar10CNN(nn.Module):
    """The classic small CIFAR-10 network (two conv layers, three linear layers)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of images."""
        return self.head(torch.flatten(self.features(x), 1))
