"""Server- or site-side MLflow tracking (NVFlare's ``MLflowReceiver``), batched and outage-proof.

One MLflow run per site (created when the site's first record arrives, so late joiners get one too),
named ``<site>-<job id[:6]>-<run_name>`` and tagged with the site and the job. Records are buffered
and written with ``log_batch`` by a background thread; when the store is unreachable the error is
logged once with its cause, writes are retried with exponential backoff, and nothing buffered is
dropped (up to ``max_buffer`` records). At the end of the run a ``<run_name>-server`` run receives
the final global model, the best model, the job's config files and ``cross_val_results.json`` as
artifacts. Without ``tracking_uri`` the store is an embedded SQLite database in the workspace:
``mlflow ui --backend-store-uri sqlite:///<workspace>/mlflow.db`` shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from flruntime.components.tracking.receiver import AnalyticsReceiver

from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "FLARE FL Experiment"
DEFAULT_RUN_NAME = "FLARE FL Run"
_ARTIFACTS = (
    "FL_global_model.pt",
    "best_FL_global_model.pt",
    "cross_site_val/cross_val_results.json",
    "cross_site_val/cross_val_results.png",
)
_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}


def _rejected(exc: Exception) -> bool:
    """True when MLflow refused the data itself (retrying cannot help), not when the store is unreachable."""
    code = getattr(exc, "error_code", "")
    return code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE")


class MLflowReceiver(AnalyticsReceiver):
    """Writes analytics records into MLflow, one run per site.

    Args:
        tracking_uri: the MLflow tracking URI (``http://...``, ``sqlite:///...``, ``file:...``); default: an
            embedded SQLite store ``<workspace>/mlflow.db``.
        kw_args: ``experiment_name``, ``run_name``, ``experiment_tags``, ``run_tags``.
        artifact_location: the experiment's artifact folder, relative to the workspace (default ``mlartifacts``).
        events: the events to record (default ``["fed.analytix_log_stats"]``: every site's records on the server).
        buffer_flush_time: seconds between batched writes.
        max_buffer: records kept per site while the store is unreachable; older ones are dropped beyond it.
    """

    writer = LogWriterName.MLFLOW

    def __init__(
        self,
        tracking_uri: str | None = None,
        kw_args: dict[str, Any] | None = None,
        artifact_location: str | None = None,
        events: list[str] | None = None,
        buffer_flush_time: float = 1.0,
        max_buffer: int = 1_000_000,
    ) -> None:
        super().__init__(events or [str(EventType.FED_ANALYTIX_LOG_STATS)])
        kw = dict(kw_args or {})
        self.experiment_name = str(kw.get("experiment_name", DEFAULT_EXPERIMENT))
        if not self.experiment_name:
            raise ValueError("kw_args.experiment_name must not be empty")
        self.run_name = str(kw.get("run_name", DEFAULT_RUN_NAME))
        self.experiment_tags = dict(kw.get("experiment_tags") or {})
        self.run_tags = dict(kw.get("run_tags") or {})
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location or "mlartifacts"
        self.buffer_flush_time = float(buffer_flush_time)
        self.max_buffer = int(max_buffer)
        self._lock = threading.Lock()
        self._buffers: dict[str, dict[str, deque[Any]]] = {}
        self._params_sent: dict[str, dict[str, str]] = {}
        self._runs: dict[str, str] = {}
        self._experiment_id: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self.written = 0
        self.dropped = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def initialize(self, ctx: RunContext) -> None:
        """Create the client (the store itself is reached lazily, with retries)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        self._entities = (Metric, Param, RunTag)
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        self.uri = self.tracking_uri or f"sqlite:///{(ctx.workspace / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self._thread = threading.Thread(target=self._loop, name=f"{ctx.site}:mlflow", daemon=True)
        self._thread.start()
        log.info("%s: MLflow receiver writing to %s", ctx.site, self.uri)

    def finalize(self, ctx: RunContext, timeout: float = 60.0) -> None:
        """Flush everything (retrying up to ``timeout`` seconds), log the job's artifacts, end the runs."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                self._flush_all()
                self._log_artifacts(ctx)
                for run_id in self._runs.values():
                    self.client.set_terminated(run_id)
                break
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    pending = sum(len(b) for s in self._buffers.values() for b in s.values())
                    log.error(
                        "%s: MLflow store %s still unreachable at the end of the run; %d records not written: %s",
                        ctx.site,
                        self.uri,
                        pending,
                        exc,
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.info("%s: MLflow receiver wrote %d records to %s", ctx.site, self.written, self.uri)

    # --- buffering ------------------------------------------------------------------------------

    def save(self, record: AnalyticsRecord, site: str) -> None:
        """Buffer one record (written by the background thread)."""
        Metric, Param, RunTag = self._entities
        now = int(time.time() * 1000)
        step = record.step or 0
        t = record.data_type
        items: list[tuple[str, Any]] = []
        if t is AnalyticsDataType.METRIC:
            items.append(("metrics", Metric(record.tag, record.value, now, step)))
        elif t is AnalyticsDataType.METRICS:
            items += [("metrics", Metric(k, v, now, step)) for k, v in record.value.items()]
        elif t is AnalyticsDataType.PARAMETER:
            items.append(("params", Param(record.tag, str(record.value))))
        elif t is AnalyticsDataType.PARAMETERS:
            items += [("params", Param(str(k), str(v))) for k, v in record.value.items()]
        elif t is AnalyticsDataType.TAG:
            items.append(("tags", RunTag(record.tag, str(record.value))))
        elif t is AnalyticsDataType.TAGS:
            items += [("tags", RunTag(str(k), str(v))) for k, v in record.value.items()]
        elif t is AnalyticsDataType.TEXT:
            path = record.kwargs.get("path") or f"{record.tag}.txt"
            items.append(("texts", (str(record.value), str(path))))
        else:
            self.warn_once(f"type:{t}", "MLflow receiver ignores %s records", t)
            return
        with self._lock:
            buffers = self._buffers.setdefault(site, {k: deque() for k in ("metrics", "params", "tags", "texts")})
            for kind, item in items:
                buffer = buffers[kind]
                if len(buffer) >= self.max_buffer:
                    buffer.popleft()
                    self.dropped += 1
                    self.warn_once(f"full:{site}", "%s: MLflow buffer full; dropping the oldest records", site)
                buffer.append(item)
            full = len(buffers["metrics"]) == _LIMITS["metrics"]
        if full:  # a whole batch is waiting: write it now rather than at the next tick
            self._wake.set()

    # --- writing --------------------------------------------------------------------------------

    def _loop(self) -> None:
        delay = self.buffer_flush_time
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._flush_all()
                if self._failing_since is not None:
                    log.warning(
                        "MLflow store %s reachable again after %.0f s; buffered records written",
                        self.uri,
                        time.monotonic() - self._failing_since,
                    )
                    self._failing_since = None
                delay = self.buffer_flush_time
            except Exception as exc:
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.error(
                        "MLflow store %s unreachable (%s: %s); buffering and retrying with backoff",
                        self.uri,
                        type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "",
                    )
                delay = min(max(delay * 2, 0.5), 30.0)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                assert self.ctx is not None
                location = (self.ctx.workspace / self.artifact_location).resolve().as_uri()
                self._experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=location, tags=self.experiment_tags
                )
        return self._experiment_id

    def _run_id(self, site: str) -> str:
        if site not in self._runs:
            assert self.ctx is not None
            job_id = self.ctx.job_id
            name = f"{site}-{job_id[:6]}-{self.run_name}"
            tags = {
                **{k: str(v) for k, v in self.run_tags.items()},
                "site": site,
                "job_id": job_id,
                "run_name": self.run_name,
                "mlflow.runName": name,
            }
            self._runs[site] = self.client.create_run(self._experiment(), run_name=name, tags=tags).info.run_id
        return self._runs[site]

    def _flush_all(self) -> None:
        with self._lock:
            sites = list(self._buffers)
        for site in sites:
            self._flush_site(site)

    def _take(self, buffer: deque[Any], limit: int) -> list[Any]:
        with self._lock:
            return [buffer[i] for i in range(min(limit, len(buffer)))]

    def _drop(self, buffer: deque[Any], count: int) -> None:
        with self._lock:
            for _ in range(count):
                buffer.popleft()

    def _flush_site(self, site: str) -> None:
        buffers = self._buffers[site]
        if not any(buffers.values()):
            return
        run_id = self._run_id(site)
        sent = self._params_sent.setdefault(site, {})
        while buffers["metrics"] or buffers["params"] or buffers["tags"]:
            metrics = self._take(buffers["metrics"], _LIMITS["metrics"])
            raw_params = self._take(buffers["params"], _LIMITS["params"])
            tags = self._take(buffers["tags"], _LIMITS["tags"])
            params = []
            for p in raw_params:
                if p.key in sent and sent[p.key] != p.value:
                    self.warn_once(
                        f"param:{site}:{p.key}",
                        "%s: parameter %s changed from %s to %s; MLflow keeps the first value",
                        site,
                        p.key,
                        sent[p.key],
                        p.value,
                    )
                elif p.key not in sent:
                    params.append(p)
                    sent[p.key] = p.value
            try:
                self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
            except Exception as exc:
                if not _rejected(exc):
                    for p in params:
                        sent.pop(p.key, None)
                    raise
                self.dropped += len(metrics) + len(params) + len(tags)
                self.warn_once(
                    f"rejected:{site}",
                    "%s: MLflow rejected a batch of %d records (dropped): %s",
                    site,
                    len(metrics) + len(params) + len(tags),
                    exc,
                )
            self._drop(buffers["metrics"], len(metrics))
            self._drop(buffers["params"], len(raw_params))
            self._drop(buffers["tags"], len(tags))
            self.written += len(metrics) + len(params) + len(tags)
        while buffers["texts"]:
            text, path = buffers["texts"][0]
            self.client.log_text(run_id, text, path)
            self._drop(buffers["texts"], 1)
            self.written += 1

    def _log_artifacts(self, ctx: RunContext) -> None:
        files = [ctx.workspace / name for name in _ARTIFACTS if (ctx.workspace / name).is_file()]
        config_dir = ctx.app_dir / "config"
        configs = sorted(p for p in config_dir.glob("*") if p.is_file()) if config_dir.is_dir() else []
        if not files and not configs:
            return
        run_id = self._run_id("server") if ctx.site == "server" else self._run_id(ctx.site)
        for path in files:
            self.client.log_artifact(
                run_id,
                str(path),
                artifact_path=str(Path(path).parent.relative_to(ctx.workspace))
                if Path(path).parent != ctx.workspace
                else None,
            )
        for path in configs:
            self.client.log_artifact(run_id, str(path), artifact_path="config")
