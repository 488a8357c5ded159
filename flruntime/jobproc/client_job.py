"""A site's job process: one job's executors, launchers, filters and relays.

Started by the site (:mod:`flruntime.federation.client`) or by ``flruntime simulate --processes`` with
``python -m flruntime.jobproc``. It talks to the job's service on the server directly (mutual TLS with the site's
certificate, or the simulator's local socket), builds the site's app and runs the
:class:`~flruntime.runtime.client.ClientEngine`. It tells its parent which task runs (``task`` / ``task_done``) and,
every :data:`ALIVE_INTERVAL` seconds, that it lives and how long its training code has made no progress
(``alive``), so the parent can say what the job did when the process died, and fail a task whose code hangs.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from flruntime.events.bus import EventBus
from flruntime.graph.locate import ImportPolicy
from flruntime.jobproc.control import follow
from flruntime.jobproc.status import StatusWriter
from flruntime.runtime import progress
from flruntime.runtime.client import ClientEngine
from flruntime.runtime.communicator import SHUTDOWN, TASK_TIMEOUT, Shutdown
from flruntime.runtime.context import RunContext
from flruntime.runtime.lifecycle import preflight_components
from flruntime.runtime.messages import ReturnCode, Task, TaskResult
from flruntime.transport.codec import CodecError
from flruntime.transport.grpc_link import JOB_METHODS, OPTIONS, SITE_HEADER, Stub, secure_channel
from flruntime.transport.retry import Refused, code_of, explain, retry
from flruntime.transport.streaming import assemble, control, iter_message, read_control
from flruntime.validation import build_job_site

log = logging.getLogger(__name__)

#: Seconds between two ``alive`` messages to the parent.
ALIVE_INTERVAL = 2.0


class JobConnection:
    """A client engine's connection to its job's service (implements ``ServerConnection``).

    Args:
        stub: calls the job's service.
        job_id: the job.
        target: the service's address (for messages).
        abort: set when the job is aborted.
        status: where the running task is reported (None: nowhere).
    """

    def __init__(
        self, stub: Stub, job_id: str, target: str, abort: threading.Event, status: StatusWriter | None = None
    ) -> None:
        self.stub = stub
        self.job_id = job_id
        self.target = target
        self.abort = abort
        self.status = status
        self.bytes_down = 0
        self.bytes_up = 0
        self.task_started = 0.0
        self.reports = False  # a Reporter sends this site's logs; its last report ends the site's part
        self._gone = False

    def _give_up(self) -> bool:
        return self.abort.is_set() or self._gone

    def _retry(self, what: str, call: Any) -> Any:
        return retry(f"job {self.job_id}: {what}", call, self.target, self.abort, self._give_up, warn=log.warning)

    def register(self, site: str) -> None:
        """Join the job (retrying while the server is unreachable)."""
        try:
            request = control(job_id=self.job_id, reports=self.reports)
            reply = self._retry("join", lambda: self.stub.unary("Join", request, 30))
        except (Refused, grpc.RpcError) as exc:
            log.error("job %s: the server did not accept '%s': %s", self.job_id, site, exc)
            self._gone = True
            return
        if reply is not None and not read_control(reply).get("ok"):
            log.warning("job %s: the server did not accept '%s': %s", self.job_id, site, read_control(reply))
            self._gone = True

    def pull(self, site: str, timeout: float) -> Task | Shutdown | None:
        """Pull the next task; None when there is none yet, SHUTDOWN when the job ended or went away."""
        if self._gone:
            return SHUTDOWN
        try:
            stream = self.stub.stream_out("Pull", control(job_id=self.job_id, timeout=timeout), timeout + 60)
            head, buf = assemble(iter(stream))
        except grpc.RpcError as exc:
            if code_of(exc) in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                log.error("job %s: %s", self.job_id, explain(exc, self.target))
                self._gone = True
                return SHUTDOWN
            log.warning("job %s: pull failed: %s", self.job_id, explain(exc, self.target))
            self.abort.wait(1.0)
            return None
        except CodecError as exc:
            log.error("job %s: a task arrived damaged (%s); waiting for the next", self.job_id, exc)
            return None
        kind = head.get("kind")
        if kind == "shutdown":
            return SHUTDOWN
        if kind != "task" or buf is None:
            return None
        task = buf.message()
        self.bytes_down += len(buf.buffer)
        if not isinstance(task, Task):
            log.error("job %s: the server sent a %s where a task was expected", self.job_id, type(task).__name__)
            return None
        self.task_started = time.monotonic()
        if self.status is not None:
            self.status.send(
                "task",
                name=task.name,
                task_id=task.task_id,
                round=task.headers.get("current_round"),
                timeout=task.headers.get(TASK_TIMEOUT),
            )
        return task

    def submit(self, result: TaskResult) -> bool:
        """Send a result as a chunked stream (retried while the server is unreachable)."""
        if self.status is not None:
            self.status.send("task_done", name=result.name, rc=str(result.rc))
        self.task_started = 0.0

        def send() -> bytes:
            stream = iter_message(result, kind="result", job_id=self.job_id)
            head = next(stream)
            size = int(read_control(head)["size"])
            reply = self.stub.stream_in("Submit", itertools.chain([head], stream))
            self.bytes_up += size
            return reply

        try:
            reply = self._retry(f"sending the result of '{result.name}'", send)
        except (Refused, grpc.RpcError) as exc:  # refused as it is (e.g. a malformed result): the job goes on
            log.error("job %s: the server refused the result of '%s' (%s)", self.job_id, result.name, exc)
            return False
        if reply is None:
            return False
        accepted = bool(read_control(reply).get("accepted"))
        if not accepted:
            log.warning("job %s: the server dropped the result of '%s': %s", self.job_id, result.name, reply.decode())
        return accepted

    def send_event(self, site: str, name: str, data: dict[str, Any]) -> None:
        """Send a federated event (retried while the server is unreachable)."""
        request = control(job_id=self.job_id, name=name, data=data)
        try:
            self._retry(f"event {name}", lambda: self.stub.unary("Event", request, 30))
        except (Refused, grpc.RpcError) as exc:
            log.warning("job %s: event %s was not delivered: %s", self.job_id, name, exc)


class Reporter(logging.Handler):
    """Sends the job's log lines and the job process's system metrics to the server while the job runs.

    Lines are batched and sent every second; CPU and memory are sampled every ``FLRUNTIME_STATS_INTERVAL``
    seconds (5); GPU utilisation and memory are added when torch sees a CUDA device.
    """

    def __init__(self, stub: Stub, job_id: str, site: str) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.stub = stub
        self.job_id = job_id
        self.lines: list[str] = []
        self.stats: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self.done = threading.Event()
        self.interval = float(os.environ.get("FLRUNTIME_STATS_INTERVAL", "5") or 5)
        self.thread = threading.Thread(target=self._loop, name=f"{site}:report", daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep a log record's line for the next batch."""
        if record.name.startswith(("grpc", __name__)):  # never report the reporter's own transport troubles
            return
        line = self.format(record)
        with self._pending_lock:
            if len(self.lines) < 100_000:
                self.lines.append(line)

    def start(self) -> None:
        """Attach to the root logger and start sending."""
        logging.getLogger().addHandler(self)
        self.thread.start()

    def stop(self) -> None:
        """Send what is left and detach."""
        logging.getLogger().removeHandler(self)
        self.done.set()
        self.thread.join(timeout=30)

    def _sample(self, proc: Any) -> dict[str, Any]:
        import psutil

        sample: dict[str, Any] = {
            "time": round(time.time(), 3),
            "cpu_percent": proc.cpu_percent(None),
            "rss_mib": round(proc.memory_info().rss / 2**20, 1),
            "mem_percent": psutil.virtual_memory().percent,
        }
        torch = sys.modules.get("torch")  # only when the job imported it (maybe still importing it)
        try:
            if torch is not None and torch.cuda.is_available():
                sample["gpu_mem_mib"] = round(torch.cuda.memory_allocated() / 2**20, 1)
                sample["gpu_util_percent"] = torch.cuda.utilization()  # needs pynvml
        except Exception:  # a partly imported torch, or no pynvml: what was read is kept
            pass
        return sample

    def _loop(self) -> None:
        import psutil

        proc = psutil.Process()
        proc.cpu_percent(None)
        next_sample = time.monotonic()
        while True:
            final = self.done.wait(1.0)
            if time.monotonic() >= next_sample or final:
                self.stats.append(self._sample(proc))
                next_sample = time.monotonic() + self.interval
            with self._pending_lock:
                lines, self.lines = self.lines, []
            stats, self.stats = self.stats, []
            if lines or stats or final:
                request = control(job_id=self.job_id, lines=lines, stats=stats, final=final)
                try:
                    self.stub.unary("Report", request, 30)
                except grpc.RpcError:  # the server is away: keep them for the next try
                    with self._pending_lock:
                        self.lines[:0] = lines
                    self.stats[:0] = stats
            if final:
                return


