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

**Weights travel in the clear, division happens after decryption.** The ciphertexts of a message hold
``Σ wᵢ·xᵢ / 2**shift`` (one term for a client's result, one per client for an aggregate) and the layout
holds ``weight = Σ wᵢ`` and ``shift``; the plaintext is ``decrypted / (weight / 2**shift)``. So the server
only *adds* ciphertexts: no ciphertext × plaintext product, no rescale, which lets the ciphertexts live
modulo a single prime (half the bytes and half the work of NVFlare's 60/40/40 keys). The power of two
keeps the encrypted values near the model's own magnitude (headroom below the prime); results with
different shifts are aligned exactly by doubling ciphertexts (an addition).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flruntime.runtime.messages import MetaKey

ALGORITHM = "CKKS"
#: Meta key of the packing layout.
HE_META = "he_packing"
#: Layout version written; version 1 (an earlier flruntime: values already divided) is still read.
VERSION = 2
READABLE = (1, 2)
#: Meta key naming one encrypted global model (the clients' WEIGHT_DIFF results say which one they added to).
MODEL_ID = "he_model_id"
#: Task-data meta key: the regular expression of the variables the server's HE aggregator excludes.
EXCLUDE_META = "he_exclude_vars"


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
        weight: the (sum of the) weight(s) the encrypted values were multiplied by.
        shift: the ciphertexts hold the weighted values divided by ``2**shift``.
        base: for a client's WEIGHT_DIFF result, the id of the global model its difference was added to
            (``""``: a plaintext global model, or full weights).
        excluded: the regular expression of variables whose difference the client left out ("" for none).
        extra: other keys of the meta (kept as they are).
        version: the layout's version (1: TenSEAL vectors of N/2 values, already divided; 2: seeded SEAL
            ciphertexts of N values, see :mod:`flruntime.he.seal`).
    """

    vars: list[Var]
    chunk_bytes: list[list[int]]
    slots: int
    fingerprint: str
    weight: float = 1.0
    shift: int = 0
    base: str = ""
    excluded: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @property
    def divisor(self) -> float:
        """What the decrypted values are divided by: ``weight / 2**shift`` (1 for a zero weight)."""
        return math.ldexp(self.weight, -self.shift) if self.weight else 1.0

    def with_chunks(self, chunk_bytes: list[list[int]], **changes: Any) -> Packing:
        """A copy with other ciphertext lengths (and other fields changed)."""
        fields: dict[str, Any] = {
            "weight": self.weight,
            "shift": self.shift,
            "base": self.base,
            "excluded": self.excluded,
            "extra": dict(self.extra),
            "version": self.version,
            **changes,
        }
        return Packing(list(self.vars), chunk_bytes, self.slots, self.fingerprint, **fields)

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
            **self.extra,
            "version": self.version,
            "slots": self.slots,
            "fingerprint": self.fingerprint,
            "weight": self.weight,
            "shift": self.shift,
            "base": self.base,
            "excluded": self.excluded,
            "vars": [[v.name, list(v.shape), v.dtype, b] for v, b in zip(self.vars, self.chunk_bytes, strict=True)],
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
        if data.get("version") not in READABLE:
            readable = ", ".join(map(str, READABLE))
            raise ValueError(f"unknown '{HE_META}' version {data.get('version')!r} (this flruntime reads {readable})")
        rows = data["vars"]
        known = {"version", "slots", "fingerprint", "vars", "weight", "shift", "base", "excluded"}
        return cls(
            [Var(str(n), tuple(int(d) for d in s), str(t)) for n, s, t, _ in rows],
            [[int(b) for b in row[3]] for row in rows],
            int(data["slots"]),
            str(data.get("fingerprint", "")),
            float(data.get("weight", 1.0)),
            int(data.get("shift", 0)),
            str(data.get("base", "")),
            str(data.get("excluded", "")),
            {k: v for k, v in data.items() if k not in known},
            int(data["version"]),
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


def shift_for(weight: float) -> int:
    """The exponent ``e`` with ``weight / 2**e`` in [0.5, 1) (0 for a zero weight)."""
    return math.frexp(weight)[1] if weight > 0 else 0


@dataclass(frozen=True)
class Part:
    """One variable's contribution to the encrypted vector: ``(base + values) * factor``.

    Attributes:
        values: the variable's values (any shape and numeric dtype; None: the base alone).
        base: float64 values added first (flat, same size), or None.
    """

    values: np.ndarray | None
    base: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of values."""
        source = self.values if self.values is not None else self.base
        return 0 if source is None else int(source.size)


def chunks(parts: Sequence[Part], per: int, factor: float) -> Iterator[np.ndarray]:
    """Yield the parts' ``(base + values) * factor``, concatenated, in chunks of ``per`` float64 values.

    The last chunk is padded with zeros; the whole vector is never built. The same buffer is yielded every
    time: use it before asking for the next chunk.
    """
    buf = np.empty(per)
    filled = 0
    for part in parts:
        values = None if part.values is None else np.asarray(part.values).reshape(-1)
        base, pos, size = part.base, 0, part.size
        while pos < size:
            take = min(per - filled, size - pos)
            out = buf[filled : filled + take]
            if base is None:
                assert values is not None
                np.multiply(values[pos : pos + take], factor, out=out)
            else:
                if values is None:
                    out[:] = base[pos : pos + take]
                else:
                    np.add(base[pos : pos + take], values[pos : pos + take], out=out)
                out *= factor
            filled, pos = filled + take, pos + take
            if filled == per:
                yield buf
                filled = 0
    if filled:
        buf[filled:] = 0.0
        yield buf


def encrypt(parts: Sequence[Part], factor: float, engine: Any) -> list[bytes]:
    """Encrypt the parts (times ``factor``) into serialised seeded ciphertexts of ``engine.per_ciphertext`` values."""
    result: list[bytes] = engine.encrypt(chunks(parts, engine.per_ciphertext, factor))
    return result


def to_params(blobs: Sequence[bytes], packing: Packing) -> tuple[dict[str, bytes], Packing]:
    """Give each variable the serialised ciphertexts it owns; return them and the layout with their lengths."""
    owned: list[list[bytes]] = [[] for _ in packing.vars]
    for blob, i in zip(blobs, packing.owners(), strict=True):
        owned[i].append(blob)
    params = {v.name: b"".join(parts) for v, parts in zip(packing.vars, owned, strict=True)}
    lengths = [[len(b) for b in parts] for parts in owned]
    return params, packing.with_chunks(lengths)


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


def decrypt_flat(blobs: Sequence[bytes], packing: Packing, loaded: Any) -> np.ndarray:
    """Decrypt serialised ciphertexts (with ``loaded``'s secret key) into the flat plaintext vector.

    Each ciphertext is deserialised and decrypted in turn, so only one is held at a time; the values are
    divided by the layout's :attr:`Packing.divisor`.
    """
    if packing.version == 1:  # TenSEAL vectors of an earlier flruntime (N/2 real values each)
        from flruntime.he import require_tenseal

        vector, ctx = require_tenseal()._ts_cpp.CKKSVector, loaded.context.data
        flat = np.empty(packing.total)
        for j, blob in enumerate(blobs):
            values = vector(ctx, blob).decrypt()
            flat[j * packing.slots : j * packing.slots + len(values)] = values
    else:
        if packing.slots != loaded.engine.per_ciphertext:
            raise ValueError(
                f"the ciphertexts hold {packing.slots} values each, this context's {loaded.engine.per_ciphertext}"
            )
        flat = loaded.engine.decrypt(list(blobs), packing.total)
    divisor = packing.divisor
    if divisor != 1.0:
        flat /= divisor
    return flat


def unflatten(flat: np.ndarray, variables: Sequence[Var]) -> dict[str, np.ndarray]:
    """Cut a flat vector into the variables, in their shapes and dtypes (integers rounded); always copies."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for var in variables:
        part = flat[offset : offset + var.size].reshape(var.shape)
        offset += var.size
        dtype = np.dtype(var.dtype)
        out[var.name] = part.astype(dtype) if dtype.kind == "f" else np.rint(part).astype(dtype)
    return out


def decrypt(blobs: Sequence[bytes], packing: Packing, loaded: Any) -> dict[str, np.ndarray]:
    """Decrypt serialised ciphertexts into the variables, in their shapes and dtypes."""
    return unflatten(decrypt_flat(blobs, packing, loaded), packing.vars)
