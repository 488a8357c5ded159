"""flruntime's stand-in for ``nvflare.app_common.np.recipes``: the NumPy recipes."""

from flruntime.compat.jobapi.recipes import NumpyCrossSiteEvalRecipe, NumpyFedAvgRecipe

__all__ = ["NumpyCrossSiteEvalRecipe", "NumpyFedAvgRecipe"]
