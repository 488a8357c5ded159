"""CKKS key generation: one TenSEAL context, saved twice — public for the server, with the secret key for clients.

The server only adds ciphertexts (the weights travel in the clear and whoever decrypts divides by their sum,
see :mod:`flruntime.he.packing`), so its context holds the encryption parameters and nothing else: no secret
key, no relinearisation or Galois keys (it never multiplies or rotates a ciphertext). Every client gets the
same secret key (symmetric encryption, as NVFlare's ``HEBuilder``), so any client can decrypt what the server
aggregated.

Provisioning reuses :func:`make_contexts`; ``flruntime he keys`` calls :func:`write_keys`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flruntime.he import require_tenseal

SERVER_CONTEXT = "server_context.tenseal"
CLIENT_CONTEXT = "client_context.tenseal"

#: Largest total coefficient-modulus size (bits) for 128-bit security, by polynomial degree (SEAL's table).
MAX_COEFF_BITS: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: Bits the first prime must have above the scale: aggregated values up to ±2**(HEADROOM_BITS - 1) fit.
HEADROOM_BITS = 10


@dataclass(frozen=True)
class HEParams:
    """CKKS parameters.

    The defaults: degree 8192 (4096 values per ciphertext), primes of 60 and 40 bits, scale 2**36. Nothing
    is ever multiplied or rescaled, so a ciphertext lives modulo the first prime alone (the last prime is
    the "special" one TenSEAL insists on for key switching, which never happens: it is not part of a
    ciphertext): 32 bytes per value, half of what NVFlare's ``HEBuilder`` defaults (60/40/40, scale 2**40)
    give, and half the work. 100 bits of modulus at degree 8192 is far inside the 218 bits that are
    128-bit secure. The 24 bits between the scale and the first prime hold sums up to about 8 million
    times the model's magnitude (see :mod:`flruntime.he.packing` for what is summed); an averaged model
    comes back with a relative error near 1e-8, far below the 1e-3 a model tolerates.

    Attributes:
        poly_modulus_degree: the polynomial degree N (a power of two); a ciphertext holds N/2 values.
        coeff_mod_bit_sizes: bit sizes of the primes: all but the last hold the ciphertexts (more of them
            only cost bytes and time here), the last is the special prime.
        scale_bits: values are encoded times 2**scale_bits (the precision).
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40)
    scale_bits: int = 36

    @property
    def slots(self) -> int:
        """How many values one ciphertext holds: N (two per complex CKKS slot, see :mod:`flruntime.he.seal`)."""
        return self.poly_modulus_degree

    def check(self) -> None:
        """Raise ValueError, saying what to change, when the parameters cannot work or are not secure."""
        n, bits = self.poly_modulus_degree, list(self.coeff_mod_bit_sizes)
        if n not in MAX_COEFF_BITS:
            raise ValueError(f"poly_modulus_degree must be one of {sorted(MAX_COEFF_BITS)}, got {n}")
        if len(bits) < 2:
            raise ValueError(
                f"coeff_mod_bit_sizes needs at least 2 primes (the ciphertexts' and TenSEAL's special one), got {bits}"
            )
        if any(not 20 <= b <= 60 for b in bits):
            raise ValueError(f"each of coeff_mod_bit_sizes must be 20 to 60 bits, got {bits}")
        if sum(bits) > MAX_COEFF_BITS[n]:
            raise ValueError(
                f"coeff_mod_bit_sizes {bits} add up to {sum(bits)} bits, above the {MAX_COEFF_BITS[n]} bits that are "
                f"secure (128-bit) for poly_modulus_degree {n}: use fewer or smaller primes or a larger degree"
            )
        if not 20 <= self.scale_bits:
            raise ValueError(f"scale_bits must be at least 20, got {self.scale_bits}")
        if bits[0] < self.scale_bits + HEADROOM_BITS:
            raise ValueError(
                f"the first prime ({bits[0]} bits) must exceed scale_bits ({self.scale_bits}) by at least "
                f"{HEADROOM_BITS} bits, or large aggregated values overflow"
            )


def make_contexts(params: HEParams | None = None) -> tuple[bytes, bytes]:
    """Create a CKKS key and return ``(public_context, secret_context)`` as TenSEAL serialisations.

    Args:
        params: the CKKS parameters (default :class:`HEParams`).

    Returns:
        The server's context (parameters only, no key at all) and the clients' (with the secret key).

    Raises:
        ValueError: parameters that cannot work or are not secure.
        ImportError: TenSEAL is not installed.
    """
    params = params or HEParams()
    params.check()
    ts = require_tenseal()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        n_threads=1,
    )
    ctx.global_scale = 2.0**params.scale_bits
    flags = {"save_public_key": False, "save_galois_keys": False, "save_relin_keys": False}
    public = ctx.serialize(save_secret_key=False, **flags)
    secret = ctx.serialize(save_secret_key=True, **flags)
    return public, secret


def _write(path: Path, data: bytes, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_keys(
    folder: str | Path, params: HEParams | None = None, sites: Sequence[str] = (), force: bool = False
) -> list[Path]:
    """Write a new key's contexts into ``folder``.

    Without ``sites``: ``folder/server_context.tenseal`` and ``folder/client_context.tenseal`` (what
    ``flruntime simulate --he-context-dir`` reads). With ``sites``: startup-kit layout,
    ``folder/server/startup/server_context.tenseal`` and ``folder/<site>/startup/client_context.tenseal``.

    Args:
        folder: where to write.
        params: the CKKS parameters.
        sites: client names for the startup-kit layout.
        force: replace existing context files (a new key: earlier ciphertexts can no longer be decrypted).

    Returns:
        The files written (secret ones are readable by their owner only).

    Raises:
        FileExistsError: a context file exists and ``force`` is False.
    """
    root = Path(folder)
    if sites:
        targets = [(root / "server" / "startup" / SERVER_CONTEXT, False)]
        targets += [(root / site / "startup" / CLIENT_CONTEXT, True) for site in sites]
    else:
        targets = [(root / SERVER_CONTEXT, False), (root / CLIENT_CONTEXT, True)]
    existing = [str(p) for p, _ in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{existing[0]} exists: a new key would make what it encrypted unreadable (use --force to replace it)"
        )
    public, secret = make_contexts(params)
    for path, is_secret in targets:
        _write(path, secret if is_secret else public, is_secret)
    return [p for p, _ in targets]
