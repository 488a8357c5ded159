"""POC mode: a whole project on this machine, provisioned into one folder, run as separate processes.

``prepare`` writes ``WS/project.yml`` (server ``server`` on 127.0.0.1, clients ``site-1``..``site-N``, admin
``admin@nvidia.com``; the HE builder with ``--he``), provisions it into ``WS/example_project/prod_00/`` and
writes ``WS/poc.json`` (what start, stop and clean read, and what marks the folder as a POC workspace).
``start`` runs each kit's ``startup/start.sh`` (server first), ``stop`` its ``startup/stop.sh`` and waits for
its processes to end, ``clean`` removes the workspace. A participant runs while the process in its kit's
``pid.fl`` (the restart loop) or ``child_pid.fl`` (``flruntime site start``) is alive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flruntime.errors import ProcessStateError, UsageError
from flruntime.provision.project import check_project
from flruntime.provision.provisioner import provision

ENV_WORKSPACE = "FLRUNTIME_POC_WORKSPACE"
DEFAULT_WORKSPACE = "/tmp/flruntime/poc"
PROJECT = "example_project"
MARKER = "poc.json"
ORG = "nvidia"
ADMIN = "admin@nvidia.com"
DEFAULT_PORT = 8002
#: how long ``start`` watches new processes for an immediate exit, and ``stop`` waits by default
SETTLE_S = 1.0
STOP_TIMEOUT_S = 30.0

Say = Callable[[str], None]


def default_workspace() -> Path:
    """Return ``$FLRUNTIME_POC_WORKSPACE``, else ``/tmp/flruntime/poc``."""
    return Path(os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE)


def project_data(
    clients: int, port: int = DEFAULT_PORT, he: bool = False, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Return the POC's ``project.yml`` content (clients ``names``, else ``site-1`` .. ``site-<clients>``)."""
    builders: list[dict[str, Any]] = [{"path": "CertBuilder"}]
    if he:
        builders.append({"path": "HEBuilder"})
    builders.append({"path": "SignatureBuilder"})
    return {
        "api_version": 3,
        "name": PROJECT,
        "description": f"POC project written by `flruntime poc prepare -n {clients}`",
        "participants": [
            {
                "name": "server",
                "type": "server",
                "org": ORG,
                "host_names": ["localhost", "127.0.0.1"],
                "default_host": "127.0.0.1",
                "fed_learn_port": port,
                "admin_port": port + 1,
            },
            *({"name": name, "type": "client", "org": ORG} for name in names or _site_names(clients)),
            {"name": ADMIN, "type": "admin", "org": ORG, "role": "project_admin"},
        ],
        "builders": builders,
    }


def _site_names(clients: int) -> list[str]:
    return [f"site-{i}" for i in range(1, clients + 1)]


@dataclass(frozen=True)
class Member:
    """One participant of a POC workspace: its name, type and kit folder."""

    name: str
    type: str
    kit: Path


@dataclass(frozen=True)
class Poc:
    """A prepared POC workspace (read from its ``poc.json``)."""

    workspace: Path
    members: tuple[Member, ...]

    @property
    def sites(self) -> list[Member]:
        """The server, then the clients: what start and stop run."""
        return [m for m in self.members if m.type == "server"] + [m for m in self.members if m.type == "client"]

    @property
    def admins(self) -> list[Member]:
        """The admins (their consoles are never started by ``poc start``)."""
        return [m for m in self.members if m.type == "admin"]

    def select(self, only: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Member]:
        """Return the server and clients named by ``only`` (all when empty) less ``exclude``, server first.

        Raises:
            UsageError: an unknown name, or an admin in ``only``.
        """
        names = {m.name: m for m in self.members}
        for name in [*only, *exclude]:
            if name not in names:
                known = ", ".join(names)
                raise UsageError(f"no participant {name!r} in the POC workspace {self.workspace} (known: {known})")
        for name in only:
            if names[name].type == "admin":
                raise UsageError(
                    f"{name} is an admin: its console is not started by poc; open it with "
                    f"{names[name].kit / 'startup' / 'fl_admin.sh'}"
                )
        return [m for m in self.sites if (not only or m.name in only) and m.name not in exclude]

    def running(self) -> dict[str, list[int]]:
        """Return the running participants' live process ids, by name."""
        return {m.name: pids for m in self.sites if (pids := running_pids(m.kit))}


