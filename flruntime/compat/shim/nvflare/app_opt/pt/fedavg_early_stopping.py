"""``nvflare.app_opt.pt.fedavg_early_stopping`` without NVFlare: PTFedAvgEarlyStopping (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.workflows.fedavg_early_stopping import PTFedAvgEarlyStopping

__all__ = ["PTFedAvgEarlyStopping"]
