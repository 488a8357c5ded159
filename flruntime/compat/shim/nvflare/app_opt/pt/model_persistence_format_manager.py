"""``nvflare.app_opt.pt.model_persistence_format_manager`` without NVFlare: the PT format manager (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.pt_format import PTModelPersistenceFormatManager

__all__ = ["PTModelPersistenceFormatManager"]
