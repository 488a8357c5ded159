"""TensorBoard event files per site (NVFlare's ``TBAnalyticsReceiver``)."""

from __future__ import annotations

from typing import Any

from flruntime.components.tracking.receiver import AnalyticsReceiver

from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName


class TBAnalyticsReceiver(AnalyticsReceiver):
    """Writes each site's records to ``<workspace>/<tb_folder>/<site>/`` as TensorBoard event files.

    Unlike NVFlare, step 0 is written as step 0 (not as "no step").

    Args:
        tb_folder: the folder under the workspace.
        events: the events to record (default: the local and the federated analytics events).
    """

    writer = LogWriterName.TORCH_TB

    def __init__(self, tb_folder: str = "tb_events", events: list[str] | None = None) -> None:
        super().__init__(events)
        self.tb_folder = tb_folder
        self._writers: dict[str, Any] = {}

    def initialize(self, ctx: RunContext) -> None:
        """Check that TensorBoard's writer is importable."""
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

        self.root = ctx.workspace / self.tb_folder

    def _writer(self, site: str) -> Any:
        if site not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[site] = SummaryWriter(log_dir=str(self.root / site))
        return self._writers[site]

    def save(self, record: AnalyticsRecord, site: str) -> None:
        """Write one record."""
        writer = self._writer(site)
        t = record.data_type
        if t is AnalyticsDataType.SCALAR:
            writer.add_scalar(record.tag, record.value, record.step)
        elif t is AnalyticsDataType.SCALARS:
            writer.add_scalars(record.tag, record.value, record.step)
        elif t is AnalyticsDataType.TEXT:
            writer.add_text(record.tag, record.value, record.step)
        elif t is AnalyticsDataType.PARAMETER:
            if isinstance(record.value, (int, float)):
                writer.add_scalar(record.tag, record.value, record.step)
            else:
                writer.add_text(record.tag, str(record.value), record.step)
        elif t is AnalyticsDataType.PARAMETERS:
            for key, value in record.value.items():
                writer.add_text(key, str(value), record.step)
        else:
            self.warn_once(f"type:{t}", "TensorBoard receiver ignores %s records", t)

    def finalize(self, ctx: RunContext) -> None:
        """Flush and close every site's writer."""
        for writer in self._writers.values():
            writer.flush()
            writer.close()
