"""flruntime's stand-in for ``nvflare.apis.impl``."""
