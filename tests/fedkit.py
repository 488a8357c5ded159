"""A real federation for tests: a provisioned project whose server and clients run as separate processes
(`python -m flruntime site start --kit KIT`) talking gRPC with mutual TLS on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from flruntime.provision import load_project, provision

#: Fast timing so dead clients and lost servers are noticed within seconds.
FAST_ENV = {
    "FLRUNTIME_HEARTBEAT_INTERVAL": "0.5",
    "FLRUNTIME_HEARTBEAT_TIMEOUT": "3",
    "FLRUNTIME_DISPATCH_TIMEOUT": "60",
    "FLRUNTIME_RECONNECT_MAX": "1",
}


def flr(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flruntime ARGS`` with ``env`` and return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "flruntime", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project_doc(
    name: str,
    port: int,
    clients: list[str],
    admin: str = "admin@acme.org",
    others: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A project file with one server on 127.0.0.1, the clients (org acme, or ``name@org``) and a project admin.

    Args:
        name: the project.
        port: the server's port (the admin port is the next one).
        clients: client names; ``site-3@clinic`` puts site-3 in org clinic.
        admin: the project admin's name.
        others: more participants (e.g. admins with other roles).
    """
    return {
        "api_version": 3,
        "name": name,
        "participants": [
            {
                "name": "server",
                "type": "server",
                "org": "acme",
                "host_names": ["localhost"],
                "default_host": "127.0.0.1",
                "fed_learn_port": port,
                "admin_port": port + 1 if port < 65535 else port,
            },
            *(
                {"name": c.split("@")[0], "type": "client", "org": c.split("@")[1] if "@" in c else "acme"}
                for c in clients
            ),
            {"name": admin, "type": "admin", "org": "acme", "role": "project_admin"},
            *(others or []),
        ],
        "builders": [{"path": "CertBuilder"}, {"path": "SignatureBuilder"}],
    }


def provision_project(
    root: Path, name: str, port: int, clients: list[str], others: list[dict[str, str]] | None = None
) -> Path:
    """Provision a project under ``root`` and return its ``prod_00`` folder."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yml"
    path.write_text(yaml.safe_dump(project_doc(name, port, clients, others=others)))
    return provision(load_project(path), root / "ws").prod_dir


class Federation:
    """Server and client processes of one provisioned project."""

    def __init__(
        self,
        root: Path,
        clients: list[str],
        name: str = "proj",
        others: list[dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        port = free_port()
        while free_port() == port + 1:  # the admin port must be free too
            port = free_port()
        self.port = port
        self.env = {**FAST_ENV, **(env or {})}
        self.prod = provision_project(root, name, port, clients, others)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def kit(self, name: str) -> Path:
        """A participant's kit folder."""
        return self.prod / name

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start a participant's process (its output appends to ``root/<name>.log``)."""
        log = self.root / f"{name}.log"
        self.logs[name] = log
        out = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flruntime", "site", "start", "--kit", str(self.kit(name))],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        out.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a participant and wait for it to end."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=60)

    def log(self, name: str) -> str:
        """Everything a participant logged so far."""
        path = self.logs.get(name, self.root / f"{name}.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, pattern: str, timeout: float = 120.0, count: int = 1) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears ``count`` times in a participant's log; return the last match."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.log(name)))
            if len(found) >= count:
                return found[count - 1]
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}) before logging {pattern!r}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not log {pattern!r} within {timeout} s:\n{self.log(name)[-5000:]}")
            time.sleep(0.2)

    def stop_all(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def np_job(
    root: Path, sites: list[str], rounds: int, sleep: float = 0.0, min_clients: int = 2, wait_after_min: float = 0.0
) -> Path:
    """A numpy FedAvg job (NVFlare's class paths): each client adds 1 after ``sleep`` seconds."""
    meta = {"name": "np_fedavg", "min_clients": min_clients, "deploy_map": {"app": ["server", *sites]}}
    server = {
        "format_version": 2,
        "workflows": [
            {
                "id": "sag",
                "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
                "args": {
                    "min_clients": min_clients,
                    "num_rounds": rounds,
                    "wait_time_after_min_received": wait_after_min,
                    "aggregator_id": "aggregator",
                    "persistor_id": "persistor",
                    "shareable_generator_id": "shareable_generator",
                },
            }
        ],
        "components": [
            {"id": "persistor", "path": "nvflare.app_common.np.np_model_persistor.NPModelPersistor"},
            {
                "id": "shareable_generator",
                "path": "nvflare.app_common.shareablegenerators.full_model_shareable_generator."
                "FullModelShareableGenerator",
            },
            {
                "id": "aggregator",
                "path": "nvflare.app_common.aggregators.intime_accumulate_model_aggregator."
                "InTimeAccumulateWeightedAggregator",
                "args": {"expected_data_kind": "WEIGHTS"},
            },
        ],
    }
    client = {
        "format_version": 2,
        "executors": [
            {
                "tasks": ["train"],
                "executor": {
                    "path": "nvflare.app_common.np.np_trainer.NPTrainer",
                    "args": {"sleep_time": sleep, "delta": 1},
                },
            }
        ],
    }
    for rel, doc in (
        ("meta.json", meta),
        ("app/config/config_fed_server.json", server),
        ("app/config/config_fed_client.json", client),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
    return root


def fedavg_job(path: Path, rounds: int, sites: tuple[str, ...] = ("site-1", "site-2")) -> Path:
    """The fedavg_pt template (``rounds`` rounds, data split in ``len(sites)``) deployed to ``sites``."""
    from flruntime.templates import create_job

    job = create_job("fedavg_pt", path, overrides={"num_rounds": rounds, "num_sites": len(sites)})
    meta = json.loads((job / "meta.json").read_text())
    meta["deploy_map"] = {"app": ["server", *sites]}
    (job / "meta.json").write_text(json.dumps(meta))
    return job
