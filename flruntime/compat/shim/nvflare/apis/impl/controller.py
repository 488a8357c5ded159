"""``nvflare.apis.impl.controller`` without NVFlare: the Controller API (flruntime's).

See :mod:`flruntime.compat.controller`.
"""

from flruntime.compat.controller import ClientTask, Controller, SendOrder, Task, TaskCompletionStatus

__all__ = ["ClientTask", "Controller", "SendOrder", "Task", "TaskCompletionStatus"]
