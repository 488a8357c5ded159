"""Short names for components: the built-in registry plus third-party plugins.

A config may say ``"name": "FedAvg"`` instead of a full ``path``. Built-in names are listed in
:data:`BUILTIN_NAMES`; packages add their own through the entry-point group
``flruntime.components`` (``MyAggregator = my_pkg.aggregators:MyAggregator``), and their modules
become importable by class path too.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

#: Short name → flruntime class path of the built-in components.
BUILTIN_NAMES: dict[str, str] = {
    "ScatterAndGather": "flruntime.components.workflows.scatter_and_gather.ScatterAndGather",
    "FedAvg": "flruntime.components.workflows.scatter_and_gather.ScatterAndGather",
    "InTimeAccumulateWeightedAggregator": "flruntime.components.aggregators.intime.InTimeAccumulateWeightedAggregator",
    "FullModelShareableGenerator": "flruntime.components.shareables.full_model.FullModelShareableGenerator",
    "MetricRelay": "flruntime.components.widgets.metric_relay.MetricRelay",
    "MetricsSender": "flruntime.components.widgets.metric_relay.MetricsSender",
    "ExternalConfigurator": "flruntime.components.widgets.metric_relay.ExternalConfigurator",
    "ConvertToFedEvent": "flruntime.components.tracking.convert_to_fed_event.ConvertToFedEvent",
    "MLflowReceiver": "flruntime.components.tracking.mlflow_receiver.MLflowReceiver",
    "TBAnalyticsReceiver": "flruntime.components.tracking.tb_receiver.TBAnalyticsReceiver",
    "WandBReceiver": "flruntime.components.tracking.wandb_receiver.WandBReceiver",
    "InProcessClientAPIExecutor": "flruntime.components.executors.in_process.InProcessClientAPIExecutor",
    "PTInProcessClientAPIExecutor": "flruntime.components.executors.in_process.PTInProcessClientAPIExecutor",
    "ClientAPILauncherExecutor": "flruntime.components.executors.launcher.ClientAPILauncherExecutor",
    "PTClientAPILauncherExecutor": "flruntime.components.executors.launcher.PTClientAPILauncherExecutor",
    "SubprocessLauncher": "flruntime.components.launchers.subprocess.SubprocessLauncher",
    "FilePipe": "flruntime.pipes.file.FilePipe",
    "SocketPipe": "flruntime.pipes.tcp.SocketPipe",
    "CellPipe": "flruntime.pipes.cell.CellPipe",
    "MemoryPipe": "flruntime.pipes.memory.MemoryPipe",
    "PTFileModelPersistor": "flruntime.components.persistors.pt_file.PTFileModelPersistor",
    "NPModelPersistor": "flruntime.components.persistors.np_file.NPModelPersistor",
    "IntimeModelSelector": "flruntime.components.widgets.model_selector.IntimeModelSelector",
    "IntimeModelSelectionHandler": "flruntime.components.widgets.model_selector.IntimeModelSelectionHandler",
    "PTFileModelLocator": "flruntime.components.locators.pt_file.PTFileModelLocator",
    "NPModelLocator": "flruntime.components.locators.np_file.NPModelLocator",
    "CrossSiteModelEval": "flruntime.components.workflows.cross_site_eval.CrossSiteModelEval",
    "ValidationJsonGenerator": "flruntime.components.widgets.validation_json.ValidationJsonGenerator",
    "ClientAlgoExecutor": "flruntime.components.monai.client_algo_executor.ClientAlgoExecutor",
    "MonaiBundlePersistor": "flruntime.components.monai.bundle_persistor.MonaiBundlePersistor",
    "NVFlareStatsHandler": "flruntime.components.monai.stats_handler.NVFlareStatsHandler",
    # NPTrainer has no short name: NVFlare defines two classes of that name, so configs must give its path.
    "NPValidator": "flruntime.components.executors.np_validator.NPValidator",
    "NPFormatter": "flruntime.components.widgets.np_formatter.NPFormatter",
    "InitializeGlobalWeights": "flruntime.components.workflows.initialize_global_weights.InitializeGlobalWeights",
    "HEModelEncryptor": "flruntime.components.he.encryptor.HEModelEncryptor",
    "HEModelDecryptor": "flruntime.components.he.decryptor.HEModelDecryptor",
    "HEInTimeAccumulateWeightedAggregator": "flruntime.components.he.aggregator.HEInTimeAccumulateWeightedAggregator",
    "HEModelShareableGenerator": "flruntime.components.he.shareable_generator.HEModelShareableGenerator",
    "HEModelSerializeFilter": "flruntime.components.he.serialize_filter.HEModelSerializeFilter",
    "HECrossSiteModelEval": "flruntime.components.he.cross_site_eval.HECrossSiteModelEval",
}

ENTRY_POINT_GROUP = "flruntime.components"


@cache
def plugin_names() -> dict[str, str]:
    """Return short name → ``module.Class`` of every installed plugin component."""
    out: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module, _, attr = ep.value.partition(":")
        out[ep.name] = f"{module}.{attr}" if attr else module
    return out


def short_names() -> dict[str, str]:
    """Return every short name (built-ins win over plugins of the same name)."""
    return {**plugin_names(), **BUILTIN_NAMES}
