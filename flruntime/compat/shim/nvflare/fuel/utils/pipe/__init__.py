"""flruntime's stand-in for ``nvflare.fuel.utils.pipe``."""
