"""The Client API's configuration: task names, parameter formats and, for a launched script, its pipe.

An executor that launches a script writes it as ``client_api_config.json`` with NVFlare's keys::

    {"TASK_EXCHANGE": {"train_with_eval", "exchange_format", "transfer_type", "server_expected_format",
                       "train_task_name", "eval_task_name", "submit_model_task_name", "pipe_channel_name",
                       "pipe": {"CLASS_NAME", "ARG"}, "HEARTBEAT_TIMEOUT", ...},
     "METRICS_EXCHANGE": {...}, "site_name", "job_id"}

Other components (e.g. the metrics relay's configurator) add their own sections with
:func:`update_config_file`; sections written by someone else are kept.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from flruntime.runtime.messages import ParamsType

#: Environment variables that tell ``flare.init()`` it runs in a launched process, and where its config is.
ENV_API = "FLRUNTIME_CLIENT_API"
ENV_API_NVFLARE = "CLIENT_API_TYPE"
ENV_CONFIG = "FLRUNTIME_CLIENT_CONFIG"
EX_PROCESS = "ex_process"
EX_PROCESS_NVFLARE = "EX_PROCESS_API"
CONFIG_FILE_NAME = "client_api_config.json"

TASK_EXCHANGE = "TASK_EXCHANGE"
METRICS_EXCHANGE = "METRICS_EXCHANGE"
EXCHANGE_FORMATS = ("numpy", "pytorch", "raw")


class ExchangeFormat(StrEnum):
    """How parameters travel between the client and its script (NVFlare's ``nvflare.client.config`` names)."""

    RAW = "raw"
    PYTORCH = "pytorch"
    NUMPY = "numpy"
    KERAS_LAYER_WEIGHTS = "keras_layer_weights"


class TransferType(StrEnum):
    """Whether a script sends whole models or differences (NVFlare's ``nvflare.client.config`` names)."""

    FULL = "FULL"
    DIFF = "DIFF"


_FILE_LOCK = threading.Lock()


def check_exchange_format(value: str) -> str:
    """Return the exchange format in lower case.

    Raises:
        ValueError: for a format other than numpy, pytorch or raw.
    """
    fmt = str(value).lower()
    if fmt not in EXCHANGE_FORMATS:
        raise ValueError(f"params_exchange_format must be one of {', '.join(EXCHANGE_FORMATS)}, got {value!r}")
    return fmt


def check_transfer_type(value: str) -> ParamsType:
    """Return the transfer type as a :class:`ParamsType`.

    Raises:
        ValueError: for anything but FULL or DIFF.
    """
    try:
        return ParamsType(str(value).upper())
    except ValueError:
        raise ValueError(f"params_transfer_type must be FULL or DIFF, got {value!r}") from None


@dataclass
class ClientConfig:
    """What a training script's Client API needs to know.

    Attributes:
        site_name: the site the script trains for.
        job_id: the job.
        train_task_name: the name of training tasks (``is_train()``).
        eval_task_name: the name of evaluation tasks (``is_evaluate()``).
        submit_model_task_name: the name of model-submission tasks (``is_submit_model()``).
        exchange_format: ``numpy`` (arrays), ``pytorch`` (tensors) or ``raw`` (as numpy).
        transfer_type: FULL or DIFF: what the script's results carry to the server.
        train_with_eval: whether training results are expected to carry metrics too.
        server_expected_format: the format the server expects (flruntime always sends numpy).
        pipe: the launched script's pipe, ``{"CLASS_NAME", "ARG"}`` (None in process).
        pipe_channel_name: the pipe channel of tasks.
        heartbeat_timeout: seconds without a sign of life from the client before the script gives up.
        heartbeat_interval: seconds between two heartbeats the script sends.
        read_interval: seconds one pipe read waits.
        peer_read_timeout: seconds ``send`` waits for the client to acknowledge a result.
        extra: every other key of the config file, kept as read.
    """

    site_name: str = ""
    job_id: str = ""
    train_task_name: str = "train"
    eval_task_name: str = "validate"
    submit_model_task_name: str = "submit_model"
    exchange_format: str = "numpy"
    transfer_type: ParamsType = ParamsType.FULL
    train_with_eval: bool = False
    server_expected_format: str = "numpy"
    pipe: dict[str, Any] | None = None
    pipe_channel_name: str = "task"
    heartbeat_timeout: float = 60.0
    heartbeat_interval: float = 5.0
    read_interval: float = 0.1
    peer_read_timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the config in ``client_api_config.json``'s layout."""
        task = {
            "train_with_eval": self.train_with_eval,
            "exchange_format": self.exchange_format,
            "transfer_type": str(self.transfer_type),
            "server_expected_format": self.server_expected_format,
            "train_task_name": self.train_task_name,
            "eval_task_name": self.eval_task_name,
            "submit_model_task_name": self.submit_model_task_name,
            "pipe_channel_name": self.pipe_channel_name,
            "HEARTBEAT_TIMEOUT": self.heartbeat_timeout,
            "heartbeat_interval": self.heartbeat_interval,
            "read_interval": self.read_interval,
            "peer_read_timeout": self.peer_read_timeout,
        }
        if self.pipe is not None:
            task["pipe"] = self.pipe
        return {**self.extra, TASK_EXCHANGE: task, "site_name": self.site_name, "job_id": self.job_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientConfig:
        """Read a config in ``client_api_config.json``'s layout (missing keys take their defaults)."""
        task = dict(data.get(TASK_EXCHANGE) or {})
        default = cls()
        return cls(
            site_name=str(data.get("site_name", "")),
            job_id=str(data.get("job_id", "")),
            train_task_name=str(task.get("train_task_name", default.train_task_name)),
            eval_task_name=str(task.get("eval_task_name", default.eval_task_name)),
            submit_model_task_name=str(task.get("submit_model_task_name", default.submit_model_task_name)),
            exchange_format=check_exchange_format(task.get("exchange_format", default.exchange_format)),
            transfer_type=check_transfer_type(task.get("transfer_type", default.transfer_type)),
            train_with_eval=bool(task.get("train_with_eval", False)),
            server_expected_format=str(task.get("server_expected_format", "numpy")),
            pipe=task.get("pipe"),
            pipe_channel_name=str(task.get("pipe_channel_name", "task")),
            heartbeat_timeout=float(task.get("HEARTBEAT_TIMEOUT", default.heartbeat_timeout)),
            heartbeat_interval=float(task.get("heartbeat_interval", default.heartbeat_interval)),
            read_interval=float(task.get("read_interval", default.read_interval)),
            peer_read_timeout=float(task.get("peer_read_timeout", default.peer_read_timeout)),
            extra={k: v for k, v in data.items() if k not in (TASK_EXCHANGE, "site_name", "job_id")},
        )


def read_config_file(path: str | Path) -> ClientConfig:
    """Read ``client_api_config.json``.

    Raises:
        FileNotFoundError: when there is no such file.
        ValueError: when it is not a valid config.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return ClientConfig.from_dict(data)


def update_config_file(path: str | Path, sections: dict[str, Any]) -> None:
    """Merge ``sections`` (top-level keys) into the config file at ``path``, creating it (mode 0600).

    The file is replaced atomically; keys written by other components are kept.
    """
    target = Path(path)
    with _FILE_LOCK:
        data: dict[str, Any] = {}
        if target.is_file():
            try:
                loaded = json.loads(target.read_text(encoding="utf-8"))
                data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                data = {}
        data.update(sections)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)


def config_path(workspace: str | Path, file_name: str = CONFIG_FILE_NAME) -> Path:
    """Where a site writes the launched script's config: ``<site workspace>/config/<file_name>``.

    It lives in the site's workspace, not in the app folder: the simulator's sites share one app folder.
    """
    return Path(workspace) / "config" / file_name
