"""What the Client API executors share: their NVFlare arguments, the script's config, converters.

An in-process executor (:mod:`.in_process`) and a launcher executor (:mod:`.launcher`) differ only in how
tasks reach the training script; both hand the script the task's model message and return what it sends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from flruntime.client.config import ClientConfig, check_exchange_format, check_transfer_type
from flruntime.roles import Executor
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage

log = logging.getLogger(__name__)

SERVER_FORMATS = ("numpy", "pytorch")


class ScriptFailed(RuntimeError):
    """The training script failed, ended, or stopped answering while a task needed it."""


class ClientAPIExecutorBase(Executor):
    """Arguments and helpers common to the Client API executors (see the subclasses for the arguments)."""

    def __init__(
        self,
        *,
        params_exchange_format: str,
        params_transfer_type: str,
        server_expected_format: str,
        train_with_evaluation: bool,
        train_task_name: str,
        evaluate_task_name: str,
        submit_model_task_name: str,
        from_nvflare_converter_id: str | None,
        to_nvflare_converter_id: str | None,
    ) -> None:
        given = {
            "params_exchange_format": params_exchange_format,
            "params_transfer_type": params_transfer_type,
            "server_expected_format": server_expected_format,
        }
        for _, message in self.validate_args(given):
            raise ValueError(message)
        self.params_exchange_format = check_exchange_format(params_exchange_format)
        self.params_transfer_type = check_transfer_type(params_transfer_type)
        # flruntime's wire format carries numpy arrays: results always reach the server as numpy.
        self.server_expected_format = str(server_expected_format).lower()
        self.train_with_evaluation = train_with_evaluation
        self.train_task_name = train_task_name
        self.evaluate_task_name = evaluate_task_name
        self.submit_model_task_name = submit_model_task_name
        self.from_nvflare_converter_id = from_nvflare_converter_id
        self.to_nvflare_converter_id = to_nvflare_converter_id
        self._warned_no_metrics = False

    @classmethod
    def validate_args(cls, args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The value rules the constructor enforces, for the validator (``validate_args`` hook)."""
        for name, check in (
            ("params_exchange_format", check_exchange_format),
            ("params_transfer_type", check_transfer_type),
        ):
            if name in args:
                try:
                    check(args[name])
                except ValueError as exc:
                    yield name, str(exc)
        fmt = args.get("server_expected_format", "numpy")
        if str(fmt).lower() not in SERVER_FORMATS:
            yield "server_expected_format", f"server_expected_format must be numpy or pytorch, got {fmt!r}"

    def client_config(self, ctx: RunContext) -> ClientConfig:
        """The Client API config of this executor's script on ``ctx.site``."""
        return ClientConfig(
            site_name=ctx.site,
            job_id=ctx.job_id,
            train_task_name=self.train_task_name,
            eval_task_name=self.evaluate_task_name,
            submit_model_task_name=self.submit_model_task_name,
            exchange_format=self.params_exchange_format,
            transfer_type=self.params_transfer_type,
            train_with_eval=self.train_with_evaluation,
            server_expected_format=self.server_expected_format,
        )

    @staticmethod
    def _convert(converter_id: str | None, params: Any, ctx: TaskContext) -> Any:
        """Apply the component ``converter_id`` (an object with ``convert(params, ctx)``) to ``params``."""
        if not converter_id or params is None:
            return params
        converter = ctx.run.components.get(converter_id)
        convert = getattr(converter, "convert", None)
        if not callable(convert):
            raise ScriptFailed(f"converter '{converter_id}' is not a component with a convert(params, ctx) method")
        return convert(params, ctx)

    def task_input(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """The model message the script receives for a task."""
        msg = data.copy()
        msg.params = self._convert(self.from_nvflare_converter_id, msg.params, ctx)
        msg.meta.setdefault(MetaKey.JOB_ID.value, ctx.run.job_id)
        msg.meta.setdefault(MetaKey.SITE_NAME.value, ctx.site)
        if msg.current_round is None:
            msg.current_round = ctx.current_round
        if msg.total_rounds is None and ctx.headers.get("num_rounds") is not None:
            msg.total_rounds = int(ctx.headers["num_rounds"])
        return msg

    def task_output(self, result: ModelMessage, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """The model message returned to the engine for the script's result."""
        result.params = self._convert(self.to_nvflare_converter_id, result.params, ctx)
        if self.train_with_evaluation and ctx.task_name == self.train_task_name and not result.metrics:
            if not self._warned_no_metrics:
                self._warned_no_metrics = True
                log.warning(
                    "%s: train_with_evaluation is true but the script's training result has no metrics", ctx.site
                )
        if result.current_round is None:
            result.current_round = data.current_round if data.current_round is not None else ctx.current_round
        return result
