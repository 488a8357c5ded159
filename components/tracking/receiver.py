"""The base of the tracking receivers: subscribe to analytics events, hand each record to ``save``.

A receiver must never stop training: a record it cannot read is logged (once per kind of problem)
and skipped, and errors in ``save`` are logged, not raised.
"""

from __future__ import annotations

import logging
from typing import Any

from flruntime.events.bus import Event
from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsRecord, LogWriterName

log = logging.getLogger(__name__)

DEFAULT_EVENTS = [str(EventType.ANALYTIX_LOG_STATS), str(EventType.FED_ANALYTIX_LOG_STATS)]


class AnalyticsReceiver:
    """Receives analytics records from events and stores them (subclasses implement the store).

    Args:
        events: the event names to listen to (default: the local and the federated analytics events).
    """

    writer: LogWriterName = LogWriterName.MLFLOW

    def __init__(self, events: list[str] | None = None) -> None:
        self.events = list(events) if events else list(DEFAULT_EVENTS)
        self.ctx: RunContext | None = None
        self.active = False
        self._warned: set[str] = set()

    def setup(self, ctx: RunContext) -> None:
        """Open the store and subscribe; a store that cannot be opened leaves the receiver inactive."""
        self.ctx = ctx
        try:
            self.initialize(ctx)
            self.active = True
        except Exception as exc:
            log.error("%s: %s could not start and will record nothing: %s", ctx.site, type(self).__name__, exc)
            return
        for name in self.events:
            ctx.bus.subscribe(name, self._on_event)

    def teardown(self, ctx: RunContext) -> None:
        """Flush and close the store."""
        if self.active:
            self.active = False
            self.finalize(ctx)

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log a warning the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _on_event(self, event: Event) -> None:
        if not self.active:
            return
        raw = event.data.get("record")
        if not isinstance(raw, dict):
            self.warn_once("no-record", "event %s from %s carries no analytics record", event.name, event.origin)
            return
        try:
            record = AnalyticsRecord.from_dict(raw).for_receiver(self.writer)
        except (KeyError, TypeError, ValueError) as exc:
            self.warn_once(f"bad:{exc}", "skipping a bad analytics record from %s: %s", event.origin, exc)
            return
        try:
            self.save(record, event.origin)
        except Exception as exc:
            self.warn_once(
                f"save:{type(exc).__name__}",
                "%s failed to save a record from %s: %s",
                type(self).__name__,
                event.origin,
                exc,
            )

    def initialize(self, ctx: RunContext) -> None:
        """Open the store (called once at the start of the run)."""

    def save(self, record: AnalyticsRecord, site: str) -> None:
        """Store one record from ``site``."""
        raise NotImplementedError

    def finalize(self, ctx: RunContext) -> None:
        """Flush and close the store (called once at the end of the run)."""
