"""``nvflare.apis.controller_spec`` without NVFlare: Task, ClientTask, SendOrder (flruntime's).

See :mod:`flruntime.compat.controller`.
"""

from flruntime.compat.controller import ClientTask, Controller, SendOrder, Task, TaskCompletionStatus

ControllerSpec = Controller

__all__ = ["ClientTask", "ControllerSpec", "SendOrder", "Task", "TaskCompletionStatus"]
