"""TensorBoard event files per site (NVFlare's ``TBAnalyticsReceiver``)."""

from __future__ import annotations

import sys
import types
from typing import Any

from flruntime.components.tracking.receiver import AnalyticsReceiver

from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName


def summary_writer() -> type:
    """Torch's ``SummaryWriter``, without loading TensorFlow when the process has not loaded it already.

    TensorBoard imports TensorFlow when it is installed (about 5 s and 700 MB per process) unless the module
    ``tensorboard.compat.notf`` exists; then it writes the same event files with its own stub. A process whose
    code already imported TensorFlow keeps TensorBoard's TensorFlow path.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


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
        summary_writer()
        self.root = ctx.workspace / self.tb_folder

    def _writer(self, site: str) -> Any:
        if site not in self._writers:
            self._writers[site] = summary_writer()(log_dir=str(self.root / site))
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
