"""FedAvg client script for CIFAR-10, the same loop as ``train.py`` with torchvision's CIFAR10 loader.

It needs torchvision and the CIFAR-10 data already on disk (``--data_root``, default
``~/data/cifar10``); nothing is downloaded. When either is missing it stops with a message that says
what to install or where to put the data.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import sys
from pathlib import Path

import torch
from fedavg_net import Cifar10CNN
from training import accuracy, train_epochs

import flruntime.client as flare

log = logging.getLogger("fedavg_pt.train_cifar10")


def require_cifar10(root: Path) -> None:
    """Stop with an actionable message when torchvision or the CIFAR-10 data is missing."""
    if importlib.util.find_spec("torchvision") is None:
        sys.exit(
            "train_cifar10.py needs torchvision: pip install torchvision matching your torch version "
            "(or use app_script=train.py for the digits data that ships with scikit-learn)"
        )
    if not (root / "cifar-10-batches-py").is_dir():
        sys.exit(
            f"CIFAR-10 data not found under {root}: put the extracted 'cifar-10-batches-py' folder there "
            "(this script never downloads) or pass --data_root"
        )


def load_cifar10(
    root: Path, site_index: int, num_sites: int
) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """Return this site's contiguous shard of the CIFAR-10 training set and the test set."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train = datasets.CIFAR10(str(root), train=True, download=False, transform=tf)
    test = datasets.CIFAR10(str(root), train=False, download=False, transform=tf)
    per_site = len(train) // num_sites
    shard = torch.utils.data.Subset(train, range(site_index * per_site, (site_index + 1) * per_site))
    return shard, test


def main() -> None:
    """Serve train / validate / submit_model tasks until the job ends."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data_root", type=Path, default=Path.home() / "data" / "cifar10")
    p.add_argument("--num_sites", type=int, default=4)
    p.add_argument("--local_epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=1.0, help="accepted for symmetry with train.py; unused")
    args = p.parse_args()
    require_cifar10(args.data_root)  # before joining the job: a site that cannot train says why at once
    flare.init()
    site = flare.get_site_name()
    index = int(site.rpartition("-")[2]) - 1
    train_data, test_data = load_cifar10(args.data_root, index, args.num_sites)
    net = Cifar10CNN()
    best_acc, best_state = -1.0, copy.deepcopy(net.state_dict())
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():
            flare.send(flare.FLModel(params=best_state))
            continue
        net.load_state_dict(model.params)
        acc = accuracy(net, test_data)
        if flare.is_evaluate():
            flare.send(flare.FLModel(metrics={"val_acc": acc}))
            continue
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(net.state_dict())
        rnd = model.current_round or 0
        loss, steps = train_epochs(net, train_data, args.local_epochs, args.lr, args.batch_size, args.seed + rnd)
        log.info("%s round %d: val_acc_global_model=%.4f train_loss=%.4f", site, rnd, acc, loss)
        flare.send(
            flare.FLModel(
                params=net.state_dict(),
                metrics={"val_acc": acc},
                meta={"NUM_STEPS_CURRENT_ROUND": steps, "train_loss": loss},
            )
        )


if __name__ == "__main__":
    main()
