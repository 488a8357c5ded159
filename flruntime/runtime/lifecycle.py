"""Starting and stopping a site's components: ``setup`` at the start of a run, ``teardown`` at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flruntime.events.types import EventType
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)


def preflight_components(objects: Iterable[Any], ctx: RunContext) -> None:
    """Call ``preflight(ctx)`` on every object that has it, before any site starts.

    A component checks there what it needs from the site that validation could not see (e.g. a key file in
    the site's ``startup/`` folder) and raises with a one-line reason; the simulator refuses the run with it.
    """
    for obj in objects:
        preflight = getattr(obj, "preflight", None)
        if callable(preflight):
            preflight(ctx)


def start_components(objects: Iterable[Any], ctx: RunContext) -> None:
    """Call ``setup(ctx)`` on every object that has it (build order), then fire START_RUN."""
    for obj in objects:
        setup = getattr(obj, "setup", None)
        if callable(setup):
            setup(ctx)
    ctx.bus.fire(EventType.START_RUN)


def stop_components(objects: Iterable[Any], ctx: RunContext) -> None:
    """Fire ABOUT_TO_END_RUN and END_RUN, then call ``teardown(ctx)`` on every object that has it (reverse order)."""
    ctx.bus.fire(EventType.ABOUT_TO_END_RUN)
    ctx.bus.fire(EventType.END_RUN)
    for obj in reversed(list(objects)):
        teardown = getattr(obj, "teardown", None)
        if callable(teardown):
            try:
                teardown(ctx)
            except Exception:
                log.exception("%s: teardown of %s failed", ctx.site, type(obj).__name__)
