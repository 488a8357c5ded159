"""``nvflare.app_opt.pt.fedavg_early_stopping`` without NVFlare: PTFedAvgEarlyStopping (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.fedavg_early_stopping import PTFedAvgEarlyStopping

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(PTFedAvgEarlyStopping)

__all__ = ["PTFedAvgEarlyStopping"]
