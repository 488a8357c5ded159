"""``nvflare.app_opt.pt.file_model_locator`` without NVFlare: PTFileModelLocator (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.locators.pt_file import PTFileModelLocator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(PTFileModelLocator)

__all__ = ["PTFileModelLocator"]
