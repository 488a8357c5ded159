"""``nvflare.apis.dxo_filter`` without NVFlare: DXOFilter (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.component import DXOFilter

__all__ = ["DXOFilter"]
