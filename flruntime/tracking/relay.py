"""Turning an analytics record that crossed a pipe back into an event on the site."""

from __future__ import annotations

import json
import logging

from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext
from flruntime.tracking.emit import emit
from flruntime.tracking.record import AnalyticsRecord

log = logging.getLogger(__name__)


def forward_log(
    payload: bytes, ctx: RunContext, *, event: str = EventType.ANALYTIX_LOG_STATS, fed: bool = False
) -> bool:
    """Decode a JSON record sent by a training script and fire it on ``ctx``'s site; False when it is bad."""
    try:
        record = AnalyticsRecord.from_dict(json.loads(payload))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: dropping a bad analytics record from the training script: %s", ctx.site, exc)
        return False
    emit(ctx, record, event=event, fed=fed)
    return True
