"""Components written against NVFlare's API, driven by flruntime's engines.

The builder passes every top-level object through :func:`adapt`. An NVFlare-API object (an ``FLComponent``
subclass: an executor, a filter, a persistor, ...) comes back wrapped in the flruntime role it fills, so
workflows and engines call it like any flruntime component; the wrapper turns flruntime's messages into
Shareables / DXOs / ModelLearnables and back, makes the FLContext, and forwards every event of the site's bus
to the component's ``handle_event``. The validator uses :func:`fills_role` to accept NVFlare-API classes
where a role is expected.

On the wire nothing changes: a wrapped executor's result leaves the site as the codec's arrays and JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flruntime import roles
from flruntime.compat.analytix import AnalyticsData
from flruntime.compat.component import Executor as NVExecutor
from flruntime.compat.component import Filter as NVFilter
from flruntime.compat.component import FLComponent, Signal
from flruntime.compat.constants import AppConstants, FLContextKey, FLMetaKey, ReservedKey, ReturnCode
from flruntime.compat.controller import Controller as NVController
from flruntime.compat.dxo import DXO, DataKind, from_shareable
from flruntime.compat.engine import FL_CTX, make_context, unwrap
from flruntime.compat.fl_context import FLContext, forget_site, peer_context, site_state
from flruntime.compat.learnable import Aggregator as NVAggregator
from flruntime.compat.learnable import FLModelUtils, ModelLearnable, make_model_learnable
from flruntime.compat.learnable import ModelLocator as NVModelLocator
from flruntime.compat.learnable import ModelPersistor as NVModelPersistor
from flruntime.compat.learnable import ShareableGenerator as NVShareableGenerator
from flruntime.compat.shareable import Shareable
from flruntime.events.bus import ALL, Event, Subscription
from flruntime.runtime.context import RunContext, ServerContext, TaskContext
from flruntime.runtime.messages import ModelMessage, ParamsType, TaskError
from flruntime.tracking.record import AnalyticsRecord


def _run_of(ctx: Any) -> RunContext:
    return ctx.run if isinstance(ctx, TaskContext) else ctx


def to_params(weights: Any, where: str) -> dict[str, np.ndarray]:
    """Arrays by name from NVFlare weights (numpy arrays, torch tensors, lists, numbers)."""
    if not isinstance(weights, dict):
        raise TypeError(f"{where}: the weights are a {type(weights).__name__}, not a dict of arrays by name")
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if isinstance(value, np.ndarray):
            out[str(name)] = value
        elif hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            out[str(name)] = value.detach().cpu().numpy()
        elif hasattr(value, "numpy"):  # a TensorFlow tensor / variable
            out[str(name)] = np.asarray(value.numpy())
        else:
            out[str(name)] = np.asarray(value)
    return out


def message_to_shareable(message: ModelMessage | None, headers: dict[str, Any] | None = None) -> Shareable:
    """The Shareable an NVFlare component expects for ``message``: a DXO (when it has data) and headers."""
    out = FLModelUtils.to_shareable(message) if message is not None else Shareable()
    if message is not None and message.params is None and message.metrics is None and message.meta:
        out.set_header(AppConstants.META_DATA, dict(message.meta))
    for key, value in (headers or {}).items():
        out.set_header(key, value)
    return out


def dxo_to_message(dxo: DXO, where: str) -> ModelMessage:
    """The flruntime message a DXO describes (WEIGHTS, WEIGHT_DIFF or METRICS)."""
    if dxo.data_kind in (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF):
        meta = dict(dxo.meta or {})
        metrics = meta.pop(FLMetaKey.INITIAL_METRICS, None)
        params_type = ParamsType.DIFF if dxo.data_kind == DataKind.WEIGHT_DIFF else ParamsType.FULL
        return ModelMessage(to_params(dxo.data, where), params_type, metrics, meta)
    if dxo.data_kind == DataKind.METRICS:
        return ModelMessage(None, metrics=dict(dxo.data), meta=dict(dxo.meta or {}))
    raise TypeError(
        f"{where}: a {dxo.data_kind} DXO cannot travel between flruntime sites (WEIGHTS, WEIGHT_DIFF and METRICS can)"
    )


def shareable_to_message(shareable: Any, where: str) -> ModelMessage:
    """The flruntime message of an NVFlare reply; a return code other than OK raises :class:`TaskError`."""
    if isinstance(shareable, dict) and not isinstance(shareable, Shareable):
        shareable = Shareable(shareable)
    if not isinstance(shareable, Shareable):
        raise TypeError(f"{where} returned a {type(shareable).__name__}, not a Shareable")
    rc = shareable.get_return_code()
    if rc != ReturnCode.OK:
        raise TaskError(rc, f"{where} returned {rc}")
    if "DXO" not in shareable:
        return ModelMessage(None)
    message = dxo_to_message(from_shareable(shareable), where)
    current, total = shareable.get_header(AppConstants.CURRENT_ROUND), shareable.get_header(AppConstants.NUM_ROUNDS)
    message.current_round = int(current) if current is not None else None
    message.total_rounds = int(total) if total is not None else None
    return message


def learnable_to_message(ml: Any, where: str) -> ModelMessage:
    """The flruntime model of a ModelLearnable."""
    if not isinstance(ml, dict):
        raise TypeError(f"{where} returned a {type(ml).__name__}, not a ModelLearnable")
    return ModelMessage(to_params(ml.get("weights") or {}, where), ParamsType.FULL, meta=dict(ml.get("meta") or {}))


def message_to_learnable(model: ModelMessage) -> ModelLearnable:
    """The ModelLearnable of a flruntime model."""
    return make_model_learnable(dict(model.params or {}), dict(model.meta or {}))


def task_context(ctx: TaskContext, shareable: Shareable | None = None) -> FLContext:
    """A context for one task: the run's, plus the task's name, id, data (and, on a client, the server as peer)."""
    fl_ctx = make_context(ctx.run)
    fl_ctx.set_prop(FLContextKey.TASK_NAME, ctx.task_name, private=True, sticky=False)
    fl_ctx.set_prop(FLContextKey.TASK_ID, ctx.task_id, private=True, sticky=False)
    if shareable is not None:
        fl_ctx.set_prop(FLContextKey.TASK_DATA, shareable, private=True, sticky=False)
    if ctx.run.site != "server":  # a client's task comes from the server
        peer = {ReservedKey.IDENTITY_NAME: "server", FLContextKey.CURRENT_RUN: ctx.run.job_id}
        fl_ctx.set_peer_context(peer_context(peer))
    if ctx.current_round is not None:
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, ctx.current_round, private=True, sticky=False)
    return fl_ctx


class _Wrapper:
    """Holds an NVFlare component and forwards the site's events to its ``handle_event``."""

    def __init__(self, component: FLComponent) -> None:
        self.nvflare_component = component
        self._run: RunContext | None = None
        self._sub: Subscription | None = None

    @property
    def name(self) -> str:
        """The wrapped class's name."""
        return type(self.nvflare_component).__name__

    def setup(self, ctx: RunContext) -> None:
        """Start hearing the site's events (START_RUN comes next)."""
        self._run = ctx
        site_state(ctx)
        self._sub = ctx.bus.subscribe(ALL, self._on_event)

    def teardown(self, ctx: RunContext) -> None:
        """Stop hearing events."""
        if self._sub is not None:
            self._sub.remove()
            self._sub = None
        forget_site(ctx)

    def _on_event(self, event: Event) -> None:
        if self._run is None:
            return
        fl_ctx = event.data.get(FL_CTX)
        if not isinstance(fl_ctx, FLContext):
            fl_ctx = make_context(self._run)
            if "task" in event.data:
                fl_ctx.set_prop(FLContextKey.TASK_NAME, event.data["task"], private=True, sticky=False)
            record = event.data.get("record")
            if isinstance(record, AnalyticsRecord):  # a tracking event: NVFlare's receivers read an ANALYTIC DXO
                data: Any = AnalyticsData.from_record(record).to_dxo().to_shareable()
                data.set_peer_props({ReservedKey.IDENTITY_NAME: event.origin})
            else:
                data = dict(event.data)
            fl_ctx.set_prop(FLContextKey.EVENT_DATA, data, private=True, sticky=False)
            fl_ctx.set_prop(FLContextKey.EVENT_ORIGIN, event.origin, private=True, sticky=False)
        self.nvflare_component.handle_event(event.name, fl_ctx)

    def __repr__(self) -> str:
        return f"<flruntime wrapper of {self.name}>"


