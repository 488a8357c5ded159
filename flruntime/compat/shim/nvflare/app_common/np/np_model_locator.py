"""``nvflare.app_common.np.np_model_locator`` without NVFlare: NPModelLocator (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.locators.np_file import NPModelLocator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(NPModelLocator)

__all__ = ["NPModelLocator"]
