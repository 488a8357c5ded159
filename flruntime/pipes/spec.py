"""Building a pipe in the training script's process from what the executor exported.

Only the classes below can be built, by name: a config file never makes the script import arbitrary code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flruntime.pipes.file import FilePipe
from flruntime.pipes.tcp import SocketPipe
from flruntime.roles import Pipe

#: Pipe classes a script can build from ``client_api_config.json``, by class name.
EXPORTABLE: dict[str, type[Pipe]] = {"FilePipe": FilePipe, "SocketPipe": SocketPipe}


def pipe_from_spec(spec: Mapping[str, Any]) -> Pipe:
    """Build the pipe described by ``{"CLASS_NAME": ..., "ARG": {...}}`` (as written by ``Pipe.export``).

    Raises:
        ValueError: for a class that cannot be built here, or bad arguments.
    """
    name = str(spec.get("CLASS_NAME", ""))
    cls = EXPORTABLE.get(name.rsplit(".", 1)[-1])
    if cls is None:
        known = ", ".join(sorted(EXPORTABLE))
        raise ValueError(f"cannot build pipe class {name!r} in the training script (flruntime builds {known})")
    args = spec.get("ARG") or {}
    if not isinstance(args, Mapping):
        raise ValueError(f"the ARG of pipe {name!r} must be an object, got {type(args).__name__}")
    try:
        return cls(**args)
    except TypeError as exc:
        raise ValueError(f"bad arguments for pipe {name!r}: {exc}") from exc
