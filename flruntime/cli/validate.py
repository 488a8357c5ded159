"""``flruntime validate JOB_DIR``: every problem of a job folder, one line each."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flruntime.cli.common import add_allow_option, add_override_option, overrides_of, policy_of
from flruntime.exit_codes import ExitCode
from flruntime.jobproc.check import check_job


def register(verbs: Any) -> None:
    """Add the ``validate`` verb."""
    p = verbs.add_parser(
        "validate",
        help="check a job folder and report every problem",
        description="Run load → schema → resolve → check on a job folder and report every "
        "problem as FILE:LINE: $.path: message (hint). Exit 0 when valid, 1 when not.",
        epilog="A job with code in custom/ is checked in a child process: at most FLRUNTIME_CHECK_TIMEOUT seconds "
        "(default 60) and FLRUNTIME_CHECK_MEMORY_MB MiB of address space (default 2048, 0: no limit).",
    )
    p.add_argument("job_dir", metavar="JOB_DIR")
    p.add_argument("--site", help="check only the app that this site runs (server or a client name)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_override_option(p)
    add_allow_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate (in a child process when the job has custom/ code) and print the problems."""
    result = check_job(args.job_dir, site=args.site, overrides=overrides_of(args), allow=policy_of(args).extra_prefixes)
    errors = result.error_problems
    if args.format == "json":
        out = {
            "job": str(args.job_dir),
            "valid": result.valid,
            "errors": len(errors),
            "warnings": len(result.problems) - len(errors),
            "problems": [p.to_json() for p in result.problems],
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for problem in result.problems:
            print(problem.format())
        warnings = len(result.problems) - len(errors)
        tail = f", {warnings} warning(s)" if warnings else ""
        if errors:
            print(f"{result.name}: {len(errors)} problem(s){tail}", file=sys.stderr)
        else:
            print(f"{result.name}: valid{tail}", file=sys.stderr)
    return int(ExitCode.OK if result.valid else ExitCode.INVALID_JOB)
