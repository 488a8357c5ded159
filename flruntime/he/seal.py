"""CKKS with SEAL itself, through ``tenseal.sealapi`` (TenSEAL's bindings of Microsoft SEAL), for a TenSEAL context.

TenSEAL's vectors encode real numbers only (N/2 per ciphertext) and serialise a whole (c0, c1) pair.
Federated averaging needs neither limit, so the packed ciphertexts are made with SEAL's own objects:

* **two values per slot**: a CKKS slot holds a complex number, so a chunk of N values is encoded as
  N/2 complex numbers (first half real parts, second half imaginary parts): half the ciphertexts, half the
  encoding, encryption, decryption and bytes of TenSEAL's real-only vectors;
* **seeded ciphertexts**: a client's symmetric encryption ``(c0, c1 = PRNG(seed))`` is saved as ``c0`` and
  the seed, as SEAL does for ``Encryptor.encrypt_symmetric``; the server expands it when it loads it. An
  upload costs half the bytes of a whole ciphertext (8 bytes per value with one 60-bit prime);
* what SEAL checks on load (parameters, sizes, coefficients below their primes) still guards the server.

The keys stay TenSEAL contexts (``flruntime he keys``, provisioning): their SEAL encryption parameters and
secret key are read from the context's serialisation (a small protobuf). ``tenseal.sealapi`` saves and
loads objects through file paths only, so objects cross into bytes through a private scratch file (mode 0600,
in ``/dev/shm`` when there is one) per call, removed when the call ends: ciphertexts and encryption
parameters — and the secret key for the moment it takes to load it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from flruntime.he import require_tenseal

_SHM = Path("/dev/shm")


@contextmanager
def _scratch() -> Iterator[Path]:
    """A new private scratch file (mode 0600, in ``/dev/shm`` when there is one), removed afterwards."""
    base = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
    fd, name = tempfile.mkstemp(prefix="flruntime-he-", dir=base)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def proto_fields(buf: bytes) -> dict[int, list[Any]]:
    """The fields of a protobuf message (field number → values; length-delimited values as bytes)."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


