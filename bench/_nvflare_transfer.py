"""NVFlare 2.9 half of the transfer benchmark: one FedAvg round with a big model over POC mode.

This script is not part of the flruntime package and is never imported by it. It measures how fast
NVIDIA FLARE 2.9.0 moves a big model in a real deployment on one machine: its **POC mode**, a
server process and ``--clients`` client processes on 127.0.0.1, each started from its provisioned
startup kit, talking gRPC with mutual TLS (the certificates ``nvflare poc prepare`` makes). A
future ``bench/transfer.py`` runs the same workload over flruntime and imports
:func:`run_nvflare_transfer` for this half. It runs under either interpreter: every NVFlare step
is a subprocess of the NVFlare environment (``.venv-nvflare``, see ``_fedavg_jobs.DEFAULT_NVFLARE_PYTHON``).

What it does, with NVFlare's own tools only:

1. ``nvflare poc prepare -n N`` into a fresh temporary workspace (``NVFLARE_POC_WORKSPACE``; ``HOME``
   points into the same temporary folder, because POC records its workspace and the admin kits in
   ``~/.nvflare/config.conf``). The ``project.yml`` it generated is then re-provisioned with
   ``nvflare poc prepare -i project.yml --force`` with two changes: a free port instead of 8002
   (``fed_learn_port``, which in 2.9 is the admin port too) and ``scheme: grpc`` for
   ``StaticFileBuilder`` (2.9's POC default is ``http``, NVFlare's aiohttp websocket driver;
   ``--scheme http`` keeps it). ``connection_security`` stays POC's ``mtls``.
2. ``nvflare poc start -ex admin@nvidia.com``: the server and the clients start from their kits'
   ``start.sh`` and the command returns once they are ready.
3. The FedAvg job of ``bench/_fedavg_jobs.py`` (the one ``bench/big_model.py`` runs in NVFlare's
   simulator): ``ScatterAndGather`` for 1 round with ``min_clients`` = N,
   ``FullModelShareableGenerator``, ``InTimeAccumulateWeightedAggregator`` (``WEIGHT_DIFF``), and in
   the job's ``custom/`` a persistor whose initial model is ``--arrays`` float32 arrays of zeros
   (``--params`` values in all; with ``--resident`` / ``resident=True`` written with ``np.full`` so
   its pages are resident, as a trained model's are) and an executor that returns ``+1.0`` for every received value as a
   ``WEIGHT_DIFF`` DXO at once, without training. The job is submitted with the FLARE API
   (``new_secure_session`` with the admin@nvidia.com startup kit, ``submit_job``,
   ``monitor_job_and_return_job_meta``).
4. ``nvflare poc stop`` and ``nvflare poc clean``; on any failure, timeout or interrupt the
   processes started from this workspace are killed by the pids in their ``pid.fl`` /
   ``daemon_pid.fl`` files (and their descendants), and the temporary folder is removed.

What is measured (one JSON object on stdout, progress on stderr):

* ``round_wall_s``: from the server job log's first ``sent task assignment to client`` line (the
  server hands the train task to a client) to its ``End aggregation.`` line (the aggregate of every
  client's result exists): the task going down to every client, the executors, the results coming
  up, the aggregation. NVFlare's log has millisecond timestamps. ``round_s`` (``Round 0 started.``
  to ``Round 0 finished.``, what ``big_model.py`` reports) and ``job_duration_s`` (the job meta's
  ``duration``, from job start to end, with deployment and teardown) are given next to it.
* ``mb_moved``: computed from the model size: ``model_bytes`` down to each client plus
  ``model_bytes`` up from each (``2 * clients * params * 4`` bytes, in MB of 10**6 bytes); NVFlare's
  own framing is not counted. ``mb_per_s`` = ``mb_moved / round_wall_s``.
* ``memory``: for the server and each client, the peak resident set of its parent process (SP /
  CP: ``server_train`` / ``client_train``), of its per-job child process (SJ / CJ:
  ``runner_process`` / ``worker_process``), and the peak of their sum. Each process's peak is the
  larger of its RSS sampled every ``SAMPLE_S`` seconds with psutil and the last ``VmHWM`` (the
  kernel's high-water mark) read from ``/proc/<pid>/status`` before it exited.
* ``clients_detail``: per client: ``task_sent_to_executor_s`` (the server's ``sent task assignment``
  line for that client to the executor's start, from its trace file: the model coming down and
  being deserialised), ``executor_s``, ``executor_return_to_result_got_s`` (to the server's ``got
  result from client`` line), and from the client job's log the transfers NVFlare itself timed:
  ``download_s`` / ``download_bytes`` (the client pulling the task's arrays) and ``result_upload_s``
  / ``result_upload_bytes`` (the server pulling the result's arrays).

Machine and logs: the server deletes its job folder when the job ends; its job log is read from the
job store (``<workspace>/jobs-storage/<job_id>/workspace``, a zip), the clients' from
``<site>/<job_id>/log.txt``. With ``--keep`` the workspace is stopped but not cleaned, so the logs
stay. ``--max-rss-gib`` (default 18) kills the POC processes when together they use more.

NVFlare's size limits (2.9.0 source): numpy arrays in a task or result are not put in the message:
``NumpyArrayDecomposer`` (a ``ViaDownloaderDecomposer``) leaves a download reference and the
receiver pulls the bytes in chunks of ``np_download_chunk_size`` (default 2 MiB; a job config
variable, read through ``ConfigService`` from the job's config or env ``NVFLARE_NP_DOWNLOAD_CHUNK_SIZE``)
with an inactivity timeout (``np_min_download_timeout`` / ``streaming_idle_timeout``, default
300 s). So no limit has to be raised for a 1 GB model: the cell message limit ``max_message_size``
(default ``MAX_PAYLOAD_SIZE``, just under gRPC's frame limit ``MAX_FRAME_SIZE`` = 2 GiB - 2 MiB) and
``streaming_max_blob_size`` (default 4 GiB, ``comm_config.json`` or ``NVFLARE_STREAMING_MAX_BLOB_SIZE``)
bound only messages that carry the bytes themselves. ``np_download_chunk_size=0`` switches to that
"native" path (the arrays inside the message); tried once with a 1 GB model, the round had not
finished after 2 minutes (stopped by hand; client job logs: ``programming error: received TIMEOUT
from server``, then ``failed to send task result: timeout``) and the server job process had grown
past 10 GiB. ``--job-config KEY=VALUE`` adds such variables to the job's configs and
``--comm-config KEY=VALUE`` writes every site's ``local/comm_config.json``; none is set by default.

Usage::

    python bench/_nvflare_transfer.py --params 10e6            # try a small model first
    python bench/_nvflare_transfer.py --params 250e6 [--clients 2] [--arrays 4] [--timeout 900]
                                      [--scheme grpc|http] [--job-config K=V] [--comm-config K=V]
                                      [--max-rss-gib 18] [--keep] [--nvflare-python PATH]

    # from bench/transfer.py (any interpreter with psutil and PyYAML):
    from _nvflare_transfer import run_nvflare_transfer
    record = run_nvflare_transfer(int(250e6), clients=2)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fedavg_jobs as jobs  # noqa: E402

ADMIN = "admin@nvidia.com"
SERVER = "server"
FLOAT32_BYTES = 4
MB = 10**6
MIB = jobs.MIB
SAMPLE_S = 0.05
DEFAULT_ARRAYS = 4
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_MAX_RSS_GIB = 18.0
CLI_TIMEOUT_S = 120.0  # one nvflare poc command
START_READY_TIMEOUT_S = 90  # nvflare poc start --timeout

# NVFlare's log lines: "2026-11-23 14:50:01,123 - <logger> - INFO - [identity...] - message"
_LOG_TIME = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})"
_SENT = re.compile(_LOG_TIME + r".*sent task assignment to client\. client_name:(\S+)", re.MULTILINE)
_GOT = re.compile(_LOG_TIME + r".*got result from client (\S+) for task", re.MULTILINE)
_MARKS = {
    "round_started": re.compile(_LOG_TIME + r".*Round 0 started\.", re.MULTILINE),
    "aggregation_started": re.compile(_LOG_TIME + r".*Start aggregation\.", re.MULTILINE),
    "aggregation_ended": re.compile(_LOG_TIME + r".*End aggregation\.", re.MULTILINE),
    "round_finished": re.compile(_LOG_TIME + r".*Round 0 finished\.", re.MULTILINE),
}


class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler of :func:`main`, so that cleanup runs."""


