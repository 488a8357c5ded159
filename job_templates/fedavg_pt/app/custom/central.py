"""The centralised baseline of the fedavg_pt template: the same model trained on all sites' data at once.

``python central.py --epochs N`` trains for N epochs (use rounds × local_epochs to compare with a
federated run) and prints the held-out accuracy as JSON.
"""

from __future__ import annotations

import argparse
import json

import torch
from digits_data import central_datasets
from fedavg_net import DigitsCNN
from training import accuracy, train_epochs


def central_accuracy(epochs: int, lr: float = 0.05, batch_size: int = 32, seed: int = 0) -> float:
    """Train on all training data for ``epochs`` and return the held-out accuracy."""
    torch.manual_seed(seed)
    train, test = central_datasets(seed)
    net = DigitsCNN()
    for epoch in range(epochs):
        train_epochs(net, train, 1, lr, batch_size, seed + epoch)
    return accuracy(net, test)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch_size", type=int, default=32)
    a = p.parse_args()
    print(json.dumps({"epochs": a.epochs, "accuracy": central_accuracy(a.epochs, a.lr, a.batch_size)}))
