"""A small stand-in for hello-pt's training script, in its shape: Client API, evaluate, train, send, track.

Each site trains SimpleNetwork on its own synthetic 2-class data (no download) for a few SGD steps.
"""

import nvflare.client as flare
import torch
from nvflare.client.tracking import SummaryWriter
from src.simple_network import SimpleNetwork


def data(site: str, n: int = 64):
    gen = torch.Generator().manual_seed(sum(map(ord, site)))
    x = torch.randn(n, 4, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def accuracy(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).float().mean())


def main():
    flare.init()
    x, y = data(flare.get_site_name())
    net = SimpleNetwork()
    writer = SummaryWriter()
    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        net.load_state_dict(input_model.params)
        acc = accuracy(net, x, y)  # of the global model received
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        steps = 10
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
        writer.add_scalar("train_loss", float(loss.detach()), input_model.current_round)
        flare.send(
            flare.FLModel(params=net.state_dict(), metrics={"accuracy": acc}, meta={"NUM_STEPS_CURRENT_ROUND": steps})
        )


if __name__ == "__main__":
    main()
