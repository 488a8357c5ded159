"""``nvflare.app_common.workflows.fedavg`` without NVFlare: FedAvg (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.fedavg import FedAvg

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(FedAvg)

__all__ = ["FedAvg"]
