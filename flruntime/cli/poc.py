"""``flruntime poc``: prepare, start, stop and clean a whole project on this machine (POC mode)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flruntime.exit_codes import ExitCode

_EXIT = (
    "Exit 0 when done, 1 when provisioning fails, 2 for usage errors (including a workspace that is not a POC "
    "workspace), 4 when participants are in the way (running, not stopping, or ending right after start)."
)


def _workspace(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-w",
        "--workspace",
        metavar="DIR",
        help="the POC workspace (default: $FLRUNTIME_POC_WORKSPACE, else /tmp/flruntime/poc)",
    )


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p",
        "--participant",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="only these participants (default: the server and every client)",
    )
    p.add_argument(
        "-ex",
        "--exclude",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="leave these participants out",
    )


def register(verbs: Any) -> None:
    """Add the ``poc`` verb group (``prepare``, ``start``, ``stop``, ``clean``)."""
    poc = verbs.add_parser(
        "poc",
        help="run a project on this machine: prepare, start, stop, clean",
        description="POC mode: a local project (server, site-1..site-N, admin@nvidia.com) provisioned into one "
        "folder, each participant started from its startup kit as its own process. " + _EXIT,
    )
    sub = poc.add_subparsers(dest="poc_verb", metavar="COMMAND", parser_class=type(poc))
    sub.required = True

    p = sub.add_parser(
        "prepare",
        help="provision the POC project into the POC workspace",
        description="Write WS/project.yml and provision it into WS/example_project/prod_00/: server 'server' on "
        "localhost (fed_learn_port PORT, admin_port PORT+1), clients site-1..site-N, admin admin@nvidia.com "
        "(project_admin). An existing POC workspace is replaced only with --force and never while a participant "
        "runs. " + _EXIT,
    )
    p.add_argument("-n", "--number-of-clients", dest="clients", type=int, default=2, metavar="N", help="clients (2)")
    p.add_argument("--he", "-he", action="store_true", help="add the HE builder (CKKS contexts; needs TenSEAL)")
    p.add_argument("--port", type=int, default=8002, metavar="P", help="fed_learn_port; admin_port is P+1 (8002)")
    p.add_argument("--force", action="store_true", help="replace an existing (stopped) POC workspace")
    _workspace(p)
    p.set_defaults(func=run_prepare)

    p = sub.add_parser(
        "start",
        help="start the server and clients (each kit's startup/start.sh)",
        description="Run startup/start.sh of each selected participant, the server first, and check that each "
        "one still runs a second later. Logs go to each kit's log.txt. Admin consoles are not started: open one "
        "with its startup/fl_admin.sh. The kits run $PYTHON -m flruntime (default: this flruntime's Python). " + _EXIT,
    )
    _selection(p)
    _workspace(p)
    p.set_defaults(func=run_start)

    p = sub.add_parser(
        "stop",
        help="stop participants (each kit's startup/stop.sh) and wait until they are gone",
        description="Run startup/stop.sh of each selected running participant, clients first, and wait until "
        "their processes are gone (at most --timeout seconds). " + _EXIT,
    )
    _selection(p)
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the processes (30)")
    _workspace(p)
    p.set_defaults(func=run_stop)

    p = sub.add_parser(
        "clean",
        help="remove the POC workspace (refused while a participant runs)",
        description="Remove the POC workspace, refused while any participant runs. " + _EXIT,
    )
    _workspace(p)
    p.set_defaults(func=run_clean)


def _ws(args: argparse.Namespace) -> Path:
    from flruntime.provision.poc import default_workspace

    return Path(args.workspace) if args.workspace else default_workspace()


def _hint(args: argparse.Namespace) -> str:
    return f" -w {args.workspace}" if args.workspace else ""


def run_prepare(args: argparse.Namespace) -> int:
    """Provision the POC project."""
    from flruntime.provision import poc

    ws = _ws(args)
    prepared = poc.prepare(ws, args.clients, args.port, args.he, args.force)
    for m in prepared.members:
        print(f"{m.name}: {m.kit}")
    clients = ", ".join(m.name for m in prepared.members if m.type == "client")
    he = "; HE contexts in the server's and clients' startup/" if args.he else ""
    print(
        f"POC workspace ready at {ws}: server 127.0.0.1:{args.port} (admin port {args.port + 1}), "
        f"clients {clients}, admin {poc.ADMIN}{he}"
    )
    print(f"start it with: flruntime poc start{_hint(args)}")
    return int(ExitCode.OK)


def run_start(args: argparse.Namespace) -> int:
    """Start the selected participants."""
    from flruntime.provision import poc

    prepared = poc.load(_ws(args))
    poc.start(prepared, prepared.select(args.participant, args.exclude))
    print(f"stop with: flruntime poc stop{_hint(args)}")
    return int(ExitCode.OK)


def run_stop(args: argparse.Namespace) -> int:
    """Stop the selected participants and wait for them."""
    from flruntime.provision import poc

    prepared = poc.load(_ws(args))
    poc.stop(prepared.select(args.participant, args.exclude), timeout=args.timeout)
    return int(ExitCode.OK)


def run_clean(args: argparse.Namespace) -> int:
    """Remove the POC workspace."""
    from flruntime.provision import poc

    ws = _ws(args)
    poc.clean(ws)
    print(f"removed the POC workspace {ws}")
    return int(ExitCode.OK)
