"""flruntime's stand-in for ``nvflare.apis`` (NVFlare's component API)."""
