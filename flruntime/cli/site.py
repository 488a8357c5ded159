"""``flruntime site start --kit KIT``: run a server or a client from its startup kit until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from flruntime.errors import AuthError
from flruntime.exit_codes import ExitCode

#: Environment variables that tune the federation's timing (seconds).
ENV_HEARTBEAT_INTERVAL = "FLRUNTIME_HEARTBEAT_INTERVAL"
ENV_HEARTBEAT_TIMEOUT = "FLRUNTIME_HEARTBEAT_TIMEOUT"
ENV_DISPATCH_TIMEOUT = "FLRUNTIME_DISPATCH_TIMEOUT"
ENV_RECONNECT_MAX = "FLRUNTIME_RECONNECT_MAX"
ENV_MAX_JOBS = "FLRUNTIME_MAX_JOBS"
ENV_MAX_UPLOAD = "FLRUNTIME_MAX_UPLOAD_MB"
ENV_STREAM_RESULTS = "FLRUNTIME_STREAM_RESULTS"
ENV_JOB_PORTS = "FLRUNTIME_JOB_PORTS"


def register(verbs: Any) -> None:
    """Add the ``site`` verb."""
    p = verbs.add_parser(
        "site",
        help="run a server or client from its startup kit (what the kit's start.sh runs)",
        description="Run the participant whose startup kit is given until it gets SIGTERM/SIGINT: a server "
        "listens for clients and admins (gRPC, mutual TLS) and runs submitted jobs; a client connects, "
        "reconnects with backoff when the server is lost, and runs the jobs deployed to it. The kit's "
        "signature is checked first. Timing: FLRUNTIME_HEARTBEAT_INTERVAL (5 s), FLRUNTIME_HEARTBEAT_TIMEOUT "
        "(30 s), FLRUNTIME_DISPATCH_TIMEOUT (60 s), FLRUNTIME_RECONNECT_MAX (30 s); jobs at once "
        "FLRUNTIME_MAX_JOBS (2), the largest job upload FLRUNTIME_MAX_UPLOAD_MB (1024); "
        "FLRUNTIME_STREAM_RESULTS=0 makes the server receive each task result whole before aggregating it "
        "(default: folded in as it arrives). A server serves the web "
        "dashboard (sites, jobs, curves, cross-site heatmap, logs, downloads) when FLRUNTIME_DASHBOARD_PORT is set "
        "(0: a free port; the log says 'dashboard at URL'), on FLRUNTIME_DASHBOARD_HOST (127.0.0.1); admins log in "
        "with the one-time link `flruntime admin -c dashboard_login` prints. Exit 0 when stopped, "
        "1 for a tampered or invalid kit, 2 for usage errors, 3 when the server refused this client.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    start = actions.add_parser("start", help="start the participant of a kit", description=p.description)
    start.add_argument("--kit", required=True, metavar="KIT", help="the participant's startup kit folder")
    start.add_argument(
        "--workspace",
        metavar="DIR",
        help="a writable folder for job runs and logs (default: the kit folder; use it when the kit is read-only)",
    )
    start.set_defaults(func=run)


def _job_ports() -> tuple[int, int] | None:
    from flruntime.errors import UsageError
    from flruntime.federation.runner import job_ports

    try:
        return job_ports(os.environ.get(ENV_JOB_PORTS))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        from flruntime.errors import UsageError

        raise UsageError(f"{name}={raw!r}: not a number of seconds") from None
    if value <= 0:
        from flruntime.errors import UsageError

        raise UsageError(f"{name}={raw!r}: must be more than 0 seconds")
    return value


def run(args: argparse.Namespace) -> int:
    """Start the participant and serve until a signal stops it."""
    from flruntime.federation.kit import load_kit
    from flruntime.he.contexts import ENV_DIR

    kit = load_kit(args.kit)
    workspace = Path(args.workspace) if args.workspace else kit.root
    workspace.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(ENV_DIR, str(kit.startup))  # the kit's HE context, for HE jobs
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {kit.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("%s: got signal %d; stopping", kit.name, signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if kit.type == "server":
        from flruntime.federation.server import FederationServer, Settings

        settings = Settings(
            heartbeat_interval=_seconds(ENV_HEARTBEAT_INTERVAL, 5.0),
            heartbeat_timeout=_seconds(ENV_HEARTBEAT_TIMEOUT, 30.0),
            dispatch_timeout=_seconds(ENV_DISPATCH_TIMEOUT, 60.0),
            max_jobs=int(_seconds(ENV_MAX_JOBS, 2)),
            max_upload=int(_seconds(ENV_MAX_UPLOAD, 1024) * 2**20),
            stream_results=os.environ.get(ENV_STREAM_RESULTS, "1").strip().lower() not in ("0", "false", "no", "off"),
            job_ports=_job_ports(),
        )
        server = FederationServer(kit, workspace, settings)
        server.start()
        try:
            server.wait(stop)
        finally:
            server.stop()
        return int(ExitCode.OK)
    if kit.type == "client":
        from flruntime.federation.client import FederationClient

        client = FederationClient(kit, workspace, reconnect_max=_seconds(ENV_RECONNECT_MAX, 30.0))

        def relay() -> None:
            stop.wait()
            client.stop()

        threading.Thread(target=relay, name="signals", daemon=True).start()
        rc = client.run()
        client.close()
        if rc:
            raise AuthError(f"{kit.name}: the server refused this client: {client.refusal}")
        return int(ExitCode.OK)
    from flruntime.errors import UsageError

    raise UsageError(f"{kit.root} is an admin kit: open the admin console with its startup/fl_admin.sh")
