"""NVFlare's ``LearnerExecutor`` and ``ModelLearnerExecutor``: executors that drive a learner component.

Both are written on NVFlare's component API (:mod:`flruntime.compat`), as NVFlare's are, and run through
flruntime's wrapper like any executor written for NVFlare. The learner is another component of the site,
named by ``learner_id``; its ``initialize`` runs at START_RUN and its ``finalize`` at END_RUN.
"""

from __future__ import annotations

from typing import Any

from flruntime.compat.component import Executor, Signal
from flruntime.compat.constants import AppConstants, EventType, ReturnCode, ValidateType
from flruntime.compat.fl_context import FLContext
from flruntime.compat.learnable import FLModelUtils, Learner, ModelLearner
from flruntime.compat.shareable import Shareable, make_reply
from flruntime.runtime.messages import ModelMessage


class LearnerExecutor(Executor):
    """Runs a :class:`~flruntime.compat.learnable.Learner`'s ``train``, ``get_model_for_validation``, ``validate``.

    Args:
        learner_id: the learner component.
        train_task: the task that trains.
        submit_model_task: the task that returns a local model (by the header ``submit_model_name``).
        validate_task: the task that validates a received model.
    """

    def __init__(
        self,
        learner_id: str,
        train_task: str = AppConstants.TASK_TRAIN,
        submit_model_task: str = AppConstants.TASK_SUBMIT_MODEL,
        validate_task: str = AppConstants.TASK_VALIDATION,
    ) -> None:
        super().__init__()
        self.learner_id = learner_id
        self.train_task = train_task
        self.submit_model_task = submit_model_task
        self.validate_task = validate_task
        self.learner: Learner | None = None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Initialise the learner at START_RUN, stop it at ABORT_TASK, finalise it at END_RUN."""
        if event_type == EventType.START_RUN:
            learner = fl_ctx.get_engine().get_component(self.learner_id)
            if not isinstance(learner, Learner):
                self.system_panic(
                    f"learner_id '{self.learner_id}' is a {type(learner).__name__}, not a Learner", fl_ctx
                )
                return
            self.learner = learner
            learner.initialize(fl_ctx.get_engine().get_all_components(), fl_ctx)
        elif event_type == EventType.ABORT_TASK and self.learner is not None:
            self.learner.abort(fl_ctx)
        elif event_type == EventType.END_RUN and self.learner is not None:
            self.learner.finalize(fl_ctx)

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        """Hand the task to the learner."""
        if self.learner is None:
            self.log_error(fl_ctx, f"no learner (learner_id '{self.learner_id}' was not set up)")
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)
        if task_name == self.train_task:
            return self.learner.train(shareable, fl_ctx, abort_signal)
        if task_name == self.submit_model_task:
            name = shareable.get_header(AppConstants.SUBMIT_MODEL_NAME)
            if not name:
                return make_reply(ReturnCode.BAD_TASK_DATA)
            return self.learner.get_model_for_validation(str(name), fl_ctx)
        if task_name == self.validate_task:
            shareable.set_header(AppConstants.VALIDATE_TYPE, ValidateType.MODEL_VALIDATE)
            return self.learner.validate(shareable, fl_ctx, abort_signal)
        self.log_error(fl_ctx, f"could not handle task: {task_name}")
        return make_reply(ReturnCode.TASK_UNKNOWN)


class ModelLearnerExecutor(Executor):
    """Runs a :class:`~flruntime.compat.learnable.ModelLearner` on FLModels.

    Args:
        learner_id: the model learner component.
        train_task: the task that trains.
        submit_model_task: the task that returns a local model (by the header ``submit_model_name``).
        validate_task: the task that validates a received model.
        configure_task: the task that sends a configuration.
    """

    def __init__(
        self,
        learner_id: str,
        train_task: str = AppConstants.TASK_TRAIN,
        submit_model_task: str = AppConstants.TASK_SUBMIT_MODEL,
        validate_task: str = AppConstants.TASK_VALIDATION,
        configure_task: str = AppConstants.TASK_CONFIGURE,
    ) -> None:
        super().__init__()
        self.learner_id = learner_id
        self.train_task = train_task
        self.submit_model_task = submit_model_task
        self.validate_task = validate_task
        self.configure_task = configure_task
        self.learner: ModelLearner | None = None

    def _bind(self, fl_ctx: FLContext, shareable: Shareable | None = None, signal: Signal | None = None) -> None:
        learner = self.learner
        assert learner is not None
        engine = fl_ctx.get_engine()
        learner.fl_ctx, learner.engine = fl_ctx, engine
        learner.workspace = engine.get_workspace()
        learner.site_name, learner.job_id = fl_ctx.get_identity_name(), fl_ctx.get_job_id()
        learner.app_root = learner.job_root = learner.workspace.get_app_dir(learner.job_id)
        learner.shareable, learner.abort_signal = shareable, signal
        if shareable is not None:
            current, total = (
                shareable.get_header(AppConstants.CURRENT_ROUND),
                shareable.get_header(AppConstants.NUM_ROUNDS),
            )
            learner.current_round = int(current) if current is not None else None
            learner.total_rounds = int(total) if total is not None else None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Initialise the learner at START_RUN, abort it at ABORT_TASK, finalise it at END_RUN."""
        if event_type == EventType.START_RUN:
            learner = fl_ctx.get_engine().get_component(self.learner_id)
            if not isinstance(learner, ModelLearner):
                reason = f"learner_id '{self.learner_id}' is a {type(learner).__name__}, not a ModelLearner"
                self.system_panic(reason, fl_ctx)
                return
            self.learner = learner
            self._bind(fl_ctx)
            learner.initialize()
        elif event_type == EventType.ABORT_TASK and self.learner is not None:
            self.learner.abort()
        elif event_type == EventType.END_RUN and self.learner is not None:
            self.learner.finalize()

    def _reply(self, out: Any, task_name: str, fl_ctx: FLContext) -> Shareable:
        if isinstance(out, str):
            return make_reply(out)
        if not isinstance(out, ModelMessage):
            self.log_error(fl_ctx, f"the learner's {task_name} returned a {type(out).__name__}, not an FLModel")
            return make_reply(ReturnCode.EXECUTION_RESULT_ERROR)
        return FLModelUtils.to_shareable(out)

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        """Hand the task to the learner as an FLModel."""
        if self.learner is None:
            self.log_error(fl_ctx, f"no model learner (learner_id '{self.learner_id}' was not set up)")
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)
        self._bind(fl_ctx, shareable, abort_signal)
        if task_name == self.submit_model_task:
            name = shareable.get_header(AppConstants.SUBMIT_MODEL_NAME)
            if not name:
                return make_reply(ReturnCode.BAD_TASK_DATA)
            return self._reply(self.learner.get_model(str(name)), task_name, fl_ctx)
        model = FLModelUtils.from_shareable(shareable)
        if task_name == self.train_task:
            return self._reply(self.learner.train(model), task_name, fl_ctx)
        if task_name == self.validate_task:
            return self._reply(self.learner.validate(model), task_name, fl_ctx)
        if task_name == self.configure_task:
            self.learner.configure(model)
            return make_reply(ReturnCode.OK)
        self.log_error(fl_ctx, f"could not handle task: {task_name}")
        return make_reply(ReturnCode.TASK_UNKNOWN)


__all__ = ["LearnerExecutor", "ModelLearnerExecutor"]
