"""flruntime's stand-in for ``nvflare.app_common.shareablegenerators``: FullModelShareableGenerator."""

from nvflare.app_common.shareablegenerators.full_model_shareable_generator import FullModelShareableGenerator

__all__ = ["FullModelShareableGenerator"]