def _log(msg: str) -> None:
    print(f"[nvflare-transfer] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Memory of the POC processes
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcPeak:
    """Peak memory of one process."""

    pid: int
    role: str  # "parent" (SP / CP) or "job" (SJ / CJ)
    cmd: str
    peak_rss: int = 0  # bytes, highest sampled RSS
    vm_hwm: int | None = None  # bytes, last VmHWM read while it was alive
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def peak(self) -> int:
        return max(self.peak_rss, self.vm_hwm or 0)

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            **jobs.peak_fields(self.peak_rss, self.vm_hwm),
            "seen_s": round(self.last_seen - self.first_seen, 2),
            "cmd": self.cmd,
        }


@dataclass
class SiteMemory:
    """Every process seen under one site's parent process."""

    site: str
    procs: dict[int, ProcPeak] = field(default_factory=dict)
    tree_peak: int = 0  # bytes, peak of the summed RSS of parent + job processes


class PocSampler(threading.Thread):
    """Samples RSS and VmHWM of each site's parent process (from its ``pid.fl``) and its descendants."""

    def __init__(self, prod_dir: Path, sites: list[str], max_rss: int | None) -> None:
        super().__init__(daemon=True)
        self.prod_dir = prod_dir
        self.sites = {site: SiteMemory(site) for site in sites}
        self.max_rss = max_rss
        self.total_peak = 0
        self.over_limit = False
        self.stop = threading.Event()
        self._parents: dict[str, psutil.Process] = {}

    def _parent(self, site: str) -> psutil.Process | None:
        proc = self._parents.get(site)
        if proc is not None and proc.is_running():
            return proc
        pid = _read_pid(self.prod_dir / site / "pid.fl")
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None
        self._parents[site] = proc
        return proc

    def sample_once(self) -> None:
        total = 0
        now = time.time()
        for site, mem in self.sites.items():
            parent = self._parent(site)
            if parent is None:
                continue
            try:
                procs = [(parent, "parent")] + [(child, "job") for child in parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            tree = 0
            for proc, role in procs:
                try:
                    rss = proc.memory_info().rss
                    peak = mem.procs.get(proc.pid)
                    if peak is None:
                        cmd = " ".join(proc.cmdline())
                        if role == "job" and "python" not in proc.name().lower() and "-m nvflare" not in cmd:
                            continue  # e.g. a shell; only NVFlare's job process counts
                        peak = ProcPeak(proc.pid, role, _short_cmd(cmd), first_seen=now)
                        mem.procs[proc.pid] = peak
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                peak.peak_rss = max(peak.peak_rss, rss)
                peak.vm_hwm = jobs.vm_hwm(proc.pid) or peak.vm_hwm
                peak.last_seen = now
                tree += rss
            mem.tree_peak = max(mem.tree_peak, tree)
            total += tree
        self.total_peak = max(self.total_peak, total)
        if self.max_rss is not None and total > self.max_rss:
            self.over_limit = True

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample_once()
            if self.over_limit:
                return
            self.stop.wait(SAMPLE_S)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for site, mem in self.sites.items():
            parents = [p for p in mem.procs.values() if p.role == "parent"]
            job_procs = sorted((p for p in mem.procs.values() if p.role == "job"), key=lambda p: -p.peak)
            out[site] = {
                "parent": max(parents, key=lambda p: p.peak).record() if parents else None,
                "job": job_procs[0].record() if job_procs else None,
                "other_job_processes": [p.record() for p in job_procs[1:]],
                "tree_peak_mib": round(mem.tree_peak / MIB, 1),
            }
        return out

    def all_pids(self) -> list[int]:
        return [pid for mem in self.sites.values() for pid in mem.procs]


def _short_cmd(cmd: str) -> str:
    match = re.search(r"-m (\S+)", cmd)
    return match.group(1) if match else cmd[:120]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# NVFlare commands
# ---------------------------------------------------------------------------------------------


@dataclass
class Poc:
    """One temporary POC deployment: where it lives and how to run NVFlare's CLI against it."""

    root: Path
    nvflare: list[str]
    python: Path
    env: dict[str, str]
    clients: int
    port: int = 0
    scheme: str = "grpc"

    @property
    def workspace(self) -> Path:
        return self.root / "poc"

    @property
    def prod_dir(self) -> Path:
        prods = sorted((self.workspace / "example_project").glob("prod_*"))
        if not prods:
            raise RuntimeError(f"no prod_NN folder under {self.workspace / 'example_project'}")
        return prods[-1]

    @property
    def sites(self) -> list[str]:
        return [SERVER] + [f"site-{i + 1}" for i in range(self.clients)]

    def cli(self, args: list[str], timeout: float = CLI_TIMEOUT_S, check: bool = True) -> str:
        """Run ``nvflare ARGS``; return its output; raise with the output's tail when it fails."""
        cmd = [*self.nvflare, *args]
        _log("$ nvflare " + " ".join(args))
        try:
            proc = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"nvflare {' '.join(args)} timed out after {timeout:g} s") from exc
        output = (proc.stdout or "") + (proc.stderr or "")
        if check and proc.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-8:])
            raise RuntimeError(f"nvflare {' '.join(args)} exited {proc.returncode}: {tail}")
        return output


