"""Experiment-tracking writers for training scripts, in the styles of TensorBoard, MLflow and W&B.

Every call becomes an analytics record on the site (``flare.log``): in process it is fired as the
site's ``analytix_log_stats`` event at once; from a launched script it crosses the pipe first. The
records then reach whatever receivers the job configures (site-side, or server-side through
``ConvertToFedEvent``). Only these method names are offered; nothing is written locally by them.
"""

from __future__ import annotations

from typing import Any

from flruntime.client.api import log
from flruntime.tracking.record import AnalyticsDataType as T
from flruntime.tracking.record import LogWriterName as W


class SummaryWriter:
    """TensorBoard's ``SummaryWriter`` API: ``add_scalar`` and ``add_scalars``."""

    def add_scalar(self, tag: str, scalar: float, global_step: int | None = None, **kwargs: Any) -> None:
        """Log one scalar."""
        log(tag, scalar, T.SCALAR, global_step=global_step, writer=W.TORCH_TB, **kwargs)

    def add_scalars(self, tag: str, scalars: dict[str, float], global_step: int | None = None, **kwargs: Any) -> None:
        """Log several scalars under one main tag."""
        log(tag, scalars, T.SCALARS, global_step=global_step, writer=W.TORCH_TB, **kwargs)

    def flush(self) -> None:
        """Nothing to flush: records are sent as they are logged."""


class MLflowWriter:
    """MLflow's logging API: metrics, params, tags and text."""

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log one metric."""
        log(key, value, T.METRIC, global_step=step, writer=W.MLFLOW)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log several metrics at one step."""
        log("metrics", metrics, T.METRICS, global_step=step, writer=W.MLFLOW)

    def log_param(self, key: str, value: Any) -> None:
        """Log one parameter."""
        log(key, value, T.PARAMETER, writer=W.MLFLOW)

    def log_params(self, values: dict[str, Any]) -> None:
        """Log several parameters."""
        log("params", values, T.PARAMETERS, writer=W.MLFLOW)

    def set_tag(self, key: str, tag: Any) -> None:
        """Set one run tag."""
        log(key, tag, T.TAG, writer=W.MLFLOW)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set several run tags."""
        log("tags", tags, T.TAGS, writer=W.MLFLOW)

    def log_text(self, text: str, artifact_file_path: str) -> None:
        """Log text as an artifact file of the site's run."""
        log("text", text, T.TEXT, writer=W.MLFLOW, path=artifact_file_path)


class WandBWriter:
    """Weights & Biases' ``log`` API."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log several metrics at one step."""
        log("metrics", metrics, T.METRICS, global_step=step, writer=W.WANDB)
