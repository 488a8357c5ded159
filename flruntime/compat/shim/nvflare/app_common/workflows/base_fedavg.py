"""``nvflare.app_common.workflows.base_fedavg`` without NVFlare: BaseFedAvg (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.workflows.base_fedavg import BaseFedAvg

__all__ = ["BaseFedAvg"]
