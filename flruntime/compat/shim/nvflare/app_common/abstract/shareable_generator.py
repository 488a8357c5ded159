"""``nvflare.app_common.abstract.shareable_generator`` without NVFlare: ShareableGenerator (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import ShareableGenerator

__all__ = ["ShareableGenerator"]
