"""flruntime's stand-in for ``nvflare.recipe``: the environments, Run and add_experiment_tracking.

See :mod:`flruntime.environments` and :mod:`flruntime.compat.jobapi.recipes`.
"""

from flruntime.compat.jobapi.recipes import add_experiment_tracking
from flruntime.environments import PocEnv, ProdEnv, Run, SimEnv

__all__ = ["PocEnv", "ProdEnv", "Run", "SimEnv", "add_experiment_tracking"]
