"""The payloads every workflow, executor, filter and the Client API exchange.

One :class:`ModelMessage` carries model parameters (numpy arrays by name), whether they are the
full model or a difference, metrics and meta. Tasks and results wrap it with routing headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]


class ParamsType(StrEnum):
    """Whether ``params`` is the whole model or a difference to the model that was sent."""

    FULL = "FULL"
    DIFF = "DIFF"


class MetaKey(StrEnum):
    """Well-known meta keys (NVFlare's names)."""

    NUM_STEPS_CURRENT_ROUND = "NUM_STEPS_CURRENT_ROUND"
    INITIAL_METRICS = "initial_metrics"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"
    SITE_NAME = "site_name"
    JOB_ID = "job_id"
    SUBMIT_MODEL_NAME = "submit_model_name"
    MODEL_OWNER = "_model_owner_"
    PROCESSED_ALGORITHM = "PROCESSED_ALGORITHM"
    PROCESSED_KEYS = "PROCESSED_KEYS"


class ReturnCode(StrEnum):
    """How a task ended on a client."""

    OK = "OK"
    EXECUTION_EXCEPTION = "EXECUTION_EXCEPTION"
    TASK_UNKNOWN = "TASK_UNKNOWN"
    TASK_ABORTED = "TASK_ABORTED"
    TASK_DATA_FILTER_ERROR = "TASK_DATA_FILTER_ERROR"
    TASK_RESULT_FILTER_ERROR = "TASK_RESULT_FILTER_ERROR"
    EMPTY_RESULT = "EMPTY_RESULT"
    TIMEOUT = "TIMEOUT"
    # more of NVFlare's codes, which executors written for NVFlare return
    BAD_TASK_DATA = "BAD_TASK_DATA"
    BAD_REQUEST_DATA = "BAD_REQUEST_DATA"
    ERROR = "ERROR"
    EXECUTION_RESULT_ERROR = "EXECUTION_RESULT_ERROR"
    TASK_UNSUPPORTED = "TASK_UNSUPPORTED"
    MODEL_UNRECOGNIZED = "MODEL_UNRECOGNIZED"
    VALIDATE_TYPE_UNKNOWN = "VALIDATE_TYPE_UNKNOWN"
    EARLY_TERMINATION = "EARLY_TERMINATION"


class TaskError(Exception):
    """Raised by an executor to end its task with a return code other than ``EXECUTION_EXCEPTION``.

    Args:
        rc: the return code.
        message: why.
    """

    def __init__(self, rc: ReturnCode | str, message: str) -> None:
        super().__init__(message)
        self.rc = ReturnCode(rc) if rc in ReturnCode.__members__.values() else ReturnCode.ERROR


@dataclass
class ModelMessage:
    """Model parameters and what goes with them.

    Attributes:
        params: parameter arrays by name (None for a metrics-only message).
        params_type: FULL model or DIFF to the received model.
        metrics: scalar metrics (e.g. validation accuracy).
        meta: everything else (``NUM_STEPS_CURRENT_ROUND``, ``initial_metrics``, ...).
        current_round: the round this message belongs to.
        total_rounds: the number of rounds of the workflow.
    """

    params: Params | None = None
    params_type: ParamsType = ParamsType.FULL
    metrics: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    current_round: int | None = None
    total_rounds: int | None = None

    def copy(self) -> ModelMessage:
        """Return a copy whose dicts (not arrays) can be changed independently."""
        return ModelMessage(
            dict(self.params) if self.params is not None else None,
            self.params_type,
            dict(self.metrics) if self.metrics is not None else None,
            dict(self.meta),
            self.current_round,
            self.total_rounds,
        )

    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(int(np.asarray(v).size) for v in (self.params or {}).values())


@dataclass
class Task:
    """A task sent by a server workflow to one client."""

    task_id: str
    name: str
    data: ModelMessage
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskResult:
    """A client's answer to a task."""

    task_id: str
    name: str
    site: str
    rc: ReturnCode = ReturnCode.OK
    data: ModelMessage | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    error: str = ""
