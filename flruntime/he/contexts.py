"""Where a site finds its TenSEAL context, loading it, and what may hold a secret key.

A component names its context file (``tenseal_context_file``, NVFlare's argument). A relative name is
looked up, in order, in:

1. the site's ``startup/`` folder in its workspace (a provisioned kit; the simulator copies the files of
   ``--he-context-dir``, or of the key it makes for the run without one, there:
   ``<workspace>/server/startup/server_context.tenseal``, ``<workspace>/<site>/startup/client_context.tenseal``);
2. the folder named by the environment variable ``FLRUNTIME_HE_DIR``;
3. the app's ``config/`` folder.

The server's components refuse a context with a secret key; the clients' need one. A context's
*fingerprint* (:func:`fingerprint`) travels with every encrypted model so the server can tell that two
clients used different keys.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flruntime.errors import UsageError
from flruntime.he import require_tenseal
from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT
from flruntime.he.seal import Engine
from flruntime.runtime.context import RunContext

ENV_DIR = "FLRUNTIME_HE_DIR"
HOW_TO_CREATE = (
    "create keys with 'flruntime he keys -w DIR' and run 'flruntime simulate JOB --he-context-dir DIR' "
    "(or put the file in the site's startup/ folder)"
)


@dataclass(frozen=True)
class LoadedContext:
    """A TenSEAL context and what is known about it.

    Attributes:
        context: the ``tenseal.Context``.
        path: the file it came from.
        private: True when it holds the secret key.
        fingerprint: identifies the key (private contexts only; "" for public ones).
        slots: values per ciphertext (N: two per complex CKKS slot, see :mod:`flruntime.he.seal`).
        engine: the SEAL objects that encrypt, add and decrypt with this context.
    """

    context: Any
    path: Path
    private: bool
    fingerprint: str
    slots: int
    engine: Engine


_lock = threading.Lock()
_cache: dict[tuple[str, int, int], LoadedContext] = {}


def candidates(name: str, ctx: RunContext) -> list[Path]:
    """The paths where context file ``name`` is looked for, in order."""
    given = Path(name)
    if given.is_absolute():
        return [given]
    found = [ctx.workspace / "startup" / given]
    if os.environ.get(ENV_DIR):
        found.append(Path(os.environ[ENV_DIR]) / given)
    found.append(ctx.app_dir / "config" / given)
    return found


def find_context_file(name: str, ctx: RunContext) -> Path:
    """Return the first existing candidate for ``name``.

    Raises:
        FileNotFoundError: one line naming the file, where it was looked for, and how to create it.
    """
    paths = candidates(name, ctx)
    for path in paths:
        if path.is_file():
            return path
    where = ", ".join(str(p.parent) for p in paths)
    raise FileNotFoundError(f"{name} not found (looked in {where}): {HOW_TO_CREATE}")


def fingerprint(context: Any) -> str:
    """Identify a private context's key: the first 16 hex digits of a SHA-256 over its secret serialisation.

    The hash is one-way (a 64-bit prefix of a hash of thousands of random key bits), so it can travel in the
    clear; two clients with the same key file get the same value, clients with different keys different ones.
    """
    data = context.serialize(save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    return hashlib.sha256(b"flruntime.he.context\0" + data).hexdigest()[:16]


def load_context(path: Path) -> LoadedContext:
    """Load (once per file version: cached by path, size and modification time) a TenSEAL context."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    ts = require_tenseal()
    try:
        context = ts.context_from(path.read_bytes(), n_threads=1)
    except Exception as exc:
        raise ValueError(f"{path} is not a TenSEAL context: {exc}") from exc
    try:
        engine = Engine(context)
    except Exception as exc:
        raise ValueError(f"{path} is not a CKKS context flruntime can use: {exc}") from exc
    private = bool(context.is_private())
    loaded = LoadedContext(
        context, path, private, fingerprint(context) if private else "", engine.per_ciphertext, engine
    )
    with _lock:
        _cache[key] = loaded
    return loaded


def server_context(name: str, ctx: RunContext) -> LoadedContext:
    """Load the server's context ``name``, refusing one that holds a secret key."""
    loaded = load_context(find_context_file(name, ctx))
    if loaded.private:
        raise ValueError(
            f"{Path(name).name} holds a secret key; the server must only get the public context "
            f"(the server_context.tenseal written by flruntime he keys), found at {loaded.path}"
        )
    return loaded


def client_context(name: str, ctx: RunContext) -> LoadedContext:
    """Load a client's context ``name``, which must hold the secret key."""
    loaded = load_context(find_context_file(name, ctx))
    if not loaded.private:
        raise ValueError(
            f"{Path(name).name} at {loaded.path} has no secret key: clients need the client_context.tenseal "
            "written by flruntime he keys"
        )
    return loaded


def install_contexts(folder: str | Path, workspace: Path, clients: list[str]) -> None:
    """Copy a key folder's contexts into a simulator workspace: the public one to the server, the secret to clients.

    Raises:
        UsageError: when ``folder`` lacks either file.
    """
    src = Path(folder)
    for name in (SERVER_CONTEXT, CLIENT_CONTEXT):
        if not (src / name).is_file():
            raise UsageError(f"--he-context-dir {src} has no {name}: create the keys with 'flruntime he keys -w {src}'")
    for site, name in [("server", SERVER_CONTEXT)] + [(c, CLIENT_CONTEXT) for c in clients]:
        startup = workspace / site / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, startup / name)
        if name == CLIENT_CONTEXT:
            (startup / name).chmod(0o600)
