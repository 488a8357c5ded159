"""Options shared by several verbs (``-o key=value``, ``--allow``) and their parsing."""

from __future__ import annotations

import argparse
import os
from typing import Any

from flruntime.config.variables import parse_override
from flruntime.errors import UsageError
from flruntime.graph.locate import DEFAULT_ALLOWED_PREFIXES, ImportPolicy


def add_override_option(parser: argparse.ArgumentParser) -> None:
    """Add ``-o/--override key=value`` (repeatable)."""
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a job variable (repeatable); the value is read as JSON when it parses",
    )


def add_allow_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow PREFIX`` (repeatable) to extend the import allowlist."""
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PREFIX",
        help="also allow class paths starting with PREFIX (also: FLRUNTIME_ALLOW=a.,b.)",
    )


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """Parse the ``-o`` options; raise UsageError on a malformed one."""
    out: dict[str, Any] = {}
    for item in args.override:
        try:
            key, value = parse_override(item)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        out[key] = value
    return out


def policy_of(args: argparse.Namespace) -> ImportPolicy:
    """Build the import policy from ``--allow`` and ``FLRUNTIME_ALLOW``."""
    env = [p.strip() for p in os.environ.get("FLRUNTIME_ALLOW", "").split(",") if p.strip()]
    extra = tuple(p if p.endswith(".") else p + "." for p in [*env, *getattr(args, "allow", [])])
    return ImportPolicy(DEFAULT_ALLOWED_PREFIXES, None, extra)
