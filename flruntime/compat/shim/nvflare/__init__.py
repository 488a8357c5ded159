"""flruntime's stand-in for the ``nvflare`` package: only ``nvflare.client`` and ``nvflare.client.tracking``.

It is on the import path only when NVFlare itself is not installed (see :mod:`flruntime.compat`).
"""

#: Marks this package as flruntime's shim, not NVFlare.
FLRUNTIME_SHIM = True
