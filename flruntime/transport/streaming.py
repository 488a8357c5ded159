"""Large messages as a stream of chunks with bounded memory on both ends.

A stream is one JSON control message (what follows and its total ``size``) and then the message's bytes in
chunks of at most :data:`CHUNK` bytes. The sender reads straight from the arrays (:func:`iter_message`
never builds the whole encoded message); the receiver writes chunks into one buffer of the announced size
(:class:`Assembler`) and decodes it in place, so each end holds the model about once. A receiver that can
fold a result in as it arrives (:func:`receive` with a sink from :mod:`flruntime.runtime.streamed`) holds
no more than a chunk of it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from flruntime.runtime.messages import ModelMessage, Task, TaskResult
from flruntime.runtime.streamed import ResultSink
from flruntime.transport.codec import ArraySpec, CodecError, decode, decode_head, encode_parts, prefix_size

Message = ModelMessage | Task | TaskResult

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


def _check_size(size: Any, limit: int) -> None:
    """Refuse a size that is not a whole number of bytes within ``limit``.

    Raises:
        CodecError: a size that is negative, not an integer or over the limit.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CodecError(f"bad message size {size!r}")
    if size > limit:
        raise CodecError(f"message of {size} bytes is over the limit of {limit} bytes")


class Assembler:
    """Collects a stream's chunks into one buffer of the announced size.

    Args:
        size: the total size from the control message.
        limit: refuse larger messages.

    Raises:
        CodecError: a size that is negative or over ``limit``.
    """

    def __init__(self, size: int, limit: int = MAX_MESSAGE) -> None:
        _check_size(size, limit)
        self.buffer = bytearray(size)
        self.filled = 0

    def add(self, chunk: bytes | bytearray | memoryview) -> None:
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


class ArrayReader:
    """Cuts a message's byte section, arriving in chunks of any size, into pieces of its arrays.

    Each piece is whole elements of one array: ``(spec, first element, values)``; an element split between
    two chunks is put together (its few bytes copied), everything else is a view of the chunk. A ``bytes``
    value comes as one piece when all of it has arrived.

    Args:
        specs: the arrays, tiling the byte section in order (as :func:`~flruntime.transport.codec.decode_head`
            checks).
    """

    def __init__(self, specs: list[ArraySpec]) -> None:
        self.specs = specs
        self.size = sum(s.nbytes for s in specs)
        self.filled = 0
        self._index = 0
        self._done = 0  # bytes of the current array consumed
        self._carry = bytearray()

    def feed(self, chunk: bytes | bytearray | memoryview) -> Iterator[tuple[ArraySpec, int, Any]]:
        """Yield the pieces ``chunk`` completes.

        Raises:
            CodecError: more bytes than the arrays hold.
        """
        view = memoryview(chunk).cast("B")
        if self.filled + len(view) > self.size:
            raise CodecError(f"the stream sent more than the {self.size} bytes its arrays hold")
        self.filled += len(view)
        while len(view):
            spec = self._current()
            take = min(spec.nbytes - self._done, len(view))
            part, view = view[:take], view[take:]
            start = self._done
            self._done += take
            if spec.dtype is None:
                self._carry += part
                if self._done == spec.nbytes:
                    yield spec, 0, bytes(self._carry)
                    self._carry = bytearray()
                continue
            item = spec.dtype.itemsize
            if self._carry:  # finish the element the last chunk began
                head, part = part[: item - len(self._carry)], part[item - len(self._carry) :]
                self._carry += head
                start += len(head)
                if len(self._carry) < item:
                    continue
                yield spec, start // item - 1, np.frombuffer(bytes(self._carry), dtype=spec.dtype)
                self._carry = bytearray()
            whole = len(part) - len(part) % item
            if whole:
                yield spec, start // item, np.frombuffer(part[:whole], dtype=spec.dtype)
            self._carry += part[whole:]

    def _current(self) -> ArraySpec:
        while self._done == self.specs[self._index].nbytes:  # empty arrays and finished ones
            self._index += 1
            self._done = 0
        return self.specs[self._index]

    @property
    def complete(self) -> bool:
        """True when every byte of every array arrived."""
        return self.filled == self.size


#: Asked, once a result's header is in, for a sink to stream it into: ``(control message, the result without
#: its arrays, the arrays' places)``; None to receive the result whole instead.
OpenSink = Callable[[dict[str, Any], Message, list[ArraySpec]], ResultSink | None]


@dataclass
class Received:
    """What :func:`receive` got.

    Attributes:
        head: the stream's control message.
        message: the message: whole, or without its arrays when a sink took them (None when the control
            message announced no ``size``).
        accepted: what the sink said at the end (None when no sink took the message).
    """

    head: dict[str, Any]
    message: Message | None
    accepted: bool | None = None


def receive(
    stream: Iterator[bytes],
    open_sink: OpenSink | None = None,
    limit: int = MAX_MESSAGE,
    whole: AbstractContextManager[Any] | None = None,
) -> Received:
    """Read a stream: its control message, then the message, into a sink (when one is offered) or whole.

    With ``open_sink``, the message's header is decoded as soon as its bytes are in and ``open_sink`` is
    asked for a sink; a sink gets every array piece by piece (:class:`ArrayReader`) and is closed at the end,
    or told it failed when the stream breaks off, carries the wrong number of bytes or a piece cannot be
    written. Without a sink the
    message is assembled whole, as :func:`assemble` does, inside ``whole`` (e.g. a semaphore that bounds how
    many messages are held whole at a time).

    Raises:
        CodecError: a bad control message, size, header or byte count (a sink has been told it failed).
    """
    try:
        head = read_control(next(stream))
    except StopIteration:
        raise CodecError("empty stream") from None
    if "size" not in head:
        return Received(head, None)
    size = head["size"]
    _check_size(size, limit)
    first = bytearray()
    need = None
    for chunk in stream:
        first += chunk
        if len(first) > size:
            raise CodecError(f"the stream sent more than the {size} bytes it announced")
        need = prefix_size(first)
        if need is not None and need > size:
            raise CodecError(f"the message's header claims {need} bytes, more than the {size} announced")
        if need is not None and len(first) >= need:
            break
    if need is None or len(first) < need:
        raise CodecError(f"the stream ended after {len(first)} of {size} bytes")
    message, specs = decode_head(first[:need], size - need)
    sink = open_sink(head, message, specs) if open_sink is not None and specs else None
    if sink is None:
        with whole or contextlib.nullcontext():
            buf = Assembler(size, limit)
            buf.add(first)
            for chunk in stream:
                buf.add(chunk)
            return Received(head, buf.message())
    reader = ArrayReader(specs)
    chunks: Iterator[bytes | bytearray | memoryview] = itertools.chain([memoryview(first)[need:]], stream)
    try:
        for piece in chunks:
            for spec, start, values in reader.feed(piece):
                try:
                    sink.write(spec.name, start, values)
                except CodecError:
                    raise
                except Exception as exc:  # e.g. a piece that does not fit what the sink expects
                    raise CodecError(f"array '{spec.name}' could not be taken in: {exc}") from exc
        if not reader.complete:
            raise CodecError(f"the stream ended after {need + reader.filled} of {size} bytes")
    except BaseException as exc:
        sink.fail(str(exc) or type(exc).__name__)
        raise
    return Received(head, message, sink.close())


__all__ = [
    "CHUNK",
    "MAX_MESSAGE",
    "ArrayReader",
    "Assembler",
    "OpenSink",
    "Received",
    "as_dict",
    "assemble",
    "control",
    "iter_bytes",
    "iter_chunks",
    "iter_message",
    "read_control",
    "receive",
]
