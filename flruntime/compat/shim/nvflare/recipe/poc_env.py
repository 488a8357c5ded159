"""``nvflare.recipe.poc_env`` without NVFlare: PocEnv (flruntime's)."""

from flruntime.environments import PocEnv

__all__ = ["PocEnv"]
