"""The in-process transport of the simulator: direct calls, with every message through the wire codec.

Encoding each task and result on the way (as gRPC will) keeps the simulator honest: a payload that
could not cross a real network fails here too, and clients never share arrays with the server.
"""

from __future__ import annotations

import json
from typing import Any

from flruntime.runtime.communicator import Communicator, Shutdown
from flruntime.runtime.messages import Task, TaskResult
from flruntime.transport.codec import decode, encode


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
        """Submit a result (encoded and decoded when ``serialize``)."""
        if self.serialize:
            wire = encode(result)
            self.bytes_up += len(wire)
            decoded = decode(wire)
            assert isinstance(decoded, TaskResult)
            result = decoded
        return self.comm.submit(result)
