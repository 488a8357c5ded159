"""``nvflare.recipe.sim_env`` without NVFlare: SimEnv (flruntime's)."""

from flruntime.environments import SimEnv

__all__ = ["SimEnv"]
