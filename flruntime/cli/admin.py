"""``flruntime admin``: the admin console (what an admin kit's ``startup/fl_admin.sh`` opens), or ``-c`` commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flruntime.exit_codes import ExitCode


def register(verbs: Any) -> None:
    """Add the ``admin`` verb."""
    p = verbs.add_parser(
        "admin",
        help="the admin console: submit, list, abort, clone and download jobs; check the server and clients",
        description="Log into the server with an admin's kit and open the console (type help there), or run the "
        "-c commands and exit: 0 when all succeeded, 3 at the first that failed (or when the server refused or "
        "could not be reached).",
    )
    p.add_argument(
        "--kit",
        metavar="ADMIN_KIT",
        help="an admin's startup kit (default: $FLRUNTIME_ADMIN_KIT, else the POC workspace's admin)",
    )
    p.add_argument(
        "-c",
        "--command",
        dest="commands",
        action="append",
        default=[],
        metavar="COMMAND",
        help='run this console command instead of opening the console (repeatable), e.g. -c "list_jobs -m 3"',
    )
    p.set_defaults(func=_admin)


def _admin(args: argparse.Namespace) -> int:
    from flruntime.cli.job import _admin_kit
    from flruntime.errors import FLRuntimeError
    from flruntime.federation import AdminSession
    from flruntime.federation.console import AdminConsole

    with AdminSession(_admin_kit(args)) as session:
        scripted = bool(args.commands)
        console = AdminConsole(session, errors=sys.stderr if scripted else sys.stdout)
        try:
            greeting = console.login()
        except FLRuntimeError as exc:
            print(f"flruntime: error: {exc}", file=sys.stderr)
            return int(ExitCode.JOB_FAILED)
        if scripted:
            print(greeting, file=sys.stderr)
            for line in args.commands:
                if not console.run_command(line):
                    return int(ExitCode.JOB_FAILED)
            return int(ExitCode.OK)
        print(greeting, flush=True)
        return _interactive(console)


def _interactive(console: Any) -> int:
    """Run the console on the terminal until bye, quit or end of input; Ctrl-C only drops the line."""
    from flruntime.federation.console import load_history, save_history

    if not sys.stdin.isatty():  # commands piped in: no prompt between the answers
        console.prompt = ""
        console.intro = ""
    editing = load_history(console.history_file)
    intro = None
    try:
        while True:
            try:
                console.cmdloop(intro)
                break
            except KeyboardInterrupt:
                print("^C", flush=True)
                intro = ""
    finally:
        if editing and sys.stdin.isatty():
            problem = save_history(console.history_file)
            if problem:
                print(f"flruntime: warning: {problem}", file=sys.stderr)
    return int(ExitCode.OK)
