"""Starting, limiting, watching and ending one job process (Linux).

A job process is ``python -m flruntime.jobproc`` in a session of its own, its output appended to the job's
``log.txt``. It gets:

* its **spec** as the first line of its stdin (later lines are the parent's commands, :mod:`.control`);
* a **status pipe** (``FLRUNTIME_STATUS_FD``, :mod:`.status`) whose messages reach ``on_status``;
* a **memory limit** enforced by the OS: a memory cgroup of its own when one can be made (cgroup v2, or v1's
  memory controller, as root or with a delegated tree), which holds everything the job starts and counts
  out-of-memory kills; else ``RLIMIT_AS`` (address space) for the process and what it starts. The process joins
  its cgroup, or sets its rlimit, first thing at start-up (:func:`enter_limits`), before any job code runs;
* a **token** in its environment (``FLRUNTIME_JOB_TOKEN``) that every process it starts inherits, so that
  :meth:`JobProcess.terminate` also finds what left the session (a launched training script has a session of its
  own) or was orphaned when the job process died.

:meth:`JobProcess.exit_cause` says how it ended, in one of these shapes: ``exited with code 1``,
``exited with code 1 (MemoryError: memory limit 4 GiB reached)``, ``was killed by signal 11 (SIGSEGV)``,
``was killed by signal 9 (SIGKILL)``, ``was killed by signal 9 (memory limit 4 GiB reached)`` (the cgroup counted
an out-of-memory kill), ``was killed by signal 9 (memory limit 4 GiB reached?)`` (a limit was set and nothing here
killed it, but the OS did not say why).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

from flruntime.jobproc.limits import format_memory
from flruntime.jobproc.status import ENV_STATUS_FD

log = logging.getLogger(__name__)

ENV_TOKEN = "FLRUNTIME_JOB_TOKEN"
ENV_CGROUP = "FLRUNTIME_JOB_CGROUP"
ENV_RLIMIT_AS = "FLRUNTIME_JOB_RLIMIT_AS"

StatusCallback = Callable[[dict[str, Any]], None]


def enter_limits() -> None:
    """In a job process, before anything else: join the cgroup, or set the rlimit, that the parent chose."""
    cgroup = os.environ.pop(ENV_CGROUP, "")
    if cgroup:
        try:
            Path(cgroup, "cgroup.procs").write_text(f"{os.getpid()}\n")
        except OSError as exc:  # the parent checked it could; if not, say so in the job's log
            log.warning("could not enter the job's memory cgroup %s: %s", cgroup, exc)
    limit = os.environ.pop(ENV_RLIMIT_AS, "")
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


class _Cgroup:
    """A memory cgroup of one job process (v2: ``memory.max``; v1: ``memory.limit_in_bytes``)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def make(cls, name: str, limit: int) -> _Cgroup | None:
        """A new cgroup under this process's own, with ``limit``; None when none can be made here."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, where = line.split(":", 2)
            if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
                base, v2 = Path("/sys/fs/cgroup") / where.lstrip("/"), True
            elif "memory" in controllers.split(","):
                base, v2 = Path("/sys/fs/cgroup/memory") / where.lstrip("/"), False
            else:
                continue
            group = cls(base / f"flruntime-{name}-{uuid.uuid4().hex[:8]}", v2)
            try:
                group.path.mkdir()
            except OSError:
                continue
            try:
                if v2:
                    (group.path / "memory.max").write_text(str(limit))
                    swap = group.path / "memory.swap.max"
                    if swap.exists():
                        swap.write_text("0")
                else:
                    (group.path / "memory.limit_in_bytes").write_text(str(limit))
                    swap = group.path / "memory.memsw.limit_in_bytes"
                    if swap.exists():
                        try:
                            swap.write_text(str(limit))
                        except OSError:
                            pass
                return group
            except OSError:  # no memory controller delegated here
                group.remove()
        return None

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for want of memory."""
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value or 0)
        return 0

    def peak(self) -> int:
        """The most memory the group used (bytes; 0 when the kernel does not say)."""
        text = self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else 0

    def pids(self) -> list[int]:
        """The processes in the group."""
        return [int(p) for p in self._read("cgroup.procs").split()]

    def remove(self) -> None:
        """Remove the (empty) group."""
        try:
            self.path.rmdir()
        except OSError:
            pass


