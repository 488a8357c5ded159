"""Running a training script as a separate process and exchanging models with it through a pipe.

NVFlare's ``ClientAPILauncherExecutor``: the executor opens its side of the pipe, writes the script's side
into ``client_api_config.json`` (in the site's workspace, ``<workspace>/config/``; the launcher points the
script at it with ``FLRUNTIME_CLIENT_CONFIG``), and has the launcher start the script when the run starts
(``launch_once``) or for each task. Each task goes down the pipe as codec bytes; the script's
``flare.send()`` comes back as a result, which the executor acknowledges.

A task fails (EXECUTION_EXCEPTION) as soon as the script's process exits without having sent its result
(the exit code is in the message), when no heartbeat came for ``heartbeat_timeout`` seconds, when the
script does not take the task within ``peer_read_timeout``, or when ``task_wait_timeout`` passes. With
``launch_once`` the next task relaunches the script. When the job ends the script is told to stop
(``flare.receive()`` returns None), then the launcher waits for it and terminates it if needed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

from flruntime.components.executors.client_api import ClientAPIExecutorBase, ScriptFailed

from flruntime.client.config import (
    ENV_API,
    ENV_API_NVFLARE,
    ENV_CONFIG,
    EX_PROCESS,
    EX_PROCESS_NVFLARE,
    config_path,
    update_config_file,
)
from flruntime.client.protocol import Topic
from flruntime.events.bus import Subscription
from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.pipes.endpoint import PipeEndpoint
from flruntime.roles import Launcher, Pipe
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import ModelMessage, ReturnCode, Task, TaskResult
from flruntime.tracking.relay import forward_log
from flruntime.transport.codec import CodecError, decode, encode

log = logging.getLogger(__name__)

#: Seconds to look for a result still in the pipe after the script's process ended.
LATE_RESULT_WINDOW = 0.25


class ClientAPILauncherExecutor(ClientAPIExecutorBase):
    """Hands tasks to a launched training script through a pipe (NVFlare's arguments).

    Args:
        pipe_id: the pipe component (this side; e.g. a PASSIVE ``FilePipe`` or ``CellPipe``).
        launcher_id: the launcher component (None: the script is started by someone else and connects).
        launch_timeout: seconds from launch until the script calls ``flare.init()`` (default:
            ``external_pre_init_timeout``).
        task_wait_timeout: seconds to wait for a task's result (None: no limit).
        last_result_transfer_timeout: accepted for NVFlare compatibility (a script's ``send`` returns only
            once the executor has the result, so nothing is in flight when it exits).
        external_pre_init_timeout: seconds to wait for the script's ``flare.init()``.
        peer_read_timeout: seconds the script has to take a task off the pipe (and to acknowledge results).
        monitor_interval: seconds between two checks on the process while a task runs.
        read_interval: seconds one pipe read waits.
        heartbeat_interval: seconds between heartbeats, both ways.
        heartbeat_timeout: seconds without any message from the script before the task fails.
        workers: accepted for NVFlare compatibility.
        train_with_evaluation: whether training results are expected to carry metrics.
        train_task_name: the training task's name.
        evaluate_task_name: the evaluation task's name.
        submit_model_task_name: the model-submission task's name.
        from_nvflare_converter_id: a component whose ``convert(params, ctx)`` changes params before the script.
        to_nvflare_converter_id: a component whose ``convert(params, ctx)`` changes the script's params.
        params_exchange_format: ``numpy`` or ``pytorch`` (tensors in the script).
        params_transfer_type: ``FULL`` or ``DIFF`` (see the Client API).
        config_file_name: the name of the config file written for the script.
        server_expected_format: numpy or pytorch; flruntime always sends numpy to the server.
    """

    def __init__(
        self,
        pipe_id: Annotated[str, Ref(Pipe)],
        launcher_id: Annotated[str | None, Ref(Launcher)] = None,
        launch_timeout: float | None = None,
        task_wait_timeout: float | None = None,
        last_result_transfer_timeout: float = 300.0,
        external_pre_init_timeout: float = 60.0,
        peer_read_timeout: float = 60.0,
        monitor_interval: float = 0.01,
        read_interval: float = 0.5,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 60.0,
        workers: int = 4,
        train_with_evaluation: bool = False,
        train_task_name: str = "train",
        evaluate_task_name: str = "validate",
        submit_model_task_name: str = "submit_model",
        from_nvflare_converter_id: str | None = None,
        to_nvflare_converter_id: str | None = None,
        params_exchange_format: str = "numpy",
        params_transfer_type: str = "FULL",
        config_file_name: str = "client_api_config.json",
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
        for name, value in (
            ("external_pre_init_timeout", external_pre_init_timeout),
            ("peer_read_timeout", peer_read_timeout),
            ("read_interval", read_interval),
            ("heartbeat_interval", heartbeat_interval),
            ("heartbeat_timeout", heartbeat_timeout),
            ("monitor_interval", monitor_interval),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not config_file_name or Path(config_file_name).name != config_file_name:
            raise ValueError(f"config_file_name must be a plain file name, got {config_file_name!r}")
        self.pipe_id = pipe_id
        self.launcher_id = launcher_id
        self.launch_timeout = launch_timeout
        self.task_wait_timeout = task_wait_timeout
        self.last_result_transfer_timeout = last_result_transfer_timeout
        self.external_pre_init_timeout = float(external_pre_init_timeout)
        self.peer_read_timeout = float(peer_read_timeout)
        self.monitor_interval = max(float(monitor_interval), 0.005)
        self.read_interval = float(read_interval)
        self.heartbeat_interval = float(heartbeat_interval)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.workers = workers
        self.config_file_name = config_file_name
        self.config_path: Path | None = None
        self.launches = 0
        self._pipe: Pipe | None = None
        self._launcher: Launcher | None = None
        self._endpoint: PipeEndpoint | None = None
        self._connected = False
        self._launched_at = 0.0
        self._setup_error = ""
        self._subscription: Subscription | None = None

    # --- run start and end --------------------------------------------------------------------------------

    def setup(self, ctx: RunContext) -> None:
        """Open the pipe, write the script's config, and launch at the start of the run (``launch_once``)."""
        try:
            pipe = ctx.component(self.pipe_id, Pipe)
            launcher = ctx.component(self.launcher_id, Launcher) if self.launcher_id else None
            pipe.open("task")
            cfg = self.client_config(ctx)
            cfg.pipe = pipe.export()
            cfg.heartbeat_timeout = self.heartbeat_timeout
            cfg.heartbeat_interval = self.heartbeat_interval
            cfg.read_interval = min(self.read_interval, 0.5)
            cfg.peer_read_timeout = self.peer_read_timeout
            self.config_path = config_path(ctx.workspace, self.config_file_name)
            update_config_file(self.config_path, cfg.to_dict())
        except Exception as exc:
            self._setup_error = f"{type(exc).__name__}: {exc}"
            log.error("%s: the launcher executor cannot start: %s", ctx.site, self._setup_error)
            return
        self._pipe, self._launcher = pipe, launcher
        self._endpoint = PipeEndpoint(
            pipe, site=ctx.site, read_interval=self.read_interval, heartbeat_interval=self.heartbeat_interval
        )
        self._endpoint.start()
        if launcher is not None and launcher.launch_once:
            self._subscription = ctx.bus.subscribe(EventType.START_RUN, lambda event: self._launch_at_start(ctx))

    def _launch_at_start(self, ctx: RunContext) -> None:
        try:
            self._launch(ctx)
        except Exception as exc:
            log.error("%s: launching the training script failed: %s", ctx.site, exc)

    def teardown(self, ctx: RunContext) -> None:
        """Tell the script the job ended, stop its process, close the pipe."""
        if self._subscription is not None:
            self._subscription.remove()
        endpoint, launcher = self._endpoint, self._launcher
        if endpoint is not None:
            endpoint.send(Topic.STOP)
        if launcher is not None:
            launcher.stop()
        if endpoint is not None:
            endpoint.close()
        if self._pipe is not None:
            self._pipe.close()
        self._endpoint = None

    # --- the script's process -----------------------------------------------------------------------------

    def _launch(self, ctx: RunContext) -> None:
        assert self._launcher is not None and self._pipe is not None and self._endpoint is not None
        self._pipe.clear()
        self._endpoint.reset()
        self._connected = False
        env = {
            ENV_API: EX_PROCESS,
            ENV_API_NVFLARE: EX_PROCESS_NVFLARE,
            ENV_CONFIG: str(self.config_path),
        }
        self._launcher.launch(ctx, env)
        self._launched_at = time.monotonic()
        self.launches += 1

    def _stop_script(self, grace: float = 0.0) -> None:
        if self._launcher is not None:
            self._launcher.stop(grace=grace)

    def _fail(self, message: str, stop: bool = True) -> ScriptFailed:
        """Return the error for a task; stop the script first (its next task relaunches it)."""
        if stop:
            self._stop_script()
        return ScriptFailed(message)

    def _ensure_script(self, ctx: TaskContext) -> PipeEndpoint:
        if self._setup_error:
            raise ScriptFailed(f"the launcher executor could not start: {self._setup_error}")
        endpoint, launcher = self._endpoint, self._launcher
        assert endpoint is not None
        if launcher is not None and (not launcher.launch_once or not launcher.is_running()):
            if self.launches and launcher.launch_once:
                log.warning(
                    "%s: the training script is not running (exit code %s); relaunching it for task '%s'",
                    ctx.site,
                    launcher.exit_code(),
                    ctx.task_name,
                )
            try:
                self._launch(ctx.run)
            except OSError as exc:
                raise ScriptFailed(f"cannot launch the training script: {exc}") from exc
        if not self._connected:
            self._wait_hello(endpoint, ctx)
        return endpoint

    def _wait_hello(self, endpoint: PipeEndpoint, ctx: TaskContext) -> None:
        timeout = self.launch_timeout or self.external_pre_init_timeout
        since = self._launched_at if self._launcher is not None else time.monotonic()
        deadline = since + timeout
        while not self._connected:
            message = endpoint.get(max(self.monitor_interval, 0.05))
            if message is not None:
                self._side_message(message, ctx)
                continue
            code = self._launcher.exit_code() if self._launcher is not None else None
            if code is not None:
                raise self._fail(f"the training script exited with code {code} before calling flare.init()")
            if ctx.abort.is_set():
                raise ScriptFailed(f"task '{ctx.task_name}' was aborted")
            if time.monotonic() > deadline:
                raise self._fail(f"the training script did not call flare.init() within {timeout:g} s of its start")

    def _side_message(self, message: tuple[str, bytes], ctx: TaskContext) -> None:
        topic, payload = message
        if topic == Topic.HELLO:
            self._connected = True
            try:
                pid = json.loads(payload).get("pid")
            except ValueError:
                pid = None
            log.info("%s: the training script (pid %s) is connected", ctx.site, pid)
        elif topic == Topic.BYE:
            log.info("%s: the training script ended its Client API session", ctx.site)
            self._connected = False
        elif topic == Topic.RESULT and self._endpoint is not None:
            log.warning("%s: dropping a result for a task that is not running", ctx.site)
            self._ack(payload)
        elif topic == Topic.LOG:
            forward_log(payload, ctx.run)

    def _ack(self, payload: bytes) -> TaskResult | None:
        try:
            result = decode(payload)
        except CodecError as exc:
            log.error("%s: a result from the training script cannot be decoded: %s", self._site_of(), exc)
            return None
        if not isinstance(result, TaskResult):
            return None
        if self._endpoint is not None:
            self._endpoint.send(Topic.ACK, result.task_id.encode())
        return result

    def _site_of(self) -> str:
        return self._endpoint.site if self._endpoint is not None else ""

    # --- tasks ------------------------------------------------------------------------------------------------

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Send the task to the script and wait for its result.

        Raises:
            ScriptFailed: the script died, stopped answering, or could not be started.
            TimeoutError: no result within ``task_wait_timeout``.
        """
        endpoint = self._ensure_script(ctx)
        wire = encode(Task(ctx.task_id, task, self.task_input(data, ctx), dict(ctx.headers)))
        self._send_task(endpoint, wire, ctx)
        result = self._wait_result(endpoint, task, ctx)
        if self._launcher is not None and not self._launcher.launch_once:
            endpoint.send(Topic.STOP)
            self._launcher.stop()
        return self.task_output(result, data, ctx)

    def _send_task(self, endpoint: PipeEndpoint, wire: bytes | bytearray, ctx: TaskContext) -> None:
        deadline = time.monotonic() + self.peer_read_timeout
        while not endpoint.send(Topic.TASK, wire, timeout=0.1):
            code = self._launcher.exit_code() if self._launcher is not None else None
            if code is not None:
                raise self._fail(f"the training script exited with code {code} before task '{ctx.task_name}'")
            if time.monotonic() > deadline or ctx.abort.is_set():
                raise self._fail(f"could not send task '{ctx.task_name}' to the training script")

    def _wait_result(self, endpoint: PipeEndpoint, task: str, ctx: TaskContext) -> ModelMessage:
        sent = time.monotonic()
        taken = False
        where = f"task '{task}'" + (f" (round {ctx.current_round})" if ctx.current_round is not None else "")
        while True:
            message = endpoint.get(self.monitor_interval)
            if message is not None:
                topic, payload = message
                if topic == Topic.GOT:
                    taken = taken or payload.decode("utf-8", "replace") == ctx.task_id
                elif topic == Topic.RESULT:
                    result = self._ack(payload)
                    if result is not None and result.task_id == ctx.task_id:
                        return self._result_data(result, where)
                    log.warning("%s: dropping a result for another task", ctx.site)
                else:
                    self._side_message(message, ctx)
                continue
            code = self._launcher.exit_code() if self._launcher is not None else None
            if code is not None:
                late = self._late_result(endpoint, ctx)
                if late is not None:
                    return self._result_data(late, where)
                raise self._fail(f"the training script exited with code {code} during {where}", stop=False)
            if self._launcher is None and endpoint.peer_closed:
                raise self._fail(f"the training script closed the pipe during {where}", stop=False)
            if endpoint.silence() > self.heartbeat_timeout:
                raise self._fail(
                    f"no heartbeat from the training script for {self.heartbeat_timeout:g} s during {where}"
                )
            now = time.monotonic()
            if not taken and now - sent > self.peer_read_timeout:
                raise self._fail(f"the training script did not take {where} within {self.peer_read_timeout:g} s")
            if self.task_wait_timeout and now - sent > self.task_wait_timeout:
                self._stop_script()
                raise TimeoutError(f"the training script sent no result for {where} within {self.task_wait_timeout} s")
            if ctx.abort.is_set():
                raise self._fail(f"{where} was aborted")

    def _late_result(self, endpoint: PipeEndpoint, ctx: TaskContext) -> TaskResult | None:
        """A result the script sent just before its process ended, still on its way through the reader.

        A script's ``send`` returns only once the result was acknowledged, so this matters only for a script
        that died while sending; a short look (none when the connection is known to be closed) is enough.
        """
        deadline = time.monotonic() + (0.0 if endpoint.peer_closed else LATE_RESULT_WINDOW)
        while True:
            message = endpoint.get(0.05)
            if message is not None and message[0] == Topic.RESULT:
                result = self._ack(message[1])
                if result is not None and result.task_id == ctx.task_id:
                    return result
            if message is None and time.monotonic() >= deadline:
                return None

    @staticmethod
    def _result_data(result: TaskResult, where: str) -> ModelMessage:
        if result.rc != ReturnCode.OK:
            raise ScriptFailed(f"the training script reported {result.rc} for {where}: {result.error}")
        if result.data is None:
            raise ScriptFailed(f"the training script sent an empty result for {where}")
        return result.data


class PTClientAPILauncherExecutor(ClientAPILauncherExecutor):
    """:class:`ClientAPILauncherExecutor` whose script exchanges torch tensors by default (state_dict in and out).

    Args:
        pipe_id: see :class:`ClientAPILauncherExecutor`.
        launcher_id: see there.
        launch_timeout: see there.
        task_wait_timeout: see there.
        last_result_transfer_timeout: see there.
        external_pre_init_timeout: see there.
        peer_read_timeout: see there.
        monitor_interval: see there.
        read_interval: see there.
        heartbeat_interval: see there.
        heartbeat_timeout: see there.
        workers: see there.
        train_with_evaluation: see there.
        train_task_name: see there.
        evaluate_task_name: see there.
        submit_model_task_name: see there.
        from_nvflare_converter_id: see there.
        to_nvflare_converter_id: see there.
        params_exchange_format: ``pytorch`` by default.
        params_transfer_type: see there.
        config_file_name: see there.
        server_expected_format: see there.
    """

    def __init__(
        self,
        pipe_id: Annotated[str, Ref(Pipe)],
        launcher_id: Annotated[str | None, Ref(Launcher)] = None,
        launch_timeout: float | None = None,
        task_wait_timeout: float | None = None,
        last_result_transfer_timeout: float = 300.0,
        external_pre_init_timeout: float = 60.0,
        peer_read_timeout: float = 60.0,
        monitor_interval: float = 0.01,
        read_interval: float = 0.5,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 60.0,
        workers: int = 4,
        train_with_evaluation: bool = False,
        train_task_name: str = "train",
        evaluate_task_name: str = "validate",
        submit_model_task_name: str = "submit_model",
        from_nvflare_converter_id: str | None = None,
        to_nvflare_converter_id: str | None = None,
        params_exchange_format: str = "pytorch",
        params_transfer_type: str = "FULL",
        config_file_name: str = "client_api_config.json",
        server_expected_format: str = "numpy",
    ) -> None:
        super().__init__(
            pipe_id,
            launcher_id,
            launch_timeout,
            task_wait_timeout,
            last_result_transfer_timeout,
            external_pre_init_timeout,
            peer_read_timeout,
            monitor_interval,
            read_interval,
            heartbeat_interval,
            heartbeat_timeout,
            workers,
            train_with_evaluation,
            train_task_name,
            evaluate_task_name,
            submit_model_task_name,
            from_nvflare_converter_id,
            to_nvflare_converter_id,
            params_exchange_format,
            params_transfer_type,
            config_file_name,
            server_expected_format,
        )
