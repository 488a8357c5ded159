"""``flruntime simulate JOB_DIR``: run a whole job in one process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flruntime.cli.common import add_allow_option, add_override_option, overrides_of, policy_of
from flruntime.config.job import name_too_long
from flruntime.errors import ConfigError, UsageError
from flruntime.exit_codes import ExitCode
from flruntime.jobproc.check import check_job
from flruntime.problems import Problem


def register(verbs: Any) -> None:
    """Add the ``simulate`` verb."""
    p = verbs.add_parser("simulate", help="run a job in the simulator (one process, clients as threads)")
    p.add_argument("job_dir", metavar="JOB_DIR")
    p.add_argument("-n", "--n-clients", type=int, help="simulate clients site-1 .. site-N")
    p.add_argument("-c", "--clients", help="comma-separated client names (instead of -n)")
    p.add_argument("-t", "--threads", type=int, help="run at most this many client tasks at once")
    p.add_argument("-w", "--workspace", help="workspace folder (default: /tmp/flruntime/simulate/<job name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the workspace from its last model")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    p.add_argument(
        "--processes",
        action="store_true",
        help="run every client in a job process of its own, as deployments do (default: threads of one process)",
    )
    p.add_argument(
        "--he-context-dir",
        metavar="DIR",
        help="HE keys made by 'flruntime he keys -w DIR': the server gets the public, clients the secret context "
        "(default for an HE job: a new key made for the run in WORKSPACE/he_context)",
    )
    add_override_option(p)
    add_allow_option(p)
    p.set_defaults(func=run)


def _process_clients() -> Any:
    from flruntime.jobproc.simulate import ProcessClients

    return ProcessClients()


def _preflight(args: argparse.Namespace, clients: list[str] | None) -> None:
    """Check the job before anything runs, its custom/ code imported in a child process.

    Code that exits, crashes or hangs at import is one problem line (exit 1), and so is a name too long for a folder.

    Raises:
        ConfigError: the job is invalid.
        UsageError: a bad override, or a client name that cannot be a folder name.
    """
    for name in clients or []:
        too_long = name_too_long(name)
        if too_long is not None:
            raise UsageError(f"client name {too_long}")
    check = check_job(args.job_dir, overrides=overrides_of(args), allow=policy_of(args).extra_prefixes)
    problems = check.error_problems
    too_long = None if args.workspace else name_too_long(check.name)
    if too_long is not None:  # the default workspace is a folder named after the job
        problems.append(Problem(check.meta_file, ("name",), f"job name {too_long}", "pass -w WORKSPACE", code="name"))
    if problems:
        raise ConfigError(problems)


def run(args: argparse.Namespace) -> int:
    """Simulate the job and return 0 when it completed."""
    from flruntime.runtime.simulator import simulate

    clients = [c.strip() for c in args.clients.split(",") if c.strip()] if args.clients else None
    _preflight(args, clients)
    result = simulate(
        args.job_dir,
        n_clients=args.n_clients,
        clients=clients,
        threads=args.threads,
        workspace=args.workspace,
        overrides=overrides_of(args),
        policy=policy_of(args),
        resume=args.resume,
        progress=None if args.quiet else sys.stderr,
        he_context_dir=args.he_context_dir,
        client_runner=_process_clients() if args.processes else None,
    )
    if args.quiet:
        print(f"{result.job}: {result.status}; results in {result.workspace}/results.json")
    if not result.ok:
        print(
            f"flruntime: the job did not complete: {result.error or result.status} "
            f"(see {result.workspace}/server/log.txt)",
            file=sys.stderr,
        )
    return int(ExitCode.OK if result.ok else ExitCode.JOB_FAILED)
