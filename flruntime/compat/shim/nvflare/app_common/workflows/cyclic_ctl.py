"""``nvflare.app_common.workflows.cyclic_ctl`` without NVFlare: CyclicController and RelayOrder (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.workflows.cyclic import SUPPORTED_ORDERS, CyclicController, RelayOrder

__all__ = ["SUPPORTED_ORDERS", "CyclicController", "RelayOrder"]
