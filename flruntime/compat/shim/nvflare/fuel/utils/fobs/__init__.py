"""``nvflare.fuel.utils.fobs`` without NVFlare: fobs without pickle (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.fobs import (
    Decomposer,
    deserialize,
    dump,
    dumps,
    load,
    loads,
    register,
    register_data_classes,
    register_enum_types,
    register_folder,
    serialize,
)

__all__ = [
    "Decomposer",
    "deserialize",
    "dump",
    "dumps",
    "load",
    "loads",
    "register",
    "register_data_classes",
    "register_enum_types",
    "register_folder",
    "serialize",
]
