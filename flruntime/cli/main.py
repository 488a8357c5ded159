"""Entry point of the ``flruntime`` command: parses the verb and turns errors into exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from flruntime.errors import FLRuntimeError
from flruntime.exit_codes import ExitCode


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with :attr:`ExitCode.USAGE` and one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every verb registered."""
    from flruntime.cli import admin, build, he, job, plot, poc, provision, run, simulate, site, validate

    epilog = "exit codes:\n" + "\n".join(f"  {int(c):>3}  {c.help}" for c in ExitCode)
    parser = _Parser(
        prog="flruntime",
        description="Run and check federated-learning job folders.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    validate.register(verbs)
    job.register(verbs)
    simulate.register(verbs)
    he.register(verbs)
    provision.register(verbs)
    poc.register(verbs)
    site.register(verbs)
    admin.register(verbs)
    plot.register(verbs)
    build.register(verbs)
    run.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FLRuntimeError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"flruntime: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. head)
        sys.stderr.close()
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        print("flruntime: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if args.traceback:
            traceback.print_exc()
        print(
            f"flruntime: internal error: {type(exc).__name__}: {exc} (rerun with --traceback and report it)",
            file=sys.stderr,
        )
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
