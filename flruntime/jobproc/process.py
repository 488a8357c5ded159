"""Starting, limiting, watching and ending one job process (Linux only).

A job process (typically ``python -m flruntime.jobproc``) runs in a session and process group of its own, its
stdout and stderr appended to the job's ``log.txt``. It gets:

* its **spec** as the first line of its stdin (later lines are the parent's commands, :mod:`.control`);
* a **status pipe** (``FLRUNTIME_STATUS_FD``, :mod:`.status`) whose messages reach ``on_status``;
* a **memory limit** enforced by the OS, in place before the command runs (see below);
* a **token** in its environment (``FLRUNTIME_JOB_TOKEN``) that every process it starts inherits, so that
  :meth:`JobProcess.terminate` also finds what left its session (a launched training script may have a session of
  its own) or was orphaned when the job process died.

The memory limit is, where one can be made, a **memory cgroup** of the job's own below the parent's (cgroup v2
``memory.max`` with ``memory.swap.max`` 0, or cgroup v1's ``memory.limit_in_bytes`` with the same for memory+swap;
as root or in a delegated tree): it holds everything the job starts, all together, and counts the kernel's
out-of-memory kills. Else it is ``RLIMIT_AS`` (address space), which holds each process the job starts separately.
The command starts as ``/bin/sh -c 'read -r how; exec "$@"'``: the shell waits for a line on stdin while the
parent moves its pid into the cgroup (or sets its rlimit with ``prlimit``), then ``exec``-s the command, which
keeps the pid. So the parent knows which limit holds (:attr:`JobProcess.limit_kind`), nothing runs unlimited, and
no ``preexec_fn`` (unsafe in a parent with threads) is needed.

:meth:`JobProcess.exit_cause` says how it ended, in one line of one of these shapes:

* ``exited with code 3``;
* ``exited with code 1 (MemoryError: memory limit 4 GiB reached)`` - a limit was set and the last output of the
  job (since it started) says ``MemoryError`` (``Cannot allocate memory`` gives ``(Cannot allocate memory: ...)``):
  how running out of address space under ``RLIMIT_AS`` usually ends;
* ``exited with code 1 (a process of the job was killed: memory limit 4 GiB reached)`` - the cgroup counted an
  out-of-memory kill of another process of the job (a training script it launched, say);
* ``was killed by signal 11 (SIGSEGV)``, ``was killed by signal 9 (SIGKILL)``: the signal and its name;
* ``was killed by signal 9 (memory limit 4 GiB reached)`` - the cgroup counted an out-of-memory kill;
* ``was killed by signal 9 (SIGKILL; memory limit 4 GiB reached?)`` - a limit was set, the OS did not say why and
  flruntime did not send it; also ``signal 11 (SIGSEGV; ...?)`` and ``signal 6 (SIGABRT; ...?)`` under
  ``RLIMIT_AS``, where a failed allocation in native code often ends that way;
* ``was not started``, ``is still running``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil

from flruntime.jobproc.limits import format_memory
from flruntime.jobproc.status import ENV_STATUS_FD

log = logging.getLogger(__name__)

#: The environment variable every process of a job inherits: its job process's token.
ENV_TOKEN = "FLRUNTIME_JOB_TOKEN"

StatusCallback = Callable[[dict[str, Any]], None]

# Waits for the parent's line ("cgroup", "rlimit" or "none") on stdin, then becomes the command. Under RLIMIT_AS
# glibc would reserve 64 MiB of address space per thread arena (up to 8 x cores of them): a few threads would use
# up a limit without touching memory, so MALLOC_ARENA_MAX keeps the arenas at 2 unless the caller chose otherwise.
_GATE = 'read -r how || exit 125; [ "$how" = rlimit ] && export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"; exec "$@"'
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory")


class _Cgroup:
    """A memory cgroup of one job (v2: ``memory.max``; v1: ``memory.limit_in_bytes``)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def make(cls, name: str, limit: int) -> _Cgroup | None:
        """A new cgroup below this process's own, holding at most ``limit`` bytes; None when none can be made."""
        for base, v2 in _own_memory_cgroups():
            group = cls(base / f"flruntime-{name}-{uuid.uuid4().hex[:8]}", v2)
            try:
                group.path.mkdir()
            except OSError:
                continue
            try:
                if v2:
                    (group.path / "memory.max").write_text(str(limit))
                    _write_if_there(group.path / "memory.swap.max", "0")
                else:
                    (group.path / "memory.limit_in_bytes").write_text(str(limit))
                    _write_if_there(group.path / "memory.memsw.limit_in_bytes", str(limit))
                return group
            except OSError:  # no memory controller here
                group.remove()
        return None

    def add(self, pid: int) -> None:
        """Move ``pid`` into the group.

        Raises:
            OSError: the kernel refused.
        """
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for want of memory."""
        for line in self._read("memory.events" if self.v2 else "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def peak(self) -> int | None:
        """The most memory the group used, page cache included (None when the kernel does not say)."""
        text = self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else None

    def pids(self) -> set[int]:
        """The processes in the group."""
        return {int(p) for p in self._read("cgroup.procs").split()}

    def kill(self) -> None:
        """SIGKILL everything in the group at once where the kernel can (v2's ``cgroup.kill``)."""
        _write_if_there(self.path / "cgroup.kill", "1")

    def remove(self) -> bool:
        """Remove the group once empty; whether it is gone."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:  # still busy for a moment after its last process ended
                time.sleep(0.02)
        log.warning("could not remove the job's memory cgroup %s", self.path)
        return False


def _own_memory_cgroups() -> Iterator[tuple[Path, bool]]:
    """The folders of this process's own cgroups that have a memory controller, and whether each is v2."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        mine = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return
    for line in mine:
        _, controllers, where = line.split(":", 2)
        for mount in mounts:
            fields = mount.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            root, point = fields[3], Path(fields[4])
            if controllers == "" and fstype == "cgroup2":
                v2 = True
            elif controllers and fstype == "cgroup" and "memory" in controllers.split(",") and "memory" in options:
                v2 = False
            else:
                continue
            if not (where == root or where.startswith(root.rstrip("/") + "/")):
                continue
            base = point / where[len(root) :].lstrip("/")
            if v2:
                if "memory" not in _read_text(base / "cgroup.controllers").split():
                    continue
                if "memory" not in _read_text(base / "cgroup.subtree_control").split():
                    # refused (EBUSY) when the group holds processes itself, unless it is the root
                    _write_if_there(base / "cgroup.subtree_control", "+memory")
            yield base, v2


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_if_there(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


class JobProcess:
    """One job process: started within its memory limit, watched over its status pipe, ended with all it started.

    Args:
        argv: the command, e.g. ``[sys.executable, "-m", "flruntime.jobproc"]``.
        cwd: its working folder.
        env: its environment (the token and the status pipe's variable are added).
        log_path: the file its stdout and stderr are appended to.
        memory_limit: bytes the job may use (None: no limit).
        on_status: called with each status message, in order, from a reader thread.
        name: for log lines and the cgroup's name.

    Attributes:
        limit_kind: how the memory limit is enforced: ``"cgroup"``, ``"rlimit"`` or ``""`` (none).
        last_status: the latest status message of each kind.
        token: the value of ``FLRUNTIME_JOB_TOKEN`` in its environment.
        killed_here: whether :meth:`terminate` signalled it while it ran.
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
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.memory_limit = memory_limit
        self.on_status = on_status
        self.name = name
        self.token = uuid.uuid4().hex
        self.limit_kind = ""
        self.last_status: dict[str, dict[str, Any]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.killed_here = False
        self._cgroup: _Cgroup | None = None
        self._reader: threading.Thread | None = None
        self._log_start = 0
        self._ended = False
        self._oom_kills = 0
        self._peak: int | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        """Its pid, which is also its process group's and session's id (0 before it started)."""
        return self.proc.pid if self.proc is not None else 0

    @property
    def returncode(self) -> int | None:
        """Its exit code, negative for a signal (None while it runs)."""
        return self.proc.returncode if self.proc is not None else None

    def start(self, spec: dict[str, Any] | None = None) -> IO[str]:
        """Start it within its memory limit and give it ``spec`` as its first input line.

        Returns:
            Its stdin, for commands (:class:`.control.Commander`).

        Raises:
            FileNotFoundError: the command does not exist.
        """
        env = {**self.env, ENV_TOKEN: self.token}
        prog = self.argv[0]
        if not (os.access(Path(self.cwd, prog), os.X_OK) if "/" in prog else shutil.which(prog, path=env.get("PATH"))):
            raise FileNotFoundError(f"no such command: {prog}")
        if self.memory_limit:
            safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name)
            self._cgroup = _Cgroup.make(safe, self.memory_limit)
        read_fd, write_fd = os.pipe()
        env[ENV_STATUS_FD] = str(write_fd)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._log_start = out.tell()
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", _GATE, "flruntime-job", *self.argv],
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
        self.limit_kind = self._limit(self.proc.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{self.limit_kind or 'none'}\n")
        if spec is not None:
            self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdin

    def _limit(self, pid: int) -> str:
        """Put the waiting shell ``pid`` in the memory limit; how it is enforced."""
        if not self.memory_limit:
            return ""
        if self._cgroup is not None:
            try:
                self._cgroup.add(pid)
                return "cgroup"
            except OSError as exc:
                log.warning(
                    "%s: could not move it into %s (%s); limiting its address space", self.name, self._cgroup.path, exc
                )
                self._cgroup.remove()
                self._cgroup = None
        try:
            resource.prlimit(pid, resource.RLIMIT_AS, (self.memory_limit, self.memory_limit))
            return "rlimit"
        except OSError as exc:
            log.error("%s: could not limit its memory to %s: %s", self.name, format_memory(self.memory_limit), exc)
            return ""

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    log.warning("%s: ignoring a malformed status line: %.200r", self.name, line)
                    continue
                self.last_status[str(message.get("kind", ""))] = message
                if self.on_status is not None:
                    try:
                        self.on_status(message)
                    except Exception:
                        log.exception("%s: handling a status message failed", self.name)

    def poll(self) -> int | None:
        """Its exit code once it ended, else None."""
        return self.proc.poll() if self.proc is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for it to end; its exit code, or None while it still runs.

        Every status message it sent has been handled when this returns a code (unless a process it started still
        holds the pipe open after 5 s).
        """
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def _members(self) -> set[int]:
        """Every live process of the job: its process group and session, its cgroup, whatever carries its token."""
        if self.proc is None:
            return set()
        found = self._cgroup.pids() if self._cgroup is not None else set()
        mine = os.getpid()
        for proc in psutil.process_iter():
            try:
                if proc.pid == mine:
                    continue
                if (
                    self.pid in (os.getpgid(proc.pid), os.getsid(proc.pid))
                    or proc.environ().get(ENV_TOKEN) == self.token
                ):
                    found.add(proc.pid)
            except (psutil.Error, OSError):
                continue
        found.discard(mine)
        return {pid for pid in found if _alive(pid)}

    def _signal(self, members: set[int], sig: signal.Signals) -> None:
        if self.proc is not None and (self.proc.returncode is None or members):
            try:  # the group's id stays ours while its leader is unreaped or any member lives
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGKILL and self._cgroup is not None:
            self._cgroup.kill()
        for pid in members:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def terminate(self, grace: float = 5.0) -> None:
        """End it and everything it started; idempotent.

        SIGTERM to its process group and every other process of the job, SIGKILL to whatever is left after
        ``grace`` seconds (grandchildren too, when it already ended), then reap it and remove its cgroup. What the
        OS counted (out-of-memory kills, peak memory) is kept for :meth:`exit_cause` and :meth:`peak_memory`.
        """
        with self._lock:
            if self._ended or self.proc is None:
                return
            if self.proc.poll() is None:
                self.killed_here = True
            members = self._members()
            self._signal(members, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while members and time.monotonic() < deadline:
                time.sleep(0.1)
                self.proc.poll()
                members = self._members()
            for _ in range(300):  # SIGKILL until none is left (one may have forked meanwhile)
                if not members:
                    break
                self._signal(members, signal.SIGKILL)
                time.sleep(0.05)
                self.proc.poll()
                members = self._members()
            else:
                log.error("%s: processes %s are still alive after SIGKILL", self.name, sorted(members))
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("%s: process %d did not end after SIGKILL", self.name, self.proc.pid)
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            if self._reader is not None:
                self._reader.join(timeout=5)
            if self._cgroup is not None:
                self._oom_kills, self._peak = self._cgroup.oom_kills(), self._cgroup.peak()
                self._cgroup.remove()
            self._ended = True

    def peak_memory(self) -> int | None:
        """The most memory the job used, all its processes together, page cache included (cgroup only, else None)."""
        if self._cgroup is None or self._ended:
            return self._peak
        return self._cgroup.peak()

    def _oom_killed(self) -> bool:
        if self._cgroup is None:
            return False
        return (self._oom_kills if self._ended else self._cgroup.oom_kills()) > 0

    def exit_cause(self) -> str:
        """How it ended, in one line (every shape is in the module's docstring)."""
        if self.proc is None:
            return "was not started"
        code = self.returncode
        if code is None:
            return "is still running"
        limit = f"memory limit {format_memory(self.memory_limit)} reached" if self.memory_limit else ""
        if code >= 0:
            if code and limit:
                tail = _tail(self.log_path, self._log_start)
                for marker in _MEMORY_MARKERS:
                    if marker in tail:
                        return f"exited with code {code} ({marker}: {limit})"
                if self._oom_killed():
                    return f"exited with code {code} (a process of the job was killed: {limit})"
            return f"exited with code {code}"
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if limit and number == signal.SIGKILL and self._oom_killed():
            return f"was killed by signal {number} ({limit})"
        maybe = (number == signal.SIGKILL and not self.killed_here) or (
            self.limit_kind == "rlimit" and number in (signal.SIGSEGV, signal.SIGABRT)
        )
        if limit and maybe:
            return f"was killed by signal {number} ({name}; {limit}?)"
        return f"was killed by signal {number} ({name})"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tail(path: Path, start: int, size: int = 4096) -> str:
    """The last ``size`` bytes of ``path`` written after offset ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - size, start))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


__all__ = ["ENV_TOKEN", "JobProcess", "StatusCallback"]
