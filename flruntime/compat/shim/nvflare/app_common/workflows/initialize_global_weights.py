"""``nvflare.app_common.workflows.initialize_global_weights`` without NVFlare: InitializeGlobalWeights (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.initialize_global_weights import InitializeGlobalWeights

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(InitializeGlobalWeights)

__all__ = ["InitializeGlobalWeights"]
