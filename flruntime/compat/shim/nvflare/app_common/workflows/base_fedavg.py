"""``nvflare.app_common.workflows.base_fedavg`` without NVFlare: BaseFedAvg (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.base_fedavg import BaseFedAvg

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(BaseFedAvg)

__all__ = ["BaseFedAvg"]
