"""``nvflare.recipe.prod_env`` without NVFlare: ProdEnv (flruntime's)."""

from flruntime.environments import ProdEnv

__all__ = ["ProdEnv"]
