"""``add_experiment_tracking``: one call adds the right receiver to a recipe or a job folder."""

from __future__ import annotations

import copy
import difflib
import inspect
from pathlib import Path
from typing import Any

from flruntime.errors import UsageError

_C = "flruntime.components.tracking."
RECEIVERS = {
    "mlflow": _C + "mlflow_receiver.MLflowReceiver",
    "tensorboard": _C + "tb_receiver.TBAnalyticsReceiver",
    "wandb": _C + "wandb_receiver.WandBReceiver",
}
FORWARDER = {
    "id": "event_to_fed",
    "path": _C + "convert_to_fed_event.ConvertToFedEvent",
    "args": {"events_to_convert": ["analytix_log_stats"], "fed_event_prefix": "fed."},
}


def _check_config(tracking_type: str, config: dict[str, Any]) -> None:
    from flruntime.graph.locate import import_class

    cls = import_class(RECEIVERS[tracking_type])
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key in config:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "it takes " + ", ".join(allowed)
            raise UsageError(f"tracking_config key '{key}' is not an argument of {cls.__name__} ({hint})")


def receiver_components(
    tracking_type: str,
    tracking_config: dict[str, Any] | None = None,
    *,
    job_name: str = "job",
    client_side: bool = False,
    server_side: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Return the (server, client) component entries that add ``tracking_type`` tracking.

    Raises:
        UsageError: unknown tracking type, no side chosen, or a config key the receiver does not take.
    """
    if tracking_type not in RECEIVERS:
        raise UsageError(f"invalid tracking type '{tracking_type}' (choose {', '.join(RECEIVERS)})")
    if not (client_side or server_side):
        raise UsageError("at least one of server_side or client_side must be true")
    config = dict(tracking_config or {})
    _check_config(tracking_type, config)
    if tracking_type == "mlflow":
        kw = dict(config.get("kw_args") or {})
        kw.setdefault("experiment_name", f"{job_name}-experiment")
        kw.setdefault("run_name", job_name)
        config["kw_args"] = kw
    server, client = [], []
    if server_side:
        server.append({"id": "receiver", "path": RECEIVERS[tracking_type], "args": config})
        client.append(copy.deepcopy(FORWARDER))
    if client_side:
        local = copy.deepcopy(config)
        local.setdefault("events", ["analytix_log_stats"])
        client.append({"id": "client_receiver", "path": RECEIVERS[tracking_type], "args": local})
    return server, client


def _merge(components: list[dict], new: list[dict]) -> list[dict]:
    ids = {c.get("id") for c in components}
    paths = {c.get("path") for c in components}
    out = list(components)
    for comp in new:
        if comp["path"] == FORWARDER["path"] and comp["path"] in paths:
            continue  # the job already forwards its events
        if comp["id"] in ids:
            raise UsageError(f"the job already has a component with id '{comp['id']}'")
        out.append(comp)
    return out


def add_experiment_tracking(
    recipe_or_job: Any,
    tracking_type: str = "mlflow",
    tracking_config: dict[str, Any] | None = None,
    *,
    client_side: bool = False,
    server_side: bool = True,
) -> Any:
    """Add a tracking receiver to a :class:`~flruntime.recipe.FedAvgRecipe` or to a job folder.

    Args:
        recipe_or_job: a recipe, or the path of a job folder (its config files are rewritten as JSON).
        tracking_type: ``mlflow``, ``tensorboard`` or ``wandb``.
        tracking_config: the receiver's constructor arguments (e.g. ``{"tracking_uri": "http://..."}``).
        client_side: also record on each site, in the site's own store (metrics never leave the site).
        server_side: record every site's metrics on the server (clients forward them with ConvertToFedEvent).

    Returns:
        The recipe, or the job folder's path.

    Raises:
        UsageError: bad type, side, config key, or an id already taken.
    """
    from flruntime.recipe import FedAvgRecipe

    if isinstance(recipe_or_job, FedAvgRecipe):
        server, client = receiver_components(
            tracking_type,
            tracking_config,
            job_name=recipe_or_job.name,
            client_side=client_side,
            server_side=server_side,
        )
        recipe_or_job.server_components = _merge(recipe_or_job.server_components, server)
        recipe_or_job.client_components = _merge(recipe_or_job.client_components, client)
        return recipe_or_job
    from flruntime.config.job import discover
    from flruntime.config.source import load_file
    from flruntime.config.writer import write_config

    root = Path(recipe_or_job)
    job, problems = discover(root)
    if job.meta is None or not job.apps:
        raise UsageError(f"'{root}' is not a job folder: {problems[0].format() if problems else 'no apps'}")
    server, client = receiver_components(
        tracking_type, tracking_config, job_name=job.name, client_side=client_side, server_side=server_side
    )
    for app in job.apps.values():
        for side, new in (("server", server), ("client", client)):
            path = app.config_file(side)
            if path is None or not new:
                continue
            source, load_problems = load_file(path)
            if source is None or not isinstance(source.data, dict):
                raise UsageError(load_problems[0].format() if load_problems else f"cannot read {path}")
            data = dict(source.data)
            data["components"] = _merge(list(data.get("components") or []), new)
            write_config(path, data)
    return root


__all__ = ["RECEIVERS", "add_experiment_tracking", "receiver_components"]
