"""The in-process transport of the simulator: direct calls, with every message through the wire codec.

Encoding each task and result on the way (as gRPC will) keeps the simulator honest: a payload that
could not cross a real network fails here too, and clients never share arrays with the server. Results take
the federation's path: chunked (:func:`~flruntime.transport.streaming.iter_message`) and received with
:func:`~flruntime.transport.streaming.receive`, so they are folded into the aggregate as they arrive when the
job's workflow and aggregator can take them so.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from flruntime.runtime.communicator import Communicator, Shutdown
from flruntime.runtime.messages import ModelMessage, Task, TaskResult
from flruntime.runtime.streamed import ResultSink
from flruntime.transport.codec import ArraySpec, decode, encode
from flruntime.transport.streaming import iter_message, read_control, receive


class InProcessConnection:
    """A client's connection to a communicator in the same process."""

    def __init__(self, comm: Communicator, serialize: bool = True) -> None:
        self.comm = comm
        self.serialize = serialize
        self.bytes_down = 0
        self.bytes_up = 0

    def register(self, site: str) -> None:
        """Register the client."""
        self.comm.register(site)

    def pull(self, site: str, timeout: float) -> Task | Shutdown | None:
        """Pull the next task (encoded and decoded when ``serialize``)."""
        task = self.comm.pull(site, timeout)
        if not isinstance(task, Task) or not self.serialize:
            return task
        wire = encode(task)
        self.bytes_down += len(wire)
        decoded = decode(wire)
        assert isinstance(decoded, Task)
        return decoded

    def send_event(self, site: str, name: str, data: dict[str, Any]) -> None:
        """Send a federated event; its data crosses as JSON, as it would over the network."""
        if self.serialize:
            data = json.loads(json.dumps(data))
        self.comm.deliver_event(site, name, data)

    def submit(self, result: TaskResult) -> bool:
        """Submit a result (streamed as the federation does when ``serialize``)."""
        if not self.serialize:
            return self.comm.submit(result)
        stream = iter_message(result)
        head = next(stream)
        self.bytes_up += int(read_control(head)["size"])
        got = receive(itertools.chain([head], stream), self._open_sink)
        if got.accepted is not None:
            return got.accepted
        assert isinstance(got.message, TaskResult)
        return self.comm.submit(got.message)

    def _open_sink(
        self, head: dict[str, Any], message: ModelMessage | Task | TaskResult, arrays: list[ArraySpec]
    ) -> ResultSink | None:
        assert isinstance(message, TaskResult)
        return self.comm.open_stream(message, arrays)
