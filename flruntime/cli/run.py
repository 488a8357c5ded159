"""``flruntime run SCRIPT [ARGS...]``: run a Python script written for NVFlare's Python APIs, without NVFlare.

The script runs as ``python SCRIPT ARGS...`` runs it: as ``__main__``, with ``sys.argv = [SCRIPT, *ARGS]`` and
its folder first on ``sys.path``. When NVFlare is not installed, NVFlare's modules (the job API, the recipes,
the Client API, the component API) import from flruntime's shim; when it is, one line says so and NVFlare runs
the script. The exit code is the script's (``sys.exit``); an exception ends it with exit code 1 and one line
naming the script's line, the exception and its message (``flruntime --traceback run ...`` prints the
traceback instead).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from flruntime.errors import UsageError


def register(verbs: Any) -> None:
    """Add the ``run`` verb."""
    p = verbs.add_parser(
        "run",
        help="run a Python script written for NVFlare's job / recipe APIs (e.g. a FedJob or a recipe)",
        description="Run SCRIPT as `python SCRIPT ARGS...` does, with NVFlare's Python APIs importable from "
        "flruntime when NVFlare is not installed. Exit code: the script's; 1 when it raises (one line; "
        "`flruntime --traceback run ...` prints the traceback); 2 when SCRIPT is not a file.",
    )
    p.add_argument("script", metavar="SCRIPT", help="the Python script")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's arguments")
    p.set_defaults(func=run)


def _line_in(tb: TracebackType | None, script: Path) -> int | None:
    """The line of the script's last frame in a traceback (None when the script is not in it)."""
    line = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == script:
            line = frame.lineno
    return line


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """Run the script and return its exit code.

    Raises:
        UsageError: the script is not a file.
    """
    from flruntime.compat import install_shim, nvflare_installed

    script = Path(args.script)
    if not script.is_file():
        raise UsageError(f"{script}: no such script")
    if nvflare_installed():
        import importlib.util

        spec = importlib.util.find_spec("nvflare")
        where = Path(spec.origin).parent if spec is not None and spec.origin else "the Python path"
        print(f"flruntime: NVFlare is installed ({where}): NVFlare runs {script}, not flruntime", file=sys.stderr)
    else:
        install_shim()
    resolved = script.resolve()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(resolved.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if getattr(args, "traceback", False):
            traceback.print_exc()
        line = _line_in(exc.__traceback__, resolved)
        where = f"{script}:{line}" if line is not None else str(script)
        message = str(exc).strip().splitlines()
        detail = f": {message[0]}" if message else ""
        hint = "" if getattr(args, "traceback", False) else " (flruntime --traceback run ... shows the traceback)"
        print(f"flruntime: error: {where}: {type(exc).__name__}{detail}{hint}", file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0
