"""Parameters ↔ packed CKKS ciphertexts, and the layout that travels with them.

All encrypted variables of a model are flattened into one vector (in message order) and cut into chunks
of ``slots`` values (N/2: one CKKS ciphertext each, TenSEAL's batching), so a model costs
``ceil(total / slots)`` ciphertexts however many small layers it has. A chunk belongs to the variable in
which it starts: in a message, an encrypted variable's value is the concatenated serialised ciphertexts it
owns (``b""`` when it owns none — it lies inside a chunk an earlier variable started). The
:class:`Packing` in the message's meta (key :data:`HE_META`) records every encrypted variable's name,
shape and dtype, the byte length of each ciphertext, the slots per ciphertext and the key's fingerprint,
which is all the other side needs to unpack. NVFlare's ``PROCESSED_ALGORITHM`` (``CKKS``) and
``PROCESSED_KEYS`` (variable → encrypted?) are set as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flruntime.runtime.messages import MetaKey

ALGORITHM = "CKKS"
#: Meta key of the packing layout.
HE_META = "he_packing"
VERSION = 1


@dataclass(frozen=True)
class Var:
    """One encrypted variable: its name, shape and dtype (restored after decryption)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of values."""
        return math.prod(self.shape)


@dataclass
class Packing:
    """How a message's encrypted variables are laid out in ciphertexts.

    Attributes:
        vars: the encrypted variables, in packing order.
        chunk_bytes: per variable, the byte length of each ciphertext it owns.
        slots: values per ciphertext.
        fingerprint: the key's fingerprint (see :func:`flruntime.he.contexts.fingerprint`).
    """

    vars: list[Var]
    chunk_bytes: list[list[int]]
    slots: int
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Number of encrypted values."""
        return sum(v.size for v in self.vars)

    @property
    def n_chunks(self) -> int:
        """Number of ciphertexts."""
        return math.ceil(self.total / self.slots)

    def owners(self) -> list[int]:
        """For each ciphertext, the index of the variable in which it starts."""
        starts = np.cumsum([0] + [v.size for v in self.vars[:-1]])
        offsets = np.arange(self.n_chunks) * self.slots
        owned = np.searchsorted(starts, offsets, side="right") - 1
        sizes = np.array([v.size for v in self.vars])
        for j, i in enumerate(owned):  # skip empty variables sharing a start with the next one
            while sizes[i] == 0:
                i += 1
            owned[j] = i
        return [int(i) for i in owned]

    def same_layout(self, other: Packing) -> bool:
        """True when both pack the same variables (names, shapes, dtypes) into the same slots."""
        return self.vars == other.vars and self.slots == other.slots

    def to_meta(self) -> dict[str, Any]:
        """The JSON form kept in a message's meta."""
        return {
            "version": VERSION,
            "slots": self.slots,
            "fingerprint": self.fingerprint,
            "vars": [[v.name, list(v.shape), v.dtype, b] for v, b in zip(self.vars, self.chunk_bytes, strict=True)],
            **self.extra,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Packing:
        """Read the layout from a message's meta.

        Raises:
            ValueError: no layout, or one this version cannot read.
        """
        data = meta.get(HE_META)
        if not isinstance(data, Mapping):
            raise ValueError(f"the message has {ALGORITHM} ciphertexts but no '{HE_META}' layout")
        if data.get("version") != VERSION:
            raise ValueError(f"unknown '{HE_META}' version {data.get('version')!r} (this flruntime reads {VERSION})")
        rows = data["vars"]
        known = {"version", "slots", "fingerprint", "vars"}
        return cls(
            [Var(str(n), tuple(int(d) for d in s), str(t)) for n, s, t, _ in rows],
            [[int(b) for b in row[3]] for row in rows],
            int(data["slots"]),
            str(data.get("fingerprint", "")),
            {k: v for k, v in data.items() if k not in known},
        )


def is_encrypted(meta: Mapping[str, Any]) -> bool:
    """True when a message's meta says it holds CKKS ciphertexts."""
    return bool(meta.get(MetaKey.PROCESSED_KEYS)) and meta.get(MetaKey.PROCESSED_ALGORITHM) == ALGORITHM


def encrypted_meta(meta: Mapping[str, Any], packing: Packing, plain: Sequence[str]) -> dict[str, Any]:
    """``meta`` plus the algorithm, which variables are encrypted, and the layout."""
    keys = {v.name: True for v in packing.vars} | {name: False for name in plain}
    return {
        **meta,
        MetaKey.PROCESSED_ALGORITHM.value: ALGORITHM,
        MetaKey.PROCESSED_KEYS.value: keys,
        HE_META: packing.to_meta(),
    }


def plain_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without the encryption keys."""
    drop = {MetaKey.PROCESSED_ALGORITHM.value, MetaKey.PROCESSED_KEYS.value, HE_META}
    return {k: v for k, v in meta.items() if k not in drop}


def flatten(params: Mapping[str, Any], variables: Sequence[Var], weight: float = 1.0) -> np.ndarray:
    """The variables' values, flattened and concatenated in order (float64), times ``weight``."""
    parts = [np.asarray(params[v.name], dtype=np.float64).reshape(-1) for v in variables]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    if weight != 1.0:
        flat *= weight
    return flat


def encrypt(flat: np.ndarray, context: Any, slots: int) -> list[bytes]:
    """Encrypt ``flat`` into one serialised CKKS ciphertext per ``slots`` values (one ciphertext alive at a time)."""
    from flruntime.he import require_tenseal

    ts = require_tenseal()
    return [ts.ckks_vector(context, flat[i : i + slots]).serialize() for i in range(0, flat.size, slots)]


def to_params(blobs: Sequence[bytes], packing: Packing) -> tuple[dict[str, bytes], Packing]:
    """Give each variable the serialised ciphertexts it owns; return them and the layout with their lengths."""
    owned: list[list[bytes]] = [[] for _ in packing.vars]
    for blob, i in zip(blobs, packing.owners(), strict=True):
        owned[i].append(blob)
    params = {v.name: b"".join(parts) for v, parts in zip(packing.vars, owned, strict=True)}
    lengths = [[len(b) for b in parts] for parts in owned]
    return params, Packing(packing.vars, lengths, packing.slots, packing.fingerprint, dict(packing.extra))


def blobs_of(params: Mapping[str, Any], packing: Packing) -> list[bytes]:
    """The serialised ciphertexts of a message, in order.

    Raises:
        ValueError: a variable is missing or its bytes do not match the layout.
    """
    out: list[bytes] = []
    for var, lengths in zip(packing.vars, packing.chunk_bytes, strict=True):
        value = params.get(var.name)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"encrypted variable '{var.name}' is {type(value).__name__}, not ciphertext bytes")
        data = memoryview(value)
        if sum(lengths) != len(data):
            raise ValueError(f"encrypted variable '{var.name}' has {len(data)} bytes, its layout says {sum(lengths)}")
        offset = 0
        for n in lengths:
            out.append(bytes(data[offset : offset + n]))
            offset += n
    if len(out) != packing.n_chunks:
        raise ValueError(
            f"the layout names {len(out)} ciphertexts for {packing.total} values; expected {packing.n_chunks}"
        )
    return out


