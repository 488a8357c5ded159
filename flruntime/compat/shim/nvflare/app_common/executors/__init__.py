"""flruntime's stand-in for ``nvflare.app_common.executors``."""
