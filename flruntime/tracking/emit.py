"""Putting an analytics record on a site's event bus (or sending it straight to the server)."""

from __future__ import annotations

from flruntime.events.types import EventType
from flruntime.runtime import progress
from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsRecord


def emit(
    ctx: RunContext, record: AnalyticsRecord, *, event: str = EventType.ANALYTIX_LOG_STATS, fed: bool = False
) -> None:
    """Fire ``record`` as the local event ``event``, or send it to the server when ``fed``.

    Local events reach site-side receivers and ``ConvertToFedEvent``; ``fed=True`` is NVFlare's
    ``fed_event`` switch of ``MetricRelay`` (the record goes to the server as ``fed.<event>``).
    """
    progress.touch()
    if fed:
        name = event if event.startswith("fed.") else f"fed.{event}"
        ctx.fire_fed_event(name, {"record": record.to_dict()})
    else:
        ctx.bus.fire(event, record=record.to_dict())
