"""``nvflare.apis.dxo`` without NVFlare: DXO (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.dxo import DXO, DataKind, MetaKey, from_bytes, from_shareable, get_leaf_dxos

__all__ = ["DXO", "DataKind", "MetaKey", "from_bytes", "from_shareable", "get_leaf_dxos"]
