"""Local training and evaluation loops shared by the template's scripts and its centralised baseline."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def train_epochs(
    net: nn.Module, data: Dataset, epochs: int, lr: float, batch_size: int, seed: int
) -> tuple[float, int]:
    """Train ``net`` with SGD (momentum 0.9) for ``epochs``; return (mean loss of the last epoch, steps taken)."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    steps, last_loss = 0, 0.0
    for _ in range(epochs):
        total, count = 0.0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
            steps += 1
        last_loss = total / max(count, 1)
    return last_loss, steps


@torch.no_grad()
def accuracy(net: nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Return the fraction of ``data`` that ``net`` classifies correctly."""
    net.eval()
    correct = total = 0
    for images, labels in DataLoader(data, batch_size=batch_size):
        correct += int((net(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1)
