"""Users' ``run(self)`` in a ``ModelController`` subclass, called by flruntime's engine as ``run(ctx)``.

Every ``run`` a subclass defines is wrapped (``ModelController.__init_subclass__``): the engine's call binds the
run's context first, then calls the user's ``run(self)``; ``super().run()`` from a subclass goes straight to the
parent's code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flruntime.components.workflows.model_controller import ModelController

    from flruntime.runtime.context import ServerContext


def _needs_ctx(fn: Callable[..., Any]) -> bool:
    """True when a ``run`` takes a required positional argument after ``self`` (flruntime's ``run(ctx)``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return (
        bool(params)
        and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
        and (params[0].default is params[0].empty)
    )


def entry(user_run: Callable[..., Any]) -> Callable[..., None]:
    """Wrap a subclass's ``run``: the engine's ``run(ctx)`` binds the context, then calls the user's code."""
    needs_ctx = _needs_ctx(user_run)

    @functools.wraps(user_run)
    def run(self: ModelController, ctx: ServerContext | None = None) -> None:
        def call() -> None:
            if needs_ctx:
                user_run(self, ctx if ctx is not None else self.ctx)
            else:
                user_run(self)

        if ctx is None or self._ctx is not None:  # super().run() from a subclass, or a nested call
            call()
        else:
            self._control_flow(ctx, call)

    run.__flruntime_entry__ = True  # type: ignore[attr-defined]
    return run
