"""flruntime's stand-in for ``nvflare.app_opt.pt``: PTFileModelPersistor and PTFileModelLocator, imported on use."""

from typing import Any

_LAZY = {
    "PTFileModelPersistor": "nvflare.app_opt.pt.file_model_persistor",
    "PTFileModelLocator": "nvflare.app_opt.pt.file_model_locator",
}


def __getattr__(name: str) -> Any:
    """Import the class on first use (torch is loaded only then)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