def _nvflare_env(root: Path, poc_ws: Path, python: Path) -> dict[str, str]:
    env = jobs.clean_env()
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)  # POC writes ~/.nvflare/config.conf: keep it in the temporary folder
    env["NVFLARE_POC_WORKSPACE"] = str(poc_ws)
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def prepare(poc: Poc, comm_config: dict[str, Any]) -> None:
    """``poc prepare -n N``, then re-provision its project.yml with a free port and the scheme."""
    import yaml

    poc.cli(["poc", "prepare", "-n", str(poc.clients)])
    project_file = poc.workspace / "project.yml"
    project = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    poc.port = free_port()
    for participant in project["participants"]:
        if participant.get("type") == "server":
            participant["fed_learn_port"] = poc.port
    for builder in project["builders"]:
        if builder.get("path", "").endswith("static_file.StaticFileBuilder"):
            builder.setdefault("args", {})["scheme"] = poc.scheme
    custom = poc.root / "project.yml"
    custom.write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    poc.cli(["poc", "prepare", "-i", str(custom), "--force"])
    fed_server = json.loads((poc.prod_dir / SERVER / "startup" / "fed_server.json").read_text(encoding="utf-8"))
    service = fed_server["servers"][0]
    _log(
        f"provisioned {poc.prod_dir}: server {service['service']['target']} scheme {service['service']['scheme']} "
        f"connection_security {service.get('connection_security')}"
    )
    if comm_config:
        for site in poc.sites:
            path = poc.prod_dir / site / "local" / "comm_config.json"
            path.write_text(json.dumps(comm_config, indent=2) + "\n", encoding="utf-8")


