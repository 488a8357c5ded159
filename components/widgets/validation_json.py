"""The cross-site validation matrix as JSON (NVFlare's ``ValidationJsonGenerator``) and as a PNG heatmap.

``results[data_client][model_owner] = metrics``: the outer key is the site whose data was used, the inner
key the model's owner (a client, or ``SRV_<name>`` for a server model). The JSON is written at the end of
the run, also when it is empty; a heatmap per metric goes next to it when matplotlib is installed.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from flruntime.events.bus import Event, Subscription
from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)

Matrix = dict[str, dict[str, dict[str, Any]]]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def write_heatmaps(results: Matrix, path: Path) -> bool:
    """Draw one heatmap per numeric metric (rows: data sites, columns: model owners) into ``path``.

    Returns:
        False when there is nothing to draw or matplotlib is not installed.
    """
    try:
        from flruntime.plots import cross_site_figure, save_png

        fig = cross_site_figure(results)
    except ImportError:
        log.info("matplotlib is not installed: no heatmap of the cross-site results (pip install matplotlib)")
        return False
    if fig is None:
        return False
    save_png(fig, path)
    return True


class ValidationJsonGenerator:
    """Collects ``VALIDATION_RESULT_RECEIVED`` events and writes ``<workspace>/<results_dir>/<json_file_name>``.

    Args:
        results_dir: the folder in the server's workspace.
        json_file_name: the JSON file's name (the heatmap is the same name with ``.png``).
    """

    def __init__(self, results_dir: str = "cross_site_val", json_file_name: str = "cross_val_results.json") -> None:
        for arg, value in (("results_dir", results_dir), ("json_file_name", json_file_name)):
            path = PurePath(value)
            if not value or path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{arg} must be a relative path inside the workspace, got {value!r}")
        self.results_dir = results_dir
        self.json_file_name = json_file_name
        self.results: Matrix = {}
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def setup(self, ctx: RunContext) -> None:
        """Start collecting; write the files at END_RUN."""
        self.results = {}
        self._subs = [
            ctx.bus.subscribe(EventType.VALIDATION_RESULT_RECEIVED, self._on_result),
            ctx.bus.subscribe(EventType.END_RUN, lambda event: self._at_end(ctx)),
        ]

    def teardown(self, ctx: RunContext) -> None:
        """Stop collecting."""
        for sub in self._subs:
            sub.remove()
        self._subs = []

    def _on_result(self, event: Event) -> None:
        owner, client, metrics = (event.data.get(k) for k in ("model_owner", "data_client", "metrics"))
        if not owner or not client:
            log.error("a validation result without model_owner or data_client is not recorded: %s", event.data)
            return
        if not isinstance(metrics, dict):
            log.error("the validation result of %s on %s is not a dict of metrics: %r", owner, client, metrics)
            return
        plain = json.loads(json.dumps(metrics, default=_plain))
        with self._lock:
            self.results.setdefault(str(client), {})[str(owner)] = plain

    def _at_end(self, ctx: RunContext) -> None:
        self.write(ctx)

    def path(self, ctx: RunContext) -> Path:
        """Where the JSON file goes."""
        return ctx.workspace / self.results_dir / self.json_file_name

    def write(self, ctx: RunContext) -> Path:
        """Write the JSON file (and the heatmap, when possible); return the JSON file's path."""
        path = self.path(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            results = json.loads(json.dumps(self.results))
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        log.info("cross-site validation results written to %s", path)
        try:
            if write_heatmaps(results, path.with_suffix(".png")):
                log.info("cross-site validation heatmap written to %s", path.with_suffix(".png"))
        except Exception:
            log.exception("drawing the cross-site validation heatmap failed")
        return path
