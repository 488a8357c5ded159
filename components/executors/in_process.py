"""Running a training script in a thread of the client's process (NVFlare's ``InProcessClientAPIExecutor``).

The script starts when the run starts and serves every task of the job: each task is offered to its
``flare.receive()`` and the executor waits for ``flare.send()``. The script runs in a thread named
``"<site>:script"`` (so the simulator files its log records under the site), bound to its own Client API
session, as ``__main__`` in a fresh namespace: ``runpy.run_path`` is not used because it swaps
``sys.modules["__main__"]`` and ``sys.argv[0]`` for the whole process, which several sites' scripts in one
simulator would garble.

``sys.argv``: scripts read their arguments from ``sys.argv``, which all threads share. A script thread sets
it while holding a process-wide lock and keeps the lock until the script calls ``flare.init()`` (or first
uses the API, or ends); the other sites' scripts wait for the lock before they start. So parse arguments
before ``flare.init()`` and call it early. A script that holds the lock for more than :data:`ARGV_WAIT`
seconds no longer makes the others wait (they start with a warning that ``sys.argv`` may be overwritten).

A script that raises fails the task it was working on (EXECUTION_EXCEPTION) and every later task; a
script that returns early makes the remaining tasks fail with a message saying so. When the job ends or is
aborted, ``flare.receive()`` returns None and ``flare.is_running()`` False, so the script's loop ends.
"""

from __future__ import annotations

import builtins
import logging
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flruntime.components.executors.client_api import ClientAPIExecutorBase, ScriptFailed

from flruntime.client import binding
from flruntime.client.base import Incoming
from flruntime.client.in_process import InProcessChannel, InProcessClientAPI
from flruntime.compat import install_shim
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import ModelMessage
from flruntime.tracking.emit import emit

log = logging.getLogger(__name__)

#: Held from setting ``sys.argv`` until the script calls ``flare.init()``.
ARGV_LOCK = threading.Lock()
#: Seconds teardown waits for a script to end after the job ended.
STOP_WAIT = 10.0
#: Seconds a script waits for another site's script to call ``flare.init()`` before it starts anyway.
ARGV_WAIT = 60.0


_dirs_lock = threading.Lock()
_dirs: dict[str, int] = {}


@contextmanager
def _script_dir_on_path(folder: Path) -> Iterator[None]:
    """Put the script's own folder first on ``sys.path`` while it runs, as ``python script.py`` does.

    A script imports its sibling modules (``from simple_network import SimpleNetwork`` next to it in ``src/``);
    several sites' scripts from one folder share the entry, which leaves when the last of them ends.
    """
    entry = str(folder)
    with _dirs_lock:
        ours = entry in _dirs or entry not in sys.path  # an entry we added, or one to add
        if ours:
            if entry not in _dirs:
                sys.path.insert(0, entry)
            _dirs[entry] = _dirs.get(entry, 0) + 1
    try:
        yield
    finally:
        if ours:
            with _dirs_lock:
                _dirs[entry] -= 1
                if _dirs[entry] == 0:
                    del _dirs[entry]
                    if entry in sys.path:
                        sys.path.remove(entry)


class _ScriptRunner:
    """Runs one script in its own thread, bound to its session, and records how it ended."""

    def __init__(self, path: Path, args: list[str], api: InProcessClientAPI, site: str) -> None:
        self.path = path
        self.args = args
        self.api = api
        self.site = site
        self.error: BaseException | None = None
        self.ending = ""
        self.done = threading.Event()
        self._argv_held = False
        self._argv_guard = threading.Lock()
        api._on_init = self.release_argv
        self.thread = threading.Thread(target=self._run, name=f"{site}:script", daemon=True)

    def release_argv(self) -> None:
        with self._argv_guard:
            if self._argv_held:
                self._argv_held = False
                ARGV_LOCK.release()

    def _hold_argv(self) -> bool:
        deadline = time.monotonic() + ARGV_WAIT
        while not ARGV_LOCK.acquire(timeout=0.5):
            if self.api.channel.stopped:
                return False
            if time.monotonic() > deadline:
                log.warning(
                    "%s: another site's script has not called flare.init() after %.0f s; starting anyway "
                    "(sys.argv may be overwritten while both start)",
                    self.site,
                    ARGV_WAIT,
                )
                sys.argv = [str(self.path), *self.args]
                return True
        with self._argv_guard:
            self._argv_held = True
        sys.argv = [str(self.path), *self.args]
        return True

    def _run(self) -> None:
        binding.bind_thread(self.api)
        try:
            if not self._hold_argv():
                self.ending = "was stopped before it started"
                return
            code = compile(self.path.read_bytes(), str(self.path), "exec")
            namespace: dict[str, Any] = {
                "__name__": "__main__",
                "__file__": str(self.path),
                "__builtins__": builtins,
                "__package__": None,
                "__spec__": None,
                "__loader__": None,
                "__cached__": None,
            }
            with _script_dir_on_path(self.path.parent):
                exec(code, namespace)
            self.ending = "returned"
        except SystemExit as exc:
            if exc.code in (None, 0):
                self.ending = f"exited (sys.exit({exc.code!r}))"
            else:
                self.error = exc
        except BaseException as exc:
            self.error = exc
        finally:
            self.release_argv()
            binding.unbind_thread(self.api)
            if self.error is not None:
                trace = "".join(traceback.format_exception(self.error)).rstrip()
                log.error("%s: the training script %s failed:\n%s", self.site, self.path, trace)
                self.ending = f"failed: {_describe(self.error)}"
            else:
                log.info("%s: the training script %s %s", self.site, self.path, self.ending)
            self.done.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


