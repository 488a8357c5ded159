"""flruntime's stand-in for ``nvflare.app_opt.tracking``."""
