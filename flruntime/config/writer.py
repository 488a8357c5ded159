"""Writing a config document back to its file (used by templates and by add-tracking)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from flruntime.config.source import config_suffix


def write_config(path: Path, data: Any) -> Path:
    """Write ``data`` back in the file's format; HOCON is rewritten as JSON (pyhocon cannot keep comments)."""
    suffix = config_suffix(path)
    if suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path
    target = path if suffix == ".json" else path.with_name(path.name.split(".")[0] + ".json")
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if target != path:
        path.unlink()
    return target