def load(workspace: Path) -> Poc:
    """Read a POC workspace's ``poc.json``.

    Raises:
        UsageError: the folder holds no POC workspace.
    """
    marker = workspace / MARKER
    if not marker.is_file():
        what = "is not a POC workspace (no poc.json)" if workspace.exists() else "does not exist"
        raise UsageError(f"{workspace} {what}: run flruntime poc prepare first (or give -w)")
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
        members = tuple(Member(m["name"], m["type"], workspace / m["kit"]) for m in doc["participants"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{marker}: not a valid POC description ({exc}): run flruntime poc prepare --force") from exc
    return Poc(workspace, members)


def _alive(pid: int, script: str | None = None) -> bool:
    """Tell whether a process runs (a zombie does not; with ``script``, its command line must name it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X") and (script is None or script in cmdline)


def running_pids(kit: Path) -> list[int]:
    """Return the live processes of a kit: its restart loop (``pid.fl``) and ``site start`` (``child_pid.fl``)."""
    out = []
    for name, script in (("pid.fl", "sub_start.sh"), ("child_pid.fl", None)):
        try:
            pid = int((kit / name).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid > 0 and _alive(pid, script):
            out.append(pid)
    return out


def _refuse_running(poc: Poc, what: str) -> None:
    running = poc.running()
    if running:
        listed = ", ".join(f"{name} (pid {' '.join(map(str, pids))})" for name, pids in running.items())
        raise ProcessStateError(
            f"{poc.workspace}: cannot {what} while participants run: {listed}; stop them with flruntime poc stop"
        )


def prepare(
    workspace: Path,
    clients: int,
    port: int = DEFAULT_PORT,
    he: bool = False,
    force: bool = False,
    names: Sequence[str] | None = None,
) -> Poc:
    """Provision a POC project into ``workspace``, replacing a stopped POC there only with ``force``.

    The clients are ``names`` when given (then ``clients`` is their number), else ``site-1`` .. ``site-<clients>``.

    The new workspace is built in a sibling folder first, so a failure (say, ``he`` without TenSEAL) leaves an
    existing one as it was.

    Raises:
        UsageError: bad ``clients`` or ``port``, a POC there without ``force``, or a folder there that is not
            a POC workspace.
        ProcessStateError: a participant of the POC there runs.
        ProvisionError: provisioning failed.
    """
    if clients < 1:
        raise UsageError(f"-n must be at least 1, got {clients}")
    if not 1 <= port <= 65534:
        raise UsageError(f"--port must be 1 to 65534 (the admin port is PORT+1), got {port}")
    if (workspace / MARKER).exists():
        try:
            _refuse_running(load(workspace), "replace the POC workspace")
        except UsageError:
            pass  # an unreadable poc.json: nothing known to run; --force replaces it
        if not force:
            raise UsageError(f"{workspace}: a POC workspace exists (use --force to replace it)")
    elif workspace.is_file() or (workspace.is_dir() and any(workspace.iterdir())):
        raise UsageError(f"{workspace} exists and is not a POC workspace (no poc.json): choose another -w")
    workspace.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{workspace.name}.new-", dir=workspace.parent))
    try:
        data = project_data(clients, port, he, names)
        (new / "project.yml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        result = provision(check_project(data, "project.yml"), new)
        members = [
            {"name": p["name"], "type": p["type"], "kit": result.kits[p["name"]].relative_to(new).as_posix()}
            for p in data["participants"]
        ]
        marker = {"format_version": 1, "project": PROJECT, "port": port, "he": he, "participants": members}
        (new / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if workspace.exists():
            shutil.rmtree(workspace)
        os.replace(new, workspace)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)
    return load(workspace)


def _env() -> dict[str, str]:
    """The kits' environment: the scripts run ``$PYTHON -m flruntime``; by default this flruntime's Python."""
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    return env


def start(poc: Poc, members: Sequence[Member], say: Say = print, settle: float = SETTLE_S) -> None:
    """Run each member's ``startup/start.sh`` in order, then check that each one still runs after ``settle`` s.

    Raises:
        ProcessStateError: a start script failed, or a participant ended right after it started.
    """
    started: list[Member] = []
    for m in members:
        pids = running_pids(m.kit)
        if pids:
            say(f"{m.name}: already running (pid {' '.join(map(str, pids))}), log in {m.kit / 'log.txt'}")
            continue
        script = m.kit / "startup" / "start.sh"
        out = subprocess.run(
            ["bash", str(script)],
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()
            raise ProcessStateError(f"{script} failed (exit code {out.returncode}): {detail[-1] if detail else ''}")
        say(out.stdout.strip() or f"{m.name}: started, log in {m.kit / 'log.txt'}")
        started.append(m)
    if started:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.05)
        gone = [m for m in started if not running_pids(m.kit)]
        if gone:
            logs = ", ".join(str(m.kit / "log.txt") for m in gone)
            raise ProcessStateError(f"{', '.join(m.name for m in gone)} stopped right after starting: see {logs}")
    for admin in poc.admins:
        say(f"{admin.name}: the admin console is not started; open it with {admin.kit / 'startup' / 'fl_admin.sh'}")


def stop(members: Sequence[Member], say: Say = print, timeout: float = STOP_TIMEOUT_S) -> None:
    """Run each running member's ``startup/stop.sh`` (clients first) and wait until its processes are gone.

    Raises:
        ProcessStateError: processes still run after ``timeout`` seconds.
    """
    waiting: dict[str, list[int]] = {}
    for m in reversed(members):
        pids = running_pids(m.kit)
        if not pids:
            say(f"{m.name}: not running")
            continue
        subprocess.run(
            ["bash", str(m.kit / "startup" / "stop.sh")],
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        waiting[m.name] = pids
    deadline = time.monotonic() + timeout
    while True:
        for name in [n for n, pids in waiting.items() if not any(_alive(pid) for pid in pids)]:
            say(f"{name}: stopped")
            del waiting[name]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if waiting:
        listed = ", ".join(
            f"{name} (pid {' '.join(str(p) for p in pids if _alive(p))})" for name, pids in waiting.items()
        )
        raise ProcessStateError(f"still running {timeout:g} s after stop.sh: {listed}; end them with kill PID")


def clean(workspace: Path) -> None:
    """Remove a POC workspace.

    Raises:
        UsageError: the folder is not a POC workspace.
        ProcessStateError: a participant runs.
    """
    poc = load(workspace)
    _refuse_running(poc, "remove the POC workspace")
    shutil.rmtree(workspace)