class JobProcess:
    """One job process: started, watched, ended.

    Args:
        argv: the command (``[sys.executable, "-m", "flruntime.jobproc"]``).
        cwd: its working folder.
        env: its environment (the token, status pipe and limit variables are added).
        log_path: where its stdout and stderr are appended.
        memory_limit: bytes it and what it starts may use (None: no limit).
        on_status: called with each status message, in order, from a reader thread.
        name: for log lines and the cgroup's name.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        memory_limit: int | None = None,
        on_status: StatusCallback | None = None,
        name: str = "job",
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.memory_limit = memory_limit
        self.on_status = on_status
        self.name = name
        self.token = uuid.uuid4().hex
        self.limit_kind = ""
        self.proc: subprocess.Popen[str] | None = None
        self.killed_here = False
        self._cgroup: _Cgroup | None = None
        self._reader: threading.Thread | None = None
        self._ended = False
        self._oom_kills = 0
        self._peak = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        """The job process's pid (0 before it started)."""
        return self.proc.pid if self.proc is not None else 0

    @property
    def returncode(self) -> int | None:
        """Its exit code, negative for a signal (None while it runs)."""
        return self.proc.returncode if self.proc is not None else None

    def start(self, spec: dict[str, Any]) -> IO[str]:
        """Start the process and give it ``spec``; return its stdin, for commands (:class:`.control.Commander`)."""
        env = {**self.env, ENV_TOKEN: self.token}
        if self.memory_limit:
            safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name)
            self._cgroup = _Cgroup.make(safe, self.memory_limit)
            if self._cgroup is not None:
                env[ENV_CGROUP], self.limit_kind = str(self._cgroup.path), "cgroup"
            else:  # glibc gives each thread an arena of reserved address space: keep them few under RLIMIT_AS
                env[ENV_RLIMIT_AS], self.limit_kind = str(self.memory_limit), "rlimit"
                env.setdefault("MALLOC_ARENA_MAX", "2")
        read_fd, write_fd = os.pipe()
        env[ENV_STATUS_FD] = str(write_fd)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
                text=True,
            )
        os.close(write_fd)
        self._reader = threading.Thread(target=self._read, args=(read_fd,), name=f"{self.name}:status", daemon=True)
        self._reader.start()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdin

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("%s: ignoring a malformed status line: %.200s", self.name, line)
                    continue
                if isinstance(message, dict) and self.on_status is not None:
                    try:
                        self.on_status(message)
                    except Exception:
                        log.exception("%s: handling a status message failed", self.name)

    def poll(self) -> int | None:
        """Its exit code once it ended, else None."""
        return self.proc.poll() if self.proc is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for it to end; its exit code, or None while it still runs."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:  # every status message it sent is handled before its end is
            self._reader.join(timeout=5)
        return code

    def _members(self) -> set[int]:
        """Every live process of the job: its session, its cgroup, and whatever carries its token."""
        found: set[int] = set()
        if self.proc is not None and self.proc.poll() is None:
            found.add(self.proc.pid)
        if self._cgroup is not None:
            found.update(self._cgroup.pids())
        mine = os.getpid()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == mine:
                continue
            try:
                if proc.pid == self.pid or os.getsid(proc.pid) == self.pid:
                    found.add(proc.pid)
                elif proc.environ().get(ENV_TOKEN) == self.token:
                    found.add(proc.pid)
            except (psutil.Error, OSError):
                continue
        found.discard(mine)
        return {p for p in found if psutil.pid_exists(p) and not _zombie(p)}

    def terminate(self, grace: float = 5.0) -> None:
        """End the job process and everything it started: SIGTERM, SIGKILL after ``grace`` s; idempotent."""
        with self._lock:
            if self._ended or self.proc is None:
                return
            members = self._members()
            if self.proc.poll() is None:
                self.killed_here = True
            _signal(members, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while members and time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    members.discard(self.proc.pid)
                time.sleep(0.05)
                members = {p for p in members if psutil.pid_exists(p) and not _zombie(p)} | self._members()
            if members:
                _signal(members, signal.SIGKILL)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("%s: process %d did not end after SIGKILL", self.name, self.proc.pid)
            for _ in range(100):  # what SIGKILL hit is gone within moments
                if not self._members():
                    break
                time.sleep(0.05)
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            if self._reader is not None:
                self._reader.join(timeout=5)
            if self._cgroup is not None:  # what it counted is kept: the group goes
                self._oom_kills, self._peak = self._cgroup.oom_kills(), self._cgroup.peak()
                self._cgroup.remove()
            self._ended = True

    def peak_memory(self) -> int:
        """The most memory the job used (bytes, from its cgroup; 0 without one)."""
        if self._cgroup is None or self._ended:
            return self._peak
        return self._cgroup.peak()

    def _oom_killed(self) -> bool:
        if self._cgroup is None:
            return False
        return (self._oom_kills if self._ended else self._cgroup.oom_kills()) > 0

    def exit_cause(self) -> str:
        """How the process ended, in one line (see the module docstring for every shape)."""
        code = self.returncode
        if code is None:
            return "is still running"
        limit = f"memory limit {format_memory(self.memory_limit)} reached" if self.memory_limit else ""
        if code >= 0:
            if code and limit and "MemoryError" in _tail(self.log_path):
                return f"exited with code {code} (MemoryError: {limit})"
            return f"exited with code {code}"
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL and limit:
            if self._oom_killed():
                return f"was killed by signal {number} ({limit})"
            if not self.killed_here:
                return f"was killed by signal {number} ({limit}?)"
        return f"was killed by signal {number} ({name})"


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - size, 0))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


__all__ = ["ENV_TOKEN", "JobProcess", "enter_limits"]
