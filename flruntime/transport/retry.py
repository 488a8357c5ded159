"""Calling a gRPC server that may be away: which failures are worth retrying, backoff, one-line reasons."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import grpc

T = TypeVar("T")

#: Status codes worth retrying: the server is down, restarting, or overloaded.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


class Refused(Exception):
    """The server refused this participant (not a transient failure)."""


class Backoff:
    """Exponential delays between retries: ``first``, doubling, capped at ``most``."""

    def __init__(self, first: float = 0.5, most: float = 30.0) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def next(self) -> float:
        """Return the next delay and double it."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        """Start again from ``first``."""
        self.delay = self.first


def code_of(exc: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call (None when it has none)."""
    return exc.code() if hasattr(exc, "code") else None


def explain(exc: grpc.RpcError, target: str) -> str:
    """One line saying why a call to the server failed."""
    code = code_of(exc)
    details = exc.details() if hasattr(exc, "details") else str(exc)
    text = str(details or "")
    if "handshake" in text.lower() or "certificate" in text.lower() or "ssl" in text.lower():
        return (
            f"the TLS handshake with the server at {target} failed: the server and this kit do not trust each "
            f"other's certificates (kits from another project or CA?) — {text}"
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return text
    if "socket closed" in text.lower():
        return (
            f"the server at {target} closed the connection during the TLS handshake: it does not accept this "
            f"kit's certificate (signed by another CA?) or it is shutting down — {text}"
        )
    return f"cannot reach the server at {target} ({code.name if code else 'error'}: {text})"


def retry(
    what: str,
    call: Callable[[], T],
    target: str,
    stop: threading.Event,
    give_up: Callable[[], bool] | None = None,
    most: float = 30.0,
    warn: Callable[[str], None] | None = None,
) -> T | None:
    """Call until it succeeds; transient failures wait with backoff; None when ``stop`` is set or ``give_up()``.

    Raises:
        Refused: the server refused this participant.
        grpc.RpcError: a failure that is not transient.
    """
    backoff = Backoff(most=most)
    while not stop.is_set() and not (give_up and give_up()):
        try:
            return call()
        except grpc.RpcError as exc:
            code = code_of(exc)
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                raise Refused(explain(exc, target)) from exc
            if code not in TRANSIENT:
                raise
            delay = backoff.next()
            if warn is not None:
                warn(f"{what}: {explain(exc, target)}; retrying in {delay:.1f} s")
            stop.wait(delay)
    return None


__all__ = ["TRANSIENT", "Backoff", "Refused", "code_of", "explain", "retry"]
