"""The state behind ``flare.receive`` / ``flare.send``, shared by the in-process and the launched-script APIs.

A session holds the task the script is working on (``receive`` returns it again until ``send``), turns
parameters into the script's format (numpy arrays or torch tensors) and back into numpy, and, when the
executor's ``params_transfer_type`` is DIFF but the script sends its full model, sends the difference to
the parameters it received instead (as NVFlare does). Subclasses move tasks and results.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from flruntime.client.config import ClientConfig
from flruntime.client.torch_params import plain, to_numpy, to_torch
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType
from flruntime.tracking.record import AnalyticsRecord


@dataclass
class Incoming:
    """A task handed to the script: its id and name, and the model message it carries (numpy)."""

    task_id: str
    task_name: str
    model: ModelMessage


@dataclass
class _Current:
    task_id: str
    task_name: str
    model: ModelMessage
    received: dict[str, Any] | None


class ClientAPI(ABC):
    """One training script's session with its flruntime client.

    Args:
        config: task names, formats and transfer type.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._current: _Current | None = None
        self._last_task_name = ""
        self._ended = False
        self._initialized = False
        self._lock = threading.RLock()

    # --- what subclasses provide --------------------------------------------------------------------

    def _start(self) -> None:  # noqa: B027 - optional hook
        """Connect (called once, by ``init`` or the first call)."""

    @abstractmethod
    def _fetch(self, timeout: float | None) -> Incoming | None:
        """Return the next task, or None after ``timeout``; set ``self._ended`` when the job ended."""

    @abstractmethod
    def _reply(self, task_id: str, task_name: str, result: ModelMessage) -> None:
        """Hand a result to the client."""

    def _stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect (called by ``shutdown``)."""

    @abstractmethod
    def _log(self, record: AnalyticsRecord) -> None:
        """Hand an analytics record to the client (it becomes the site's ``analytix_log_stats`` event)."""

    def log(self, record: AnalyticsRecord) -> None:
        """Send one analytics record (``flare.log`` and the tracking writers call this)."""
        self.init()
        self._log(record)

    # --- the API --------------------------------------------------------------------------------------

    def init(self, rank: str | int | None = None) -> None:
        """Start the session (idempotent); ``rank`` is accepted for NVFlare compatibility."""
        with self._lock:
            if not self._initialized:
                self._initialized = True
                self._start()

    def receive(self, timeout: float | None = None) -> ModelMessage | None:
        """Return the current task's model; None when the job has ended or no task came within ``timeout``."""
        with self._lock:
            self.init()
            if self._current is not None:
                return self._current.model
            if self._ended:
                return None
            incoming = self._fetch(timeout)
            if incoming is None:
                return None
            self._current = self._accept(incoming)
            self._last_task_name = incoming.task_name
            return self._current.model

    def send(self, model: ModelMessage, clear_cache: bool = True) -> None:
        """Send ``model`` as the result of the current task.

        Raises:
            TypeError: when ``model`` is not an FLModel.
            RuntimeError: when there is no current task (call ``receive`` first).
            ValueError: when a DIFF cannot be computed (a parameter the script did not receive).
        """
        if not isinstance(model, ModelMessage):
            raise TypeError(f"flare.send() expects an FLModel, got {type(model).__name__}")
        with self._lock:
            current = self._current
            if current is None:
                raise RuntimeError("flare.send() needs a task: call flare.receive() first")
            result = self._outgoing(model, current)
            self._reply(current.task_id, current.task_name, result)
            if clear_cache:
                self._current = None

    def is_running(self) -> bool:
        """True while the job runs: waits for the next task if none is pending (as NVFlare does)."""
        with self._lock:
            if self._current is not None:
                return True
            while not self._ended:
                if self.receive(timeout=None) is not None:
                    return True
            return False

    def clear(self) -> None:
        """Forget the current task without answering it."""
        with self._lock:
            self._current = None

    def shutdown(self) -> None:
        """End the session: ``receive`` returns None from now on."""
        with self._lock:
            self._ended = True
            self._current = None
            self._stop()

    def system_info(self) -> dict[str, str]:
        """The job id and site name."""
        return {"job_id": self.config.job_id, "site_name": self.config.site_name}

    def get_config(self) -> dict[str, Any]:
        """The session's config, in ``client_api_config.json``'s layout."""
        return self.config.to_dict()

    def get_task_name(self) -> str:
        """The name of the current (or last) task."""
        return self._last_task_name

    # --- conversions ----------------------------------------------------------------------------------

    def _accept(self, incoming: Incoming) -> _Current:
        msg = incoming.model.copy()
        received = None
        if msg.params is not None:
            if self.config.transfer_type is ParamsType.DIFF:
                received = {k: v for k, v in msg.params.items() if isinstance(v, np.ndarray)}
            if self.config.exchange_format == "pytorch":
                msg.params = to_torch(msg.params)  # copies: the script may change them in place
            elif received is not None:
                msg.params = {k: np.array(v, copy=True) if k in received else v for k, v in msg.params.items()}
        return _Current(incoming.task_id, incoming.task_name, msg, received)

    def _outgoing(self, model: ModelMessage, current: _Current) -> ModelMessage:
        params = to_numpy(model.params) if model.params is not None else None
        ptype = ParamsType(str(model.params_type or ParamsType.FULL).upper())
        training = current.task_name == self.config.train_task_name
        if params and training and ptype is ParamsType.FULL and self.config.transfer_type is ParamsType.DIFF:
            params = self._difference(params, current.received or {})
            ptype = ParamsType.DIFF
        meta = plain(dict(model.meta or {}))
        if params is not None and model.metrics:
            # NVFlare's convention: metrics sent with trained params evaluate the received global model
            meta.setdefault(MetaKey.INITIAL_METRICS, plain(model.metrics))
        return ModelMessage(
            params,
            ptype,
            plain(model.metrics) if model.metrics is not None else None,
            meta,
            model.current_round if model.current_round is not None else current.model.current_round,
            model.total_rounds if model.total_rounds is not None else current.model.total_rounds,
        )

    @staticmethod
    def _difference(params: dict[str, Any], received: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in params.items():
            if name not in received:
                raise ValueError(
                    f"cannot send a DIFF: parameter '{name}' was not in the model received "
                    "(send params_type=DIFF yourself, or only parameters you received)"
                )
            base = received[name]
            out[name] = (np.asarray(value) - base).astype(np.result_type(value, base), copy=False)
        return out
