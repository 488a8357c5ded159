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

from types import ModuleType


def require_tenseal() -> ModuleType:
    """Return the ``tenseal`` module, or raise ImportError saying how to install it."""
    try:
        import tenseal
    except ImportError as exc:
        raise ImportError(
            "homomorphic encryption needs TenSEAL: pip install 'flruntime[he]' (or pip install tenseal)"
        ) from exc
    return tenseal
