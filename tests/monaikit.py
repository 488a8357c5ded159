"""Helpers for the MONAI tests: the monai_bundle template's bundle and its synthetic-data generator."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from flruntime.templates import builtin_template_dir

TEMPLATE = builtin_template_dir() / "monai_bundle"
BUNDLE = "small_seg3d"
BUNDLE_DIR = TEMPLATE / "app" / "config" / BUNDLE


def synthetic_data() -> ModuleType:
    """The template's ``custom/synthetic_data.py``, imported from its file."""
    path = TEMPLATE / "app" / "custom" / "synthetic_data.py"
    spec = importlib.util.spec_from_file_location("monai_template_synthetic_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_bundle(app_dir: Path, name: str = BUNDLE) -> Path:
    """Put a copy of the template's bundle at ``<app_dir>/config/<name>`` and return it."""
    dest = app_dir / "config" / name
    shutil.copytree(BUNDLE_DIR, dest)
    return dest
