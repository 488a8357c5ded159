"""Homomorphic encryption with TenSEAL's CKKS scheme: keys, where a site finds them, packed ciphertexts.

:mod:`~flruntime.he.keys` makes the server's public context and the clients' secret context;
:mod:`~flruntime.he.contexts` finds and loads them for a site (and refuses a secret key on the server);
:mod:`~flruntime.he.packing` turns parameter arrays into as few ciphertexts as possible and back (weights in
the clear, so the server only adds); :mod:`~flruntime.he.seal` encrypts, adds and decrypts them with SEAL
(two values per complex slot, seeded uploads); :mod:`~flruntime.he.received` keeps the global model a client
received for its encryptor. The components that use them live in ``flruntime.components.he``.

TenSEAL is an optional dependency (``pip install 'flruntime[he]'``): it is imported only when a context is
made or loaded, so jobs that name HE components still validate without it.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType


def _import_tenseal_deep_bound() -> None:
    """Import TenSEAL's extensions so that they bind their own protobuf symbols (``RTLD_DEEPBIND``).

    TensorFlow loads its libraries with ``RTLD_GLOBAL``; TenSEAL's extension, which carries its own protobuf,
    loaded after it binds protobuf to TensorFlow's copy, and serializing a context then fails ("failed to save
    proto") or crashes the process. Loaded first, TenSEAL needs nothing: its symbols stay local.
    """
    deep_bind = getattr(os, "RTLD_DEEPBIND", 0)  # glibc only
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deep_bind)
    try:
        import tenseal.sealapi  # noqa: F401  # also imports tenseal
    finally:
        sys.setdlopenflags(flags)


def require_tenseal() -> ModuleType:
    """Return the ``tenseal`` module, or raise ImportError saying how to install it."""
    try:
        if "tenseal" not in sys.modules and "tensorflow" in sys.modules:
            _import_tenseal_deep_bound()
        import tenseal
    except ImportError as exc:
        raise ImportError(
            "homomorphic encryption needs TenSEAL: pip install 'flruntime[he]' (or pip install tenseal)"
        ) from exc
    return tenseal
