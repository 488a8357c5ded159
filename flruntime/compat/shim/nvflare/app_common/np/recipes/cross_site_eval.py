"""``nvflare.app_common.np.recipes.cross_site_eval`` without NVFlare: NumpyCrossSiteEvalRecipe (flruntime's)."""

from flruntime.compat.jobapi.recipes import NumpyCrossSiteEvalRecipe

__all__ = ["NumpyCrossSiteEvalRecipe"]
