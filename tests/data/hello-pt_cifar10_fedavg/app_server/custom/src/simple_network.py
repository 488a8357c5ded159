"""A small stand-in for hello-pt's SimpleNetwork (same module path and class name; a tiny linear classifier)."""

import torch


class SimpleNetwork(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
