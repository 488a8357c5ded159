"""Forwarding chosen local events to the server (NVFlare's ``ConvertToFedEvent``)."""

from __future__ import annotations

import logging

from flruntime.events.bus import Event
from flruntime.events.types import FED_PREFIX
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)


class ConvertToFedEvent:
    """Re-sends each local event named in ``events_to_convert`` to the server as ``fed_event_prefix + name``.

    On the server the event fires with the sending site as its origin, so server-side receivers know
    where every record came from.

    Args:
        events_to_convert: local event names to forward (e.g. ``["analytix_log_stats"]``).
        fed_event_prefix: the prefix of the forwarded name.
    """

    def __init__(self, events_to_convert: list[str], fed_event_prefix: str = FED_PREFIX) -> None:
        if not events_to_convert:
            raise ValueError("events_to_convert must name at least one event")
        self.events_to_convert = list(events_to_convert)
        self.fed_event_prefix = fed_event_prefix
        self._ctx: RunContext | None = None

    def setup(self, ctx: RunContext) -> None:
        """Subscribe to the events to forward."""
        self._ctx = ctx
        for name in self.events_to_convert:
            ctx.bus.subscribe(name, self._forward)

    def _forward(self, event: Event) -> None:
        if self._ctx is None or event.name.startswith(self.fed_event_prefix):
            return
        self._ctx.fire_fed_event(self.fed_event_prefix + event.name, dict(event.data))
