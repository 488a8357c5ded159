"""FedAvg client script for scikit-learn's digits: receive the global model, train locally, send the update.

Run by the job's executor (in process or as a subprocess); it talks to flruntime only through the
Client API. Per round it reports the received global model's validation accuracy, the training loss,
the learning rate and the norm of its update.
"""

from __future__ import annotations

import argparse
import copy
import logging

import torch
from digits_data import site_datasets
from fedavg_net import DigitsCNN
from training import accuracy, train_epochs

import flruntime.client as flare
from flruntime.client.tracking import SummaryWriter

log = logging.getLogger("fedavg_pt.train")


def parse_args() -> argparse.Namespace:
    """Read the job variables passed as script arguments."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num_sites", type=int, default=4)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--local_epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def update_norm(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Return the L2 norm of ``after - before`` over all parameters."""
    return float(torch.sqrt(sum(((after[k].float() - before[k].float()) ** 2).sum() for k in after)))


def main() -> None:
    """Serve train / validate / submit_model tasks until the job ends."""
    args = parse_args()
    flare.init()
    site = flare.get_site_name()
    train_data, test_data = site_datasets(site, args.num_sites, args.alpha, args.seed)
    torch.manual_seed(args.seed)
    net = DigitsCNN()
    best_acc, best_state = -1.0, copy.deepcopy(net.state_dict())
    log.info("%s: %d training samples, %d test samples", site, len(train_data), len(test_data))
    writer = SummaryWriter()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():
            flare.send(flare.FLModel(params=best_state))
            continue
        net.load_state_dict(model.params)
        global_acc = accuracy(net, test_data)
        if flare.is_evaluate():
            flare.send(flare.FLModel(metrics={"val_acc": global_acc}))
            continue
        before = copy.deepcopy(net.state_dict())
        rnd = model.current_round or 0
        loss, steps = train_epochs(net, train_data, args.local_epochs, args.lr, args.batch_size, args.seed + rnd)
        after = net.state_dict()
        norm = update_norm(before, after)
        local_acc = accuracy(net, test_data)
        if local_acc > best_acc:  # the best locally trained model is what this site submits for cross-site eval
            best_acc, best_state = local_acc, copy.deepcopy(after)
        log.info(
            "%s round %d: val_acc_global_model=%.4f train_loss=%.4f lr=%g diff_norm=%.4f",
            site,
            rnd,
            global_acc,
            loss,
            args.lr,
            norm,
        )
        epoch = (rnd + 1) * args.local_epochs
        for tag, value in (
            ("val_acc_global_model", global_acc),
            ("val_acc_local_model", local_acc),
            ("train_loss", loss),
            ("learning_rate", args.lr),
            ("diff_norm", norm),
            ("global_round", rnd),
            ("global_epoch", epoch),
        ):
            writer.add_scalar(tag, value, rnd)
        flare.send(
            flare.FLModel(
                params=after,
                metrics={"val_acc": global_acc},
                meta={
                    "NUM_STEPS_CURRENT_ROUND": steps,
                    "train_loss": loss,
                    "diff_norm": norm,
                    "learning_rate": args.lr,
                },
            )
        )


if __name__ == "__main__":
    main()
