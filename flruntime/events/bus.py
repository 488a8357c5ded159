"""A per-engine event bus: handlers subscribe to the events they want and get a removable handle.

Dispatch is synchronous, in subscription order. A handler that raises is logged and does not
stop the others (a tracking receiver must never kill training).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """One event: its name, the site it happened on (``origin``), and its data."""

    name: str
    origin: str
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    """A handle returned by :meth:`EventBus.subscribe`; ``remove()`` unsubscribes."""

    def __init__(self, bus: EventBus, name: str, handler: Handler) -> None:
        self._bus = bus
        self.name = name
        self.handler = handler

    def remove(self) -> None:
        """Stop receiving the event (idempotent)."""
        self._bus._remove(self)


#: Subscribe to this name to hear every event (after the subscribers of the event's own name).
ALL = "*"


class EventBus:
    """The event bus of one engine (one site)."""

    def __init__(self, site: str) -> None:
        self.site = site
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()

    def subscribe(self, name: str, handler: Handler) -> Subscription:
        """Call ``handler(event)`` for every event called ``name`` (:data:`ALL`: every event); returns a handle."""
        sub = Subscription(self, str(name), handler)
        with self._lock:
            self._subs.setdefault(sub.name, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.name, [])
            if sub in subs:
                subs.remove(sub)

    def fire(self, name: str, origin: str | None = None, **data: Any) -> Event:
        """Deliver an event to its subscribers, in order; handler errors are logged, not raised."""
        event = Event(str(name), origin or self.site, data)
        with self._lock:
            subs = [*self._subs.get(event.name, []), *self._subs.get(ALL, [])]
        for sub in subs:
            try:
                sub.handler(event)
            except Exception:
                log.exception("%s: handler %r for event %s failed", self.site, sub.handler, event.name)
        return event
