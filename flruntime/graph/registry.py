"""Short names for components: the built-in registry plus third-party plugins.

A config may say ``"name": "FedAvg"`` instead of a full ``path``. Built-in names are listed in
:data:`BUILTIN_NAMES`; packages add their own through the entry-point group
``flruntime.components`` (``MyAggregator = my_pkg.aggregators:MyAggregator``), and their modules
become importable by class path too.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from flruntime.graph.aliases import NVFLARE_ALIASES
from flruntime.graph.nvflare_names import NVFLARE_NAMES

#: flruntime classes with a short name of their own (no NVFlare counterpart, or another spelling).
NATIVE_NAMES: dict[str, str] = {
    "SocketPipe": "flruntime.pipes.tcp.SocketPipe",
}


def _builtin_names() -> dict[str, str]:
    """Every aliased class under its class name, except names NVFlare itself finds ambiguous (``NPTrainer``)."""
    ambiguous = {name for name, modules in NVFLARE_NAMES.items() if len(modules) > 1}
    names = {
        target.rsplit(".", 1)[1]: target
        for target in NVFLARE_ALIASES.values()
        if target.rsplit(".", 1)[1] not in ambiguous
    }
    return {**names, **NATIVE_NAMES}


#: Short name → flruntime class path of the built-in components.
BUILTIN_NAMES: dict[str, str] = _builtin_names()

ENTRY_POINT_GROUP = "flruntime.components"


@cache
def plugin_names() -> dict[str, str]:
    """Return short name → ``module.Class`` of every installed plugin component."""
    out: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module, _, attr = ep.value.partition(":")
        out[ep.name] = f"{module}.{attr}" if attr else module
    return out


def short_names() -> dict[str, str]:
    """Return every short name (built-ins win over plugins of the same name)."""
    return {**plugin_names(), **BUILTIN_NAMES}
