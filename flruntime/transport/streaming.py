"""Large messages as a stream of chunks with bounded memory on both ends.

A stream is one JSON control message (what follows and its total ``size``) and then the message's bytes in
chunks of at most :data:`CHUNK` bytes. The sender reads straight from the arrays (:func:`iter_message`
never builds the whole encoded message); the receiver writes chunks into one buffer of the announced size
(:class:`Assembler`) and decodes it in place, so each end holds the model about once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from flruntime.runtime.messages import ModelMessage, Task, TaskResult
from flruntime.transport.codec import CodecError, decode, encode_parts

#: Bytes per chunk: well under gRPC's default 4 MiB message limit.
CHUNK = 2 * 1024 * 1024

#: The largest message a receiver accepts (bytes), unless told otherwise.
MAX_MESSAGE = 64 * 1024**3


def control(**fields: Any) -> bytes:
    """Encode a control message (JSON)."""
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def read_control(data: bytes) -> dict[str, Any]:
    """Decode a control message.

    Raises:
        CodecError: when it is not a JSON object.
    """
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise CodecError(f"bad control message: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError("bad control message: not a JSON object")
    return value


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict (a JSON object from a peer), else an empty dict."""
    return value if isinstance(value, dict) else {}


def iter_chunks(prefix: bytes, parts: Iterable[memoryview], chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the concatenation of ``prefix`` and ``parts`` in chunks of at most ``chunk`` bytes."""
    pending = bytearray()
    for part in (memoryview(prefix), *parts):
        view = part.cast("B") if part.format != "B" or part.ndim != 1 else part
        size, at = view.nbytes, 0
        if pending:
            take = min(chunk - len(pending), size)
            pending += view[:take]
            at = take
            if len(pending) < chunk:
                continue
            yield bytes(pending)
            pending = bytearray()
        while size - at >= chunk:  # whole chunks straight from the array: one copy each
            yield bytes(view[at : at + chunk])
            at += chunk
        pending += view[at:]
    if pending:
        yield bytes(pending)


def iter_message(obj: ModelMessage | Task | TaskResult, chunk: int = CHUNK, **fields: Any) -> Iterator[bytes]:
    """Yield a control message (``fields`` plus ``size``) and then ``obj``'s encoding in chunks."""
    prefix, parts = encode_parts(obj)
    size = len(prefix) + sum(p.nbytes for p in parts)
    yield control(**fields, size=size)
    yield from iter_chunks(prefix, parts, chunk)


def iter_bytes(data: bytes, chunk: int = CHUNK, **fields: Any) -> Iterator[bytes]:
    """Yield a control message (``fields`` plus ``size``) and then ``data`` in chunks."""
    yield control(**fields, size=len(data))
    view = memoryview(data)
    for at in range(0, len(data), chunk):
        yield bytes(view[at : at + chunk])


class Assembler:
    """Collects a stream's chunks into one buffer of the announced size.

    Args:
        size: the total size from the control message.
        limit: refuse larger messages.

    Raises:
        CodecError: a size that is negative or over ``limit``.
    """

    def __init__(self, size: int, limit: int = MAX_MESSAGE) -> None:
        if not isinstance(size, int) or size < 0:
            raise CodecError(f"bad message size {size!r}")
        if size > limit:
            raise CodecError(f"message of {size} bytes is over the limit of {limit} bytes")
        self.buffer = bytearray(size)
        self.filled = 0

    def add(self, chunk: bytes) -> None:
        """Append a chunk.

        Raises:
            CodecError: more bytes than announced.
        """
        end = self.filled + len(chunk)
        if end > len(self.buffer):
            raise CodecError(f"the stream sent more than the {len(self.buffer)} bytes it announced")
        self.buffer[self.filled : end] = chunk
        self.filled = end

    @property
    def complete(self) -> bool:
        """True when every announced byte arrived."""
        return self.filled == len(self.buffer)

    def message(self) -> ModelMessage | Task | TaskResult:
        """Decode the complete buffer (arrays are views into it).

        Raises:
            CodecError: missing bytes or not a valid message.
        """
        if not self.complete:
            raise CodecError(f"the stream ended after {self.filled} of {len(self.buffer)} bytes")
        return decode(self.buffer)

    def data(self) -> bytes:
        """Return the complete buffer as bytes.

        Raises:
            CodecError: missing bytes.
        """
        if not self.complete:
            raise CodecError(f"the stream ended after {self.filled} of {len(self.buffer)} bytes")
        return bytes(self.buffer)


def assemble(stream: Iterator[bytes], limit: int = MAX_MESSAGE) -> tuple[dict[str, Any], Assembler | None]:
    """Read a stream's control message and, when it announces a ``size``, every chunk after it.

    Returns:
        The control message and the filled assembler (None when the control message has no ``size``).

    Raises:
        CodecError: an empty stream, a bad control message, or a size mismatch.
    """
    try:
        head = read_control(next(stream))
    except StopIteration:
        raise CodecError("empty stream") from None
    if "size" not in head:
        return head, None
    buf = Assembler(head["size"], limit)
    for chunk in stream:
        buf.add(chunk)
    return head, buf


__all__ = [
    "CHUNK",
    "MAX_MESSAGE",
    "Assembler",
    "as_dict",
    "assemble",
    "control",
    "iter_bytes",
    "iter_chunks",
    "iter_message",
    "read_control",
]