# The FLARE API part, run by the NVFlare environment's interpreter (this file with --flare-api).
def flare_api_submit(kit_dir: str, job_dir: str, timeout: float) -> dict[str, Any]:
    """Submit ``job_dir`` with the FLARE API as admin@nvidia.com and wait until it ends."""
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    sess = new_secure_session(ADMIN, kit_dir, timeout=30.0)
    try:
        submitted = time.time()
        job_id = sess.submit_job(job_dir)
        _log(f"submitted job {job_id}")
        rc, meta = sess.monitor_job_and_return_job_meta(job_id, timeout=timeout, poll_interval=0.5)
        finished = time.time()
        if meta is None:
            meta = sess.get_job_meta(job_id)
            if getattr(rc, "name", str(rc)) == "TIMEOUT":
                try:
                    sess.abort_job(job_id)
                except Exception as exc:  # noqa: BLE001 - best effort on the way out
                    _log(f"abort_job failed: {exc}")
        return {
            "job_id": job_id,
            "monitor": getattr(rc, "name", str(rc)),
            "submitted": submitted,
            "finished": finished,
            "meta": meta,
        }
    finally:
        sess.close()


def _run_flare_api(poc: Poc, job_dir: Path, timeout: float) -> dict[str, Any]:
    kit = poc.prod_dir / ADMIN
    cmd = [str(poc.python), str(Path(__file__).resolve()), "--flare-api", str(kit), str(job_dir), str(timeout)]
    try:
        proc = subprocess.run(
            cmd, env=poc.env, cwd=poc.root, capture_output=True, text=True, timeout=timeout + 120, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"FLARE API session did not return within {timeout + 120:g} s") from exc
    for line in (proc.stderr or "").splitlines():
        if line.startswith("[nvflare-transfer]"):
            print(line, file=sys.stderr, flush=True)
    lines = [line for line in (proc.stdout or "").splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-8:])
        raise RuntimeError(f"FLARE API submit failed (exit {proc.returncode}): {tail}")
    return dict(json.loads(lines[-1]))


# ---------------------------------------------------------------------------------------------
# Reading the results
# ---------------------------------------------------------------------------------------------


def server_job_log(poc_ws: Path, prod_dir: Path, job_id: str) -> tuple[str, str]:
    """The server job process's log text for ``job_id`` and where it came from.

    The server deletes its job folder when the job ends and keeps the job's workspace as a zip in
    its job store (``<poc workspace>/jobs-storage/<job_id>/workspace``); its ``log.txt`` is read
    from there. Fallback: the job's lines of the server's ``poc_console.log``.
    """
    stored = poc_ws / "jobs-storage" / job_id / "workspace"
    if stored.is_file():
        try:
            with zipfile.ZipFile(stored) as archive:
                names = [n for n in archive.namelist() if n.rstrip("/").split("/")[-1] == "log.txt"]
                if names:
                    text = archive.read(min(names, key=len)).decode("utf-8", errors="replace")
                    return text, f"{stored}:{min(names, key=len)}"
        except (OSError, zipfile.BadZipFile):
            pass
    console = prod_dir / SERVER / "poc_console.log"
    if console.is_file():
        lines = console.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(line for line in lines if f"run={job_id}" in line), str(console)
    return "", ""


