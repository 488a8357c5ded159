"""The messages an executor and a launched training script exchange over a pipe.

Tasks and results are :mod:`flruntime.transport.codec` bytes (a JSON header and raw arrays, never pickle);
the other topics carry a task id or a small JSON object. Heartbeats are the endpoint's own (``_hb``).
"""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """Pipe topics of the Client API."""

    HELLO = "hello"  # script → client: the script called flare.init(); JSON {"pid", "site"}
    TASK = "task"  # client → script: a codec Task
    GOT = "got"  # script → client: the id of a task taken off the pipe
    RESULT = "result"  # script → client: a codec TaskResult
    ACK = "ack"  # client → script: the id of a task whose result arrived
    STOP = "stop"  # client → script: the job ended; receive() returns None
    BYE = "bye"  # script → client: the script ended its session
    LOG = "log"  # script → client: an analytics record, JSON (flare.log and the tracking writers)
