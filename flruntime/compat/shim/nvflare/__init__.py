"""flruntime's stand-in for the ``nvflare`` package: the Client API and the component API its examples use.

It is on the import path only when NVFlare itself is not installed (see :mod:`flruntime.compat`).
"""

#: Marks this package as flruntime's shim, not NVFlare.
FLRUNTIME_SHIM = True


def __getattr__(name: str) -> object:
    """``from nvflare import FedJob, FilterType`` (NVFlare 2.5+), imported on use."""
    if name in ("FedJob", "FilterType"):
        from flruntime.compat.jobapi import fed_job

        return getattr(fed_job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