class InProcessClientAPIExecutor(ClientAPIExecutorBase):
    """Runs a Client API training script in process and hands it the tasks of the job.

    Args:
        task_script_path: the script, relative to the app's ``custom/`` folder or the app folder (or absolute).
        task_script_args: its command-line arguments (``shlex`` syntax), seen as ``sys.argv[1:]``.
        task_wait_time: seconds to wait for a task's result (None: no limit).
        result_pull_interval: seconds between two checks on the script while a task runs.
        log_pull_interval: accepted for NVFlare compatibility (metrics arrive as events, not by polling).
        params_exchange_format: ``numpy`` (arrays) or ``pytorch`` (tensors) in the script.
        params_transfer_type: ``FULL`` or ``DIFF``; with DIFF a script that sends its full model has the
            difference to the received model sent instead.
        from_nvflare_converter_id: a component whose ``convert(params, ctx)`` changes params before the script.
        to_nvflare_converter_id: a component whose ``convert(params, ctx)`` changes the script's params.
        train_with_evaluation: whether training results are expected to carry metrics.
        train_task_name: the training task's name (``flare.is_train()``).
        evaluate_task_name: the evaluation task's name (``flare.is_evaluate()``).
        submit_model_task_name: the model-submission task's name (``flare.is_submit_model()``).
        server_expected_format: numpy or pytorch; flruntime always sends numpy to the server.
    """

    def __init__(
        self,
        task_script_path: str,
        task_script_args: str = "",
        task_wait_time: float | None = None,
        result_pull_interval: float = 0.5,
        log_pull_interval: float | None = None,
        params_exchange_format: str = "numpy",
        params_transfer_type: str = "FULL",
        from_nvflare_converter_id: str | None = None,
        to_nvflare_converter_id: str | None = None,
        train_with_evaluation: bool = False,
        train_task_name: str = "train",
        evaluate_task_name: str = "validate",
        submit_model_task_name: str = "submit_model",
        server_expected_format: str = "numpy",
    ) -> None:
        super().__init__(
            params_exchange_format=params_exchange_format,
            params_transfer_type=params_transfer_type,
            server_expected_format=server_expected_format,
            train_with_evaluation=train_with_evaluation,
            train_task_name=train_task_name,
            evaluate_task_name=evaluate_task_name,
            submit_model_task_name=submit_model_task_name,
            from_nvflare_converter_id=from_nvflare_converter_id,
            to_nvflare_converter_id=to_nvflare_converter_id,
        )
        if not task_script_path:
            raise ValueError("task_script_path must name the training script")
        if result_pull_interval <= 0:
            raise ValueError(f"result_pull_interval must be positive, got {result_pull_interval}")
        if task_wait_time is not None and task_wait_time <= 0:
            raise ValueError(f"task_wait_time must be positive or null, got {task_wait_time}")
        self.task_script_path = task_script_path
        self.task_script_args = task_script_args
        self.script_args = shlex.split(task_script_args or "")
        self.task_wait_time = task_wait_time
        self.result_pull_interval = float(result_pull_interval)
        self.log_pull_interval = log_pull_interval
        self._runner: _ScriptRunner | None = None
        self._start_error = ""

    def find_script(self, app_dir: Path) -> Path:
        """Return the script's path: under ``custom/``, the app folder, or as given.

        Raises:
            FileNotFoundError: listing where it looked.
        """
        given = Path(self.task_script_path)
        candidates = [given] if given.is_absolute() else [app_dir / "custom" / given, app_dir / given, given]
        for path in candidates:
            if path.is_file():
                return path.resolve()
        raise FileNotFoundError(
            f"task_script_path '{self.task_script_path}': no such file (looked for {', '.join(map(str, candidates))})"
        )

    def setup(self, ctx: RunContext) -> None:
        """Start the script (errors are logged and fail every task)."""
        self._start(ctx)

    def _start(self, ctx: RunContext) -> None:
        install_shim()  # scripts written for NVFlare: ``import nvflare.client as flare`` (a real NVFlare wins)
        try:
            path = self.find_script(ctx.app_dir)
        except FileNotFoundError as exc:
            self._start_error = str(exc)
            log.error("%s: cannot start the training script: %s", ctx.site, exc)
            return
        api = InProcessClientAPI(
            self.client_config(ctx), InProcessChannel(abort=ctx.abort), on_log=lambda record: emit(ctx, record)
        )
        self._runner = _ScriptRunner(path, self.script_args, api, ctx.site)
        log.info("%s: starting the training script %s in process", ctx.site, path)
        self._runner.thread.start()

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Hand the task to the script and wait for its result.

        Raises:
            ScriptFailed: the script failed or ended before sending the result.
            TimeoutError: no result within ``task_wait_time``.
        """
        if self._runner is None and not self._start_error:
            self._start(ctx.run)
        runner = self._runner
        if runner is None:
            raise ScriptFailed(f"cannot start the training script: {self._start_error}")
        if runner.done.is_set():
            raise ScriptFailed(f"the training script {runner.path} {runner.ending}; task '{task}' cannot run")
        channel = runner.api.channel
        channel.post(Incoming(ctx.task_id, task, self.task_input(data, ctx)))
        start = time.monotonic()
        while True:
            result = channel.wait_result(ctx.task_id, self.result_pull_interval)
            if result is None and runner.done.is_set():
                result = channel.wait_result(ctx.task_id, 0.0)
                if result is None:
                    channel.withdraw(ctx.task_id)
                    raise ScriptFailed(
                        f"the training script {runner.path} {runner.ending} before sending the result of task '{task}'"
                    )
            if result is not None:
                return self.task_output(result, data, ctx)
            if ctx.abort.is_set():
                channel.withdraw(ctx.task_id)
                raise ScriptFailed(f"task '{task}' was aborted")
            if self.task_wait_time is not None and time.monotonic() - start > self.task_wait_time:
                channel.withdraw(ctx.task_id)
                raise TimeoutError(
                    f"the training script sent no result for task '{task}' within {self.task_wait_time} s"
                )

    def teardown(self, ctx: RunContext) -> None:
        """End the job for the script and wait (up to :data:`STOP_WAIT` s) for its thread to end."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        runner.api.channel.stop()
        runner.thread.join(STOP_WAIT)
        if runner.thread.is_alive():
            log.warning(
                "%s: the training script is still running %.0f s after the job ended; leaving its thread behind",
                ctx.site,
                STOP_WAIT,
            )


