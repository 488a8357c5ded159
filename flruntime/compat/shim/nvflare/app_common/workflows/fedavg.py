"""``nvflare.app_common.workflows.fedavg`` without NVFlare: FedAvg (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.workflows.fedavg import FedAvg

__all__ = ["FedAvg"]