class ComponentWrapper(_Wrapper):
    """An NVFlare component with no flruntime role (a widget, a learner): it hears the site's events."""


class ExecutorWrapper(_Wrapper, roles.Executor):
    """An NVFlare ``Executor`` as a flruntime executor."""

    nvflare_component: NVExecutor

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Run the task through the NVFlare executor's ``execute``."""
        shareable = message_to_shareable(data, ctx.headers)
        fl_ctx = task_context(ctx, shareable)
        state = site_state(ctx.run)
        state.task_panic = ""
        reply = self.nvflare_component.execute(task, shareable, fl_ctx, Signal(event=ctx.abort))
        if state.task_panic:
            raise TaskError(ReturnCode.TASK_ABORTED, f"task panic: {state.task_panic}")
        return shareable_to_message(reply, f"{self.name}.execute('{task}')")


class FilterWrapper(_Wrapper, roles.Filter):
    """An NVFlare ``Filter`` (or ``DXOFilter``) as a flruntime filter."""

    nvflare_component: NVFilter

    def process(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Filter through the NVFlare filter's ``process``."""
        headers = dict(getattr(ctx, "headers", {}) or {})
        shareable = message_to_shareable(data, headers)
        fl_ctx = task_context(ctx, shareable) if isinstance(ctx, TaskContext) else make_context(_run_of(ctx))
        out = shareable_to_message(self.nvflare_component.process(shareable, fl_ctx), f"{self.name}.process")
        if out.current_round is None:
            out.current_round = data.current_round
        if out.total_rounds is None:
            out.total_rounds = data.total_rounds
        return out


class PersistorWrapper(_Wrapper, roles.ModelPersistor):
    """An NVFlare ``ModelPersistor`` as a flruntime persistor."""

    nvflare_component: NVModelPersistor

    def load(self, ctx: RunContext) -> ModelMessage:
        """The model the NVFlare persistor's ``load_model`` returns."""
        ml = self.nvflare_component.load(make_context(ctx))
        return learnable_to_message(ml, f"{self.name}.load_model")

    def save(self, model: ModelMessage, ctx: RunContext) -> None:
        """Save through the NVFlare persistor's ``save_model``."""
        self.nvflare_component.save(message_to_learnable(model), make_context(ctx))


class LocatorWrapper(_Wrapper, roles.ModelLocator):
    """An NVFlare ``ModelLocator`` as a flruntime locator."""

    nvflare_component: NVModelLocator

    def model_names(self, ctx: RunContext) -> list[str]:
        """The NVFlare locator's ``get_model_names``."""
        return [str(n) for n in self.nvflare_component.get_model_names(make_context(ctx)) or []]

    def locate(self, name: str, ctx: RunContext) -> ModelMessage | None:
        """The NVFlare locator's ``locate_model``, as a flruntime model."""
        dxo = self.nvflare_component.locate_model(name, make_context(ctx))
        return None if dxo is None else dxo_to_message(dxo, f"{self.name}.locate_model('{name}')")


class ShareableGeneratorWrapper(_Wrapper, roles.ShareableGenerator):
    """An NVFlare ``ShareableGenerator`` as a flruntime one."""

    nvflare_component: NVShareableGenerator

    def to_task_data(self, global_model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """The NVFlare generator's ``learnable_to_shareable``."""
        fl_ctx = make_context(ctx)
        shareable = self.nvflare_component.learnable_to_shareable(message_to_learnable(global_model), fl_ctx)
        out = shareable_to_message(shareable, f"{self.name}.learnable_to_shareable")
        out.current_round, out.total_rounds = global_model.current_round, global_model.total_rounds
        return out

    def update(self, global_model: ModelMessage, aggregate: ModelMessage, ctx: RunContext) -> ModelMessage:
        """The NVFlare generator's ``shareable_to_learnable`` (the old model is the ``global_model`` property)."""
        fl_ctx = make_context(ctx)
        fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, message_to_learnable(global_model), private=True, sticky=True)
        ml = self.nvflare_component.shareable_to_learnable(message_to_shareable(aggregate), fl_ctx)
        return learnable_to_message(ml, f"{self.name}.shareable_to_learnable")


class AggregatorWrapper(_Wrapper, roles.Aggregator):
    """An NVFlare ``Aggregator`` as a flruntime aggregator (results come whole)."""

    nvflare_component: NVAggregator

    def accept(self, site: str, result: ModelMessage, ctx: RunContext) -> bool:
        """The NVFlare aggregator's ``accept``, with ``site`` as the peer."""
        current = result.current_round if result.current_round is not None else ctx.current_round
        shareable = message_to_shareable(result, {AppConstants.CONTRIBUTION_ROUND: current})
        props = {ReservedKey.IDENTITY_NAME: site, FLContextKey.CURRENT_RUN: ctx.job_id}
        shareable.set_peer_props(props)
        fl_ctx = make_context(ctx)
        fl_ctx.set_peer_context(peer_context(props))
        return bool(self.nvflare_component.accept(shareable, fl_ctx))

    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """The NVFlare aggregator's ``aggregate``."""
        return shareable_to_message(self.nvflare_component.aggregate(make_context(ctx)), f"{self.name}.aggregate")

    def reset(self, ctx: RunContext) -> None:
        """The NVFlare aggregator's ``reset``."""
        self.nvflare_component.reset(make_context(ctx))


class ControllerWrapper(_Wrapper, roles.Workflow):
    """An NVFlare ``Controller`` as a flruntime workflow: start_controller, control_flow, stop_controller."""

    nvflare_component: NVController

    @classmethod
    def sent_tasks(cls, args: Any) -> set[str] | None:
        """Unknown before the run: the controller's code decides."""
        return None

    def run(self, ctx: ServerContext) -> None:
        """Run the controller's flow; its tasks go through flruntime's communicator."""
        controller = self.nvflare_component
        controller._flr_ctx = ctx
        fl_ctx = make_context(ctx)
        try:
            controller.start_controller(fl_ctx)
            if not ctx.abort.is_set():
                controller.control_flow(Signal(event=ctx.abort), fl_ctx)
        finally:
            try:
                controller.stop_controller(fl_ctx)
            finally:
                controller._flr_ctx = None


#: NVFlare base class -> (the flruntime role it fills, its wrapper), most specific first.
_WRAPPERS: tuple[tuple[type, type, type[_Wrapper]], ...] = (
    (NVExecutor, roles.Executor, ExecutorWrapper),
    (NVFilter, roles.Filter, FilterWrapper),
    (NVModelPersistor, roles.ModelPersistor, PersistorWrapper),
    (NVModelLocator, roles.ModelLocator, LocatorWrapper),
    (NVShareableGenerator, roles.ShareableGenerator, ShareableGeneratorWrapper),
    (NVAggregator, roles.Aggregator, AggregatorWrapper),
    (NVController, roles.Workflow, ControllerWrapper),
)


def nvflare_role(cls: type) -> type | None:
    """The flruntime role an NVFlare-API class fills, or None (not an NVFlare-API class, or no role)."""
    for base, role, _ in _WRAPPERS:
        if issubclass(cls, base):
            return role
    return None


#: flruntime role -> the NVFlare class whose subclasses fill it (the name NVFlare code imports).
NVFLARE_BASES: dict[type, str] = {
    roles.Executor: "nvflare.apis.executor.Executor",
    roles.Filter: "nvflare.apis.filter.Filter",
    roles.ModelPersistor: "nvflare.app_common.abstract.model_persistor.ModelPersistor",
    roles.ModelLocator: "nvflare.app_common.abstract.model_locator.ModelLocator",
    roles.ShareableGenerator: "nvflare.app_common.abstract.shareable_generator.ShareableGenerator",
    roles.Aggregator: "nvflare.app_common.abstract.aggregator.Aggregator",
    roles.Workflow: "nvflare.apis.impl.controller.Controller",
}


def fills_role(cls: type, role: type) -> bool:
    """True when ``cls`` can stand where ``role`` is expected: it subclasses it or is its NVFlare counterpart."""
    return issubclass(cls, role) or nvflare_role(cls) is role


def adapt(obj: Any) -> Any:
    """``obj`` wrapped for flruntime's engines when it is an NVFlare-API component, else ``obj`` itself."""
    if not isinstance(obj, FLComponent) or isinstance(obj, _Wrapper):
        return obj
    for base, _, wrapper in _WRAPPERS:
        if isinstance(obj, base):
            return wrapper(obj)
    return ComponentWrapper(obj)


__all__ = [
    "AggregatorWrapper",
    "ComponentWrapper",
    "ControllerWrapper",
    "ExecutorWrapper",
    "FilterWrapper",
    "LocatorWrapper",
    "PersistorWrapper",
    "ShareableGeneratorWrapper",
    "adapt",
    "dxo_to_message",
    "NVFLARE_BASES",
    "fills_role",
    "message_to_shareable",
    "nvflare_role",
    "shareable_to_message",
    "unwrap",
]
