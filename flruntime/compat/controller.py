"""NVFlare's server-side ``Controller`` API (``nvflare.apis.impl.controller``, ``nvflare.apis.controller_spec``).

A user's workflow subclasses :class:`Controller` and implements ``start_controller``, ``control_flow`` and
``stop_controller``; it sends :class:`Task` objects with ``broadcast_and_wait``, ``send_and_wait`` and
``relay_and_wait`` (or their non-blocking forms) and reads each :class:`ClientTask`'s ``result``. flruntime's
server engine runs it through :class:`flruntime.compat.adapters.ControllerWrapper`; tasks go to the clients
through flruntime's communicator, so their data crosses the wire as the codec's arrays and JSON.

Differences from NVFlare: the ``result_received_cb`` of a broadcast runs once the broadcast's wait ended (in
the order the results came), not while it waits; ``send`` gives the task to the first target, then the next
when one returns no result within ``task_assignment_timeout`` (NVFlare: whichever target asks first).
"""

from __future__ import annotations

import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flruntime.compat.component import FLComponent, Signal
from flruntime.compat.constants import ReservedHeaderKey, ReservedKey, ReturnCode
from flruntime.compat.engine import Client
from flruntime.compat.fl_context import FLContext
from flruntime.compat.shareable import Shareable, make_reply

if TYPE_CHECKING:
    from flruntime.runtime.context import ServerContext
    from flruntime.runtime.messages import TaskResult

log = logging.getLogger(__name__)


class TaskCompletionStatus:
    """How a task ended."""

    OK = "ok"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    IGNORED = "ignored"
    CLIENT_DISCONNECTED = "client_disconnected"
    ERROR = "error"


class SendOrder:
    """The order ``send`` and ``relay`` go through their targets."""

    SEQUENTIAL = "sequential"
    ANY = "any"


class ClientTask:
    """One client's part of a task: its result once it came."""

    def __init__(self, client: Client, task: Task) -> None:
        self.client = client
        self.task = task
        self.id = uuid.uuid4().hex
        self.result: Shareable | None = None
        self.props: dict[str, Any] = {}


