"""``nvflare.app_common.workflows.cross_site_model_eval`` without NVFlare: CrossSiteModelEval (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.cross_site_eval import CrossSiteModelEval

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(CrossSiteModelEval)

__all__ = ["CrossSiteModelEval"]
