"""Tasks from server workflows to clients, and results back: the server side of every transport.

A workflow posts a task for some clients and waits for their results with
:meth:`Communicator.broadcast_and_wait`. Clients pull their next task and submit results through a
transport, which calls :meth:`Communicator.pull` and :meth:`Communicator.submit`. Each result is
handed to the workflow's callback as it arrives (so aggregation happens in time, with memory
O(model)); results that come after the workflow stopped waiting, or twice, are reported and dropped.
A transport that receives results in chunks may instead :meth:`Communicator.open_stream` a result once its
header is in and hand its arrays over piece by piece, when the workflow takes streamed results.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flruntime.runtime.log_context import as_site
from flruntime.runtime.messages import ModelMessage, ReturnCode, Task, TaskResult
from flruntime.runtime.streamed import Discard, ResultSink
from flruntime.transport.codec import ArraySpec

log = logging.getLogger(__name__)

ResultCallback = Callable[[TaskResult], None]
#: Asked for a sink for a result whose arrays are still arriving (None: the result is to come whole).
StreamCallback = Callable[[TaskResult, list[ArraySpec]], ResultSink | None]

#: Client events kept while the server is still starting.
EARLY_EVENTS = 100_000

#: The task header that carries a task's explicit time limit (seconds), when the workflow sets one.
TASK_TIMEOUT = "task_timeout"

#: Seconds without bytes after which an upload in progress no longer holds a broadcast's wait open.
STALLED_UPLOAD = 30.0


class Shutdown:
    """Returned by :meth:`Communicator.pull` when the job has ended and the client should stop."""


SHUTDOWN = Shutdown()


@dataclass
class _Group:
    """One broadcast: its tasks by id, the results so far, and how it waits."""

    name: str
    targets: list[str]
    task_ids: dict[str, str]
    on_result: ResultCallback | None
    on_stream: StreamCallback | None = None
    results: dict[str, TaskResult] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    streaming: dict[str, float] = field(default_factory=dict)  # site -> when its upload last sent bytes
    open: bool = True
    min_reached_at: float | None = None


@dataclass
class LateResult:
    """A result that arrived after its task was closed, kept for reporting."""

    site: str
    task: str
    reason: str


class Communicator:
    """Holds standing tasks per client and routes results to the waiting workflow."""

    def __init__(self, clients: Iterable[str] = ()) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Task]] = {}
        self._groups: dict[str, _Group] = {}
        self._closed_tasks: dict[str, str] = {}
        self._shutdown = False
        self._removed: set[str] = set()
        self.failures: dict[str, str] = {}
        self.late: list[LateResult] = []
        self.last_seen: dict[str, float] = {}
        self.event_sink: Callable[[str, str, dict[str, Any]], None] | None = None
        self._early_events: deque[tuple[str, str, dict[str, Any]]] = deque()
        self.data_filter: Callable[[Task], Task] | None = None
        self.result_filter: Callable[[TaskResult], TaskResult] | None = None
        self.stalled_upload = STALLED_UPLOAD
        for site in clients:
            self.register(site)

    # --- client side (called by transports) ---------------------------------------------------------

    def register(self, site: str) -> None:
        """Add a client that will pull tasks."""
        with self._cond:
            self._queues.setdefault(site, deque())
            self._removed.discard(site)
            self.failures.pop(site, None)
            self.last_seen[site] = time.monotonic()
            self._cond.notify_all()

    def remove(self, site: str) -> None:
        """Drop a client that went away (its heartbeats stopped): open tasks stop waiting for it.

        Its queued tasks are withdrawn and every open broadcast that still expected its result counts it as
        lost, so a round ends with the others (when ``min_responses`` allows) instead of waiting for its
        timeout. The client may :meth:`register` again and gets the tasks broadcast after that.
        """
        with self._cond:
            if self._queues.pop(site, None) is None:
                return
            self._removed.add(site)
            for group in {id(g): g for g in self._groups.values()}.values():
                group.streaming.pop(site, None)  # an upload it left hanging does not hold the round
                if site in group.task_ids and site not in group.results:
                    group.lost.add(site)
                    log.warning("task '%s': %s went away; not waiting for its result", group.name, site)
            self._cond.notify_all()

    def fail(self, site: str, reason: str) -> None:
        r"""A client can no longer run the job (its job process died or hung): its tasks fail with ``reason``.

        Every open broadcast that expects its result gets a failed result carrying ``reason`` (so the workflow
        says why it is missing), the client is dropped as by :meth:`remove`, and later broadcasts to it fail
        at once with the same reason until it registers again.
        """
        with self._cond:
            self.remove(site)
            self.failures[site] = reason
            for group in {id(g): g for g in self._groups.values()}.values():
                if site in group.task_ids and site not in group.results:
                    self._fail_in(group, site)
            self._cond.notify_all()

    def _fail_in(self, group: _Group, site: str) -> None:
        """Record a failed result of ``site`` in ``group`` (under the lock): the workflow's callback sees it."""
        result = TaskResult(group.task_ids[site], group.name, site, ReturnCode.EXECUTION_EXCEPTION, None)
        result.error = self.failures[site]
        group.results[site] = result
        if group.on_result is not None:
            with as_site("server"):
                try:
                    group.on_result(result)
                except Exception:
                    log.exception("processing the failure of '%s' on %s failed", group.name, site)

    @property
    def is_shut_down(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._shutdown

    def clients(self) -> list[str]:
        """The clients registered so far, in registration order."""
        with self._cond:
            return list(self._queues)

    def waiting(self, site: str) -> list[str]:
        """The names of the tasks queued for ``site`` that it has not pulled yet."""
        with self._cond:
            return [task.name for task in self._queues.get(site, ())]

    def pull(self, site: str, timeout: float) -> Task | Shutdown | None:
        """Return the next task for ``site``, waiting up to ``timeout`` seconds; SHUTDOWN when the job ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self.last_seen[site] = time.monotonic()
            if site in self._removed and not self._shutdown:  # it must register again first
                self._cond.wait(timeout)
                return SHUTDOWN if self._shutdown else None
            queue = self._queues.setdefault(site, deque())
            while not queue and not self._shutdown:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if queue:
                return queue.popleft()
            return SHUTDOWN

    def _group_for(self, result: TaskResult) -> _Group | None:
        """The open broadcast a result belongs to; None (reported) when it is late or a duplicate."""
        self.last_seen[result.site] = time.monotonic()
        group = self._groups.get(result.task_id)
        if group is None:
            reason = "its task was already closed" if result.task_id in self._closed_tasks else "unknown task"
            self.late.append(LateResult(result.site, result.name, reason))
            log.warning("dropping result of task '%s' from %s: %s", result.name, result.site, reason)
            return None
        if (
            result.site in group.results
            or result.site in group.streaming
            or group.task_ids.get(result.site) != result.task_id
        ):
            self.late.append(LateResult(result.site, result.name, "duplicate"))
            log.warning("dropping duplicate result of task '%s' from %s", result.name, result.site)
            return None
        return group

    def submit(self, result: TaskResult) -> bool:
        """Deliver a client's result; returns False when it was late or a duplicate (and is dropped)."""
        with self._cond, as_site("server"):  # its messages belong to the server, whichever thread delivers
            group = self._group_for(result)
            if group is None:
                return False
            if self.result_filter is not None:
                with as_site("server"):
                    result = self.result_filter(result)
            if group.on_result is not None:
                # the callback has the data; the group keeps the rest, so in-time aggregation holds no results
                group.results[result.site] = dataclasses.replace(result, data=None)
                try:
                    group.on_result(result)
                except Exception:
                    log.exception("processing the result of '%s' from %s failed", result.name, result.site)
            else:
                group.results[result.site] = result
            self._cond.notify_all()
            return True

    def open_stream(self, result: TaskResult, arrays: list[ArraySpec]) -> ResultSink | None:
        """Offer a result whose arrays are still arriving (``result`` has no arrays yet).

        Returns:
            A sink for its arrays (closing it delivers the result, as :meth:`submit` does), or None when the
            result must come whole through :meth:`submit`: the server filters results, or the waiting
            workflow or its aggregator needs whole results.
        """
        with self._cond, as_site("server"):
            group = self._group_for(result)
            if group is None:
                return Discard()
            if self.result_filter is not None or group.on_stream is None or result.data is None:
                return None
            try:
                inner = group.on_stream(result, arrays)
            except Exception:  # like a failing result callback: the result counts as delivered, not aggregated
                log.exception("processing the result of '%s' from %s failed", result.name, result.site)
                group.results[result.site] = dataclasses.replace(result, data=None)
                self._cond.notify_all()
                return Discard()
            if inner is None:
                return None
            group.streaming[result.site] = time.monotonic()
            return _GroupSink(self, group, result, inner)

    def deliver_event(self, site: str, name: str, data: dict[str, Any]) -> None:
        """Hand a client's federated event to the server's event sink.

        Events that arrive before the server has started its components (a script logging its parameters
        right at start-up) are kept, up to :data:`EARLY_EVENTS`, and delivered when the sink is set; events
        after the job ended are dropped.
        """
        with self._cond:
            sink = self.event_sink
            if sink is None:
                if self._shutdown:
                    log.debug("dropping event %s from %s: the job has ended", name, site)
                elif len(self._early_events) < EARLY_EVENTS:
                    self._early_events.append((site, name, data))
                else:
                    log.warning("dropping event %s from %s: the server has not started yet", name, site)
                return
        with as_site("server"):
            sink(site, name, data)

    def set_event_sink(self, sink: Callable[[str, str, dict[str, Any]], None] | None) -> None:
        """Set (or clear) where client events go; events kept from before the server started go there first."""
        with self._cond:
            early, self._early_events = list(self._early_events), deque()
            self.event_sink = sink
        if sink is not None:
            with as_site("server"):
                for site, name, data in early:
                    sink(site, name, data)

    def wake(self) -> None:
        """Wake every waiting workflow (e.g. so it sees an abort at once)."""
        with self._cond:
            self._cond.notify_all()

    def shutdown(self) -> None:
        """End the job: every client's next pull returns SHUTDOWN."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    # --- server side (called by workflows) ------------------------------------------------------

    def broadcast_and_wait(
        self,
        task_name: str,
        data: ModelMessage | Callable[[str], ModelMessage],
        *,
        targets: list[str] | None = None,
        min_responses: int | None = None,
        wait_time_after_min_received: float = 0.0,
        timeout: float = 0.0,
        headers: dict[str, Any] | None = None,
        on_result: ResultCallback | None = None,
        on_stream: StreamCallback | None = None,
        abort: threading.Event | None = None,
    ) -> dict[str, TaskResult]:
        """Send a task to clients and wait for their results.

        Args:
            task_name: the task.
            data: the task data, or a function giving each target its own data.
            targets: clients to send to (default: every registered client).
            min_responses: results needed before the wait may end early (default: all targets).
            wait_time_after_min_received: once ``min_responses`` arrived, wait this much longer for the rest.
            timeout: stop waiting after this many seconds (0: no limit).
            headers: headers sent with the task (clients echo them back).
            on_result: called with each result as it arrives, under the communicator's lock.
            on_stream: asked for a sink for each result a transport streams in (:meth:`open_stream`), under
                the communicator's lock; None, or a None answer, lets the result come whole to ``on_result``.
                While a result is arriving (bytes within the last ``stalled_upload`` seconds), the wait does
                not end at ``wait_time_after_min_received``; ``timeout`` and ``abort`` still end it. Pieces that
                arrive after the wait ended are dropped.
            abort: stop waiting when set.

        Returns:
            The results received, by site; with ``on_result`` they carry no data (the callback had it), so a
            workflow that aggregates in time never holds more than the result at hand.
        """
        sites = list(targets) if targets is not None else self.clients()
        need = len(sites) if min_responses is None else min(min_responses, len(sites))
        if timeout > 0:  # clients see that the workflow limits the task (their no-progress watchdog then stands back)
            headers = {**(headers or {}), TASK_TIMEOUT: timeout}
        group = _Group(task_name, sites, {}, on_result, on_stream)
        start = time.monotonic()
        with self._cond:
            for site in sites:
                task_id = uuid.uuid4().hex
                payload = data(site) if callable(data) else data
                task = Task(task_id, task_name, payload, dict(headers or {}))
                if self.data_filter is not None:
                    task = self.data_filter(task)
                group.task_ids[site] = task_id
                self._groups[task_id] = group
                if site in self.failures:  # it cannot run the job any more: its task fails at once, with the reason
                    self._fail_in(group, site)
                    continue
                if site in self._removed:  # gone: it takes part again from the first broadcast after it returns
                    group.lost.add(site)
                    continue
                self._queues.setdefault(site, deque()).append(task)
            self._cond.notify_all()
            while True:
                now = time.monotonic()
                got = len(group.results)
                if got >= need and group.min_reached_at is None:
                    group.min_reached_at = now
                if got + len(group.lost - group.results.keys()) >= len(sites):
                    break
                if abort is not None and abort.is_set():
                    break
                waits = [0.5]
                arriving = [t for t in group.streaming.values() if now - t < self.stalled_upload]
                if arriving:  # a result is arriving: look again when it would count as stalled
                    waits.append(max(arriving) + self.stalled_upload - now)
                if group.min_reached_at is not None and not arriving:
                    left = group.min_reached_at + wait_time_after_min_received - now
                    if left <= 0:
                        break
                    waits.append(left)
                if timeout > 0:
                    left = start + timeout - now
                    if left <= 0:
                        log.warning(
                            "task '%s' timed out after %.1f s with %d/%d results", task_name, timeout, got, len(sites)
                        )
                        break
                    waits.append(left)
                self._cond.wait(min(waits))
            self._close(group)
            return dict(group.results)

    def _close(self, group: _Group) -> None:
        group.open = False
        for site, task_id in group.task_ids.items():
            self._groups.pop(task_id, None)
            self._closed_tasks[task_id] = site
            queue = self._queues.get(site)
            if queue:  # withdraw tasks nobody picked up
                for task in [t for t in queue if t.task_id == task_id]:
                    queue.remove(task)


class _GroupSink:
    """A streamed result on its way to a broadcast's workflow: delivered when it is whole and the wait is on."""

    def __init__(self, comm: Communicator, group: _Group, result: TaskResult, inner: ResultSink) -> None:
        self.comm, self.group, self.result, self.inner = comm, group, result, inner

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Pass a piece on while the wait for the result is on (dropped after it ended)."""
        with self.comm._cond:
            if not self.group.open:
                return
            if self.result.site in self.group.streaming:
                self.group.streaming[self.result.site] = time.monotonic()
            self.inner.write(name, start, values)

    def close(self) -> bool:
        """Deliver the result (False when the wait for it ended meanwhile)."""
        site = self.result.site
        with self.comm._cond, as_site("server"):
            self.group.streaming.pop(site, None)
            self.comm._cond.notify_all()
            if not self.group.open:
                self.inner.fail("the task was closed before the result was complete")
                self.comm.late.append(LateResult(site, self.result.name, "its task was closed while it arrived"))
                log.warning("result of task '%s' from %s arrived after its task was closed", self.result.name, site)
                return False
            self.group.results[site] = dataclasses.replace(self.result, data=None)
            try:
                return self.inner.close()
            except Exception:
                log.exception("processing the result of '%s' from %s failed", self.result.name, site)
                return False

    def fail(self, reason: str) -> None:
        """The stream broke off: the site may send its result again."""
        with self.comm._cond, as_site("server"):
            self.group.streaming.pop(self.result.site, None)
            self.comm._cond.notify_all()
            self.inner.fail(reason)
