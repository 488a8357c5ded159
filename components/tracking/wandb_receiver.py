"""Weights & Biases tracking (NVFlare's ``WandBReceiver``): one run per site, offline by default.

In ``offline`` mode runs are written under ``<workspace>/wandb`` (``wandb sync`` uploads them later).
``online`` mode logs in with the **server's** ``WANDB_API_KEY`` environment variable (not the job
submitter's); without a key it falls back to offline with a warning. Unlike NVFlare, all sites share
the server process (W&B's multi-run support) instead of one OS process per site.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flruntime.components.tracking.receiver import AnalyticsReceiver

from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

log = logging.getLogger(__name__)


class WandBReceiver(AnalyticsReceiver):
    """Writes each site's records to its own W&B run.

    Args:
        wandb_args: arguments for ``wandb.init``; must hold ``name``, ``project`` and ``job_type``. ``group``
            is set to ``<name>-<job id>`` and each run is named ``<site>-<job id>-<name>``.
        mode: ``offline`` (default) or ``online``.
        events: the events to record (default: the local and the federated analytics events).
        process_timeout: accepted for NVFlare compatibility (no per-site processes here).
    """

    writer = LogWriterName.WANDB

    def __init__(
        self,
        wandb_args: dict[str, Any],
        mode: str = "offline",
        events: list[str] | None = None,
        process_timeout: float = 10.0,
    ) -> None:
        super().__init__(events)
        for key in ("name", "project", "job_type"):
            if not wandb_args.get(key):
                raise ValueError(f"wandb_args must provide '{key}'")
        if mode not in ("offline", "online"):
            raise ValueError(f"mode must be 'offline' or 'online', got {mode!r}")
        self.wandb_args = dict(wandb_args)
        self.mode = mode
        self._runs: dict[str, Any] = {}
        self._pending: dict[str, tuple[int | None, dict[str, Any]]] = {}

    def initialize(self, ctx: RunContext) -> None:
        """Import wandb and settle the mode (online needs the server's WANDB_API_KEY)."""
        import wandb  # noqa: F401

        if self.mode == "online" and not os.environ.get("WANDB_API_KEY"):
            log.warning(
                "%s: W&B online mode needs WANDB_API_KEY in the server's environment; logging offline", ctx.site
            )
            self.mode = "offline"
        self.dir = ctx.workspace

    def _run(self, site: str) -> Any:
        if site not in self._runs:
            import wandb

            assert self.ctx is not None
            job_id = self.ctx.job_id
            args = {
                **self.wandb_args,
                "name": f"{site}-{job_id}-{self.wandb_args['name']}",
                "group": f"{self.wandb_args['name']}-{job_id}",
                "mode": self.mode,
                "dir": str(self.dir),
                "reinit": "create_new",
            }
            config = dict(args.pop("config", {}) or {})
            config.update({"job_id": job_id, "client": site, "run_name": self.wandb_args["name"]})
            self._runs[site] = wandb.init(config=config, **args)
        return self._runs[site]

    def save(self, record: AnalyticsRecord, site: str) -> None:
        """Buffer values per step; a step is sent when a record of a later step arrives."""
        t = record.data_type
        if t in (AnalyticsDataType.METRIC, AnalyticsDataType.PARAMETER):
            values = {record.tag: record.value}
        elif t in (AnalyticsDataType.METRICS, AnalyticsDataType.PARAMETERS):
            values = dict(record.value)
        else:
            self.warn_once(f"type:{t}", "W&B receiver ignores %s records", t)
            return
        step, pending = self._pending.get(site, (record.step, {}))
        if record.step != step:
            self._flush(site)
            step, pending = record.step, {}
        pending.update(values)
        self._pending[site] = (step, pending)

    def _flush(self, site: str) -> None:
        step, values = self._pending.pop(site, (None, {}))
        if values:
            self._run(site).log(values, step=step)

    def finalize(self, ctx: RunContext) -> None:
        """Send what is buffered and finish every run."""
        for site in list(self._pending):
            self._flush(site)
        for run in self._runs.values():
            run.finish()
