"""NVFlare's component base classes: ``FLComponent``, ``Executor``, ``Filter``, ``DXOFilter``, ``Signal``.

A class built on these is a flruntime component: the builder wraps it (:mod:`flruntime.compat.adapters`) so
that flruntime's engines drive it, and it hears NVFlare's events through ``handle_event``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from flruntime.compat.constants import EventType, FLContextKey, ReturnCode
from flruntime.compat.dxo import DXO, DataKind, from_shareable, get_leaf_dxos
from flruntime.compat.fl_context import FLContext
from flruntime.compat.shareable import Shareable


class Signal:
    """A flag that says a run or a task is to stop (NVFlare's ``abort_signal``).

    Args:
        parent: a signal whose trigger also triggers this one.
        event: a flruntime abort event whose setting also triggers this one.
    """

    def __init__(self, parent: Signal | None = None, event: threading.Event | None = None) -> None:
        self.parent = parent
        self._event = event
        self._triggered = False
        self.value: Any = None
        self.trigger_time: float | None = None

    def trigger(self, value: Any) -> None:
        """Trigger the signal with a value (a reason)."""
        self.value = value
        self.trigger_time = time.time()
        self._triggered = True

    def reset(self, value: Any = None) -> None:
        """Untrigger the signal."""
        self.value = value
        self.trigger_time = None
        self._triggered = False

    @property
    def triggered(self) -> bool:
        """True once triggered (or once the parent or the run's abort is)."""
        if self._triggered:
            return True
        if self._event is not None and self._event.is_set():
            return True
        return self.parent is not None and self.parent.triggered


class LogMethods:
    """``debug`` / ``info`` / ``warning`` / ``error`` / ``critical`` / ``exception`` on ``self.logger``.

    NVFlare's FLModel-era classes (``ModelLearner``, ``ModelController``) log without an ``fl_ctx``.
    """

    logger: logging.Logger

    def debug(self, msg: str) -> None:
        """Log at DEBUG."""
        self.logger.debug(msg)

    def info(self, msg: str) -> None:
        """Log at INFO."""
        self.logger.info(msg)

    def warning(self, msg: str) -> None:
        """Log at WARNING."""
        self.logger.warning(msg)

    def error(self, msg: str) -> None:
        """Log at ERROR."""
        self.logger.error(msg)

    def critical(self, msg: str) -> None:
        """Log at CRITICAL."""
        self.logger.critical(msg)

    def exception(self, msg: str) -> None:
        """Log at ERROR with the exception being handled."""
        self.logger.exception(msg)


class FLComponent:
    """Base of every NVFlare component: logging with the site's identity, events, panics."""

    def __init__(self) -> None:
        self._name = type(self).__name__
        self.logger = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")

    @property
    def name(self) -> str:
        """The class name."""
        return self._name

    def _msg(self, fl_ctx: FLContext | None, msg: str) -> str:
        if fl_ctx is None:
            return msg
        who, job = fl_ctx.get_identity_name(), fl_ctx.get_job_id()
        return f"[identity={who}, run={job}] {msg}" if who else msg

    def log_debug(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = False) -> None:  # noqa: ARG002
        """Log at DEBUG."""
        self.logger.debug(self._msg(fl_ctx, msg))

    def log_info(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = False) -> None:  # noqa: ARG002
        """Log at INFO."""
        self.logger.info(self._msg(fl_ctx, msg))

    def log_warning(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = True) -> None:  # noqa: ARG002
        """Log at WARNING."""
        self.logger.warning(self._msg(fl_ctx, msg))

    def log_error(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = True) -> None:  # noqa: ARG002
        """Log at ERROR."""
        self.logger.error(self._msg(fl_ctx, msg))

    def log_critical(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = True) -> None:  # noqa: ARG002
        """Log at CRITICAL."""
        self.logger.critical(self._msg(fl_ctx, msg))

    def log_exception(self, fl_ctx: FLContext | None, msg: str, fire_event: bool = True) -> None:  # noqa: ARG002
        """Log at ERROR with the exception being handled."""
        self.logger.exception(self._msg(fl_ctx, msg))

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """React to an event (the default does nothing)."""

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Fire an event on this site: every component's ``handle_event`` hears it with ``fl_ctx``."""
        engine = fl_ctx.get_engine()
        if engine is not None:
            engine.fire_event(event_type, fl_ctx)

    def fire_fed_event(self, event_type: str, event_data: Shareable, fl_ctx: FLContext, targets: Any = None) -> None:  # noqa: ARG002
        """Fire an event here and send it to the server (from a client); ``event_data`` must be JSON-like."""
        fl_ctx.set_prop(FLContextKey.EVENT_DATA, event_data, private=True, sticky=False)
        self.fire_event(event_type, fl_ctx)
        engine = fl_ctx.get_engine()
        if engine is not None:
            engine.send_fed_event(event_type, event_data)

    def system_panic(self, reason: str, fl_ctx: FLContext) -> None:
        """Stop the run with ``reason``: the job ends and names it."""
        self.log_error(fl_ctx, f"system panic: {reason}")
        fl_ctx.set_prop(FLContextKey.FATAL_SYSTEM_ERROR, True, private=True, sticky=True)
        engine = fl_ctx.get_engine()
        if engine is not None:
            engine.panic(f"{self._name}: {reason}")

    def task_panic(self, reason: str, fl_ctx: FLContext) -> None:
        """Stop the current task with ``reason``: it fails as aborted."""
        self.log_error(fl_ctx, f"task panic: {reason}")
        engine = fl_ctx.get_engine()
        if engine is not None:
            engine.task_panic(f"{self._name}: {reason}")


class Executor(FLComponent, ABC):
    """A client-side task handler: ``execute`` gets the task's Shareable and returns the result's."""

    @abstractmethod
    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        """Handle one task."""


class Filter(FLComponent, ABC):
    """Transforms a Shareable on its way between server and client."""

    @abstractmethod
    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        """Return the filtered Shareable."""


class DXOFilter(Filter, ABC):
    """A filter of the DXOs of the kinds it supports (inside collections too).

    Args:
        supported_data_kinds: the kinds this filter can process.
        data_kinds_to_filter: the kinds to process (None: all supported ones).
    """

    def __init__(self, supported_data_kinds: list[str], data_kinds_to_filter: list[str] | None = None) -> None:
        super().__init__()
        if not supported_data_kinds:
            raise ValueError("supported_data_kinds must name at least one data kind")
        if data_kinds_to_filter is None:
            data_kinds_to_filter = list(supported_data_kinds)
        unsupported = [k for k in data_kinds_to_filter if k not in supported_data_kinds]
        if unsupported:
            raise ValueError(f"data kinds {unsupported} are not supported by {type(self).__name__}")
        self.supported_data_kinds = list(supported_data_kinds)
        self.data_kinds_to_filter = list(data_kinds_to_filter)

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        """Apply :meth:`process_dxo` to the DXO (or each DXO of a collection) of a kind to filter."""
        rc = shareable.get_return_code()
        if rc != ReturnCode.OK:
            return shareable
        dxo = from_shareable(shareable)
        if dxo.data_kind == DataKind.COLLECTION:
            for name, leaf in get_leaf_dxos(dxo).items():
                if leaf.data_kind in self.data_kinds_to_filter:
                    out = self.process_dxo(leaf, shareable, fl_ctx)
                    if out is not None:
                        _replace_leaf(dxo, name.split("/"), out)
                        out.add_filter_history(self._name)
            return dxo.update_shareable(shareable)
        if dxo.data_kind not in self.data_kinds_to_filter:
            return shareable
        out = self.process_dxo(dxo, shareable, fl_ctx)
        if out is None:
            return shareable
        out.add_filter_history(self._name)
        return out.update_shareable(shareable)

    @abstractmethod
    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        """Return the filtered DXO (None: leave it as it is)."""


def _replace_leaf(root: DXO, path: list[str], new: DXO) -> None:
    node = root
    for part in path[:-1]:
        node = node.data[part]
    node.data[path[-1]] = new


#: The NVFlare events flruntime's engines fire (their names are the same in :class:`EventType`).
FIRED_EVENTS = (
    EventType.START_RUN,
    EventType.ABOUT_TO_END_RUN,
    EventType.END_RUN,
    EventType.BEFORE_TASK_EXECUTION,
    EventType.AFTER_TASK_EXECUTION,
)

__all__ = ["DXOFilter", "Executor", "FLComponent", "Filter", "LogMethods", "Signal"]
