"""The in-process Client API: an executor and a training script meet in one :class:`InProcessChannel`.

The executor posts a task and waits for its result; the script, running in a thread of the same process,
takes the task with ``flare.receive()`` and hands the result back with ``flare.send()``. Nothing is
serialised between them (the engine's transport does that on the way to the server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flruntime.client.base import ClientAPI, Incoming
from flruntime.client.config import ClientConfig
from flruntime.runtime import progress
from flruntime.runtime.messages import ModelMessage
from flruntime.tracking.record import AnalyticsRecord

log = logging.getLogger(__name__)

#: How often a waiting ``receive`` looks at the abort signal.
_ABORT_POLL = 0.2


class InProcessChannel:
    """Tasks from an executor to a script thread and results back.

    Args:
        abort: when set (the job is aborted), a waiting ``receive`` returns None.
    """

    def __init__(self, abort: threading.Event | None = None) -> None:
        self.abort = abort
        self._cond = threading.Condition()
        self._task: Incoming | None = None
        self._results: dict[str, ModelMessage] = {}
        self._withdrawn: set[str] = set()
        self._stopped = False

    # --- executor side --------------------------------------------------------------------------------

    def post(self, task: Incoming) -> None:
        """Offer a task to the script."""
        with self._cond:
            self._task = task
            self._cond.notify_all()

    def wait_result(self, task_id: str, timeout: float) -> ModelMessage | None:
        """Return the result of ``task_id`` once the script sent it, or None after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: task_id in self._results, timeout)
            return self._results.pop(task_id, None)

    def withdraw(self, task_id: str) -> None:
        """Give up on a task: drop it if the script has not taken it, and drop its result if one comes."""
        with self._cond:
            if self._task is not None and self._task.task_id == task_id:
                self._task = None
            self._results.pop(task_id, None)
            self._withdrawn.add(task_id)

    def stop(self) -> None:
        """End the job for the script: its ``receive`` returns None."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the job was aborted."""
        return self._stopped or (self.abort is not None and self.abort.is_set())

    # --- script side ----------------------------------------------------------------------------------

    def take(self, timeout: float | None) -> Incoming | None:
        """Return the next task; None when the job ended (see :attr:`stopped`) or after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        progress.touch()
        with self._cond:
            while True:
                if self._task is not None:
                    task, self._task = self._task, None
                    return task
                if self.stopped:
                    return None
                wait = _ABORT_POLL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                self._cond.wait(wait)

    def put_result(self, task_id: str, result: ModelMessage) -> None:
        """Hand the result of ``task_id`` to the waiting executor (dropped if it gave up on the task)."""
        progress.touch()
        with self._cond:
            if task_id in self._withdrawn:
                log.warning("dropping a result sent after its task was given up (timed out or aborted)")
                return
            self._results[task_id] = result
            self._cond.notify_all()


class InProcessClientAPI(ClientAPI):
    """The session of a script running in a thread of the client's process.

    Args:
        config: task names, formats and transfer type.
        channel: the channel shared with the executor.
        on_init: called once, when the script calls ``flare.init()`` (or first uses the API).
    """

    def __init__(
        self,
        config: ClientConfig,
        channel: InProcessChannel,
        on_init: Callable[[], None] | None = None,
        on_log: Callable[[AnalyticsRecord], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.channel = channel
        self._on_init = on_init
        self._on_log = on_log

    def _log(self, record: AnalyticsRecord) -> None:
        progress.touch()
        if self._on_log is None:
            raise RuntimeError("flare.log(): this Client API session has no metrics path")
        self._on_log(record)

    def _start(self) -> None:
        if self._on_init is not None:
            self._on_init()

    def _fetch(self, timeout: float | None) -> Incoming | None:
        task = self.channel.take(timeout)
        if task is None and self.channel.stopped:
            self._ended = True
        return task

    def _reply(self, task_id: str, task_name: str, result: ModelMessage) -> None:
        self.channel.put_result(task_id, result)
