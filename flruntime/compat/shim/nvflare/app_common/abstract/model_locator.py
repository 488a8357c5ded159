"""``nvflare.app_common.abstract.model_locator`` without NVFlare: ModelLocator (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import ModelLocator

__all__ = ["ModelLocator"]
