"""``nvflare.recipe.spec`` without NVFlare: Recipe and ExecEnv (flruntime's)."""

from flruntime.compat.jobapi.recipes import Recipe
from flruntime.environments import ExecEnv

__all__ = ["ExecEnv", "Recipe"]