def fail_tasks(conn: JobConnection, site: str, reason: str, abort: threading.Event) -> None:
    """Answer every task of a job this site cannot run with the reason, until the job ends."""
    conn.register(site)
    while not abort.is_set():
        task = conn.pull(site, 1.0)
        if isinstance(task, Shutdown):
            return
        if task is not None:
            conn.submit(
                TaskResult(task.task_id, task.name, site, ReturnCode.EXECUTION_EXCEPTION, None, task.headers, reason)
            )


def _stub(spec: dict[str, Any], site: str) -> tuple[grpc.Channel, Stub]:
    target = str(spec["target"])
    tls = spec.get("tls")
    if tls:
        channel = secure_channel(
            target, tls["cert"].encode(), tls["key"].encode(), tls["root"].encode(), str(tls.get("server_name", ""))
        )
        return channel, Stub(channel, JOB_METHODS)
    channel = grpc.insecure_channel(target, options=OPTIONS)
    return channel, Stub(channel, JOB_METHODS, ((SITE_HEADER, site),))


def _report_alive(status: StatusWriter, conn: JobConnection, stop: threading.Event) -> None:
    """Tell the parent every :data:`ALIVE_INTERVAL` s that this process lives, and how idle its task is."""
    while not stop.wait(ALIVE_INTERVAL):
        started = conn.task_started
        idle = time.monotonic() - max(progress.last(), started) if started else 0.0
        status.send("alive", idle=round(idle, 1))


