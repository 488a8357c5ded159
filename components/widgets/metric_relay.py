"""The metrics path of launched scripts and in-process senders: MetricsSender → pipe → MetricRelay → event.

NVFlare 2.4–2.8's classes of the same names and arguments: a ``MetricRelay`` reads analytics records
from its pipe and fires them on the site (as ``event_type``, or to the server when ``fed_event``);
a ``MetricsSender`` writes records into its pipe (the MONAI stats handler uses one); an
``ExternalConfigurator`` writes the relay's pipe into ``client_api_config.json`` so a launched script's
``flare.log`` / tracking writers use it.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from flruntime.client.config import CONFIG_FILE_NAME, METRICS_EXCHANGE, config_path, update_config_file
from flruntime.client.protocol import Topic
from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.pipes.endpoint import PipeEndpoint
from flruntime.roles import Pipe
from flruntime.runtime.context import RunContext
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName
from flruntime.tracking.relay import forward_log

log = logging.getLogger(__name__)


class _PipeComponent:
    """Holds one side of a pipe with its endpoint (opened at setup, closed at teardown)."""

    pipe_id: str
    read_interval: float
    heartbeat_interval: float
    pipe_channel_name: str

    def __init__(self) -> None:
        self._pipe: Pipe | None = None
        self._endpoint: PipeEndpoint | None = None

    def _open(self, ctx: RunContext, handlers: dict[str, Any] | None = None) -> None:
        pipe = ctx.component(self.pipe_id, Pipe)
        pipe.open(self.pipe_channel_name)
        self._pipe = pipe
        self._endpoint = PipeEndpoint(
            pipe,
            site=ctx.site,
            read_interval=self.read_interval,
            heartbeat_interval=self.heartbeat_interval,
            handlers=handlers,
        )
        self._endpoint.start()

    def teardown(self, ctx: RunContext) -> None:
        """Close the endpoint and the pipe."""
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        if self._pipe is not None:
            self._pipe.close()


class MetricRelay(_PipeComponent):
    """Fires every analytics record that arrives on its pipe as an event on the site.

    Args:
        pipe_id: the pipe (its PASSIVE side; the script or sender holds the ACTIVE side).
        read_interval: seconds one pipe read waits.
        heartbeat_interval: seconds between heartbeats.
        heartbeat_timeout: exported to the peer: seconds of silence after which it gives up.
        pipe_channel_name: the pipe channel of metrics.
        event_type: the event fired for each record.
        fed_event: True: send the record to the server (as ``fed.<event_type>``); False: fire it locally.
    """

    def __init__(
        self,
        pipe_id: Annotated[str, Ref(Pipe)],
        read_interval: float = 0.1,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 60.0,
        pipe_channel_name: str = "metric",
        event_type: str = EventType.ANALYTIX_LOG_STATS,
        fed_event: bool = True,
    ) -> None:
        self.pipe_id = pipe_id
        self.read_interval = read_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.pipe_channel_name = pipe_channel_name
        self.event_type = str(event_type)
        self.fed_event = fed_event
        self.relayed = 0
        super().__init__()

    def setup(self, ctx: RunContext) -> None:
        """Open the pipe and start relaying."""

        def relay(payload: bytes) -> None:
            if forward_log(payload, ctx, event=self.event_type, fed=self.fed_event):
                self.relayed += 1

        self._open(ctx, {Topic.LOG.value: relay})

    def client_api_config(self) -> dict[str, Any]:
        """The ``METRICS_EXCHANGE`` section a launched script needs to reach this relay."""
        if self._pipe is None:
            raise RuntimeError("the MetricRelay has not started")
        return {
            METRICS_EXCHANGE: {
                "pipe": self._pipe.export(),
                "pipe_channel_name": self.pipe_channel_name,
                "HEARTBEAT_TIMEOUT": self.heartbeat_timeout,
            }
        }


class ExternalConfigurator:
    """Writes the Client API sections of the named components into the site's ``client_api_config.json``.

    Args:
        component_ids: components with a ``client_api_config()`` method (e.g. a MetricRelay).
        config_file_name: the file's name (in the site workspace's ``config/`` folder).
    """

    def __init__(self, component_ids: Annotated[list[str], Ref()], config_file_name: str = CONFIG_FILE_NAME) -> None:
        self.component_ids = list(component_ids)
        self.config_file_name = config_file_name

    def setup(self, ctx: RunContext) -> None:
        """Merge every component's section into the config file."""
        sections: dict[str, Any] = {}
        for cid in self.component_ids:
            export = getattr(ctx.components.get(cid), "client_api_config", None)
            if not callable(export):
                log.error("%s: component '%s' has nothing to export to %s", ctx.site, cid, self.config_file_name)
                continue
            sections.update(export())
        if sections:
            update_config_file(config_path(ctx.workspace, self.config_file_name), sections)


class MetricsSender(_PipeComponent):
    """Sends analytics records into its pipe (to a MetricRelay holding the other side).

    Args:
        pipe_id: the pipe (its ACTIVE side).
        read_interval: seconds one pipe read waits.
        heartbeat_interval: seconds between heartbeats.
        heartbeat_timeout: accepted for NVFlare compatibility.
        pipe_channel_name: the pipe channel of metrics.
    """

    def __init__(
        self,
        pipe_id: Annotated[str, Ref(Pipe)] = "_memory_pipe",
        read_interval: float = 0.1,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 30.0,
        pipe_channel_name: str = "metric",
    ) -> None:
        self.pipe_id = pipe_id
        self.read_interval = read_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.pipe_channel_name = pipe_channel_name
        self._pipe: Pipe | None = None
        self._endpoint: PipeEndpoint | None = None

    def setup(self, ctx: RunContext) -> None:
        """Open the pipe."""
        pipe = ctx.component(self.pipe_id, Pipe)
        pipe.open(self.pipe_channel_name)
        self._pipe = pipe
        self._endpoint = PipeEndpoint(
            pipe, site=ctx.site, read_interval=self.read_interval, heartbeat_interval=self.heartbeat_interval
        )
        self._endpoint.start()

    def add(
        self,
        tag: str,
        value: Any,
        data_type: AnalyticsDataType | str,
        global_step: int | None = None,
        writer: LogWriterName | str = LogWriterName.TORCH_TB,
        **kwargs: Any,
    ) -> None:
        """Send one record (dropped with a warning when the pipe is not open)."""
        record = AnalyticsRecord.make(
            tag, value, AnalyticsDataType(data_type), LogWriterName(writer), global_step, **kwargs
        )
        if self._endpoint is None or not self._endpoint.send(Topic.LOG, json.dumps(record.to_dict()).encode()):
            log.warning("MetricsSender: could not send '%s' (pipe not open)", tag)
