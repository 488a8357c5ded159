"""``nvflare.app_common.workflows.cyclic_ctl`` without NVFlare: CyclicController and RelayOrder (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.cyclic import SUPPORTED_ORDERS, CyclicController, RelayOrder

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(CyclicController)

__all__ = ["SUPPORTED_ORDERS", "CyclicController", "RelayOrder"]
