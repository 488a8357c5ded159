"""The Client API of a training script launched as a separate process: tasks and results cross a pipe.

``flare.init()`` reads ``client_api_config.json`` (path from ``FLRUNTIME_CLIENT_CONFIG``, else
``config/client_api_config.json`` under the working folder), builds the ACTIVE side of the executor's pipe,
starts heartbeats and says hello. ``receive`` returns None when the executor says the job ended or when it
has not been heard from for the config's heartbeat timeout (so an orphaned script ends by itself).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from pathlib import Path

from flruntime.client.base import ClientAPI, Incoming
from flruntime.client.config import (
    CONFIG_FILE_NAME,
    ENV_API,
    ENV_API_NVFLARE,
    ENV_CONFIG,
    EX_PROCESS,
    EX_PROCESS_NVFLARE,
    METRICS_EXCHANGE,
    ClientConfig,
    read_config_file,
)
from flruntime.client.protocol import Topic
from flruntime.pipes.endpoint import PipeEndpoint
from flruntime.pipes.spec import pipe_from_spec
from flruntime.runtime.messages import ModelMessage, ReturnCode, Task, TaskResult
from flruntime.tracking.record import AnalyticsRecord
from flruntime.transport.codec import CodecError, decode, encode

log = logging.getLogger(__name__)


def launched() -> bool:
    """True when this process was launched by an flruntime (or NVFlare-style) launcher executor."""
    return os.environ.get(ENV_API) == EX_PROCESS or os.environ.get(ENV_API_NVFLARE) == EX_PROCESS_NVFLARE


def default_config_path() -> Path:
    """``$FLRUNTIME_CLIENT_CONFIG``, else ``config/client_api_config.json`` under the working folder."""
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else Path.cwd() / "config" / CONFIG_FILE_NAME


class ExProcessClientAPI(ClientAPI):
    """The session of a launched script.

    Args:
        config: the config the executor wrote (with the pipe to use).
        source: where the config came from (for messages).
    """

    def __init__(self, config: ClientConfig, source: str = "") -> None:
        super().__init__(config)
        self.source = source or "client_api_config.json"
        self._endpoint: PipeEndpoint | None = None
        self._acks: dict[str, threading.Event] = {}
        self._metrics: PipeEndpoint | None = None
        self._metrics_missing = False

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> ExProcessClientAPI:
        """Read the config at ``path`` (default: :func:`default_config_path`).

        Raises:
            FileNotFoundError: with a hint, when there is no config file.
        """
        where = Path(path) if path is not None else default_config_path()
        if not where.is_file():
            raise FileNotFoundError(
                f"flare.init(): no Client API config at {where} (the launcher executor writes it; "
                f"set {ENV_CONFIG} to its path when starting the script yourself)"
            )
        return cls(read_config_file(where), str(where))

    # --- connection -------------------------------------------------------------------------------------

    def _start(self) -> None:
        cfg = self.config
        if not cfg.pipe:
            raise RuntimeError(f"{self.source}: TASK_EXCHANGE has no 'pipe' to reach the flruntime client")
        pipe = pipe_from_spec(cfg.pipe)
        pipe.open(cfg.pipe_channel_name)
        endpoint = PipeEndpoint(
            pipe,
            read_interval=cfg.read_interval,
            heartbeat_interval=cfg.heartbeat_interval,
            handlers={Topic.ACK.value: self._on_ack},
        )
        endpoint.start()
        self._endpoint = endpoint
        hello = json.dumps({"pid": os.getpid(), "site": cfg.site_name}).encode()
        if not endpoint.send(Topic.HELLO, hello, timeout=cfg.peer_read_timeout):
            log.warning("flare.init(): could not say hello to the flruntime client")
        atexit.register(self.shutdown)

    def _stop(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.close()
            metrics.pipe.close()
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is None:
            return
        atexit.unregister(self.shutdown)
        endpoint.send(Topic.BYE)
        endpoint.close()
        endpoint.pipe.close()

    def _peer_lost(self, endpoint: PipeEndpoint) -> str:
        if endpoint.peer_closed:
            return "the connection to the flruntime client was closed"
        if endpoint.silence() > self.config.heartbeat_timeout:
            return f"no heartbeat from the flruntime client for {self.config.heartbeat_timeout:g} s"
        return ""

    # --- tasks and results ------------------------------------------------------------------------------

    def _fetch(self, timeout: float | None) -> Incoming | None:
        endpoint = self._endpoint
        if endpoint is None:
            self._ended = True
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.5 if deadline is None else min(0.5, max(deadline - time.monotonic(), 0.0))
            message = endpoint.get(wait)
            if message is None:
                lost = self._peer_lost(endpoint)
                if lost:
                    log.error("flare.receive(): %s; ending", lost)
                    self._ended = True
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            topic, payload = message
            if topic == Topic.STOP:
                self._ended = True
                return None
            if topic != Topic.TASK:
                continue
            try:
                task = decode(payload)
            except CodecError as exc:
                log.error("flare.receive(): dropping a task that cannot be decoded: %s", exc)
                continue
            if not isinstance(task, Task):
                continue
            endpoint.send(Topic.GOT, task.task_id.encode())
            return Incoming(task.task_id, task.name, task.data)

    def _reply(self, task_id: str, task_name: str, result: ModelMessage) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            raise RuntimeError("flare.send(): the Client API session has ended")
        acked = self._acks[task_id] = threading.Event()
        payload = encode(TaskResult(task_id, task_name, self.config.site_name, ReturnCode.OK, result))
        timeout = self.config.peer_read_timeout
        if not endpoint.send(Topic.RESULT, payload, timeout=timeout):
            raise RuntimeError(f"flare.send(): could not send the result of task '{task_name}' to the client")
        deadline = time.monotonic() + timeout
        while not acked.wait(0.2):
            lost = self._peer_lost(endpoint)
            if lost or time.monotonic() > deadline:
                self._acks.pop(task_id, None)
                raise RuntimeError(
                    f"flare.send(): the result of task '{task_name}' was not acknowledged "
                    f"({lost or f'no answer within {timeout:g} s'})"
                )

    def _log(self, record: AnalyticsRecord) -> None:
        """Send a record over the metrics pipe when one is configured, else over the task pipe."""
        endpoint = self._metrics_endpoint() or self._endpoint
        if endpoint is None:
            raise RuntimeError("flare.log(): the Client API session has ended")
        payload = json.dumps(record.to_dict()).encode("utf-8")
        if not endpoint.send(Topic.LOG, payload, timeout=self.config.peer_read_timeout):
            log.warning("flare.log(): could not send '%s' to the flruntime client", record.tag)

    def _metrics_endpoint(self) -> PipeEndpoint | None:
        """The endpoint of the METRICS_EXCHANGE pipe a MetricRelay exported (opened on first use)."""
        if self._metrics is not None or self._metrics_missing:
            return self._metrics
        section = self.config.extra.get(METRICS_EXCHANGE) or {}
        spec = section.get("pipe") if isinstance(section, dict) else None
        if not spec:
            self._metrics_missing = True
            return None
        pipe = pipe_from_spec(spec)
        pipe.open(str(section.get("pipe_channel_name", "metric")))
        self._metrics = PipeEndpoint(
            pipe, read_interval=self.config.read_interval, heartbeat_interval=self.config.heartbeat_interval
        )
        self._metrics.start()
        return self._metrics

    def _on_ack(self, payload: bytes) -> None:
        event = self._acks.pop(payload.decode("utf-8", "replace"), None)
        if event is not None:
            event.set()
