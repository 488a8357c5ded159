"""``nvflare.app_common.widgets.external_configurator`` without NVFlare: ExternalConfigurator (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.widgets.metric_relay import ExternalConfigurator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ExternalConfigurator)

__all__ = ["ExternalConfigurator"]
