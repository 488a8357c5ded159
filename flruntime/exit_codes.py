"""Process exit codes of the ``flruntime`` command line, with the help text each one stands for."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes; the README's table is generated from these descriptions."""

    OK = 0
    INVALID_JOB = 1
    USAGE = 2
    JOB_FAILED = 3
    PROCESSES = 4
    INTERNAL = 70

    @property
    def help(self) -> str:
        """Return the one-line meaning of this exit code."""
        return _HELP[self]


_HELP = {
    ExitCode.OK: "success: the job is valid / the command did what it was asked",
    ExitCode.INVALID_JOB: "the job folder has problems; each one was printed as FILE:LINE: $.path: message",
    ExitCode.USAGE: "bad command line: unknown option, missing argument, unknown override or template",
    ExitCode.JOB_FAILED: "the job started but did not finish successfully",
    ExitCode.PROCESSES: "POC participants are in the way: one runs (stop it first), did not stop in time, or exited "
    "right after it started",
    ExitCode.INTERNAL: "a bug in flruntime (rerun with --traceback and report it)",
}