class Engine:
    """SEAL objects for one TenSEAL CKKS context: encrypt (clients), add (server), decrypt (clients).

    Args:
        context: a ``tenseal.Context`` (CKKS, symmetric or public-key; with or without the secret key).

    Attributes:
        per_ciphertext: values per ciphertext (the polynomial degree N: N/2 complex slots).
        scale: the encoding scale (the context's global scale).
        private: True when the context holds the secret key (encrypt and decrypt work).
    """

    def __init__(self, context: Any) -> None:
        require_tenseal()
        import tenseal.sealapi as sealapi

        self._api = sealapi
        private = bool(context.is_private())
        raw = context.serialize(
            save_public_key=False, save_secret_key=private, save_galois_keys=False, save_relin_keys=False
        )
        top = proto_fields(raw)
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        with _scratch() as path:
            _write(path, top[1][0])
            parms.load(str(path))
        self.ctx = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not self.ctx.parameters_set():
            raise ValueError(f"the context's CKKS parameters are not usable: {self.ctx.parameters_error_message()}")
        self.per_ciphertext = int(self.ctx.first_context_data().parms().poly_modulus_degree())
        try:
            self.scale = float(context.global_scale)
        except ValueError:  # a context saved without a scale can still add (the server)
            self.scale = 0.0
        self.private = private
        self.evaluator = sealapi.Evaluator(self.ctx)
        self._encoder = sealapi.CKKSEncoder(self.ctx)
        self._encryptor: Any = None
        self._decryptor: Any = None
        if private:
            key = sealapi.SecretKey()
            with _scratch() as path:  # removed as soon as the key is loaded
                _write(path, proto_fields(top[3][0])[1][0])
                key.load(self.ctx, str(path))
            self._encryptor = sealapi.Encryptor(self.ctx, key)
            self._decryptor = sealapi.Decryptor(self.ctx, key)

    # --- clients -----------------------------------------------------------------------------------------

    def encrypt(self, chunks: Iterable[np.ndarray]) -> list[bytes]:
        """Encrypt chunks of :attr:`per_ciphertext` float64 values each into seeded ciphertexts.

        A chunk may be a buffer the caller reuses: it is encoded before the next one is taken.
        """
        if self._encryptor is None or not self.scale:
            raise ValueError("this context has no secret key (or no scale): only a client's context can encrypt")
        per, half = self.per_ciphertext, self.per_ciphertext // 2
        plain = self._api.Plaintext()
        values = np.empty(half, dtype=np.complex128)
        out: list[bytes] = []
        with _scratch() as scratch:
            path = str(scratch)
            for chunk in chunks:
                if chunk.size != per:
                    raise ValueError(f"a chunk of {chunk.size} values, expected {per}")
                values.real, values.imag = chunk[:half], chunk[half:]
                self._encoder.encode(values.tolist(), self.scale, plain)
                self._encryptor.encrypt_symmetric(plain).save(path)
                with open(path, "rb") as f:
                    out.append(f.read())
        return out

    def decrypt(self, blobs: list[bytes], size: int) -> np.ndarray:
        """Decrypt ciphertexts into ``size`` values (one ciphertext held at a time)."""
        if self._decryptor is None:
            raise ValueError("this context has no secret key: only a client's context can decrypt")
        per, half = self.per_ciphertext, self.per_ciphertext // 2
        flat = np.empty(len(blobs) * per)
        plain = self._api.Plaintext()
        with _scratch() as path:
            for j, blob in enumerate(blobs):
                self._decryptor.decrypt(self._load(blob, path), plain)
                values = np.array(self._encoder.decode_complex(plain))
                flat[j * per : j * per + half] = values.real
                flat[j * per + half : (j + 1) * per] = values.imag
        return flat[:size]

    # --- the server --------------------------------------------------------------------------------------

    def _load(self, blob: bytes, path: Path) -> Any:
        _write(path, blob)
        ciphertext = self._api.Ciphertext()
        ciphertext.load(self.ctx, str(path))  # SEAL checks it against the parameters (and expands a seed)
        return ciphertext

    def load(self, blobs: list[bytes]) -> list[Any]:
        """Deserialise ciphertexts, checked so that adding them cannot fail halfway.

        Raises:
            ValueError: a ciphertext is not a fresh encryption under these parameters at this scale.
        """
        first = self.ctx.first_parms_id()
        out = []
        with _scratch() as path:
            for blob in blobs:
                ciphertext = self._load(blob, path)
                if ciphertext.parms_id() != first or ciphertext.size() != 2 or not ciphertext.is_ntt_form():
                    raise ValueError("a ciphertext is not a fresh encryption under this context's parameters")
                if self.scale and ciphertext.scale != self.scale:
                    raise ValueError(f"a ciphertext has scale {ciphertext.scale}, this context's is {self.scale}")
                out.append(ciphertext)
        return out

    def add(self, sums: list[Any], ciphertexts: list[Any], doublings: int = 0) -> None:
        """Add ciphertexts (each first multiplied by ``2**doublings``, in place) to ``sums``, in place."""
        if doublings:
            self.double(ciphertexts, doublings)
        add = self.evaluator.add_inplace
        for acc, ciphertext in zip(sums, ciphertexts, strict=True):
            add(acc, ciphertext)

    def double(self, ciphertexts: list[Any], times: int) -> None:
        """Multiply ciphertexts by ``2**times`` in place, exactly (additions: no rescale)."""
        add = self.evaluator.add_inplace
        for ciphertext in ciphertexts:
            for _ in range(times):
                add(ciphertext, ciphertext)

    def save(self, ciphertexts: list[Any]) -> list[bytes]:
        """Serialise ciphertexts."""
        out: list[bytes] = []
        with _scratch() as scratch:
            path = str(scratch)
            for ciphertext in ciphertexts:
                ciphertext.save(path)
                with open(path, "rb") as f:
                    out.append(f.read())
        return out
