"""``ScriptRunner``: a Client API training script as a job's executor (``nvflare.job_config.script_runner``).

In process (the default) the script runs in the client's process under ``PTInProcessClientAPIExecutor``
(PyTorch), ``TFInProcessClientAPIExecutor`` (TensorFlow) or ``InProcessClientAPIExecutor`` (NumPy, raw); with
``launch_external_process`` it is launched with ``command`` by a ``SubprocessLauncher`` and talks to a
``PTClientAPILauncherExecutor`` / ``ClientAPILauncherExecutor`` over a ``CellPipe`` (``pipe``), its metrics
coming back through a second pipe (``metrics_pipe``), a ``MetricRelay`` (``metric_relay``) and an
``ExternalConfigurator`` (``config_preparer``) — the components and ids NVFlare 2.5 - 2.7 write. The script
goes into ``custom/`` at the path given (relative paths as given; see
:func:`~flruntime.compat.jobapi.export.script_location`).
"""

from __future__ import annotations

import importlib.util
from enum import Enum, StrEnum
from typing import Any

from flruntime.client.config import ExchangeFormat, TransferType
from flruntime.compat.jobapi.export import remember_init_args, script_location
from flruntime.compat.jobapi.fed_job import FedJob, JobCtx, check_kwargs, validate_object_for_job
from flruntime.errors import JobApiError


class FrameworkType(StrEnum):
    """The training script's framework: it decides the executor and how parameters are exchanged."""

    RAW = "raw"
    NUMPY = "numpy"
    PYTORCH = "pytorch"
    TENSORFLOW = "tensorflow"


class PipeConnectType(StrEnum):
    """How a launched script's pipe reaches the client (flruntime's pipes are local sockets: any is fine)."""

    VIA_ROOT = "via_root"
    VIA_CP = "via_cp"
    VIA_RELAY = "via_relay"


_CONNECT_URL = {
    PipeConnectType.VIA_CP: "{CP_URL}",
    PipeConnectType.VIA_RELAY: "{RELAY_URL}",
    PipeConnectType.VIA_ROOT: "{ROOT_URL}",
}


