"""flruntime federations of separate processes started from startup kits, for the benchmarks.

``bench/transfer.py`` and ``bench/round_overhead.py --poc`` use it:

* :class:`Deployment` starts ``python -m flruntime site start --kit KIT`` for each participant (output in
  ``KIT/console.txt``) and stops them (clients first, SIGTERM, SIGKILL ``STOP_TIMEOUT_S`` later);
* :class:`Sampler` samples the RSS and ``VmHWM`` of every participant and of every process it starts (its
  job processes, ``python -m flruntime.jobproc``, and short-lived checks), every ``SAMPLE_S`` seconds;
* :class:`PocFederation` puts them together: ``flruntime.provision.poc.prepare`` (a server on a free port,
  ``site-1`` .. ``site-N``, the admin ``admin@nvidia.com``), the server and clients started with fast
  heartbeats, jobs submitted and waited for with ``flruntime.federation.AdminSession``.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _fedavg_jobs as jobs
import psutil

MIB = jobs.MIB
SAMPLE_S = 0.02
STOP_TIMEOUT_S = 30.0
REGISTER_TIMEOUT_S = 120.0
_TIME = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})"

#: Heartbeats every 0.5 s, so that clients come online and fetch jobs quickly (as tests/fedkit.py).
FAST_ENV = {
    "FLRUNTIME_HEARTBEAT_INTERVAL": "0.5",
    "FLRUNTIME_HEARTBEAT_TIMEOUT": "10",
    "FLRUNTIME_DISPATCH_TIMEOUT": "60",
    "FLRUNTIME_RECONNECT_MAX": "1",
    "PYTHONUNBUFFERED": "1",
}


def free_port_pair() -> int:
    """Return a port P such that P and P+1 are both free on this machine now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                    second.bind(("", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free TCP ports found")


# ---------------------------------------------------------------------------------------------
# Memory of the flruntime processes
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcMemory:
    """Peak memory of one process: a participant's own (``role`` "parent") or one it started."""

    name: str
    pid: int
    participant: str = ""
    role: str = "parent"  # "parent" (site start), "job" (python -m flruntime.jobproc) or "child" (anything else)
    peak_rss: int = 0  # bytes, highest sampled RSS
    vm_hwm: int | None = None  # bytes, last VmHWM read
    idle_rss: int | None = None  # bytes, RSS just before the job was submitted
    samples: int = 0
    max_children: int = 0  # descendants seen at once (parents only; 0: the participant is one process)

    @property
    def peak(self) -> int:
        """The larger of the sampled peak and VmHWM (bytes)."""
        return max(self.peak_rss, self.vm_hwm or 0)

    def record(self) -> dict[str, Any]:
        """The numbers for the JSON record."""
        return {
            "pid": self.pid,
            "participant": self.participant,
            "role": self.role,
            **jobs.peak_fields(self.peak_rss, self.vm_hwm),
            "idle_rss_mib": None if self.idle_rss is None else round(self.idle_rss / MIB, 1),
            "samples": self.samples,
            "max_children": self.max_children,
        }


def _role(proc: psutil.Process) -> tuple[str, str]:
    """("job", "job") for a job process (``python -m flruntime.jobproc``), else ("child", a label).

    The label is the last part of the module a ``python -m MODULE`` child runs (``check`` for the server's
    check of a submitted job's ``custom/`` code, ``flruntime.jobproc.check``), else "child".
    """
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "child", "child"
    if "flruntime.jobproc" in cmd:
        return "job", "job"
    if "-m" in cmd and cmd.index("-m") + 1 < len(cmd):
        return "child", cmd[cmd.index("-m") + 1].rsplit(".", 1)[-1]
    return "child", "child"


class Sampler(threading.Thread):
    """Samples the RSS (and VmHWM) of every participant and every process it started, every ``SAMPLE_S`` s.

    A participant's descendants are looked for every ``DISCOVER_EVERY`` samples (a scan of ``/proc``); each
    new one is sampled from then on as ``<participant>/job`` (a job process; ``/job2`` ... for later ones)
    or ``<participant>/<label>-<pid>`` (see :func:`_role`). Found up to 0.2 s late, it loses nothing:
    ``VmHWM`` is its peak since it started.
    """

    DISCOVER_EVERY = 10

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.procs: dict[str, tuple[psutil.Process, ProcMemory]] = {}
        self.total_peak = 0
        self.peak_processes = 0  # processes sampled at once
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._parents: dict[str, psutil.Process] = {}
        self._known: set[int] = set()
        self._round = 0

    def add(self, name: str, pid: int) -> None:
        """Start sampling the participant process ``pid`` under ``name`` (and, later, what it starts)."""
        proc = psutil.Process(pid)
        with self._lock:
            self._parents[name] = proc
            self._known.add(pid)
            self.procs[name] = (proc, ProcMemory(name, pid, participant=name))

    def discover(self) -> None:
        """Add the descendants of every participant not sampled yet."""
        with self._lock:
            parents = list(self._parents.items())
        for name, parent in parents:
            try:
                children = parent.children(recursive=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.procs[name][1].max_children = max(self.procs[name][1].max_children, len(children))
            for child in children:
                if child.pid in self._known:
                    continue
                role, label = _role(child)
                with self._lock:
                    self._known.add(child.pid)
                    key = f"{name}/job" if role == "job" else f"{name}/{label}-{child.pid}"
                    n = 2
                    while key in self.procs:
                        key, n = f"{name}/job{n}", n + 1
                    self.procs[key] = (child, ProcMemory(key, child.pid, participant=name, role=role))

    def sample_once(self) -> None:
        """Take one sample of every process."""
        if self._round % self.DISCOVER_EVERY == 0:
            self.discover()
        self._round += 1
        total, count = 0, 0
        with self._lock:
            entries = list(self.procs.values())
        for proc, mem in entries:
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            count += 1
            mem.peak_rss = max(mem.peak_rss, rss)
            mem.vm_hwm = jobs.vm_hwm(mem.pid) or mem.vm_hwm
            mem.samples += 1
            total += rss
        self.total_peak = max(self.total_peak, total)
        self.peak_processes = max(self.peak_processes, count)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample_once()
            self.stop.wait(SAMPLE_S)

    def mark_idle(self) -> None:
        """Record every process's RSS now (before the job) as its idle RSS."""
        with self._lock:
            entries = list(self.procs.values())
        for proc, mem in entries:
            try:
                mem.idle_rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass

    def finish(self) -> None:
        """Stop the thread and take a last sample (VmHWM included) while the processes still run."""
        self.stop.set()
        self.join(timeout=5)
        self._round = 0  # look for descendants once more
        self.sample_once()

    def job_process(self, participant: str) -> ProcMemory:
        """The process that ran the job for ``participant``: its job process, else the participant itself."""
        with self._lock:
            entry = self.procs.get(f"{participant}/job") or self.procs[participant]
        return entry[1]


# ---------------------------------------------------------------------------------------------
# The flruntime deployment
# ---------------------------------------------------------------------------------------------


@dataclass
class Participant:
    """A started ``flruntime site start`` process."""

    name: str
    kit: Path
    proc: subprocess.Popen[bytes]
    console: Path

    def text(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.console.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@dataclass
class Deployment:
    """The flruntime processes of one benchmark run."""

    root: Path
    env: dict[str, str]
    participants: list[Participant] = field(default_factory=list)

    def start(self, name: str, kit: Path) -> Participant:
        """Start ``python -m flruntime site start --kit KIT`` with its output in ``KIT/console.txt``."""
        console = kit / "console.txt"
        cmd = [sys.executable, "-m", "flruntime", "site", "start", "--kit", str(kit)]
        with open(console, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env=self.env,
                start_new_session=True,
            )
        participant = Participant(name, kit, proc, console)
        self.participants.append(participant)
        return participant

    def stop(self) -> list[str]:
        """SIGTERM the clients, then the server; SIGKILL what still runs ``STOP_TIMEOUT_S`` after its SIGTERM."""
        notes: list[str] = []
        clients = [p for p in self.participants if p.name != "server"]
        servers = [p for p in self.participants if p.name == "server"]
        for group in (clients, servers):  # clients first, so that they do not see the server go away
            for p in group:
                if p.proc.poll() is None:
                    p.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for p in group:
                try:
                    p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                    notes.append(f"{p.name}: exited {p.proc.returncode}")
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait()
                    notes.append(f"{p.name}: killed {STOP_TIMEOUT_S:g} s after SIGTERM")
        return notes


def wait_for(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], str]) -> None:
    """Poll ``check`` until true; raise when ``timeout`` passes or ``alive`` names a dead process."""
    deadline = time.monotonic() + timeout
    while not check():
        dead = alive()
        if dead:
            raise RuntimeError(f"{dead} while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class PocFederation:
    """A POC project under ``root`` whose server and ``clients`` clients run as separate processes."""

    def __init__(self, root: Path, clients: int, env: dict[str, str]) -> None:
        from flruntime.provision import poc as poc_mod

        self.root = root
        self.sites = [f"site-{i}" for i in range(1, clients + 1)]
        self.port = free_port_pair()
        poc = poc_mod.prepare(root, clients, self.port)
        self.kits = {m.name: m.kit for m in poc.members}
        self.admin_kit = self.kits[poc_mod.ADMIN]
        self.deployment = Deployment(root, {**env, **FAST_ENV})
        self.sampler = Sampler()

    def dead(self) -> str:
        """``NAME exited RC`` for every participant process that exited, else ""."""
        return "; ".join(
            f"{p.name} exited {p.proc.returncode}" for p in self.deployment.participants if p.proc.poll() is not None
        )

    def log(self, name: str) -> str:
        """Everything participant ``name`` wrote so far."""
        return next((p.text() for p in self.deployment.participants if p.name == name), "")

    def _start(self, name: str) -> None:
        participant = self.deployment.start(name, self.kits[name])
        self.sampler.add(name, participant.proc.pid)

    def start(self, timeout: float = REGISTER_TIMEOUT_S) -> float:
        """Start the server, then the clients; return the seconds until every client registered."""
        t0 = time.perf_counter()
        self._start("server")
        self.sampler.start()
        wait_for("the server to listen", lambda: "listening on port" in self.log("server"), timeout, self.dead)
        for site in self.sites:
            self._start(site)
        wait_for(
            "every client to register",
            lambda: all(
                re.search(rf"client '{re.escape(s)}' \(org [^)]*\) registered", self.log("server")) for s in self.sites
            ),
            timeout,
            self.dead,
        )
        return time.perf_counter() - t0

    def run_job(self, job: Path, timeout: float) -> tuple[str, dict[str, Any], float, float]:
        """Submit ``job`` as the admin and wait for its end: (job id, its record, submit time, end time)."""
        from flruntime.federation import AdminSession

        with AdminSession(self.admin_kit, timeout=60) as admin:
            submitted = time.time()
            job_id = admin.submit(job)
            record = dict(admin.wait(job_id, timeout=timeout, poll=0.05))
            return job_id, record, submitted, time.time()

    def server_rounds(self, job_id: str) -> dict[str, dict[int, float]]:
        """Unix times of the server's ``job <id>: round N started`` / ``round N done`` lines, by round."""
        out: dict[str, dict[int, float]] = {"started": {}, "done": {}}
        pattern = rf"{_TIME} .*job {re.escape(job_id)}: round (\d+) (started|done)"
        for m in re.finditer(pattern, self.log("server"), re.MULTILINE):
            out[m.group(3)].setdefault(int(m.group(2)), jobs.parse_time(m.group(1)))
        return out

    def stop(self) -> list[str]:
        """Stop the sampler (a last sample first), then every process (see :meth:`Deployment.stop`)."""
        if self.sampler.is_alive():
            self.sampler.finish()
        return self.deployment.stop()