def main(spec: dict[str, Any], stdin: Any) -> int:
    """Run one site of a job; 0 when the job ended for this site (whatever its tasks returned)."""
    job_id, site = str(spec["job_id"]), str(spec["site"])
    job_dir, run_dir = Path(spec["job_dir"]), Path(spec["run_dir"])
    status = StatusWriter.from_env()
    abort = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: abort.set())
    follow(stdin, {"abort": lambda m: abort.set()}, on_end=abort.set)
    channel, stub = _stub(spec, site)
    conn = JobConnection(stub, job_id, str(spec["target"]), abort, status)
    reporter = Reporter(stub, job_id, site) if spec.get("report", True) else None
    conn.reports = reporter is not None
    done = threading.Event()
    if status is not None:
        threading.Thread(target=_report_alive, args=(status, conn, done), name="jobproc:alive", daemon=True).start()
    if reporter is not None:
        reporter.start()
    try:
        try:
            policy = ImportPolicy(extra_prefixes=tuple(str(p) for p in spec.get("allow") or ()))
            overrides = dict(spec.get("overrides") or {})
            graph = build_job_site(
                job_dir, site, overrides=overrides, policy=policy, job_id=job_id, workspace=str(run_dir)
            )
        except Exception as exc:
            log.error("job %s: '%s' cannot build its app: %s", job_id, site, exc)
            fail_tasks(conn, site, f"the site could not build the job: {exc}", abort)
            return 0
        ctx = RunContext(
            job_id, site, run_dir, graph.app_dir, EventBus(site), abort=abort, resume=spec.get("resume", False)
        )
        engine = ClientEngine(graph, ctx, conn)
        try:
            preflight_components(graph.objects(), ctx)
        except Exception as exc:
            engine.setup_error = f"{type(exc).__name__}: {exc}"
            log.error("job %s: '%s' refused to start: %s", job_id, site, exc)
        engine.run()
        log.info(
            "job %s: '%s' done (%d task(s), %.1f MB down, %.1f MB up)",
            job_id,
            site,
            engine.tasks_done,
            conn.bytes_down / 1e6,
            conn.bytes_up / 1e6,
        )
        if status is not None:
            status.send("done", tasks=engine.tasks_done, bytes_down=conn.bytes_down, bytes_up=conn.bytes_up)
        return 0
    finally:
        done.set()
        if reporter is not None:
            reporter.stop()
        channel.close()


__all__ = ["JobConnection", "Reporter", "fail_tasks", "main"]
