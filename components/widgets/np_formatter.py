"""Cross-site validation results as readable text (NVFlare's ``nvflare.app_common.np.np_formatter.NPFormatter``).

NVFlare's formatter turns the cross-site results into the text its admin command ``show_stats`` prints. Here
it collects the ``VALIDATION_RESULT_RECEIVED`` events of the run, :meth:`NPFormatter.format` returns the
same text (``{data_client: {model_owner: metrics}}``), and the table is logged at the end of the run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flruntime.events.bus import Event, Subscription
from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)


class NPFormatter:
    """Formats the cross-site validation results of the run (no arguments, as NVFlare's)."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def setup(self, ctx: RunContext) -> None:
        """Start collecting validation results; log them at END_RUN."""
        self.results = {}
        self._subs = [
            ctx.bus.subscribe(EventType.VALIDATION_RESULT_RECEIVED, self._on_result),
            ctx.bus.subscribe(EventType.END_RUN, self._at_end),
        ]

    def teardown(self, ctx: RunContext) -> None:
        """Stop collecting."""
        for sub in self._subs:
            sub.remove()
        self._subs = []

    def _on_result(self, event: Event) -> None:
        owner, client, metrics = (event.data.get(k) for k in ("model_owner", "data_client", "metrics"))
        if owner and client and isinstance(metrics, dict):
            with self._lock:
                self.results.setdefault(str(client), {})[str(owner)] = dict(metrics)

    def _at_end(self, event: Event) -> None:
        if self.results:
            log.info("cross-site validation results: %s", self.format())

    def format(self, ctx: RunContext | None = None) -> str:
        """Return the results as text: ``{data_client: {model_owner: metrics}}`` (sites in name order)."""
        with self._lock:
            ordered = {c: {o: self.results[c][o] for o in sorted(self.results[c])} for c in sorted(self.results)}
        return str(ordered)
