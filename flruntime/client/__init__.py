"""The Client API training scripts use: ``import flruntime.client as flare`` (NVFlare's names).

``FLModel`` is flruntime's model message (``params``, ``params_type``, ``metrics``, ``meta``,
``current_round``, ``total_rounds``); ``ParamsType`` says whether params are FULL or a DIFF.
"""

from flruntime.client.api import (
    clear,
    get_config,
    get_job_id,
    get_site_name,
    get_task_name,
    init,
    is_evaluate,
    is_running,
    is_submit_model,
    is_train,
    log,
    receive,
    send,
    shutdown,
    system_info,
)
from flruntime.runtime.messages import ModelMessage as FLModel
from flruntime.runtime.messages import ParamsType

__all__ = [
    "FLModel",
    "ParamsType",
    "clear",
    "get_config",
    "get_job_id",
    "get_site_name",
    "get_task_name",
    "init",
    "is_evaluate",
    "is_running",
    "is_submit_model",
    "is_train",
    "log",
    "receive",
    "send",
    "shutdown",
    "system_info",
]
