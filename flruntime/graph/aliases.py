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
    "nvflare.app_opt.tf.in_process_client_api_executor.TFInProcessClientAPIExecutor": (
        _OURS + "executors.tf.TFInProcessClientAPIExecutor"
    ),
    "nvflare.app_opt.tf.model_persistor.TFModelPersistor": _OURS + "persistors.tf_model.TFModelPersistor",
    "nvflare.app_common.executors.learner_executor.LearnerExecutor": _OURS + "executors.learner.LearnerExecutor",
    "nvflare.app_common.executors.model_learner_executor.ModelLearnerExecutor": (
        _OURS + "executors.learner.ModelLearnerExecutor"
    ),
    "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather": (
        _OURS + "workflows.scatter_and_gather.ScatterAndGather"
    ),
    "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator": (
        _OURS + "aggregators.intime.InTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator": (
        _OURS + "shareables.full_model.FullModelShareableGenerator"
    ),
    "nvflare.app_common.widgets.metric_relay.MetricRelay": _OURS + "widgets.metric_relay.MetricRelay",
    "nvflare.app_common.metrics_exchange.metrics_sender.MetricsSender": _OURS + "widgets.metric_relay.MetricsSender",
    "nvflare.app_common.widgets.external_configurator.ExternalConfigurator": (
        _OURS + "widgets.metric_relay.ExternalConfigurator"
    ),
    "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent": (
        _OURS + "tracking.convert_to_fed_event.ConvertToFedEvent"
    ),
    "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver": _OURS + "tracking.mlflow_receiver.MLflowReceiver",
    "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver": _OURS + "tracking.tb_receiver.TBAnalyticsReceiver",
    "nvflare.app_opt.tracking.wandb.wandb_receiver.WandBReceiver": _OURS + "tracking.wandb_receiver.WandBReceiver",
    "nvflare.app_common.executors.in_process_client_api_executor.InProcessClientAPIExecutor": (
        _OURS + "executors.in_process.InProcessClientAPIExecutor"
    ),
    "nvflare.app_opt.pt.in_process_client_api_executor.PTInProcessClientAPIExecutor": (
        _OURS + "executors.in_process.PTInProcessClientAPIExecutor"
    ),
    "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor": (
        _OURS + "executors.launcher.ClientAPILauncherExecutor"
    ),
    "nvflare.app_opt.pt.client_api_launcher_executor.PTClientAPILauncherExecutor": (
        _OURS + "executors.launcher.PTClientAPILauncherExecutor"
    ),
    "nvflare.app_common.launchers.subprocess_launcher.SubprocessLauncher": (
        _OURS + "launchers.subprocess.SubprocessLauncher"
    ),
    "nvflare.fuel.utils.pipe.file_pipe.FilePipe": "flruntime.pipes.file.FilePipe",
    "nvflare.fuel.utils.pipe.cell_pipe.CellPipe": "flruntime.pipes.cell.CellPipe",
    "nvflare.fuel.utils.pipe.memory_pipe.MemoryPipe": "flruntime.pipes.memory.MemoryPipe",
    "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor": _OURS + "persistors.pt_file.PTFileModelPersistor",
    "nvflare.app_common.np.np_model_persistor.NPModelPersistor": _OURS + "persistors.np_file.NPModelPersistor",
    "nvflare.app_common.widgets.intime_model_selector.IntimeModelSelector": (
        _OURS + "widgets.model_selector.IntimeModelSelector"
    ),
    "nvflare.app_common.widgets.intime_model_selector.IntimeModelSelectionHandler": (
        _OURS + "widgets.model_selector.IntimeModelSelectionHandler"
    ),
    "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator": _OURS + "locators.pt_file.PTFileModelLocator",
    "nvflare.app_common.np.np_model_locator.NPModelLocator": _OURS + "locators.np_file.NPModelLocator",
    "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval": (
        _OURS + "workflows.cross_site_eval.CrossSiteModelEval"
    ),
    "nvflare.app_common.widgets.validation_json_generator.ValidationJsonGenerator": (
        _OURS + "widgets.validation_json.ValidationJsonGenerator"
    ),
    "monai_nvflare.client_algo_executor.ClientAlgoExecutor": _OURS + "monai.client_algo_executor.ClientAlgoExecutor",
    "monai_nvflare.monai_bundle_persistor.MonaiBundlePersistor": _OURS + "monai.bundle_persistor.MonaiBundlePersistor",
    "monai_nvflare.nvflare_stats_handler.NVFlareStatsHandler": _OURS + "monai.stats_handler.NVFlareStatsHandler",
    "nvflare.app_common.np.np_trainer.NPTrainer": _OURS + "executors.np_trainer.NPTrainer",
    "nvflare.app_common.np.np_validator.NPValidator": _OURS + "executors.np_validator.NPValidator",
    "nvflare.app_common.np.np_formatter.NPFormatter": _OURS + "widgets.np_formatter.NPFormatter",
    "nvflare.app_common.workflows.initialize_global_weights.InitializeGlobalWeights": (
        _OURS + "workflows.initialize_global_weights.InitializeGlobalWeights"
    ),
    "nvflare.app_common.workflows.model_controller.ModelController": (
        _OURS + "workflows.model_controller.ModelController"
    ),
    "nvflare.app_common.workflows.base_fedavg.BaseFedAvg": _OURS + "workflows.base_fedavg.BaseFedAvg",
    "nvflare.app_common.workflows.fedavg.FedAvg": _OURS + "workflows.fedavg.FedAvg",
    "nvflare.app_opt.pt.fedavg_early_stopping.PTFedAvgEarlyStopping": (
        _OURS + "workflows.fedavg_early_stopping.PTFedAvgEarlyStopping"
    ),
    "nvflare.app_common.workflows.cyclic_ctl.CyclicController": _OURS + "workflows.cyclic.CyclicController",
    # homomorphic encryption; the second paths of the decryptor and the generator are the misspelt ones NVFlare's
    # spleen HE job has shipped since 2.5 (NVFlare itself cannot load them)
    "nvflare.app_opt.he.model_encryptor.HEModelEncryptor": _OURS + "he.encryptor.HEModelEncryptor",
    "nvflare.app_opt.he.model_decryptor.HEModelDecryptor": _OURS + "he.decryptor.HEModelDecryptor",
    "nvflare.app_opt.he.model_encryptor.HEModelDecryptor": _OURS + "he.decryptor.HEModelDecryptor",
    "nvflare.app_opt.he.intime_accumulate_model_aggregator.HEInTimeAccumulateWeightedAggregator": (
        _OURS + "he.aggregator.HEInTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_opt.he.model_shareable_generator.HEModelShareableGenerator": (
        _OURS + "he.shareable_generator.HEModelShareableGenerator"
    ),
    "nvflare.app_opt.he.model_sharable_generator.HEModelShareableGenerator": (
        _OURS + "he.shareable_generator.HEModelShareableGenerator"
    ),
    "nvflare.app_opt.he.model_serialize_filter.HEModelSerializeFilter": (
        _OURS + "he.serialize_filter.HEModelSerializeFilter"
    ),
    "nvflare.app_opt.he.cross_site_model_eval.HECrossSiteModelEval": _OURS + "he.cross_site_eval.HECrossSiteModelEval",
}

#: What differs from NVFlare, by class name (shown in the README's compatibility table).
NVFLARE_NOTES: dict[str, str] = {
    "TFInProcessClientAPIExecutor": "the script's params are `{layer: layer.get_weights()}` for train / validate "
    "tasks, as NVFlare's converters make them; `params_transfer_type` DIFF is refused.",
    "TFModelPersistor": "`get_model_inventory` lists nothing (cross-site evaluation finds the server model through a "
    "locator).",
    "LearnerExecutor": "written on the component API shim (flruntime/compat); the learner's `train` / `validate` "
    "get the task's Shareable, and what they return must be a WEIGHTS, WEIGHT_DIFF or METRICS DXO (or no DXO).",
    "ModelLearnerExecutor": "as LearnerExecutor, with FLModels (flruntime's ModelMessage: no `optimizer_params`, "
    "`start_round`); the learner's `app_root` is the site's folder for the job.",
    "ScatterAndGather": "`min_clients` above the number of clients waits for all of them (warning); "
    "`ignore_result_error` None skips failed results while `min_clients` can still be met; `task_check_period` "
    "unused (results are pushed).",
    "InTimeAccumulateWeightedAggregator": "COLLECTION / METRICS kinds not supported yet.",
    "PTFileModelPersistor": "`allow_numpy_conversion=False` has no effect (parameters are always numpy); files it "
    "saved load with `weights_only=True`.",
    "CrossSiteModelEval": "`formatter_id` accepted and ignored; model/result files hold the wire codec's bytes; an "
    "evaluation that validated nothing (no model, or every validation failed) fails the job, naming why (NVFlare "
    "completes).",
    "ValidationJsonGenerator": "also writes `cross_val_results.png` (a heatmap per metric).",
    "IntimeModelSelector": "does not skip round 0 (nothing happens while no metric arrives).",
    "CellPipe": "a socket pipe on 127.0.0.1 with a per-pipe secret (no TLS); `root_url`, `secure_mode`, "
    "`workspace_dir` ignored; PASSIVE only.",
    "MemoryPipe": "linked by site and token (all simulated sites share `{JOB_ID}`).",
    "SubprocessLauncher": "a leading `python`/`python3` runs with the site's interpreter; the script gets its own "
    "process group.",
    "ClientAPILauncherExecutor": "`last_result_transfer_timeout` and `workers` accepted, unused; the config file lives "
    "in the site workspace.",
    "PTClientAPILauncherExecutor": "as ClientAPILauncherExecutor.",
    "InProcessClientAPIExecutor": "`log_pull_interval` unused (metrics arrive as events).",
    "PTInProcessClientAPIExecutor": "as InProcessClientAPIExecutor.",
    "MLflowReceiver": "default store: embedded SQLite in the workspace; a site's run is created with its first "
    "record; an outage never loses buffered records.",
    "TBAnalyticsReceiver": "step 0 is written as step 0.",
    "WandBReceiver": "all sites share one process.",
    "MetricRelay": "with `fed_event` the record goes to the server as `fed.<event_type>`.",
    "ClientAlgoExecutor": "each site runs its bundle from its own copy of the app (`<site workspace>/app`); a failing "
    "`initialize` fails the site's tasks with its cause (NVFlare only logs it); the job's abort calls `abort()`.",
    "MonaiBundlePersistor": "`config_train_filename` may be a list (merged in order); `source_ckpt_filename` is "
    "loaded with `weights_only=True`.",
    "NVFlareStatsHandler": "without `metrics_sender_id` records fire on the site's bus as `analytix_log_stats`; "
    "a value that is not a finite number is skipped with a warning instead of stopping training.",
    "NPTrainer": "an unknown task or a `submit_model` before any training fails with EXECUTION_EXCEPTION (NVFlare: "
    "TASK_UNKNOWN / EXECUTION_RESULT_ERROR); the short name stays ambiguous, as in NVFlare.",
    "NPValidator": "`epsilon` scales the random term of the metric (NVFlare ignores it: the term is always in "
    "[0, 1)); `validate_task_name` accepted as in 2.6.",
    "NPFormatter": "`format()` needs no context; the cross-site table is also logged at the end of the run.",
    "InitializeGlobalWeights": "a bad client answer fails the job after the task ends rather than at once.",
    "ModelController": "a subclass (in the job's `custom/`) overrides `run(self)` as in NVFlare (or `run(self, ctx)`); "
    "no `fl_ctx` (`self.ctx` is the run's context); a failed result fails the job (`ignore_result_error` false) also "
    "where NVFlare only logs it; `send_model` callbacks run in a thread of their own; unknown `targets` are refused; "
    "the validator cannot know the tasks a subclass sends.",
    "BaseFedAvg": "only numeric metrics are averaged; a FULL aggregate replaces the variables it has and keeps the "
    "others (NVFlare drops them); `train_round(model, clients)` runs a round for subclasses, folding results in as "
    "they arrive unless `aggregate`/`aggregate_fn` is replaced.",
    "FedAvg": "takes the 2.5/2.6 args and the later FedAvg's (`model`, `save_filename`, `aggregator`, `stop_cond`, "
    "`patience`, `task_name`, `exclude_vars`, `aggregation_weights`; `stream_to_disk` unused); results are folded in "
    "as they arrive; without a persistor the model is saved as `save_filename` (tensors, when torch is installed); "
    "the short name `FedAvg` is this class, as in NVFlare 2.5+.",
    "PTFedAvgEarlyStopping": "the best model is a copy (NVFlare keeps the latest model under that name); it is saved "
    "in the server workspace as tensors (loads with `weights_only=True`) with JSON `.metadata` (NVFlare: FOBS).",
    "CyclicController": "a failed client result fails the job once the last model is saved (NVFlare stops the "
    "relay and completes); a client that went away is skipped; resumes from `cyclic_snapshot.json`.",
    "HEModelEncryptor": "all encrypted variables are packed together into as few ciphertexts as possible (a layout "
    "in meta, with the weight in the clear) instead of one vector per variable; a WEIGHT_DIFF is encrypted as the "
    "received global model plus the difference (needs `HEModelDecryptor` on the task's data); unencrypted variables "
    "keep their shape; the key's fingerprint travels with the model.",
    "HEModelDecryptor": "divides by the weight in the layout; restores each variable's shape and dtype; refuses a "
    "model encrypted with another key; keeps the received model for the same task's encryptor.",
    "HEInTimeAccumulateWeightedAggregator": "only adds ciphertexts and the weights the clients state (the division "
    "happens after decryption); `weigh_by_local_iter=true` is refused; rejects a result encrypted with another key "
    "or layout or for another global model; `exclude_vars` (WEIGHT_DIFF only) reaches the clients' encryptors "
    "through the task data, which leave excluded encrypted variables' differences out; extra arg "
    "`tenseal_context_file`.",
    "HEModelShareableGenerator": "the aggregate's ciphertexts become the global model as they are (no ciphertext "
    "arithmetic); tells the clients what the HE aggregator excludes.",
    "HEModelSerializeFilter": "models are already ciphertext bytes; the filter checks them.",
    "HECrossSiteModelEval": "as CrossSiteModelEval.",
}


def markdown_table() -> str:
    """Return the README's table of accepted NVFlare class paths (a test keeps the README in step)."""
    rows = ["| NVFlare class path | flruntime class | differences |", "|---|---|---|"]
    for path, target in sorted(NVFLARE_ALIASES.items()):
        note = NVFLARE_NOTES.get(path.rsplit(".", 1)[1], "—")
        rows.append(f"| `{path}` | `{target.removeprefix('flruntime.')}` | {note} |")
    return "\n".join(rows)


#: Prefixes of class paths that belong to NVFlare or its MONAI integration.
NVFLARE_PREFIXES = ("nvflare.", "monai_nvflare.")


def is_nvflare_path(path: str) -> bool:
    """Return True for a class path inside NVFlare's namespaces."""
    return path.startswith(NVFLARE_PREFIXES)


#: NVFlare class paths that reach an aliased class through another NVFlare module → the class's canonical path
#: (a key of :data:`NVFLARE_ALIASES`). NVFlare loads a class path with ``import_module`` and ``getattr``, so a
#: module that imports a class (a package ``__init__``, a deprecated module kept for old configs, the module of a
#: subclass) resolves it too: NVFlare's own ``sklearn_*`` and ``xgboost_tree`` job templates name
#: ``nvflare.app_opt.pt.client_api_launcher_executor.ClientAPILauncherExecutor``. Every entry was read in the
#: released source of the versions given (the ``nvflare`` 2.4.0 / 2.5.0 / 2.6.0 wheels, built from those tags;
#: ``monai-nvflare`` 0.3.0 / 0.3.1, for NVFlare 2.5 / 2.6), at module level. Left out: modules of NVFlare's
#: job-construction API (``nvflare.job_config.*``, ``nvflare.app_opt.*.job_config.*``, ``flower_job``,
#: ``client.flare_agent``), which import classes to build jobs with and which no job folder names.
NVFLARE_REEXPORTS: dict[str, str] = {
    # package __init__ re-exports (2.4-2.6)
    "nvflare.app_common.aggregators.InTimeAccumulateWeightedAggregator": (
        "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.shareablegenerators.FullModelShareableGenerator": (
        "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
    ),
    "nvflare.app_opt.pt.PTFileModelPersistor": "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
    "nvflare.app_opt.pt.PTFileModelLocator": "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator",
    # monai_nvflare/__init__.py (monai-nvflare 0.3.0, 0.3.1)
    "monai_nvflare.ClientAlgoExecutor": "monai_nvflare.client_algo_executor.ClientAlgoExecutor",
    "monai_nvflare.MonaiBundlePersistor": "monai_nvflare.monai_bundle_persistor.MonaiBundlePersistor",
    # deprecated modules that import the class from its new home (2.4-2.6; NVFlare warns "This module ... is
    # deprecated" with a FutureWarning when it imports them)
    "nvflare.app_common.pt.pt_file_model_persistor.PTFileModelPersistor": (
        "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
    ),
    "nvflare.app_common.pt.pt_file_model_locator.PTFileModelLocator": (
        "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator"
    ),
    "nvflare.app_common.pt.tb_receiver.TBAnalyticsReceiver": (
        "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver"
    ),
    "nvflare.app_common.homomorphic_encryption.he_model_encryptor.HEModelEncryptor": (
        "nvflare.app_opt.he.model_encryptor.HEModelEncryptor"
    ),
    "nvflare.app_common.homomorphic_encryption.he_model_decryptor.HEModelDecryptor": (
        "nvflare.app_opt.he.model_decryptor.HEModelDecryptor"
    ),
    "nvflare.app_common.homomorphic_encryption.he_intime_accumulate_model_aggregator."
    "HEInTimeAccumulateWeightedAggregator": (
        "nvflare.app_opt.he.intime_accumulate_model_aggregator.HEInTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.homomorphic_encryption.he_model_shareable_generator.HEModelShareableGenerator": (
        "nvflare.app_opt.he.model_shareable_generator.HEModelShareableGenerator"
    ),
    # modules that import the class to subclass or use it (2.4-2.6 unless marked)
    "nvflare.app_opt.pt.client_api_launcher_executor.ClientAPILauncherExecutor": (
        "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor"
    ),
    "nvflare.app_opt.tf.client_api_launcher_executor.ClientAPILauncherExecutor": (  # 2.5-2.6
        "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor"
    ),
    "nvflare.app_opt.pt.in_process_client_api_executor.InProcessClientAPIExecutor": (  # 2.5-2.6
        "nvflare.app_common.executors.in_process_client_api_executor.InProcessClientAPIExecutor"
    ),
    "nvflare.app_opt.tf.in_process_client_api_executor.InProcessClientAPIExecutor": (  # 2.5-2.6
        "nvflare.app_common.executors.in_process_client_api_executor.InProcessClientAPIExecutor"
    ),
    "nvflare.app_opt.pt.file_model_locator.PTFileModelPersistor": (
        "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
    ),
    "nvflare.app_opt.pt.fedopt.FullModelShareableGenerator": (
        "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
    ),
    "nvflare.app_opt.he.cross_site_model_eval.CrossSiteModelEval": (
        "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval"
    ),
    "nvflare.app_opt.he.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator": (
        "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.aggregators.accumulate_model_aggregator.InTimeAccumulateWeightedAggregator": (
        "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
    ),
    "nvflare.app_common.workflows.global_model_eval.CrossSiteModelEval": (
        "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval"
    ),
    "nvflare.app_common.workflows.scatter_and_gather_scaffold.ScatterAndGather": (
        "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
    ),
    # the ModelController-based workflows
    "nvflare.app_common.workflows.base_fedavg.ModelController": (
        "nvflare.app_common.workflows.model_controller.ModelController"
    ),
    "nvflare.app_common.workflows.cmd_task_controller.ModelController": (  # 2.5-2.6
        "nvflare.app_common.workflows.model_controller.ModelController"
    ),
    "nvflare.app_common.workflows.cross_site_eval.ModelController": (  # 2.5-2.6
        "nvflare.app_common.workflows.model_controller.ModelController"
    ),
    "nvflare.app_common.workflows.cyclic.ModelController": (  # 2.5-2.6
        "nvflare.app_common.workflows.model_controller.ModelController"
    ),
    "nvflare.app_common.workflows.fedavg.BaseFedAvg": "nvflare.app_common.workflows.base_fedavg.BaseFedAvg",
    "nvflare.app_common.workflows.scaffold.BaseFedAvg": "nvflare.app_common.workflows.base_fedavg.BaseFedAvg",
    "nvflare.app_opt.pt.fedavg_early_stopping.BaseFedAvg": (  # 2.5-2.6
        "nvflare.app_common.workflows.base_fedavg.BaseFedAvg"
    ),
    "nvflare.app_opt.pt.fedopt_ctl.FedAvg": "nvflare.app_common.workflows.fedavg.FedAvg",  # 2.5-2.6
    "nvflare.app_opt.tf.fedopt_ctl.FedAvg": "nvflare.app_common.workflows.fedavg.FedAvg",  # 2.5-2.6
}
