"""``nvflare.app_opt.pt.file_model_persistor`` without NVFlare: PTFileModelPersistor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.persistors.pt_file import PTFileModelPersistor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(PTFileModelPersistor)

__all__ = ["PTFileModelPersistor"]