class Task:
    """A task a controller sends to clients.

    Args:
        name: the task name (the clients' executors are chosen by it).
        data: the task data.
        props: properties of the task (for the controller's own use).
        timeout: seconds to wait for results (0: no limit).
        before_task_sent_cb: accepted; flruntime sends without asking.
        after_task_sent_cb: accepted; flruntime sends without telling.
        result_received_cb: called as ``cb(client_task=..., fl_ctx=...)`` for each result.
        task_done_cb: called as ``cb(task=..., fl_ctx=...)`` when the task ended.
    """

    def __init__(
        self,
        name: str,
        data: Shareable,
        props: dict[str, Any] | None = None,
        timeout: int | float = 0,
        before_task_sent_cb: Callable[..., Any] | None = None,
        after_task_sent_cb: Callable[..., Any] | None = None,
        result_received_cb: Callable[..., Any] | None = None,
        task_done_cb: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a task's name must be a non-empty string, got {name!r}")
        if not isinstance(data, Shareable):
            raise TypeError(f"task '{name}': data must be a Shareable, got {type(data).__name__}")
        if timeout < 0:
            raise ValueError(f"task '{name}': timeout must be >= 0, got {timeout}")
        self.name = name
        self.data = data
        self.props = dict(props or {})
        self.timeout = timeout
        self.before_task_sent_cb = before_task_sent_cb
        self.after_task_sent_cb = after_task_sent_cb
        self.result_received_cb = result_received_cb
        self.task_done_cb = task_done_cb
        self.client_tasks: list[ClientTask] = []
        self.last_client_task_map: dict[str, ClientTask] = {}
        self.completion_status: str | None = None
        self.cancelled = threading.Event()

    def set_prop(self, key: str, value: Any) -> None:
        """Set a property."""
        self.props[key] = value

    def get_prop(self, key: str, default: Any = None) -> Any:
        """A property."""
        return self.props.get(key, default)


def _task_headers(data: Shareable) -> dict[str, Any]:
    """The headers of task data that travel with the task (JSON values, not the framework's own)."""
    skip = {ReservedHeaderKey.RC, ReservedHeaderKey.PEER_PROPS, ReservedHeaderKey.REPLY_IS_LATE}
    headers = data.get(ReservedHeaderKey.HEADERS) or {}
    return {k: v for k, v in headers.items() if k not in skip and isinstance(v, (str, int, float, bool, type(None)))}


class Controller(FLComponent, ABC):
    """Base of a server workflow written against NVFlare's controller API.

    Args:
        task_check_period: accepted for compatibility (flruntime's communicator wakes on events).
    """

    def __init__(self, task_check_period: float = 0.2) -> None:
        super().__init__()
        self._task_check_period = task_check_period
        self._flr_ctx: ServerContext | None = None
        self._threads: list[threading.Thread] = []
        self._standing_lock = threading.Lock()
        self._tasks: list[Task] = []

    # --- what a subclass implements ------------------------------------------------------------------

    @abstractmethod
    def start_controller(self, fl_ctx: FLContext) -> None:
        """Prepare (look up components, load the model)."""

    @abstractmethod
    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        """Run the workflow: send tasks, use their results."""

    @abstractmethod
    def stop_controller(self, fl_ctx: FLContext) -> None:
        """Clean up."""

    def process_result_of_unknown_task(
        self, client: Client, task_name: str, client_task_id: str, result: Shareable, fl_ctx: FLContext
    ) -> None:
        """A result for a task this controller no longer waits for (the default logs it)."""
        self.log_warning(fl_ctx, f"dropped a late result of task '{task_name}' from {client.name}")

    # --- sending tasks -----------------------------------------------------------------------------------

    def _ctx(self) -> ServerContext:
        if self._flr_ctx is None:
            raise RuntimeError(f"{self._name}: tasks can only be sent while the workflow runs (in control_flow)")
        return self._flr_ctx

    def _targets(self, targets: list[Any] | None) -> list[str]:
        clients = self._ctx().communicator.clients()
        if targets is None:
            return clients
        names = [t.name if isinstance(t, Client) else str(t) for t in targets]
        unknown = [n for n in names if n not in clients]
        if unknown:
            raise ValueError(f"{self._name}: unknown targets {unknown} (the job's clients: {clients})")
        return names

    def _result(self, task: Task, site: str, result: TaskResult | None, fl_ctx: FLContext) -> ClientTask:
        from flruntime.compat.adapters import message_to_shareable

        client_task = ClientTask(Client(site), task)
        if result is None:
            client_task.result = make_reply(ReturnCode.TIMEOUT)
        elif result.rc != "OK" or result.data is None:
            client_task.result = make_reply(str(result.rc) if result.rc != "OK" else ReturnCode.EMPTY_RESULT)
            if result.error:
                client_task.result.set_header(ReservedHeaderKey.ERROR, result.error)
        else:
            client_task.result = message_to_shareable(result.data, dict(result.headers))
        client_task.result.set_peer_props({ReservedKey.IDENTITY_NAME: site, "__run_num__": fl_ctx.get_job_id()})
        task.client_tasks.append(client_task)
        task.last_client_task_map[site] = client_task
        if task.result_received_cb is not None:
            task.result_received_cb(client_task=client_task, fl_ctx=fl_ctx)
        return client_task

    def _send(
        self,
        task: Task,
        fl_ctx: FLContext,
        sites: list[str],
        min_responses: int | None,
        wait_after_min: float,
        abort_signal: Signal | None,
        timeout: float | None = None,
    ) -> dict[str, TaskResult]:
        from flruntime.compat.adapters import shareable_to_message

        ctx = self._ctx()
        with self._standing_lock:
            if task not in self._tasks:
                self._tasks.append(task)
        data = shareable_to_message(task.data, f"{self._name}: task '{task.name}' data")
        if data.current_round is None and ctx.current_round is not None:
            data.current_round = ctx.current_round
        abort = threading.Event()

        def watch() -> None:
            while not abort.wait(0.1):
                if (
                    ctx.abort.is_set()
                    or task.cancelled.is_set()
                    or (abort_signal is not None and abort_signal.triggered)
                ):
                    abort.set()

        watcher = threading.Thread(target=watch, name=f"{self._name}:watch", daemon=True)
        watcher.start()
        try:
            return ctx.communicator.broadcast_and_wait(
                task.name,
                data,
                targets=sites,
                min_responses=min_responses,
                wait_time_after_min_received=wait_after_min,
                timeout=float(task.timeout if timeout is None else timeout),
                headers=_task_headers(task.data),
                abort=abort,
            )
        finally:
            abort.set()

    def _finish(self, task: Task, fl_ctx: FLContext, status: str) -> None:
        if task.completion_status is None:
            task.completion_status = TaskCompletionStatus.CANCELLED if task.cancelled.is_set() else status
        if task.task_done_cb is not None:
            task.task_done_cb(task=task, fl_ctx=fl_ctx)

    def broadcast_and_wait(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        min_responses: int = 0,
        wait_time_after_min_received: int | float = 0,
        abort_signal: Signal | None = None,
    ) -> None:
        """Send ``task`` to ``targets`` (default: every client) and wait for the results (0: all of them)."""
        sites = self._targets(targets)
        results = self._send(task, fl_ctx, sites, min_responses or None, wait_time_after_min_received, abort_signal)
        for site in sites:
            if site in results:
                self._result(task, site, results[site], fl_ctx)
        done = len(results) >= (min_responses or len(sites))
        self._finish(task, fl_ctx, TaskCompletionStatus.OK if done else TaskCompletionStatus.TIMEOUT)

    def send_and_wait(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        send_order: str = SendOrder.SEQUENTIAL,
        task_assignment_timeout: int | float = 0,
        abort_signal: Signal | None = None,
    ) -> None:
        """Give ``task`` to one target: the first in order that returns a result."""
        for site in self._targets(targets):
            results = self._send(task, fl_ctx, [site], 1, 0.0, abort_signal, timeout=task_assignment_timeout or None)
            if site in results:
                self._result(task, site, results[site], fl_ctx)
                self._finish(task, fl_ctx, TaskCompletionStatus.OK)
                return
            if self._ctx().abort.is_set() or task.cancelled.is_set():
                break
        self._finish(task, fl_ctx, TaskCompletionStatus.TIMEOUT)

    def relay_and_wait(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        send_order: str = SendOrder.SEQUENTIAL,
        task_assignment_timeout: int | float = 0,
        task_result_timeout: int | float = 0,
        dynamic_targets: bool = True,
        abort_signal: Signal | None = None,
    ) -> None:
        """Send ``task`` to each target in turn; ``result_received_cb`` may change ``task.data`` between them."""
        for site in self._targets(targets):
            if self._ctx().abort.is_set() or task.cancelled.is_set():
                break
            limit = task_result_timeout or task.timeout
            results = self._send(task, fl_ctx, [site], 1, 0.0, abort_signal, timeout=limit)
            self._result(task, site, results.get(site), fl_ctx)
        self._finish(task, fl_ctx, TaskCompletionStatus.OK)

    def _background(self, name: str, call: Callable[[], None]) -> None:
        def run() -> None:
            try:
                call()
            except Exception:
                log.exception("%s: %s failed", self._name, name)

        thread = threading.Thread(target=run, name=f"{self._name}:{name}", daemon=True)
        with self._standing_lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def broadcast(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        min_responses: int = 0,
        wait_time_after_min_received: int | float = 0,
    ) -> None:
        """:meth:`broadcast_and_wait` without waiting."""
        self._background(
            f"broadcast-{task.name}",
            lambda: self.broadcast_and_wait(task, fl_ctx, targets, min_responses, wait_time_after_min_received),
        )

    def send(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        send_order: str = SendOrder.SEQUENTIAL,
        task_assignment_timeout: int | float = 0,
    ) -> None:
        """:meth:`send_and_wait` without waiting."""
        self._background(
            f"send-{task.name}", lambda: self.send_and_wait(task, fl_ctx, targets, send_order, task_assignment_timeout)
        )

    def relay(
        self,
        task: Task,
        fl_ctx: FLContext,
        targets: list[Any] | None = None,
        send_order: str = SendOrder.SEQUENTIAL,
        task_assignment_timeout: int | float = 0,
        task_result_timeout: int | float = 0,
        dynamic_targets: bool = True,
    ) -> None:
        """:meth:`relay_and_wait` without waiting."""
        self._background(
            f"relay-{task.name}",
            lambda: self.relay_and_wait(
                task, fl_ctx, targets, send_order, task_assignment_timeout, task_result_timeout
            ),
        )

    def get_num_standing_tasks(self) -> int:
        """Tasks sent without waiting that have not ended yet."""
        with self._standing_lock:
            return sum(t.is_alive() for t in self._threads)

    def cancel_task(
        self, task: Task, completion_status: str = TaskCompletionStatus.CANCELLED, fl_ctx: FLContext | None = None
    ) -> None:
        """Stop waiting for ``task``'s results."""
        task.completion_status = completion_status
        task.cancelled.set()

    def cancel_all_tasks(
        self, completion_status: str = TaskCompletionStatus.CANCELLED, fl_ctx: FLContext | None = None
    ) -> None:
        """Stop waiting for every task (the run ends them too)."""
        ctx = self._flr_ctx
        if ctx is not None and ctx.comm is not None:
            ctx.comm.wake()


__all__ = ["ClientTask", "Controller", "SendOrder", "Task", "TaskCompletionStatus"]
