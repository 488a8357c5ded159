"""Running code written for NVFlare without NVFlare: its component API and the ``nvflare`` import shim.

Scripts written against NVFlare's Client API start with ``import nvflare.client as flare``; components written
against NVFlare's component API import ``nvflare.apis`` and ``nvflare.app_common``. When NVFlare is not installed,
flruntime makes those modules importable from a shim folder (``flruntime/compat/shim``) whose modules re-export
this package's implementations (:mod:`flruntime.compat.shareable`, :mod:`~flruntime.compat.dxo`,
:mod:`~flruntime.compat.fl_context`, :mod:`~flruntime.compat.component`, :mod:`~flruntime.compat.learnable`,
:mod:`~flruntime.compat.controller`, :mod:`~flruntime.compat.fobs`, ...) and :mod:`flruntime.client`. The folder
is *appended* to ``sys.path`` (in-process scripts, a job's ``custom/`` code) or ``PYTHONPATH`` (launched scripts),
so a real NVFlare, where installed, always wins; and nothing is added at all when ``nvflare`` can already be
imported. :mod:`flruntime.compat.adapters` wraps components built on these classes for flruntime's engines.
NVFlare's Python job API and recipes (``nvflare.job_config``, ``nvflare.recipe``, ...) are
:mod:`flruntime.compat.jobapi`; ``flruntime run SCRIPT`` runs a script written for them with the shim installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path

#: The folder holding the shim package ``nvflare`` (package data of flruntime).
SHIM_DIR = Path(__file__).resolve().parent / "shim"

_lock = threading.Lock()


def nvflare_installed() -> bool:
    """True when a real ``nvflare`` package (not the shim) can be imported."""
    spec = importlib.util.find_spec("nvflare")
    if spec is None:
        return False
    origins = [spec.origin or "", *(spec.submodule_search_locations or [])]
    return not any(o and Path(o).resolve().is_relative_to(SHIM_DIR) for o in origins)


def needs_shim() -> bool:
    """True when scripts need the shim: NVFlare is not installed."""
    return not nvflare_installed()


def install_shim() -> bool:
    """Append the shim folder to ``sys.path`` when NVFlare is not installed (idempotent, thread-safe).

    Returns:
        True when the shim is on ``sys.path`` (added now or before).
    """
    with _lock:
        entry = str(SHIM_DIR)
        if entry in sys.path:
            return True
        if importlib.util.find_spec("nvflare") is not None:
            return False
        sys.path.append(entry)
        return True


def pythonpath_with_shim(pythonpath: str | None) -> str | None:
    """Return ``PYTHONPATH`` for a launched script: the shim folder appended when NVFlare is not installed."""
    if not needs_shim():
        return pythonpath
    parts = [p for p in (pythonpath or "").split(os.pathsep) if p]
    if str(SHIM_DIR) not in parts:
        parts.append(str(SHIM_DIR))
    return os.pathsep.join(parts)
