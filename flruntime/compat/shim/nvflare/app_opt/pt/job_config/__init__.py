"""flruntime's stand-in for ``nvflare.app_opt.pt.job_config``: PyTorch jobs (see :mod:`flruntime.compat.jobapi.pt`)."""
