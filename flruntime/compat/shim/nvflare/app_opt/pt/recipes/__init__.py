"""flruntime's stand-in for ``nvflare.app_opt.pt.recipes``: FedAvgRecipe (:mod:`flruntime.compat.jobapi.recipes`)."""

from flruntime.compat.jobapi.recipes import FedAvgRecipe

__all__ = ["FedAvgRecipe"]
