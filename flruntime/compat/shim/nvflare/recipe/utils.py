"""``nvflare.recipe.utils`` without NVFlare: add_experiment_tracking, add_cross_site_evaluation (flruntime's)."""

from flruntime.compat.jobapi.recipes import TRACKING_REGISTRY, add_cross_site_evaluation, add_experiment_tracking

__all__ = ["TRACKING_REGISTRY", "add_cross_site_evaluation", "add_experiment_tracking"]
