"""Pipes: the channel between a client engine and a training script, in another process or the same one."""

from flruntime.pipes.base import Mode
from flruntime.pipes.cell import CellPipe
from flruntime.pipes.endpoint import HEARTBEAT, PipeEndpoint
from flruntime.pipes.file import FilePipe
from flruntime.pipes.memory import MemoryPipe
from flruntime.pipes.spec import pipe_from_spec
from flruntime.pipes.tcp import SocketPipe

__all__ = ["HEARTBEAT", "CellPipe", "FilePipe", "MemoryPipe", "Mode", "PipeEndpoint", "SocketPipe", "pipe_from_spec"]
