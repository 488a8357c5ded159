"""NVFlare class paths and the flruntime components they map to.

Real NVFlare job folders name classes such as
``nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather``. Each entry here maps such a
path to the flruntime class with the same constructor arguments and behaviour. A ``nvflare.*`` or
``monai_nvflare.*`` path that is not (yet) listed is refused with a clear "not supported yet" error
rather than an import failure. The map grows as components land; the README's table lists it.
"""

from __future__ import annotations

#: NVFlare class path → flruntime class path.
_OURS = "flruntime.components."

NVFLARE_ALIASES: dict[str, str] = {
    "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather": (
        _OURS + "workflows.scatter_and_gather.ScatterAndGather"
    ),
    "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator": (
        _OURS + "aggregators.intime.InTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator": (
        _OURS + "shareables.full_model.FullModelShareableGenerator"
    ),
    "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent": (
        _OURS + "tracking.convert_to_fed_event.ConvertToFedEvent"
    ),
    "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver": _OURS + "tracking.mlflow_receiver.MLflowReceiver",
    "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver": _OURS + "tracking.tb_receiver.TBAnalyticsReceiver",
    "nvflare.app_opt.tracking.wandb.wandb_receiver.WandBReceiver": _OURS + "tracking.wandb_receiver.WandBReceiver",
}

#: Prefixes of class paths that belong to NVFlare or its MONAI integration.
NVFLARE_PREFIXES = ("nvflare.", "monai_nvflare.")


def is_nvflare_path(path: str) -> bool:
    """Return True for a class path inside NVFlare's namespaces."""
    return path.startswith(NVFLARE_PREFIXES)
