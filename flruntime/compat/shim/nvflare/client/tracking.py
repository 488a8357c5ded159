"""``from nvflare.client.tracking import SummaryWriter`` without NVFlare: flruntime's tracking writers."""

from flruntime.client.tracking import MLflowWriter, SummaryWriter, WandBWriter

__all__ = ["MLflowWriter", "SummaryWriter", "WandBWriter"]
