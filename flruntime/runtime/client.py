"""The client engine: pulls tasks, runs them through filters and executors, returns results."""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any, Protocol

from flruntime.events.types import EventType
from flruntime.graph.builder import SiteGraph
from flruntime.graph.locate import job_imports
from flruntime.runtime.communicator import Shutdown
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.lifecycle import start_components, stop_components
from flruntime.runtime.log_context import as_site
from flruntime.runtime.messages import MetaKey, ModelMessage, ReturnCode, Task, TaskError, TaskResult

log = logging.getLogger(__name__)


class ServerConnection(Protocol):
    """What a client engine needs from a transport."""

    def register(self, site: str) -> None:
        """Announce this client to the server."""

    def pull(self, site: str, timeout: float) -> Task | Shutdown | None:
        """Return the next task, None if none came within ``timeout``, or SHUTDOWN."""

    def submit(self, result: TaskResult) -> bool:
        """Send a result; False when the server dropped it."""

    def send_event(self, site: str, name: str, data: dict[str, Any]) -> None:
        """Send a federated event (JSON-compatible data) to the server."""


class ClientEngine:
    """Runs one client site of a job."""

    def __init__(
        self,
        graph: SiteGraph,
        ctx: RunContext,
        conn: ServerConnection,
        task_slots: threading.Semaphore | None = None,
        poll_timeout: float = 1.0,
    ) -> None:
        self.graph = graph
        self.ctx = ctx
        self.conn = conn
        self.slots = task_slots
        self.poll_timeout = poll_timeout
        self.tasks_done = 0
        self.setup_error = ""
        ctx.components = graph.components
        ctx.fed_event_sink = lambda name, data: conn.send_event(ctx.site, name, data)

    def run(self) -> None:
        """Serve tasks until the server says the job ended (or the job is aborted)."""
        with as_site(self.ctx.site), job_imports(self.graph.custom_dir):
            try:
                start_components(self.graph.objects(), self.ctx)
            except Exception as exc:  # the site stays connected and fails every task with the reason
                self.setup_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: starting the site's components failed", self.ctx.site)
            try:
                self.conn.register(self.ctx.site)
                while not self.ctx.abort.is_set():
                    task = self.conn.pull(self.ctx.site, self.poll_timeout)
                    if isinstance(task, Shutdown):
                        break
                    if task is None:
                        continue
                    if self.slots is not None:
                        with self.slots:
                            result = self.run_task(task)
                    else:
                        result = self.run_task(task)
                    self.conn.submit(result)
                    self.tasks_done += 1
            finally:
                stop_components(self.graph.objects(), self.ctx)

    def run_task(self, task: Task) -> TaskResult:
        """Run one task: data filters, the executor, result filters. Errors become return codes."""
        ctx = TaskContext(self.ctx, task.name, task.task_id, dict(task.headers))
        reply = TaskResult(task.task_id, task.name, self.ctx.site, headers=dict(task.headers))
        if self.setup_error:
            reply.rc = ReturnCode.EXECUTION_EXCEPTION
            reply.error = f"the site could not start: {self.setup_error}"
            return reply
        executor = self.graph.executor_for(task.name)
        if executor is None:
            reply.rc = ReturnCode.TASK_UNKNOWN
            reply.error = f"no executor for task '{task.name}'"
            log.error("%s: %s", self.ctx.site, reply.error)
            return reply
        data = task.data
        try:
            for f in self.graph.filters_for(self.graph.task_data_filters, task.name, "in"):
                data = f.process(data, ctx)
        except Exception as exc:
            return self._fail(reply, ReturnCode.TASK_DATA_FILTER_ERROR, exc)
        try:
            self.ctx.bus.fire(EventType.BEFORE_TASK_EXECUTION, task=task.name)
            result: ModelMessage = executor.execute(task.name, data, ctx)
            self.ctx.bus.fire(EventType.AFTER_TASK_EXECUTION, task=task.name)
        except TaskError as exc:  # the executor chose the return code: one line, no traceback
            reply.rc, reply.error = exc.rc, str(exc)
            log.error("%s: task '%s' failed (%s): %s", self.ctx.site, reply.name, exc.rc, exc)
            return reply
        except Exception as exc:
            rc = ReturnCode.TASK_ABORTED if self.ctx.abort.is_set() else ReturnCode.EXECUTION_EXCEPTION
            return self._fail(reply, rc, exc)
        if result is None:
            reply.rc = ReturnCode.EMPTY_RESULT
            return reply
        try:
            for f in self.graph.filters_for(self.graph.task_result_filters, task.name, "out"):
                result = f.process(result, ctx)
        except Exception as exc:
            return self._fail(reply, ReturnCode.TASK_RESULT_FILTER_ERROR, exc)
        result.meta.setdefault(MetaKey.SITE_NAME, self.ctx.site)
        reply.data = result
        return reply

    def _fail(self, reply: TaskResult, rc: ReturnCode, exc: BaseException) -> TaskResult:
        reply.rc = rc
        reply.error = f"{type(exc).__name__}: {exc}"
        log.error(
            "%s: task '%s' failed (%s): %s\n%s",
            self.ctx.site,
            reply.name,
            rc,
            reply.error,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        return reply