def parse_server_log(text: str) -> dict[str, Any]:
    """Timestamps (Unix time) of the round's milestones in a server job log."""
    marks: dict[str, Any] = {}
    for name, pattern in _MARKS.items():
        match = pattern.search(text)
        marks[name] = jobs.parse_time(match.group(1)) if match else None
    sent: dict[str, float] = {}
    for match in _SENT.finditer(text):
        sent.setdefault(match.group(2), jobs.parse_time(match.group(1)))
    got: dict[str, float] = {}
    for match in _GOT.finditer(text):
        got.setdefault(match.group(2), jobs.parse_time(match.group(1)))
    marks["task_sent"] = sent
    marks["result_got"] = got
    return marks


def _duration_s(text: Any) -> float | None:
    """NVFlare's job meta ``duration`` ("0:00:12.345678") in seconds."""
    if not isinstance(text, str):
        return None
    match = re.match(r"^(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$", text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return round(int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


def _error_lines(prod_dir: Path | None, limit: int = 8) -> list[str]:
    if prod_dir is None or not prod_dir.is_dir():
        return []
    consoles = "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(prod_dir.glob("*/poc_console.log"))
    )
    return jobs.nvflare_error_lines(prod_dir, consoles, limit)


# ---------------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------------


def _kill_pid_tree(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` and its descendants when its command line or cwd names ``marker`` (our workspace)."""
    try:
        root = psutil.Process(pid)
        text = " ".join(root.cmdline()) + " " + root.cwd()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return
    if marker not in text:
        return  # pid reused by something that is not ours
    try:
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _pid_file_pids(poc: Poc) -> list[int]:
    """The pids in every site's ``daemon_pid.fl`` (sub_start.sh's loop) and ``pid.fl`` (SP / CP)."""
    try:
        prod_dir = poc.prod_dir
    except RuntimeError:
        return []
    files = [prod_dir / site / name for site in poc.sites for name in ("daemon_pid.fl", "pid.fl")]
    return [pid for pid in (_read_pid(path) for path in files) if pid is not None]


def stop_and_clean(poc: Poc, seen_pids: list[int], clean: bool = True) -> list[str]:
    """``poc stop``, kill whatever this workspace started that is still alive, then ``poc clean`` (if ``clean``)."""
    problems: list[str] = []
    prod_dir: Path | None
    try:
        prod_dir = poc.prod_dir
    except RuntimeError:
        prod_dir = None
    pids = set(_pid_file_pids(poc)) | set(seen_pids)
    if prod_dir is not None:
        try:
            poc.cli(["poc", "stop"], timeout=90)
        except RuntimeError as exc:
            problems.append(f"poc stop: {exc}")
    marker = str(poc.workspace)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) for pid in pids):
        time.sleep(0.5)
    leftover = [pid for pid in pids if psutil.pid_exists(pid)]
    for pid in leftover:
        _kill_pid_tree(pid, marker)
    if leftover:
        problems.append(f"killed processes left after poc stop: {sorted(leftover)}")
    if clean and poc.workspace.is_dir():
        try:
            poc.cli(["poc", "clean", "--force"], timeout=90)
        except RuntimeError as exc:
            problems.append(f"poc clean: {exc}")
    return problems


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def run_nvflare_transfer(
    params: int,
    clients: int = 2,
    *,
    arrays: int = DEFAULT_ARRAYS,
    timeout: float = DEFAULT_TIMEOUT_S,
    nvflare_python: Path = jobs.DEFAULT_NVFLARE_PYTHON,
    scheme: str = "grpc",
    comm_config: dict[str, Any] | None = None,
    job_config: dict[str, Any] | None = None,
    max_rss_gib: float | None = DEFAULT_MAX_RSS_GIB,
    keep: bool = False,
    resident: bool = False,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run one FedAvg round with a ``params``-value float32 model over NVFlare 2.9 POC mode.

    Args:
        params: Number of float32 model values (split into ``arrays`` arrays).
        clients: Number of client sites (``site-1`` ... ``site-N``); ``min_clients`` is the same.
        arrays: Number of arrays the model is split into.
        timeout: Seconds the job may take, from submission to its end; it is aborted after that.
        nvflare_python: Interpreter of the NVFlare 2.9 environment.
        scheme: Transport of the provisioned kits: "grpc" (default) or NVFlare's POC default "http".
        comm_config: Settings written to every site's ``local/comm_config.json`` (none by default).
        job_config: Top-level variables added to the job's server and client configs, e.g.
            ``np_download_chunk_size`` (none by default).
        max_rss_gib: Stop the job when all POC processes together use more (None: no limit).
        keep: Keep the temporary folder (workspace, job, logs) and print where it is.
        resident: Write the initial model with ``np.full`` instead of ``np.zeros``, so its pages are
            resident from the start, as a trained model's are (``JobSpec.resident``).
        log: Where progress lines go.

    Returns:
        The measurements (see the module docstring); ``ok`` is False and ``error`` says why when the
        round did not complete with the expected final model.
    """
    if params < 1 or clients < 1 or arrays < 1:
        raise ValueError("params, clients and arrays must be at least 1")
    version = jobs.find_nvflare(nvflare_python)
    if version is None:
        raise RuntimeError(f"NVFlare not found at {nvflare_python}; create it with: {jobs.NVFLARE_SETUP}")
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench_nvflare_transfer_"))
    poc = Poc(
        root=root,
        nvflare=jobs.nvflare_command(nvflare_python),
        python=nvflare_python,
        env=_nvflare_env(root, root / "poc", nvflare_python),
        clients=clients,
        scheme=scheme,
    )
    model_bytes = params * FLOAT32_BYTES
    result: dict[str, Any] = {
        "bench": "transfer",
        "tool": "nvflare",
        "version": version,
        "mode": "poc",
        "scheme": scheme,
        "connection_security": None,
        "host": "127.0.0.1",
        "params": params,
        "arrays": arrays,
        "clients": clients,
        "resident": resident,
        "model_bytes": model_bytes,
        "model_mb": round(model_bytes / MB, 3),
        "mb_down": round(clients * model_bytes / MB, 3),
        "mb_up": round(clients * model_bytes / MB, 3),
        "mb_moved": round(2 * clients * model_bytes / MB, 3),
        "round_wall_s": None,
        "round_wall_source": "server job log: first 'sent task assignment to client' -> 'End aggregation.'",
        "mb_per_s": None,
        "round_s": None,
        "job_duration_s": None,
        "job_status": None,
        "clients_detail": {},
        "memory": {},
        "peak_rss_all_processes_mib": None,
        "max_process_peak_rss_mib": None,
        "comm_config": comm_config or {},
        "job_config": job_config or {},
        "setup_s": None,
        "submit_to_end_s": None,
        "wall_s": None,
        "ok": False,
        "error": "",
        "cleanup": [],
    }
    sampler: PocSampler | None = None
    errors: list[str] = []
    started = False
    try:
        log(f"{params:g} float32 values ({model_bytes / MIB:.1f} MiB) in {arrays} arrays, {clients} clients")
        prepare(poc, comm_config or {})
        fed_server = json.loads((poc.prod_dir / SERVER / "startup" / "fed_server.json").read_text(encoding="utf-8"))
        result["connection_security"] = fed_server["servers"][0].get("connection_security")
        result["port"] = poc.port
        spec = jobs.JobSpec(sizes=jobs.split(params, arrays), num_rounds=1, min_clients=clients, resident=resident)
        folder = jobs.write_job(root / "job", "nvflare", spec)
        if job_config:
            for name in ("config_fed_server.json", "config_fed_client.json"):
                path = folder.job / "app" / "config" / name
                config = json.loads(path.read_text(encoding="utf-8"))
                config.update(job_config)
                path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        started = True
        poc.cli(
            ["poc", "start", "-ex", ADMIN, "--timeout", str(START_READY_TIMEOUT_S)], timeout=START_READY_TIMEOUT_S + 60
        )
        max_rss = None if max_rss_gib is None else int(max_rss_gib * 2**30)
        sampler = PocSampler(poc.prod_dir, poc.sites, max_rss)
        sampler.start()
        result["setup_s"] = round(time.perf_counter() - t_start, 2)
        log(f"POC system up on port {poc.port} after {result['setup_s']} s; submitting the job")
        watchdog = _RssWatchdog(sampler, poc, log)
        watchdog.start()
        try:
            submit = _run_flare_api(poc, folder.job, timeout)
        finally:
            watchdog.stop.set()
        meta = submit.get("meta") or {}
        result["job_id"] = submit.get("job_id")
        result["job_status"] = meta.get("status")
        result["job_duration_s"] = _duration_s(meta.get("duration"))
        result["submit_to_end_s"] = round(float(submit["finished"]) - float(submit["submitted"]), 2)
        if submit.get("monitor") != "JOB_FINISHED":
            errors.append(f"job not finished: {submit.get('monitor')} after {timeout:g} s")
        if sampler.over_limit:
            errors.append(f"POC processes over the RSS limit of {max_rss_gib:g} GiB (killed)")
        _fill_timings(result, poc.workspace, poc.prod_dir, str(result.get("job_id")), folder, clients, errors)
        final = jobs.read_result(folder.result_file)
        result["final_model"] = final
        if final is None or abs(float(final.get("p0_first", float("nan"))) - jobs.STEP) > 1e-4:
            errors.append(f"final model {final} (expected p0_first={jobs.STEP})")
        if result["job_status"] != "FINISHED:COMPLETED":
            errors.append(f"job status {result['job_status']}")
    except (Exception, KeyboardInterrupt) as exc:
        if sampler is not None and sampler.over_limit:
            errors.append(f"POC processes over the RSS limit of {max_rss_gib:g} GiB (killed)")
        errors.append(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            result["error"] = "; ".join(errors)
            _finish(result, poc, sampler, started, keep, log, t_start)
            raise
    if errors:
        try:
            errors += _error_lines(poc.prod_dir)
        except RuntimeError:
            pass
    result["error"] = "; ".join(dict.fromkeys(errors))
    result["ok"] = not errors
    _finish(result, poc, sampler, started, keep, log, t_start)
    return result


class _RssWatchdog(threading.Thread):
    """Stops the POC system when the sampler saw the processes above the RSS limit."""

    def __init__(self, sampler: PocSampler, poc: Poc, log: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.sampler = sampler
        self.poc = poc
        self.log = log
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            if self.sampler.over_limit:
                self.log("RSS limit reached: killing the POC processes")
                marker = str(self.poc.workspace)
                # the sub_start.sh daemons first, or they restart the parents they lost
                for pid in [*_pid_file_pids(self.poc), *self.sampler.all_pids()]:
                    _kill_pid_tree(pid, marker)
                return


def _fill_timings(
    result: dict[str, Any],
    poc_ws: Path,
    prod_dir: Path,
    job_id: str,
    folder: jobs.JobFolder,
    clients: int,
    errors: list[str],
) -> None:
    deadline = time.monotonic() + 15  # the job store gets the job's workspace as the job ends
    text, source = server_job_log(poc_ws, prod_dir, job_id)
    while "Round 0 started." not in text and time.monotonic() < deadline:
        time.sleep(0.5)
        text, source = server_job_log(poc_ws, prod_dir, job_id)
    result["server_log_source"] = source
    if "Round 0 started." not in text:
        errors.append(f"no 'Round 0 started.' in the server job log ({source or 'not found'})")
        return
    marks = parse_server_log(text)
    sent: dict[str, float] = marks["task_sent"]
    got: dict[str, float] = marks["result_got"]
    first_sent = min(sent.values()) if sent else None
    result["round_wall_s"] = jobs.seconds(first_sent, marks["aggregation_ended"])
    result["round_s"] = jobs.seconds(marks["round_started"], marks["round_finished"])
    if result["round_wall_s"]:
        result["mb_per_s"] = round(result["mb_moved"] / result["round_wall_s"], 2)
    result["server_log"] = {
        "round_started_to_first_task_sent_s": jobs.seconds(marks["round_started"], first_sent),
        "last_result_got_to_aggregation_end_s": jobs.seconds(
            max(got.values()) if got else None, marks["aggregation_ended"]
        ),
        "aggregation_s": jobs.seconds(marks["aggregation_started"], marks["aggregation_ended"]),
        "aggregation_end_to_round_finished_s": jobs.seconds(marks["aggregation_ended"], marks["round_finished"]),
    }
    if len(sent) < clients or len(got) < clients:
        errors.append(f"server log: task sent to {sorted(sent)}, results from {sorted(got)}")
    traces = _read_site_traces(folder.trace_dir)
    for site in sorted(set(sent) | set(traces)):
        received, returned = traces.get(site, (None, None))
        result["clients_detail"][site] = {
            "task_sent_to_executor_s": jobs.seconds(sent.get(site), received),
            "executor_s": jobs.seconds(received, returned),
            "executor_return_to_result_got_s": jobs.seconds(returned, got.get(site)),
            **client_log_transfers(prod_dir, site, job_id),
        }


_DOWNLOAD = re.compile(r"\[client\] download ref=\S+ done: elapsed=([\d.]+)s size=.*?\(([\d,]+) bytes\)")
_UPLOAD = re.compile(r"\[server\] download tx \S+ done: status=(\w+) elapsed=([\d.]+)s size=.*?\(([\d,]+) bytes\)")


def client_log_transfers(prod_dir: Path, site: str, job_id: str) -> dict[str, Any]:
    """What a client job's log says about its transfers.

    NVFlare 2.9 sends a task's arrays by reference: the client job process downloads them from the
    server (``[client] download ref=... done: elapsed=...``), and the server downloads the result's
    arrays from the client job process (logged there as ``[server] download tx ... done``).
    """
    path = prod_dir / site / job_id / "log.txt"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    downs = [(float(m.group(1)), int(m.group(2).replace(",", ""))) for m in _DOWNLOAD.finditer(text)]
    ups = [(float(m.group(2)), int(m.group(3).replace(",", ""))) for m in _UPLOAD.finditer(text)]
    return {
        "download_s": round(sum(d for d, _ in downs), 3) if downs else None,
        "download_bytes": sum(b for _, b in downs) if downs else None,
        "result_upload_s": round(sum(d for d, _ in ups), 3) if ups else None,
        "result_upload_bytes": sum(b for _, b in ups) if ups else None,
    }


def _read_site_traces(trace_dir: Path) -> dict[str, tuple[float, float]]:
    """``{site: (receive_time, return_time)}`` of round 0 from the executors' trace files."""
    out: dict[str, tuple[float, float]] = {}
    for path in sorted(trace_dir.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "0":
                out[path.stem] = (float(parts[1]), float(parts[2]))
    return out


def _finish(
    result: dict[str, Any],
    poc: Poc,
    sampler: PocSampler | None,
    started: bool,
    keep: bool,
    log: Callable[[str], None],
    t_start: float,
) -> None:
    if sampler is not None:
        sampler.stop.set()
        sampler.join(timeout=5)
        result["memory"] = sampler.report()
        result["peak_rss_all_processes_mib"] = round(sampler.total_peak / MIB, 1)
        peaks = [p.peak for mem in sampler.sites.values() for p in mem.procs.values()]
        result["max_process_peak_rss_mib"] = round(max(peaks) / MIB, 1) if peaks else None
        if result["max_process_peak_rss_mib"] is not None and result["model_bytes"]:
            result["max_process_peak_over_model"] = round(max(peaks) / result["model_bytes"], 2)
    if started or poc.workspace.is_dir():
        result["cleanup"] = stop_and_clean(poc, sampler.all_pids() if sampler else [], clean=not keep)
    if keep:
        log(f"kept: {poc.root}")
        result["kept"] = str(poc.root)
    else:
        shutil.rmtree(poc.root, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - t_start, 2)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parse_settings(items: list[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; VALUE is read as JSON when it parses (numbers, booleans)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--params", default="250e6", help="float32 model values (default 250e6 = 1 GB)")
    parser.add_argument("--clients", type=int, default=2, help="client sites (default 2)")
    parser.add_argument("--arrays", type=int, default=DEFAULT_ARRAYS, help="arrays the model is split into")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds for the job (default 900)")
    parser.add_argument("--scheme", choices=["grpc", "http"], default="grpc", help="transport of the kits")
    parser.add_argument(
        "--comm-config", action="append", default=[], metavar="KEY=VALUE", help="add to every local/comm_config.json"
    )
    parser.add_argument(
        "--job-config", action="append", default=[], metavar="KEY=VALUE", help="top-level variable of the job configs"
    )
    parser.add_argument("--max-rss-gib", type=float, default=DEFAULT_MAX_RSS_GIB, help="stop above this RSS sum")
    parser.add_argument("--nvflare-python", type=Path, default=jobs.DEFAULT_NVFLARE_PYTHON)
    parser.add_argument("--keep", action="store_true", help="keep the workspace, job and logs")
    parser.add_argument(
        "--resident",
        action="store_true",
        help="initial model written with np.full (pages resident, like a trained one)",
    )
    args = parser.parse_args(argv)
    try:
        args.param_count = int(float(args.params))
        args.comm = _parse_settings(args.comm_config, "--comm-config")
        args.job = _parse_settings(args.job_config, "--job-config")
    except ValueError as exc:
        parser.error(str(exc))
    if args.param_count < 1 or args.clients < 1 or args.arrays < 1:
        parser.error("--params, --clients and --arrays must be at least 1")
    return args


def _flare_api_main(argv: list[str]) -> int:
    kit, job, timeout = argv
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # NVFlare prints; keep stdout for the JSON line
    try:
        record = flare_api_submit(kit, job, float(timeout))
    finally:
        sys.stdout = real_stdout
    print(json.dumps(record, default=str), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--flare-api":
        return _flare_api_main(argv[1:])
    args = parse_args(argv)

    def _terminate(signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the cleanup finish
        raise Terminated(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    result = run_nvflare_transfer(
        args.param_count,
        args.clients,
        arrays=args.arrays,
        timeout=args.timeout,
        nvflare_python=args.nvflare_python,
        scheme=args.scheme,
        comm_config=args.comm,
        job_config=args.job,
        max_rss_gib=args.max_rss_gib if args.max_rss_gib > 0 else None,
        keep=args.keep,
        resident=args.resident,
    )
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
