"""Ending a communicator wait for more than one reason: the job's abort, the workflow's end, a missed pick-up.

:meth:`flruntime.runtime.communicator.Communicator.broadcast_and_wait` stops waiting when its ``abort`` event is
set, and looks at it at least every half second. :class:`StopWhen` is such an event that also counts as set when
any of some other events is set or a condition holds, so a workflow can end one wait for its own reasons without
touching the job's abort.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StopWhen(threading.Event):
    """An event that is set when it was set itself, when one of ``events`` is set, or when ``condition()`` holds.

    Args:
        events: other events (the job's abort, ...).
        condition: checked each time the event is looked at (None: none).
    """

    def __init__(self, *events: threading.Event, condition: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self.events = events
        self.condition = condition

    def is_set(self) -> bool:
        """True when this event, one of the others, or the condition says stop."""
        if super().is_set() or any(e.is_set() for e in self.events):
            return True
        return self.condition is not None and bool(self.condition())
