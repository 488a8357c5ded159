"""``nvflare.apis.client`` without NVFlare: Client (flruntime's).

See :mod:`flruntime.compat.engine`.
"""

from flruntime.compat.engine import Client

__all__ = ["Client"]
