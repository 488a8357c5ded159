"""``nvflare.app_opt.pt.recipes.fedavg`` without NVFlare: FedAvgRecipe (flruntime's)."""

from flruntime.compat.jobapi.recipes import FedAvgRecipe

__all__ = ["FedAvgRecipe"]
