"""``nvflare.client.config`` without NVFlare: ExchangeFormat and TransferType (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.client.config import ExchangeFormat, TransferType

__all__ = ["ExchangeFormat", "TransferType"]
