"""flruntime's stand-in for ``nvflare.job_config``: NVFlare's Python job API (see :mod:`flruntime.compat.jobapi`)."""
