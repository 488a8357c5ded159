"""Launching a training script as a child process (NVFlare's ``SubprocessLauncher``).

The command is split with ``shlex`` and run in the app folder, with the app's ``custom/`` folder on
``PYTHONPATH`` and whatever the executor adds to the environment (where the script finds its Client API
config). A leading ``python`` / ``python3`` / ``python3.X`` runs with the interpreter of the client itself,
so the script sees the same installed packages (NVFlare runs whatever ``python3`` is first on ``PATH``).
The process gets its own process group: stopping it also stops processes it started. Its stdout and stderr
are logged line by line to the site's log. POSIX only.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from flruntime.compat import pythonpath_with_shim
from flruntime.roles import Launcher
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)

#: Seconds a script gets to exit by itself after the job ended (at least; ``shutdown_timeout`` may add).
MIN_GRACE = 2.0
#: Seconds between SIGTERM and SIGKILL.
KILL_WAIT = 5.0
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


class SubprocessLauncher(Launcher):
    """Starts the training script as a child process and stops it.

    Args:
        script: the command line, e.g. ``python3 -u custom/train.py --epochs 2`` (run in the app folder).
        launch_once: True: one process for the whole job (relaunched when it died); False: one per task.
        clean_up_script: a command run (in the app folder) after the process stopped.
        shutdown_timeout: seconds the process gets to exit by itself after the job ended before it is
            terminated (at least :data:`MIN_GRACE`).
    """

    def __init__(
        self,
        script: str,
        launch_once: bool = True,
        clean_up_script: str | None = None,
        shutdown_timeout: float = 0.0,
    ) -> None:
        argv = shlex.split(script or "")
        if not argv:
            raise ValueError("script must be a command line, e.g. 'python3 -u custom/train.py'")
        if shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, got {shutdown_timeout}")
        self.script = script
        self.argv = argv
        self.launch_once = launch_once
        self.clean_up_script = clean_up_script
        self.shutdown_timeout = float(shutdown_timeout)
        self.pids: list[int] = []
        self.site = ""
        self._app_dir = Path.cwd()
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: threading.Thread | None = None
        self._last_code: int | None = None
        self._lock = threading.RLock()

    def setup(self, ctx: RunContext) -> None:
        """Remember the site and the app folder."""
        self.site = ctx.site
        self._app_dir = ctx.app_dir

    def command(self) -> list[str]:
        """The command that is run (a leading ``python``/``python3`` is this interpreter)."""
        argv = list(self.argv)
        if _PYTHON.match(argv[0]):
            argv[0] = sys.executable
        return argv

    def environment(self, app_dir: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
        """The process's environment: this one, plus ``extra``, with ``custom/`` first on ``PYTHONPATH``.

        Without NVFlare installed, flruntime's ``nvflare`` shim folder comes last on ``PYTHONPATH``, so scripts
        written for NVFlare (``import nvflare.client as flare``) run unchanged.
        """
        env = {**os.environ, **(extra or {})}
        paths = [str(app_dir / "custom")] if (app_dir / "custom").is_dir() else []
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        pythonpath = pythonpath_with_shim(os.pathsep.join(paths))
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        """Start the process (stopping one still running).

        Raises:
            OSError: when the command cannot be started (e.g. no such program).
        """
        with self._lock:
            self.site, self._app_dir = ctx.site, ctx.app_dir
            if self._proc is not None:
                self.stop(grace=0.0)
            argv = self.command()
            proc = subprocess.Popen(
                argv,
                cwd=ctx.app_dir,
                env=self.environment(ctx.app_dir, env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._proc, self._last_code = proc, None
            self.pids.append(proc.pid)
            log.info("%s: launched the training script (pid %d): %s", ctx.site, proc.pid, shlex.join(argv))
            assert proc.stdout is not None
            self._output = threading.Thread(
                target=self._log_output, args=(proc.pid, proc.stdout), name=f"{ctx.site}:script-output", daemon=True
            )
            self._output.start()

    def _log_output(self, pid: int, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            log.info("%s: [pid %d] %s", self.site, pid, raw.decode("utf-8", "replace").rstrip("\r\n"))

    @property
    def pid(self) -> int | None:
        """The id of the last process launched."""
        return self.pids[-1] if self.pids else None

    def exit_code(self) -> int | None:
        """The last process's exit code (negative: killed by that signal); None while it runs or before."""
        proc = self._proc
        return proc.poll() if proc is not None else self._last_code

    def is_running(self) -> bool:
        """True while the last process launched is alive."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def stop(self, grace: float | None = None) -> int | None:
        """Stop the process and return its exit code (None when none was launched).

        Waits ``grace`` seconds (default ``max(shutdown_timeout, MIN_GRACE)``) for it to exit by itself, then
        sends SIGTERM to its process group, then SIGKILL.
        """
        with self._lock:
            proc, output = self._proc, self._output
            if proc is None:
                return self._last_code
            wait = max(self.shutdown_timeout, MIN_GRACE) if grace is None else max(grace, 0.0)
            code = proc.poll()
            if code is None:
                try:
                    code = proc.wait(wait)
                except subprocess.TimeoutExpired:
                    log.info("%s: terminating the training script (pid %d)", self.site, proc.pid)
                    _signal_group(proc.pid, signal.SIGTERM)
                    _signal_group(proc.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
                    try:
                        code = proc.wait(KILL_WAIT)
                    except subprocess.TimeoutExpired:
                        log.warning("%s: killing the training script (pid %d)", self.site, proc.pid)
                        _signal_group(proc.pid, signal.SIGKILL)
                        code = proc.wait()
            _signal_group(proc.pid, signal.SIGKILL)  # children it left behind in its process group
            if output is not None:
                output.join(KILL_WAIT)
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc, self._output, self._last_code = None, None, code
            log.info("%s: the training script (pid %d) ended with exit code %s", self.site, proc.pid, code)
            if self.clean_up_script:
                self._clean_up()
            return code

    def _clean_up(self) -> None:
        argv = shlex.split(self.clean_up_script or "")
        if not argv:
            return
        if _PYTHON.match(argv[0]):
            argv[0] = sys.executable
        try:
            done = subprocess.run(
                argv, cwd=self._app_dir, capture_output=True, timeout=300, check=False, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("%s: clean_up_script failed: %s", self.site, exc)
            return
        for line in (done.stdout + done.stderr).decode("utf-8", "replace").splitlines():
            log.info("%s: [clean-up] %s", self.site, line)
        if done.returncode != 0:
            log.error("%s: clean_up_script exited with code %d", self.site, done.returncode)

    def teardown(self, ctx: RunContext) -> None:
        """Stop the process if it still runs."""
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
