"""``nvflare.app_common.np.recipes.fedavg`` without NVFlare: NumpyFedAvgRecipe (flruntime's)."""

from flruntime.compat.jobapi.recipes import NumpyFedAvgRecipe

__all__ = ["NumpyFedAvgRecipe"]
