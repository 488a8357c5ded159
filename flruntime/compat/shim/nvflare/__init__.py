"""flruntime's stand-in for the ``nvflare`` package: the Client API and the component API its examples use.

It is on the import path only when NVFlare itself is not installed (see :mod:`flruntime.compat`).
"""

#: Marks this package as flruntime's shim, not NVFlare.
FLRUNTIME_SHIM = True