class PTInProcessClientAPIExecutor(InProcessClientAPIExecutor):
    """:class:`InProcessClientAPIExecutor` for PyTorch scripts: params are tensors (state_dict in and out).

    Args:
        task_script_path: see :class:`InProcessClientAPIExecutor`.
        task_script_args: see there.
        task_wait_time: see there.
        result_pull_interval: see there.
        log_pull_interval: see there.
        params_transfer_type: see there.
        from_nvflare_converter_id: see there.
        to_nvflare_converter_id: see there.
        train_with_evaluation: see there (default True, as NVFlare's).
        train_task_name: see there.
        evaluate_task_name: see there.
        submit_model_task_name: see there.
        server_expected_format: see there.
        params_exchange_format: ``pytorch`` (NVFlare 2.5+ takes it; nothing else is accepted).
    """

    def __init__(
        self,
        task_script_path: str,
        task_script_args: str = "",
        task_wait_time: float | None = None,
        result_pull_interval: float = 0.5,
        log_pull_interval: float | None = None,
        params_transfer_type: str = "FULL",
        from_nvflare_converter_id: str | None = None,
        to_nvflare_converter_id: str | None = None,
        train_with_evaluation: bool = True,
        train_task_name: str = "train",
        evaluate_task_name: str = "validate",
        submit_model_task_name: str = "submit_model",
        server_expected_format: str = "numpy",
        params_exchange_format: str = "pytorch",
    ) -> None:
        if str(params_exchange_format).lower() != "pytorch":
            raise ValueError(f"params_exchange_format must be pytorch, got {params_exchange_format!r}")
        super().__init__(
            task_script_path,
            task_script_args,
            task_wait_time,
            result_pull_interval,
            log_pull_interval,
            "pytorch",
            params_transfer_type,
            from_nvflare_converter_id,
            to_nvflare_converter_id,
            train_with_evaluation,
            train_task_name,
            evaluate_task_name,
            submit_model_task_name,
            server_expected_format,
        )
