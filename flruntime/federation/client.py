"""The federation client: a long-lived process that keeps a site connected to its server and runs its jobs.

It registers with its certificate, sends heartbeats (whose replies name the jobs to start or abort), fetches
each job's folder, and runs the job with the same :class:`~flruntime.runtime.client.ClientEngine` as the
simulator, over :class:`GrpcConnection`. When the server cannot be reached it retries with exponential
backoff and registers again; jobs the server no longer runs (after a server restart) are aborted.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from flruntime import __version__
from flruntime.events.bus import EventBus
from flruntime.federation.archive import unzip_to
from flruntime.federation.kit import Kit
from flruntime.runtime.client import ClientEngine
from flruntime.runtime.communicator import SHUTDOWN, Shutdown
from flruntime.runtime.context import RunContext
from flruntime.runtime.lifecycle import preflight_components
from flruntime.runtime.messages import ReturnCode, Task, TaskResult
from flruntime.transport.codec import CodecError
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.streaming import assemble, control, iter_message, read_control
from flruntime.validation import build_job_site

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Status codes worth retrying: the server is down, restarting, or overloaded.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


class Refused(Exception):
    """The server refused this participant (not a transient failure)."""


class Backoff:
    """Exponential delays between retries: ``first``, doubling, capped at ``most``."""

    def __init__(self, first: float = 0.5, most: float = 30.0) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def next(self) -> float:
        """Return the next delay and double it."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        """Start again from ``first``."""
        self.delay = self.first


def explain(exc: grpc.RpcError, target: str) -> str:
    """One line saying why a call to the server failed."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    text = str(details or "")
    if "handshake" in text.lower() or "certificate" in text.lower() or "ssl" in text.lower():
        return (
            f"the TLS handshake with the server at {target} failed: the server and this kit do not trust each "
            f"other's certificates (kits from another project or CA?) — {text}"
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return text
    if "socket closed" in text.lower():
        return (
            f"the server at {target} closed the connection during the TLS handshake: it does not accept this "
            f"kit's certificate (signed by another CA?) or it is shutting down — {text}"
        )
    return f"cannot reach the server at {target} ({code.name if code else 'error'}: {text})"


class FederationClient:
    """Keeps one client site connected and runs the jobs the server deploys to it.

    Args:
        kit: the client's startup kit.
        workspace: where job runs go (default: the kit folder).
        reconnect_max: the longest pause between reconnection attempts (seconds).
    """

    def __init__(self, kit: Kit, workspace: Path | None = None, reconnect_max: float = 30.0) -> None:
        if kit.type != "client":
            raise ValueError(f"{kit.root}: this is the kit of {kit.type} '{kit.name}', not of a client")
        self.kit = kit
        self.site = kit.name
        self.workspace = workspace or kit.root
        self.reconnect_max = reconnect_max
        self.heartbeat_interval = 5.0
        self.stop_event = threading.Event()
        self.channel = secure_channel(kit.target, kit.cert, kit.key, kit.root_cert, kit.server_name)
        self.stub = Stub(self.channel)
        self._jobs: dict[str, _JobRunner] = {}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self.refusal = ""
        self.action = ""

    def retry(self, what: str, call: Callable[[], T], give_up: Callable[[], bool] | None = None) -> T | None:
        """Call until it succeeds; transient failures wait with backoff; None when stopped or ``give_up()``.

        Raises:
            Refused: the server refused this participant.
        """
        backoff = Backoff(most=self.reconnect_max)
        while not self.stop_event.is_set() and not (give_up and give_up()):
            try:
                return call()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    raise Refused(explain(exc, self.kit.target)) from exc
                if code not in TRANSIENT:
                    raise
                delay = backoff.next()
                log.warning("%s: %s; retrying in %.1f s", what, explain(exc, self.kit.target), delay)
                self.stop_event.wait(delay)
        return None

    def run(self) -> int:
        """Stay connected until :meth:`stop`; return 0, or 1 when the server refused this client."""
        try:
            while not self.stop_event.is_set():
                reply = self.retry("register", self._register)
                if reply is None:
                    break
                info = read_control(reply)
                self.heartbeat_interval = float(info.get("heartbeat_interval", 5.0))
                log.info(
                    "'%s' registered with server '%s' (project %s) at %s",
                    self.site,
                    info.get("server"),
                    info.get("project"),
                    self.kit.target,
                )
                self._heartbeats()
        except Refused as exc:
            self.refusal = str(exc)
            log.error("'%s': the server refused this client: %s", self.site, exc)
            return 1
        finally:
            self._abort_all("the client is stopping")
        return 0

    def _register(self) -> bytes:
        hello = control(site=self.site, version=__version__, resources=self.resources())
        return self.stub.unary("Register", hello, 30)

    def resources(self) -> dict[str, Any]:
        """The site's resources for the scheduler: ``local/resources.json`` of the kit, else no GPUs."""
        path = self.kit.root / "local" / "resources.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError) as exc:
            log.warning("'%s': ignoring %s: %s", self.site, path, exc)
            data = {}
        return {"num_of_gpus": 0, **(data if isinstance(data, dict) else {})}

    def _heartbeats(self) -> None:
        """Send heartbeats until stopped or the server is lost (then return to register again)."""
        while not self.stop_event.is_set():
            with self._lock:
                running = [jid for jid, r in self._jobs.items() if r.is_alive()]
            try:
                reply = read_control(self.stub.unary("Heartbeat", control(jobs=running), 30))
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    raise Refused(explain(exc, self.kit.target)) from exc
                log.warning("'%s' lost the server: %s; reconnecting", self.site, explain(exc, self.kit.target))
                return
            self.heartbeat_interval = float(reply.get("heartbeat_interval", self.heartbeat_interval))
            if reply.get("register"):
                log.warning("'%s': the server does not know this client (it restarted); registering again", self.site)
                return
            for job in reply.get("deploy", []):
                self._start_job(str(job["job_id"]), str(job.get("name", "")))
            for job_id in reply.get("abort", []):
                self._abort(str(job_id), "the server no longer runs it")
            if reply.get("action") in ("shutdown", "restart"):
                self._act(str(reply["action"]))
                return
            self.stop_event.wait(self.heartbeat_interval)

    def _act(self, action: str) -> None:
        """Stop this client as an admin asked: ``shutdown`` for good (the kit's restart loop ends), or ``restart``."""
        log.warning("'%s': the server asked this client to %s", self.site, action)
        marker = self.kit.root / ("shutdown.fl" if action == "shutdown" else "restart.fl")
        try:
            marker.touch()
        except OSError as exc:  # a read-only kit (e.g. mounted from a Secret): the supervisor decides
            log.warning("'%s': cannot write %s: %s", self.site, marker, exc)
        self.action = action
        self.stop_event.set()

    def _start_job(self, job_id: str, name: str) -> None:
        with self._lock:
            current = self._jobs.get(job_id)
            if (current is not None and current.is_alive()) or job_id in self._done:
                return
            runner = _JobRunner(self, job_id, name)
            self._jobs[job_id] = runner
        log.info("'%s': starting job %s (%s)", self.site, job_id, name)
        runner.start()

    def _finished(self, job_id: str) -> None:
        with self._lock:
            self._done.add(job_id)

    def _abort(self, job_id: str, why: str) -> None:
        with self._lock:
            runner = self._jobs.get(job_id)
        if runner is not None and runner.is_alive():
            log.warning("'%s': aborting job %s: %s", self.site, job_id, why)
            runner.abort.set()

    def _abort_all(self, why: str) -> None:
        with self._lock:
            runners = list(self._jobs.values())
        for runner in runners:
            if runner.is_alive():
                runner.abort.set()
        for runner in runners:
            runner.join(timeout=30)

    def stop(self) -> None:
        """Ask :meth:`run` to return (running jobs are aborted)."""
        self.stop_event.set()

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


class GrpcConnection:
    """A client engine's connection to one job on the server (implements ``ServerConnection``)."""

    def __init__(self, client: FederationClient, job_id: str, abort: threading.Event) -> None:
        self.client = client
        self.job_id = job_id
        self.abort = abort
        self.bytes_down = 0
        self.bytes_up = 0
        self._gone = False

    def _give_up(self) -> bool:
        return self.abort.is_set() or self._gone

    def register(self, site: str) -> None:
        """Join the job (retrying while the server is unreachable)."""
        reply = self.client.retry(
            f"job {self.job_id}: join",
            lambda: self.client.stub.unary("Join", control(job_id=self.job_id), 30),
            self._give_up,
        )
        if reply is not None and not read_control(reply).get("ok"):
            log.warning("job %s: the server did not accept '%s': %s", self.job_id, site, read_control(reply))
            self._gone = True

    def pull(self, site: str, timeout: float) -> Task | Shutdown | None:
        """Pull the next task; None when there is none yet, SHUTDOWN when the job ended or went away."""
        if self._gone:
            return SHUTDOWN
        try:
            stream = self.client.stub.stream_out("Pull", control(job_id=self.job_id, timeout=timeout), timeout + 60)
            head, buf = assemble(iter(stream))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                log.error("job %s: %s", self.job_id, explain(exc, self.client.kit.target))
                self._gone = True
                return SHUTDOWN
            log.warning("job %s: pull failed: %s", self.job_id, explain(exc, self.client.kit.target))
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
        return task

    def submit(self, result: TaskResult) -> bool:
        """Send a result as a chunked stream (retried while the server is unreachable)."""

        def send() -> bytes:
            stream = iter_message(result, kind="result", job_id=self.job_id)
            head = next(stream)
            size = int(read_control(head)["size"])
            reply = self.client.stub.stream_in("Submit", itertools.chain([head], stream))
            self.bytes_up += size
            return reply

        try:
            reply = self.client.retry(f"job {self.job_id}: sending the result of '{result.name}'", send, self._give_up)
        except grpc.RpcError as exc:  # refused as it is (e.g. a malformed result): the job goes on without it
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            log.error(
                "job %s: the server refused the result of '%s' (%s: %s)",
                self.job_id,
                result.name,
                code.name if code else "error",
                details,
            )
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
        self.client.retry(
            f"job {self.job_id}: event {name}", lambda: self.client.stub.unary("Event", request, 30), self._give_up
        )


class _Reporter(logging.Handler):
    """Sends a job's log lines and the site's system metrics to the server while the job runs.

    Lines are batched and sent every second; CPU and memory are sampled every ``FLRUNTIME_STATS_INTERVAL``
    seconds (5); GPU utilisation and memory are added when torch sees a CUDA device.
    """

    def __init__(self, client: FederationClient, job_id: str) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.client = client
        self.job_id = job_id
        self.lines: list[str] = []
        self.stats: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self.done = threading.Event()
        self.interval = float(os.environ.get("FLRUNTIME_STATS_INTERVAL", "5") or 5)
        self.thread = threading.Thread(target=self._loop, name=f"{client.site}:report", daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
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
            if lines or stats:
                request = control(job_id=self.job_id, lines=lines, stats=stats)
                try:
                    self.client.stub.unary("Report", request, 30)
                except grpc.RpcError:  # the server is away: keep them for the next try
                    with self._pending_lock:
                        self.lines[:0] = lines
                    self.stats[:0] = stats
            if final:
                return


class _JobRunner(threading.Thread):
    """Runs one job on this site: fetch its folder, build the site's app, serve its tasks."""

    def __init__(self, client: FederationClient, job_id: str, name: str) -> None:
        super().__init__(name=f"{client.site}:job-{job_id[:8]}", daemon=True)
        self.client = client
        self.job_id = job_id
        self.job_name = name
        self.abort = threading.Event()

    def run(self) -> None:
        site = self.client.site
        run_dir = self.client.workspace / self.job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        conn = GrpcConnection(self.client, self.job_id, self.abort)
        reporter = _Reporter(self.client, self.job_id)
        reporter.start()
        try:
            data = self.client.retry(
                f"job {self.job_id}: fetching the job",
                lambda: self._fetch(),
                self.abort.is_set,
            )
            if data is None:
                return
            job_dir = unzip_to(data, run_dir / "job", label=f"job {self.job_id}")
            try:
                graph = build_job_site(job_dir, site, job_id=self.job_id, workspace=str(run_dir))
            except Exception as exc:
                log.error("job %s: '%s' cannot build its app: %s", self.job_id, site, exc)
                _fail_tasks(conn, site, f"the site could not build the job: {exc}", self.abort)
                return
            ctx = RunContext(self.job_id, site, run_dir, graph.app_dir, EventBus(site), abort=self.abort)
            engine = ClientEngine(graph, ctx, conn)
            try:
                preflight_components(graph.objects(), ctx)
            except Exception as exc:
                engine.setup_error = f"{type(exc).__name__}: {exc}"
                log.error("job %s: '%s' refused to start: %s", self.job_id, site, exc)
            engine.run()
            log.info(
                "job %s: '%s' done (%d task(s), %.1f MB down, %.1f MB up)",
                self.job_id,
                site,
                engine.tasks_done,
                conn.bytes_down / 1e6,
                conn.bytes_up / 1e6,
            )
        except Exception:
            log.exception("job %s: '%s' failed", self.job_id, site)
        finally:
            reporter.stop()
            self.client._finished(self.job_id)
            logging.getLogger().removeHandler(handler)
            handler.close()

    def _fetch(self) -> bytes:
        head, buf = assemble(iter(self.client.stub.stream_out("GetApp", control(job_id=self.job_id), 300)))
        if buf is None:
            raise CodecError("the server sent no job folder")
        return buf.data()


def _fail_tasks(conn: GrpcConnection, site: str, reason: str, abort: threading.Event) -> None:
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


__all__ = ["Backoff", "FederationClient", "GrpcConnection", "Refused"]
