"""The functions a training script calls: ``import flruntime.client as flare``.

The same script runs unchanged in process (an in-process executor binds the script's thread to its
session) and as a launched process (``flare.init()`` reads the config the launcher executor wrote and
connects through its pipe). Names and signatures match NVFlare's ``nvflare.client``.

Typical use::

    flare.init()
    while flare.is_running():
        model = flare.receive()                  # FLModel: params, current_round, meta, ...
        params = train(model.params)
        flare.send(flare.FLModel(params=params, meta={"NUM_STEPS_CURRENT_ROUND": steps}))
"""

from __future__ import annotations

import threading
from typing import Any

from flruntime.client import binding
from flruntime.client.base import ClientAPI
from flruntime.client.ex_process import ExProcessClientAPI, launched
from flruntime.runtime.messages import ModelMessage
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

_init_lock = threading.Lock()


def _session(config_file: str | None = None) -> ClientAPI:
    api = binding.current()
    if api is not None:
        return api
    with _init_lock:
        api = binding.current()
        if api is None and (launched() or config_file is not None):
            api = ExProcessClientAPI.from_file(config_file)
            binding.set_process_api(api)
    if api is None:
        raise RuntimeError(
            "flare: this script is not running under an flruntime job (no in-process executor runs it, and "
            "FLRUNTIME_CLIENT_API / CLIENT_API_TYPE are not set as a launcher executor sets them)"
        )
    return api


def init(rank: str | int | None = None, config_file: str | None = None) -> None:
    """Connect the script to its flruntime client (other calls do it too when it was not called).

    Args:
        rank: accepted for NVFlare compatibility.
        config_file: the Client API config of a launched script (default: from the environment).
    """
    _session(config_file).init(rank)


def receive(timeout: float | None = None) -> ModelMessage | None:
    """Return the model of the current task; None when the job ended (or nothing came within ``timeout``)."""
    return _session().receive(timeout)


def send(model: ModelMessage, clear_cache: bool = True) -> None:
    """Send ``model`` as the current task's result (numpy arrays or torch tensors; FULL or DIFF).

    With ``params_transfer_type`` DIFF and a FULL model, the difference to the received parameters is sent.
    """
    _session().send(model, clear_cache)


def is_running() -> bool:
    """True while the job runs (waits for the next task when the current one was answered)."""
    return _session().is_running()


def system_info() -> dict[str, str]:
    """``{"job_id": ..., "site_name": ...}``."""
    return _session().system_info()


def get_config() -> dict[str, Any]:
    """The Client API config (``client_api_config.json``'s layout)."""
    return _session().get_config()


def get_site_name() -> str:
    """The site this script trains for."""
    return _session().config.site_name


def get_job_id() -> str:
    """The job's id."""
    return _session().config.job_id


def get_task_name() -> str:
    """The name of the current task."""
    return _session().get_task_name()


def is_train() -> bool:
    """True when the current task is a training task."""
    api = _session()
    return api.get_task_name() == api.config.train_task_name


def is_evaluate() -> bool:
    """True when the current task is an evaluation task."""
    api = _session()
    return api.get_task_name() == api.config.eval_task_name


def is_submit_model() -> bool:
    """True when the current task asks for the local model."""
    api = _session()
    return api.get_task_name() == api.config.submit_model_task_name


def clear() -> None:
    """Forget the current task without answering it."""
    _session().clear()


def shutdown() -> None:
    """End the session: ``receive`` returns None from now on."""
    _session().shutdown()


def log(key: str, value: Any, data_type: AnalyticsDataType | str, **kwargs: Any) -> None:
    """Send one analytics record to the site (NVFlare's ``flare.log``).

    It becomes the site's ``analytix_log_stats`` event: site-side receivers see it, and
    ``ConvertToFedEvent`` forwards it to the server's receivers. The tracking writers
    (:mod:`flruntime.client.tracking`) call this.

    Args:
        key: the metric, parameter or tag name.
        value: its value (a number, a dict of numbers, text, ...).
        data_type: an :class:`~flruntime.tracking.record.AnalyticsDataType`.
        **kwargs: ``global_step`` (or ``step``), ``writer`` (the API style) and extra arguments (``path``).
    """
    step = kwargs.pop("global_step", kwargs.pop("step", None))
    writer = kwargs.pop("writer", LogWriterName.TORCH_TB)
    record = AnalyticsRecord.make(key, value, AnalyticsDataType(data_type), LogWriterName(writer), step, **kwargs)
    _session().log(record)
