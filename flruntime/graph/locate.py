"""Turning a class path from a config into a class, safely.

Resolution order: registry short names, the NVFlare alias map (also under the paths of NVFlare modules that
re-export an aliased class), entry-point plugins, then a plain import, allowed only under the
:class:`ImportPolicy` allowlist (flruntime itself, the job's own ``custom/`` folder and prefixes the site adds).
Failures say which step failed and suggest the nearest known name.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from flruntime.compat import install_shim
from flruntime.graph.aliases import NVFLARE_ALIASES, NVFLARE_REEXPORTS, is_nvflare_path
from flruntime.graph.nvflare_names import NVFLARE_NAMES
from flruntime.graph.registry import plugin_names, short_names

#: Modules any job may import components from, besides flruntime and the job's custom/ code.
DEFAULT_ALLOWED_PREFIXES = ("flruntime.", "monai.fl.", "monai.networks.", "torch.nn.", "torch.optim.")


class LocateError(Exception):
    """A class path could not be turned into a class.

    Attributes:
        message: what failed.
        hint: what to do.
        code: ``unsupported`` for NVFlare classes not supported yet, ``not-allowed``, ``import``.
    """

    def __init__(self, message: str, hint: str = "", code: str = "import") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def custom_module_names(custom_dir: Path | None) -> set[str]:
    """Return the top-level modules and packages of a ``custom/`` folder.

    Besides modules and regular packages, a sub-folder without ``__init__.py`` that holds Python
    files counts too: it imports as a namespace package. The answer is cached until the folder changes.
    """
    if custom_dir is None or not custom_dir.is_dir():
        return set()
    return set(_custom_names(str(custom_dir), custom_dir.stat().st_mtime_ns))


@lru_cache(maxsize=256)
def _custom_names(folder: str, mtime_ns: int) -> frozenset[str]:
    custom_dir = Path(folder)
    names = {m.name for m in pkgutil.iter_modules([str(custom_dir)])}
    for child in custom_dir.iterdir():
        if (
            child.is_dir()
            and child.name.isidentifier()
            and not child.name.startswith("__")
            and next(child.rglob("*.py"), None) is not None
        ):
            names.add(child.name)
    return frozenset(names)


@dataclass(frozen=True)
class ImportPolicy:
    """Which modules a job's class paths may import.

    Attributes:
        allowed_prefixes: module prefixes any job may use (``"my_org.models."``).
        custom_dir: the job app's ``custom/`` folder; its top-level modules are importable.
    """

    allowed_prefixes: tuple[str, ...] = DEFAULT_ALLOWED_PREFIXES
    custom_dir: Path | None = None
    extra_prefixes: tuple[str, ...] = field(default_factory=tuple)

    def with_custom(self, custom_dir: Path | None) -> ImportPolicy:
        """Return this policy for a job app with the given ``custom/`` folder."""
        return ImportPolicy(self.allowed_prefixes, custom_dir, self.extra_prefixes)

    def custom_modules(self) -> set[str]:
        """Top-level module and package names found in ``custom_dir``."""
        return custom_module_names(self.custom_dir)

    def allows(self, path: str) -> bool:
        """Return True when ``path`` may be imported under this policy."""
        if path.split(".")[0] in self.custom_modules():
            return True
        plugin_modules = tuple(p.rsplit(".", 1)[0] + "." for p in plugin_names().values())
        return path.startswith(self.allowed_prefixes + self.extra_prefixes + plugin_modules)


@dataclass(frozen=True)
class Located:
    """A class found for a config entry, with the path it really came from and how it was found."""

    cls: type
    target: str
    via: str


_scopes_lock = threading.Lock()
_scopes: dict[str, tuple[int, dict[str, ModuleType], bool]] = {}


@contextmanager
def job_imports(custom_dir: Path | None) -> Iterator[None]:
    """Make ``custom_dir``'s modules importable for one job only.

    While active, the folder is first on ``sys.path`` and modules of the same names cached by
    another job are hidden; when the last user of the folder leaves, it leaves ``sys.path`` and the
    job's modules leave ``sys.modules`` (objects already built keep their classes). Scopes for the
    same folder nest and may be entered from several threads (the simulator's sites); two *different*
    jobs whose custom modules share names must not run in one process at the same time.
    """
    if custom_dir is None or not custom_dir.is_dir():
        yield
        return
    install_shim()  # custom code written for NVFlare imports nvflare.apis / app_common (a real NVFlare wins)
    entry = str(custom_dir)
    names = custom_module_names(custom_dir)

    def ours(mod: str) -> bool:
        return mod.split(".")[0] in names

    with _scopes_lock:
        count, hidden, bytecode = _scopes.get(entry, (0, {}, sys.dont_write_bytecode))
        if count == 0:
            hidden = {k: v for k, v in sys.modules.items() if ours(k)}
            for k in hidden:
                del sys.modules[k]
            sys.path.insert(0, entry)
            importlib.invalidate_caches()
            bytecode = sys.dont_write_bytecode
            sys.dont_write_bytecode = True  # leave no __pycache__ in the user's job folder
        _scopes[entry] = (count + 1, hidden, bytecode)
    try:
        yield
    finally:
        with _scopes_lock:
            count, hidden, bytecode = _scopes[entry]
            if count > 1:
                _scopes[entry] = (count - 1, hidden, bytecode)
            else:
                del _scopes[entry]
                sys.dont_write_bytecode = bytecode
                if entry in sys.path:
                    sys.path.remove(entry)
                for k in [k for k in sys.modules if ours(k)]:
                    del sys.modules[k]
                sys.modules.update(hidden)


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def _submodules(module: ModuleType) -> list[str]:
    paths = getattr(module, "__path__", None)
    return [m.name for m in pkgutil.iter_modules(paths)] if paths else []


def custom_file_of(filename: str) -> str | None:
    """Name a source file of an active :func:`job_imports` folder as problems do (``custom/pkg/mod.py``).

    Returns None when the file is not under such a folder.
    """
    with _scopes_lock:
        roots = list(_scopes)
    full = os.path.abspath(filename)
    for root in roots:
        base = os.path.abspath(root)
        if full.startswith(base + os.sep):
            return Path(os.path.basename(base), os.path.relpath(full, base)).as_posix()
    return None


def _importing(module: str, exc: BaseException) -> str:
    """``custom/x.py: importing it`` for the innermost custom file in ``exc``'s traceback, else the module."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = custom_file_of(tb.tb_frame.f_code.co_filename) or found
        tb = tb.tb_next
    return f"{found}: importing it" if found else f"importing module '{module}'"


def _exit_status(exc: SystemExit) -> str:
    """The exit status Python would end with for ``exc`` (``sys.exit("text")`` prints the text, status 1)."""
    if exc.code is None:
        return "0"
    if isinstance(exc.code, int) and not isinstance(exc.code, bool):
        return str(exc.code)
    text = str(exc.code)
    return f"1 and the message '{text[:80]}{'…' if len(text) > 80 else ''}'"


def _memory_hint() -> str:
    """Say how much memory the process may use when a limit (a job check's) is set."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return ""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return ""
    return f"a job check may use {soft // 2**20} MiB; import less at module level, or raise FLRUNTIME_CHECK_MEMORY_MB"


def import_class(path: str) -> type:
    """Import ``pkg.module.Class`` step by step, explaining the step that failed.

    Raises:
        LocateError: naming the module or attribute that is missing, with a suggestion.
    """
    module_path, _, attr = path.rpartition(".")
    if not module_path:
        raise LocateError(
            f"'{path}' is not a class path (expected package.module.Class)", "give the full dotted path of the class"
        )
    parts = module_path.split(".")
    module: ModuleType | None = None
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but imports something missing
                raise LocateError(
                    f"importing module '{name}' failed: {exc}", f"install the package that provides '{exc.name}'"
                ) from exc
            if module is None:
                raise LocateError(f"no module named '{name}'", "check the spelling, or install the package") from exc
            parent = ".".join(parts[: i - 1])
            close = difflib.get_close_matches(parts[i - 1], _submodules(module), n=1)
            hint = f"did you mean '{parent}.{close[0]}'?" if close else "check the spelling"
            raise LocateError(f"module '{parent}' has no submodule '{parts[i - 1]}'", hint) from exc
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:  # a module that ends the process when imported (a script, argparse)
            raise LocateError(
                f"{_importing(name, exc)} exited the process with code {_exit_status(exc)}",
                "move that code under if __name__ == '__main__'",
            ) from exc
        except MemoryError as exc:
            raise LocateError(f"{_importing(name, exc)} ran out of memory", _memory_hint()) from exc
        except BaseException as exc:  # Exception, and BaseException subclasses of the job's own
            raise LocateError(
                f"importing module '{name}' failed: {type(exc).__name__}: {exc}", "fix the error in that module"
            ) from exc
    assert module is not None
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = _nearest(attr, names) or "check the spelling"
        raise LocateError(f"module '{module_path}' has no class '{attr}'", hint)
    if not isinstance(obj, type):
        raise LocateError(f"'{path}' is a {type(obj).__name__}, not a class", "point to a class")
    return obj


def locate(path: str, policy: ImportPolicy, *, by_name: bool = False) -> Located:
    """Resolve a config's class path (or short name when ``by_name``) to a class.

    Call it inside :func:`job_imports` for the app's ``custom/`` folder when the job has one.

    Raises:
        LocateError: when the class cannot be found or may not be imported.
    """
    names = short_names()
    if by_name or "." not in path:
        if path in names:
            return Located(import_class(names[path]), names[path], "registry")
        modules = NVFLARE_NAMES.get(path)
        if modules is None:
            hint = _nearest(path, list(names) + list(NVFLARE_NAMES)) or 'use "path" with the full class path'
            raise LocateError(f"unknown component name '{path}'", hint)
        if len(modules) > 1:
            raise LocateError(
                f"NVFlare name '{path}' is defined in several modules ({', '.join(modules)})",
                'use "path" with the full class path',
            )
        path = f"{modules[0]}.{path}"
    canonical = NVFLARE_REEXPORTS.get(path, path)  # a module that imports the class names it too, as in NVFlare
    if canonical in NVFLARE_ALIASES:
        target = NVFLARE_ALIASES[canonical]
        return Located(import_class(target), target, "alias")
    if is_nvflare_path(path):
        by_class = {p.rsplit(".", 1)[1]: p for p in NVFLARE_ALIASES}
        cls_name = path.rsplit(".", 1)[1]
        if cls_name in by_class:
            hint = f"did you mean '{by_class[cls_name]}'?"
        else:
            hint = _nearest(path, list(NVFLARE_ALIASES)) or "see the README's table of supported NVFlare classes"
        raise LocateError(f"NVFlare class '{path}' is not supported yet", hint, code="unsupported")
    if not policy.allows(path):
        prefix = path.split(".")[0] + "."
        raise LocateError(
            f"class path '{path}' is outside the import allowlist",
            f"allow it with --allow {prefix} (or FLRUNTIME_ALLOW={prefix}), "
            "or put the code in the app's custom/ folder",
            code="not-allowed",
        )
    return Located(import_class(path), path, "import")
