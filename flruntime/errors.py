"""The error hierarchy: every failure a user can cause is an :class:`FLRuntimeError` subclass.

Each error carries an exit code so the command line can end with a documented status and
one readable line instead of a traceback.
"""

from __future__ import annotations

from flruntime.exit_codes import ExitCode


class FLRuntimeError(Exception):
    """Base of all errors raised for bad input or a failed run."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(FLRuntimeError):
    """The command line or an API call was used wrongly (unknown option, template, override)."""

    exit_code = ExitCode.USAGE


class ProcessStateError(FLRuntimeError):
    """Participant processes are not in the state a command needs (running, not stopping, not starting)."""

    exit_code = ExitCode.PROCESSES


class ConfigError(FLRuntimeError):
    """A job folder or config file is invalid; ``problems`` holds every finding."""

    exit_code = ExitCode.INVALID_JOB

    def __init__(self, problems: list) -> None:  # list[Problem]; typed loosely to avoid an import cycle
        self.problems = list(problems)
        first = self.problems[0].format() if self.problems else "invalid job"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


class InstantiationError(FLRuntimeError):
    """A component's constructor raised while the graph was being built."""

    exit_code = ExitCode.INVALID_JOB


class TransportError(FLRuntimeError):
    """A message could not be delivered between server and client."""

    exit_code = ExitCode.JOB_FAILED


class AuthError(FLRuntimeError):
    """A peer failed authentication or authorization."""

    exit_code = ExitCode.JOB_FAILED


class AbortedError(FLRuntimeError):
    """The run was aborted."""

    exit_code = ExitCode.JOB_FAILED


class JobFailedError(FLRuntimeError):
    """A job ran and did not complete (e.g. a Python job API's ``simulator_run``)."""

    exit_code = ExitCode.JOB_FAILED


class JobApiError(UsageError, ValueError):
    """A Python job API (a job, a recipe, an environment) was asked for something it cannot do.

    A ``ValueError`` too, as NVFlare raises for the same mistakes, so code written for NVFlare catches it.
    """