def load(blobs: Sequence[bytes], context: Any) -> list[Any]:
    """Deserialise ciphertexts into CKKS vectors bound to ``context``."""
    from flruntime.he import require_tenseal

    ts = require_tenseal()
    return [ts.ckks_vector_from(context, blob) for blob in blobs]


def serialize(vectors: Sequence[Any]) -> list[bytes]:
    """Serialise CKKS vectors."""
    return [v.serialize() for v in vectors]


def decrypt(blobs: Sequence[bytes], packing: Packing, context: Any) -> dict[str, np.ndarray]:
    """Decrypt serialised ciphertexts (with ``context``'s secret key) into the variables, in their shapes and dtypes.

    Each ciphertext is deserialised and decrypted in turn, so only one is held at a time.
    """
    from flruntime.he import require_tenseal

    ts = require_tenseal()
    flat = np.zeros(packing.total)
    for j, blob in enumerate(blobs):
        values = ts.ckks_vector_from(context, blob).decrypt()
        flat[j * packing.slots : j * packing.slots + len(values)] = values
    out: dict[str, np.ndarray] = {}
    offset = 0
    for var in packing.vars:
        part = flat[offset : offset + var.size].reshape(var.shape)
        offset += var.size
        dtype = np.dtype(var.dtype)
        out[var.name] = part.astype(dtype) if dtype.kind == "f" else np.rint(part).astype(dtype)
    return out
