"""``nvflare.recipe.run`` without NVFlare: Run (flruntime's)."""

from flruntime.environments import Run

__all__ = ["Run"]
