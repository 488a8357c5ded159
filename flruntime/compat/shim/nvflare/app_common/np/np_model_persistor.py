"""``nvflare.app_common.np.np_model_persistor`` without NVFlare: NPModelPersistor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.persistors.np_file import NPModelPersistor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(NPModelPersistor)

__all__ = ["NPModelPersistor"]