def _text(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def _classes() -> dict[str, type]:
    from flruntime.components.executors.in_process import InProcessClientAPIExecutor, PTInProcessClientAPIExecutor
    from flruntime.components.executors.launcher import ClientAPILauncherExecutor, PTClientAPILauncherExecutor
    from flruntime.components.launchers.subprocess import SubprocessLauncher
    from flruntime.components.widgets.metric_relay import ExternalConfigurator, MetricRelay
    from flruntime.pipes.cell import CellPipe

    found: dict[str, type] = {
        "in_process": InProcessClientAPIExecutor,
        "pt_in_process": PTInProcessClientAPIExecutor,
        "launcher_executor": ClientAPILauncherExecutor,
        "pt_launcher_executor": PTClientAPILauncherExecutor,
        "launcher": SubprocessLauncher,
        "metric_relay": MetricRelay,
        "configurator": ExternalConfigurator,
        "pipe": CellPipe,
    }
    remember_init_args(*found.values())
    return found


class BaseScriptRunner:
    """Runs or launches a Client API script on the clients it is placed on (``job.to(runner, "site-1")``).

    Args:
        script: the script (a ``.py`` file for in process; anything ``command`` runs when launched).
        script_args: its command-line arguments.
        launch_external_process: launch it in a process of its own.
        command: what runs a launched script (``command custom/<script> <script_args>``).
        server_expected_format: the parameters' format on the server (numpy).
        framework: the script's framework (:class:`FrameworkType`).
        params_transfer_type: ``FULL`` (whole models) or ``DIFF`` (differences).
        executor: an executor to use instead (its settings win over the ones above).
        task_pipe: the launched script's task pipe (id ``pipe``) instead of a ``CellPipe``.
        launcher: the launcher instead of a ``SubprocessLauncher``.
        metric_relay: the metric relay instead of a ``MetricRelay``.
        metric_pipe: the metrics pipe instead of a ``CellPipe``.
        pipe_connect_type: how the pipes connect (:class:`PipeConnectType`).
        launch_once: launch the script once for the whole job (else once per task).
        shutdown_timeout: seconds to let a launched script end by itself at the end.

    Raises:
        JobApiError: an unknown framework, its package missing, or an object of the wrong kind.
    """

    def __init__(
        self,
        script: str,
        script_args: str = "",
        launch_external_process: bool = False,
        command: str = "python3 -u",
        server_expected_format: str = ExchangeFormat.NUMPY,
        framework: str = FrameworkType.PYTORCH,
        params_transfer_type: str = TransferType.FULL,
        executor: Any = None,
        task_pipe: Any = None,
        launcher: Any = None,
        metric_relay: Any = None,
        metric_pipe: Any = None,
        pipe_connect_type: str | None = None,
        launch_once: bool = True,
        shutdown_timeout: float = 0.0,
    ) -> None:
        try:
            kind = FrameworkType(framework)
        except ValueError:
            raise JobApiError(f"Framework {framework} unsupported") from None
        module = {FrameworkType.PYTORCH: "torch", FrameworkType.TENSORFLOW: "tensorflow"}.get(kind)
        if module is not None and importlib.util.find_spec(module) is None:
            raise JobApiError(f"Using FrameworkType.{kind.name}, but unable to import {module}")
        if pipe_connect_type is not None and pipe_connect_type not in _CONNECT_URL:
            raise JobApiError(
                f"invalid pipe_connect_type '{pipe_connect_type}': must be one of {[t.value for t in PipeConnectType]}"
            )
        if launch_external_process and kind is FrameworkType.TENSORFLOW and executor is None:
            raise JobApiError(
                "a TensorFlow script in an external process is not supported by flruntime yet "
                "(use launch_external_process=False)"
            )
        classes = _classes()
        from flruntime import roles

        checks: list[tuple[str, Any, Any]] = [
            ("executor", executor, classes["launcher_executor" if launch_external_process else "in_process"]),
            ("task_pipe", task_pipe, roles.Pipe),
            ("metric_pipe", metric_pipe, roles.Pipe),
            ("launcher", launcher, roles.Launcher),
            ("metric_relay", metric_relay, classes["metric_relay"]),
        ]
        for name, obj, cls in checks:
            if obj is not None:
                validate_object_for_job(name, obj, cls)
        self._script = script
        self._script_args = script_args
        self._launch_external_process = launch_external_process
        self._command = command
        self._server_expected_format = server_expected_format
        self._framework = kind
        self._params_transfer_type = params_transfer_type
        self._executor = executor
        self._task_pipe = task_pipe
        self._launcher = launcher
        self._metric_relay = metric_relay
        self._metric_pipe = metric_pipe
        self._pipe_connect_type = PipeConnectType(pipe_connect_type or PipeConnectType.VIA_CP)
        self._launch_once = launch_once
        self._shutdown_timeout = shutdown_timeout
        self._params_exchange_format = {
            FrameworkType.PYTORCH: ExchangeFormat.PYTORCH,
            FrameworkType.RAW: ExchangeFormat.RAW,
        }.get(kind, ExchangeFormat.NUMPY)

    def _cell_pipe(self) -> Any:
        return _classes()["pipe"](
            mode="PASSIVE",
            site_name="{SITE_NAME}",
            token="{JOB_ID}",
            root_url=_CONNECT_URL[self._pipe_connect_type],
            secure_mode="{SECURE_MODE}",
            workspace_dir="{WORKSPACE}",
        )

    def add_to_fed_job(self, job: FedJob, ctx: JobCtx, **kwargs: Any) -> dict[str, str]:
        """Add the executor (and, when launched, its pipes, launcher, relay) to the job; return their ids."""
        check_kwargs(kwargs, {"tasks": False})
        tasks = kwargs.get("tasks") or ["*"]
        classes = _classes()
        location = script_location(self._script)
        ids: dict[str, str] = {}
        if self._launch_external_process:
            ids["pipe_id"] = job.add_component("pipe", self._task_pipe or self._cell_pipe(), ctx)
            launcher = self._launcher or classes["launcher"](
                script=f"{self._command} custom/{location} {self._script_args}",
                launch_once=self._launch_once,
                shutdown_timeout=self._shutdown_timeout,
            )
            ids["launcher_id"] = job.add_component("launcher", launcher, ctx)
            pt = self._framework is FrameworkType.PYTORCH
            executor = self._executor or classes["pt_launcher_executor" if pt else "launcher_executor"](
                pipe_id=ids["pipe_id"],
                launcher_id=ids["launcher_id"],
                params_exchange_format=self._params_exchange_format.value,
                params_transfer_type=_text(self._params_transfer_type),
                server_expected_format=_text(self._server_expected_format),
            )
            job.add_executor(executor, tasks, ctx)
            ids["metric_pipe_id"] = job.add_component("metrics_pipe", self._metric_pipe or self._cell_pipe(), ctx)
            relay = self._metric_relay or classes["metric_relay"](
                pipe_id=ids["metric_pipe_id"], event_type="fed.analytix_log_stats", heartbeat_timeout=0
            )
            ids["metric_relay_id"] = job.add_component("metric_relay", relay, ctx)
            configurator = classes["configurator"](component_ids=[ids["metric_relay_id"]])
            ids["config_preparer_id"] = job.add_component("config_preparer", configurator, ctx)
        else:
            executor = self._executor or self._in_process_executor(location)
            job.add_executor(executor, tasks, ctx)
        job.add_resources([self._script], ctx)
        return ids

    def _in_process_executor(self, location: str) -> Any:
        classes = _classes()
        common: dict[str, Any] = {
            "task_script_path": location,
            "task_script_args": self._script_args,
            "params_transfer_type": _text(self._params_transfer_type),
            "server_expected_format": _text(self._server_expected_format),
        }
        if self._framework is FrameworkType.PYTORCH:
            return classes["pt_in_process"](params_exchange_format=ExchangeFormat.PYTORCH.value, **common)
        if self._framework is FrameworkType.TENSORFLOW:
            from flruntime.components.executors.tf import TFInProcessClientAPIExecutor

            remember_init_args(TFInProcessClientAPIExecutor)
            return TFInProcessClientAPIExecutor(**common)
        return classes["in_process"](params_exchange_format=self._params_exchange_format.value, **common)


class ScriptRunner(BaseScriptRunner):
    """:class:`BaseScriptRunner` with the default executor, pipes, launcher and relay (NVFlare's ``ScriptRunner``).

    Args:
        script: see :class:`BaseScriptRunner`.
        script_args: see there.
        launch_external_process: see there.
        command: see there.
        framework: see there.
        server_expected_format: see there.
        params_transfer_type: see there.
        pipe_connect_type: see there.
        launch_once: see there.
        shutdown_timeout: see there.
    """

    def __init__(
        self,
        script: str,
        script_args: str = "",
        launch_external_process: bool = False,
        command: str = "python3 -u",
        framework: str = FrameworkType.PYTORCH,
        server_expected_format: str = ExchangeFormat.NUMPY,
        params_transfer_type: str = TransferType.FULL,
        pipe_connect_type: str = PipeConnectType.VIA_CP,
        launch_once: bool = True,
        shutdown_timeout: float = 0.0,
    ) -> None:
        super().__init__(
            script=script,
            script_args=script_args,
            launch_external_process=launch_external_process,
            command=command,
            server_expected_format=server_expected_format,
            framework=framework,
            params_transfer_type=params_transfer_type,
            pipe_connect_type=pipe_connect_type,
            launch_once=launch_once,
            shutdown_timeout=shutdown_timeout,
        )


__all__ = ["BaseScriptRunner", "FrameworkType", "PipeConnectType", "ScriptRunner"]
