"""``import nvflare.client as flare`` without NVFlare: flruntime's Client API under NVFlare's name."""

from flruntime.client import *  # noqa: F403 - this module is the same API under another name
from flruntime.client import __all__  # noqa: F401
