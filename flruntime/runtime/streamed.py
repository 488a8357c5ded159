"""Results taken in as they stream: a receiver hands each piece of an array to a sink, nothing is held whole.

A transport that receives a task result in chunks (the federation's gRPC ``Submit``) may ask the job's
:class:`~flruntime.runtime.communicator.Communicator` for a :class:`ResultSink` once it has the result's
header. The communicator asks the waiting workflow, the workflow its aggregator
(:meth:`flruntime.roles.Aggregator.open_contribution`); when every one of them can take the result piece by
piece, the arrays are folded into the aggregate as their bytes arrive and the server never holds the
result whole. When any of them cannot (result filters on the server, an aggregator that needs whole
results, ``bytes`` values), the answer is None and the transport assembles the result and submits it as
usual.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ResultSink(Protocol):
    """Takes one result's arrays piece by piece, in the order they come."""

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Take the flat elements ``[start, start + values.size)`` of array ``name`` (read-only, lent for the call)."""

    def close(self) -> bool:
        """The whole result arrived: return True when it was accepted."""

    def fail(self, reason: str) -> None:
        """The stream broke off before the end (``reason`` says why)."""


class Discard:
    """A sink that reads a result to its end and drops it (e.g. one that is late, or from the wrong round)."""

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Drop the piece."""

    def close(self) -> bool:
        """Not accepted."""
        return False

    def fail(self, reason: str) -> None:
        """Nothing to undo."""


__all__ = ["Discard", "ResultSink"]
