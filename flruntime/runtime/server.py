"""The server engine: runs a job's workflows in order against a communicator."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flruntime.graph.builder import SiteGraph
from flruntime.graph.locate import job_imports
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import ServerContext, TaskContext
from flruntime.runtime.lifecycle import start_components, stop_components
from flruntime.runtime.log_context import as_site
from flruntime.runtime.messages import ReturnCode, Task, TaskResult

log = logging.getLogger(__name__)


class RunStatus(StrEnum):
    """How a job ended (NVFlare's status names)."""

    RUNNING = "RUNNING"
    COMPLETED = "FINISHED:COMPLETED"
    ABORTED = "FINISHED:ABORTED"
    EXECUTION_EXCEPTION = "FINISHED:EXECUTION_EXCEPTION"


@dataclass
class ServerOutcome:
    """What the server engine reports when a run ends."""

    status: RunStatus
    seconds: float
    error: str = ""
    workflows_run: list[str] = field(default_factory=list)


class ServerEngine:
    """Runs the workflows of one job on the server."""

    def __init__(self, graph: SiteGraph, ctx: ServerContext, comm: Communicator) -> None:
        self.graph = graph
        self.ctx = ctx
        self.comm = comm
        ctx.comm = comm
        ctx.components = graph.components
        if graph.task_data_filters:
            comm.data_filter = self._filter_task
        if graph.task_result_filters:
            comm.result_filter = self._filter_result

    def _filter_task(self, task: Task) -> Task:
        """Run the server's data filters (direction ``out``) over a task's data before it is queued."""
        ctx = TaskContext(self.ctx, task.name, task.task_id, dict(task.headers))
        data = task.data
        for f in self.graph.filters_for(self.graph.task_data_filters, task.name, "out"):
            data = f.process(data, ctx)
        return Task(task.task_id, task.name, data, task.headers)

    def _filter_result(self, result: TaskResult) -> TaskResult:
        """Run the server's result filters (direction ``in``) over a result; a failure becomes its return code."""
        if result.rc != ReturnCode.OK or result.data is None:
            return result
        ctx = TaskContext(self.ctx, result.name, result.task_id, dict(result.headers))
        data = result.data
        try:
            for f in self.graph.filters_for(self.graph.task_result_filters, result.name, "in"):
                data = f.process(data, ctx)
        except Exception as exc:
            log.error("server: result filter failed on the result of '%s' from %s: %s", result.name, result.site, exc)
            return TaskResult(
                result.task_id,
                result.name,
                result.site,
                ReturnCode.TASK_RESULT_FILTER_ERROR,
                None,
                result.headers,
                f"{type(exc).__name__}: {exc}",
            )
        return TaskResult(result.task_id, result.name, result.site, result.rc, data, result.headers, result.error)

    def _on_client_event(self, site: str, name: str, data: dict[str, Any]) -> None:
        self.ctx.bus.fire(name, origin=site, **data)

    def abort(self) -> None:
        """Ask the running workflow to stop; clients are told to stop when it has."""
        self.ctx.abort.set()
        self.comm.wake()

    def run(self) -> ServerOutcome:
        """Start the components, run every workflow in order, stop the components and the clients."""
        start = time.monotonic()
        outcome = ServerOutcome(RunStatus.RUNNING, 0.0)
        with as_site(self.ctx.site), job_imports(self.graph.custom_dir):
            try:
                start_components(self.graph.objects(), self.ctx)
                self.comm.set_event_sink(self._on_client_event)
                for wid, workflow in self.graph.workflows:
                    if self.ctx.abort.is_set():
                        break
                    log.info("server: workflow '%s' started", wid)
                    workflow.run(self.ctx)
                    outcome.workflows_run.append(wid)
                    log.info("server: workflow '%s' finished", wid)
                outcome.status = RunStatus.ABORTED if self.ctx.abort.is_set() else RunStatus.COMPLETED
                if self.ctx.failure:
                    outcome.status, outcome.error = RunStatus.EXECUTION_EXCEPTION, self.ctx.failure
            except Exception as exc:
                log.exception("server: the job failed")
                outcome.status = RunStatus.EXECUTION_EXCEPTION
                outcome.error = f"{type(exc).__name__}: {exc}"
                self.ctx.abort.set()
            finally:
                self.comm.set_event_sink(None)
                try:
                    stop_components(self.graph.objects(), self.ctx)
                finally:
                    self.comm.shutdown()
        outcome.seconds = time.monotonic() - start
        return outcome
