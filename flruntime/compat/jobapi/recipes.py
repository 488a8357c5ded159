"""NVFlare's recipes (2.7+): a ``Recipe`` wraps a ``FedJob`` (``recipe.job``) and runs it in an environment.

- :class:`Recipe` (``nvflare.recipe.spec``): ``export(job_dir)``, ``execute(env)`` → a
  :class:`~flruntime.environments.Run`, filters, extra config values.
- :class:`FedAvgRecipe` (``nvflare.app_opt.pt.recipes``): PyTorch FedAvg with ``ScatterAndGather``.
- :class:`NumpyFedAvgRecipe`, :class:`NumpyCrossSiteEvalRecipe` (``nvflare.app_common.np.recipes``).
- :func:`add_experiment_tracking`, :func:`add_cross_site_evaluation` (``nvflare.recipe.utils``).

The environments (``SimEnv``, ``PocEnv``, ``ProdEnv``) are :mod:`flruntime.environments`'; ``execute`` exports
the job into a temporary folder and hands it to the environment.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import tempfile
from typing import Any

from flruntime.client.config import ExchangeFormat, TransferType
from flruntime.compat.dxo import DataKind
from flruntime.compat.jobapi.base_fed_job import BaseFedJob as UnifiedBaseFedJob
from flruntime.compat.jobapi.base_fed_job import widget_classes
from flruntime.compat.jobapi.export import remember_init_args
from flruntime.compat.jobapi.fed_job import FedJob, FilterType
from flruntime.compat.jobapi.script_runner import FrameworkType, ScriptRunner
from flruntime.environments import ExecEnv, Run
from flruntime.errors import JobApiError

#: ``add_experiment_tracking``'s tracking types: the package each needs, and its receiver.
TRACKING_REGISTRY: dict[str, dict[str, str]] = {
    "mlflow": {
        "package": "mlflow",
        "receiver_module": "nvflare.app_opt.tracking.mlflow.mlflow_receiver",
        "receiver_class": "MLflowReceiver",
    },
    "tensorboard": {
        "package": "tensorboard",
        "receiver_module": "nvflare.app_opt.tracking.tb.tb_receiver",
        "receiver_class": "TBAnalyticsReceiver",
    },
    "wandb": {
        "package": "wandb",
        "receiver_module": "nvflare.app_opt.tracking.wandb.wandb_receiver",
        "receiver_class": "WandBReceiver",
    },
}


def _server_classes() -> dict[str, type]:
    from flruntime.components.aggregators.intime import InTimeAccumulateWeightedAggregator
    from flruntime.components.executors.np_validator import NPValidator
    from flruntime.components.locators.np_file import NPModelLocator
    from flruntime.components.persistors.np_file import NPModelPersistor
    from flruntime.components.shareables.full_model import FullModelShareableGenerator
    from flruntime.components.workflows.cross_site_eval import CrossSiteModelEval
    from flruntime.components.workflows.scatter_and_gather import ScatterAndGather

    found: dict[str, type] = {
        "aggregator": InTimeAccumulateWeightedAggregator,
        "validator": NPValidator,
        "np_locator": NPModelLocator,
        "np_persistor": NPModelPersistor,
        "generator": FullModelShareableGenerator,
        "cse": CrossSiteModelEval,
        "sag": ScatterAndGather,
    }
    remember_init_args(*found.values())
    return found


class Recipe:
    """A job made for one algorithm, ready to export or run (``recipe.job`` is its :class:`FedJob`).

    Args:
        job: the job.
    """

    def __init__(self, job: FedJob) -> None:
        self.job = job

    def process_env(self, env: ExecEnv) -> None:
        """Adapt the job to the environment it is about to run in (nothing by default)."""

    def add_client_input_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Filter the task data the clients (all, or ``clients``) receive."""
        self._client_filter(filter, FilterType.TASK_DATA, tasks, clients)

    def add_client_output_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Filter the results the clients (all, or ``clients``) send."""
        self._client_filter(filter, FilterType.TASK_RESULT, tasks, clients)

    def _client_filter(self, flt: Any, kind: str, tasks: list[str] | None, clients: list[str] | None) -> None:
        if clients is None:
            self.job.to_clients(flt, filter_type=kind, tasks=tasks)
        else:
            for client in clients:
                self.job.to(flt, client, filter_type=kind, tasks=tasks)

    def add_server_output_filter(self, filter: Any, tasks: list[str] | None = None) -> None:
        """Filter the task data the server sends."""
        self.job.to_server(filter, filter_type=FilterType.TASK_DATA, tasks=tasks)

    def add_server_input_filter(self, filter: Any, tasks: list[str] | None = None) -> None:
        """Filter the results the server receives."""
        self.job.to_server(filter, filter_type=FilterType.TASK_RESULT, tasks=tasks)

    def add_decomposers(self, decomposers: list[Any]) -> None:
        """Accepted and not needed: flruntime's wire format carries arrays and JSON without decomposers."""

    def add_server_config(self, config: dict[str, Any]) -> None:
        """Top-level values for the server's config (NVFlare's tuning variables, ``{var}`` values)."""
        self.job.to_server(config)

    def add_client_config(self, config: dict[str, Any], clients: list[str] | None = None) -> None:
        """Top-level values for the clients' config (all, or ``clients``)."""
        for target in clients or ["@ALL"]:
            self.job.to(config, target)

    def export(
        self,
        job_dir: str,
        server_exec_params: dict[str, Any] | None = None,
        client_exec_params: dict[str, Any] | None = None,
        env: ExecEnv | None = None,
    ) -> Any:
        """Write the job folder ``job_dir/<name>/`` (see ``FedJob.export_job``) and return its path."""
        self._exec_params(server_exec_params, client_exec_params)
        if env is not None:
            self.process_env(env)
        return self.job.export_job(job_dir)

    def _exec_params(self, server: dict[str, Any] | None, client: dict[str, Any] | None) -> None:
        if server:
            self.job.to_server(server)
        if client:
            self.job.to_clients(client)

    def execute(
        self,
        env: ExecEnv,
        server_exec_params: dict[str, Any] | None = None,
        client_exec_params: dict[str, Any] | None = None,
    ) -> Run:
        """Export the job into a temporary folder and run it in ``env``; return the :class:`Run`.

        In a :class:`~flruntime.environments.SimEnv` the run has ended when this returns (``get_status()``
        tells how); in a ``PocEnv`` or ``ProdEnv`` the job was submitted.

        Raises:
            JobApiError: ``env`` is not an environment.
        """
        if not isinstance(env, ExecEnv):
            raise JobApiError(f"env must be SimEnv, PocEnv or ProdEnv, got {type(env).__name__}")
        self._exec_params(server_exec_params, client_exec_params)
        self.process_env(env)
        with tempfile.TemporaryDirectory(prefix="flruntime-recipe-") as tmp:
            root = self.job.export_job(tmp)
            return env.deploy(root, self.job.min_clients)


def _check(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        raise JobApiError(f"{name} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _aggregator(aggregator: Any, data_kind: Any) -> Any:
    if aggregator is None:
        return _server_classes()["aggregator"](expected_data_kind=data_kind)
    from flruntime import roles
    from flruntime.compat.learnable import Aggregator

    if not isinstance(aggregator, (roles.Aggregator, Aggregator)):
        raise JobApiError(f"Invalid aggregator type: {type(aggregator).__name__}. Expected type: Aggregator")
    return aggregator


def _fedavg_server(
    job: FedJob, min_clients: int, num_rounds: int, aggregator: Any, persistor_id: str, **kw: Any
) -> None:
    classes = _server_classes()
    generator_id = job.to_server(classes["generator"](), id="shareable_generator")
    aggregator_id = job.to_server(aggregator, id="aggregator")
    job.to_server(
        classes["sag"](
            min_clients=min_clients,
            num_rounds=num_rounds,
            wait_time_after_min_received=0,
            aggregator_id=aggregator_id,
            persistor_id=persistor_id,
            shareable_generator_id=generator_id,
            **kw,
        )
    )


class FedAvgRecipe(Recipe):
    """FedAvg of a PyTorch model trained by a Client API script (NVFlare's ``nvflare.app_opt.pt.recipes``).

    The server runs ``ScatterAndGather`` with an ``InTimeAccumulateWeightedAggregator`` and a
    ``FullModelShareableGenerator``; each client runs ``train_script`` through a :class:`ScriptRunner`.

    Args:
        name: the job's name.
        initial_model: the ``nn.Module`` to start from (None: the clients' own).
        min_clients: results each round needs.
        num_rounds: rounds to run.
        train_script: the clients' training script.
        train_args: its command-line arguments.
        aggregator: instead of ``InTimeAccumulateWeightedAggregator(expected_data_kind=aggregator_data_kind)``.
        aggregator_data_kind: what the clients send (``WEIGHTS`` or ``WEIGHT_DIFF``).
        launch_external_process: launch the script in a process of its own.
        command: what runs a launched script.
        server_expected_format: the parameters' format on the server.
        params_transfer_type: ``FULL`` or ``DIFF``.
        model_persistor: instead of ``PTFileModelPersistor(model=initial_model)``.
        model_locator: instead of ``PTFileModelLocator``.
        analytics_receiver: the server's receiver (None: a ``TBAnalyticsReceiver``, as 2.7; False: none).
        per_site_config: per site, overrides of ``train_script``, ``train_args``, ``launch_external_process``,
            ``command``, ``framework``, ``server_expected_format``, ``params_transfer_type``, ``launch_once``,
            ``shutdown_timeout`` (the job then runs on those sites).
        launch_once: a launched script runs once for the whole job (else once per task).
        shutdown_timeout: seconds a launched script may take to end by itself.
        key_metric: the metric that selects the best global model.

    Raises:
        JobApiError: a bad argument.
    """

    def __init__(
        self,
        *,
        name: str = "fedavg",
        initial_model: Any = None,
        min_clients: int,
        num_rounds: int = 2,
        train_script: str,
        train_args: str = "",
        aggregator: Any = None,
        aggregator_data_kind: str = DataKind.WEIGHTS,
        launch_external_process: bool = False,
        command: str = "python3 -u",
        server_expected_format: str = ExchangeFormat.NUMPY,
        params_transfer_type: str = TransferType.FULL,
        model_persistor: Any = None,
        model_locator: Any = None,
        analytics_receiver: Any = None,
        per_site_config: dict[str, dict[str, Any]] | None = None,
        launch_once: bool = True,
        shutdown_timeout: float = 0.0,
        key_metric: str = "accuracy",
    ) -> None:
        from flruntime.compat.jobapi.pt import BaseFedJob

        for arg, value, kind in (
            ("name", name, str),
            ("min_clients", min_clients, int),
            ("num_rounds", num_rounds, int),
        ):
            _check(arg, value, kind)
        _check("train_script", train_script, str)
        self.name = name
        self.initial_model = initial_model
        self.min_clients = min_clients
        self.num_rounds = num_rounds
        self.train_script = train_script
        self.train_args = train_args
        self.framework = FrameworkType.PYTORCH
        job = BaseFedJob(
            initial_model=initial_model,
            name=name,
            min_clients=min_clients,
            key_metric=key_metric,
            analytics_receiver=analytics_receiver,
            model_persistor=model_persistor,
            model_locator=model_locator,
        )
        self.aggregator = _aggregator(aggregator, aggregator_data_kind)
        persistor_id = job.comp_ids.get("persistor_id", "") if initial_model is not None else ""
        _fedavg_server(job, min_clients, num_rounds, self.aggregator, persistor_id)
        runner: dict[str, Any] = {
            "script": train_script,
            "script_args": train_args,
            "launch_external_process": launch_external_process,
            "command": command,
            "framework": FrameworkType.PYTORCH,
            "server_expected_format": server_expected_format,
            "params_transfer_type": params_transfer_type,
            "launch_once": launch_once,
            "shutdown_timeout": shutdown_timeout,
        }
        if per_site_config:
            for site, overrides in per_site_config.items():
                unknown = set(overrides) - {"train_script", "train_args", *runner}
                if unknown:
                    raise JobApiError(f"per_site_config['{site}'] has unknown keys {sorted(unknown)}")
                renamed = {
                    {"train_script": "script", "train_args": "script_args"}.get(k, k): v for k, v in overrides.items()
                }
                job.to(ScriptRunner(**{**runner, **renamed}), site)
        else:
            job.to_clients(ScriptRunner(**runner))
        super().__init__(job)


class NumpyFedAvgRecipe(Recipe):
    """FedAvg of a NumPy model trained by a Client API script (NVFlare's ``nvflare.app_common.np.recipes``).

    Args:
        name: the job's name.
        initial_model: the initial model as (nested) lists of numbers (an ``NPModelPersistor`` holds it;
            None: the clients start from their own).
        min_clients: results each round needs.
        num_rounds: rounds to run.
        train_script: the clients' training script.
        train_args: its command-line arguments.
        aggregator: instead of ``InTimeAccumulateWeightedAggregator(expected_data_kind=aggregator_data_kind)``.
        aggregator_data_kind: what the clients send.
        launch_external_process: launch the script in a process of its own.
        command: what runs a launched script.
        server_expected_format: the parameters' format on the server.
        params_transfer_type: ``FULL`` or ``DIFF``.
        analytics_receiver: a receiver for the server (None: none).
        launch_once: a launched script runs once for the whole job.
        shutdown_timeout: seconds a launched script may take to end by itself.
        key_metric: the metric that selects the best global model.

    Raises:
        JobApiError: a bad argument.
    """

    def __init__(
        self,
        *,
        name: str = "fedavg",
        initial_model: Any = None,
        min_clients: int,
        num_rounds: int = 2,
        train_script: str,
        train_args: str = "",
        aggregator: Any = None,
        aggregator_data_kind: str = DataKind.WEIGHTS,
        launch_external_process: bool = False,
        command: str = "python3 -u",
        server_expected_format: str = ExchangeFormat.NUMPY,
        params_transfer_type: str = TransferType.FULL,
        analytics_receiver: Any = None,
        launch_once: bool = True,
        shutdown_timeout: float = 0.0,
        key_metric: str = "accuracy",
    ) -> None:
        for arg, value, kind in (
            ("name", name, str),
            ("min_clients", min_clients, int),
            ("num_rounds", num_rounds, int),
        ):
            _check(arg, value, kind)
        _check("train_script", train_script, str)
        self.name = name
        self.initial_model = initial_model
        self.min_clients = min_clients
        self.num_rounds = num_rounds
        self.framework = FrameworkType.RAW
        job = UnifiedBaseFedJob(
            name=name, min_clients=min_clients, analytics_receiver=analytics_receiver, key_metric=key_metric
        )
        self.aggregator = _aggregator(aggregator, aggregator_data_kind)
        persistor_id = ""
        if initial_model is not None:
            persistor = _server_classes()["np_persistor"](initial_model=initial_model)
            persistor_id = job.to_server(persistor, id="persistor")
            job.comp_ids["persistor_id"] = persistor_id
        _fedavg_server(job, min_clients, num_rounds, self.aggregator, persistor_id, allow_empty_global_weights=True)
        job.to_clients(
            ScriptRunner(
                script=train_script,
                script_args=train_args,
                launch_external_process=launch_external_process,
                command=command,
                framework=FrameworkType.NUMPY,
                server_expected_format=server_expected_format,
                params_transfer_type=params_transfer_type,
                launch_once=launch_once,
                shutdown_timeout=shutdown_timeout,
            )
        )
        super().__init__(job)

    def add_cse_validator_if_needed(self) -> None:
        """Give the clients an ``NPValidator`` for ``validate`` tasks (cross-site evaluation of numpy models)."""
        _add_np_validator(self.job)


def _add_np_validator(job: FedJob) -> None:
    everyone = job._deploy_map.get("@ALL")
    if everyone is not None and any("validate" in tasks for tasks, _ in everyone.config.executors):
        return
    job.to_clients(_server_classes()["validator"](), tasks=["validate"])


class NumpyCrossSiteEvalRecipe(Recipe):
    """Cross-site evaluation of saved NumPy models, no training (NVFlare's ``NumpyCrossSiteEvalRecipe``).

    Each client validates each server model with an ``NPValidator``; the results go to
    ``cross_site_val/cross_val_results.json`` in the server's folder.

    Args:
        name: the job's name.
        min_clients: ``min_clients`` of the meta file.
        model_dir: the folder of the models (relative to the server's workspace, or absolute).
        model_name: model name → file name (default ``{"server": "server.npy"}``).
        submit_model_timeout: accepted (the clients submit no models).
        validation_timeout: seconds to wait for the validations of one model.
    """

    def __init__(
        self,
        name: str = "numpy_cross_site_eval",
        min_clients: int = 2,
        model_dir: str | None = None,
        model_name: dict[str, str] | None = None,
        submit_model_timeout: int = 600,
        validation_timeout: int = 6000,
    ) -> None:
        classes = _server_classes()
        job = FedJob(name=name, min_clients=min_clients)
        locator_args: dict[str, Any] = {}
        if model_dir is not None:
            locator_args["model_dir"] = model_dir
        if model_name is not None:
            locator_args["model_name"] = model_name
        locator_id = job.to_server(classes["np_locator"](**locator_args))
        job.to_server(
            classes["cse"](
                model_locator_id=locator_id, submit_model_task_name="", validation_timeout=validation_timeout
            )
        )
        job.to_server(widget_classes()["json"]())
        job.to_clients(classes["validator"](), tasks=["validate"])
        self.name = name
        self.framework = FrameworkType.RAW
        super().__init__(job)


def add_experiment_tracking(
    recipe: Recipe,
    tracking_type: str,
    tracking_config: dict[str, Any] | None = None,
    client_side: bool = False,
    server_side: bool = True,
) -> None:
    """Add a tracking receiver to the server and/or to each client.

    The server's (id ``receiver``) records every site's metrics; a client's (``client_receiver``) the site's own,
    from the local events ``analytix_log_stats``.

    Args:
        recipe: the recipe.
        tracking_type: ``mlflow``, ``tensorboard`` or ``wandb``.
        tracking_config: the receiver's constructor arguments.
        client_side: a receiver on every client.
        server_side: a receiver on the server.

    Raises:
        JobApiError: an unknown type, no side, or the tracking package is not installed.
    """
    config = dict(tracking_config or {})
    if tracking_type not in TRACKING_REGISTRY:
        raise JobApiError(f"Invalid tracking type: {tracking_type}")
    if not server_side and not client_side:
        raise JobApiError("At least one of server_side or client_side must be True")
    entry = TRACKING_REGISTRY[tracking_type]
    if importlib.util.find_spec(entry["package"]) is None:
        raise JobApiError(
            f"{entry['package']} is not installed. Please install it using `pip install {entry['package']}`"
        )
    receiver_class = getattr(importlib.import_module(entry["receiver_module"]), entry["receiver_class"])
    if server_side:
        recipe.job.to_server(receiver_class(**config), "receiver")
    if client_side:
        local = copy.deepcopy(config)
        local.setdefault("events", ["analytix_log_stats"])
        recipe.job.to_clients(receiver_class(**local), id="client_receiver")


def add_cross_site_evaluation(recipe: Recipe, submit_model_timeout: int = 600, validation_timeout: int = 6000) -> None:
    """Evaluate the server's and the clients' models on every client after training.

    PyTorch recipes evaluate with their training script (``flare.is_evaluate()``); NumPy recipes get an
    ``NPValidator`` on the clients. The server gets a ``CrossSiteModelEval`` workflow after the training, the
    model locator it needs and, unless it has one, a ``ValidationJsonGenerator``.

    Raises:
        JobApiError: the recipe's framework is not PyTorch or NumPy, it has no persistor to locate models with,
            or cross-site evaluation was added already.
    """
    if getattr(recipe, "_cse_added", False):
        raise JobApiError(f"Cross-site evaluation has already been added to recipe '{getattr(recipe, 'name', '')}'")
    framework = getattr(recipe, "framework", None)
    job = recipe.job
    server = job._deploy_map["server"].config
    classes = _server_classes()
    if framework is FrameworkType.PYTORCH:
        from flruntime.compat.jobapi.pt import pt_classes

        persistor_id = getattr(job, "comp_ids", {}).get("persistor_id", "")
        if not persistor_id:
            raise JobApiError(
                "Cross-site evaluation requires a persistor for pytorch recipes: give the recipe an initial_model"
            )
        locator_id = getattr(job, "comp_ids", {}).get("locator_id") or job.to_server(
            pt_classes()["locator"](pt_persistor_id=persistor_id)
        )
    elif framework in (FrameworkType.RAW, FrameworkType.NUMPY):
        locator_id = job.to_server(classes["np_locator"]())
    else:
        raise JobApiError(f"Unsupported framework for cross-site evaluation: {framework} (pytorch or numpy)")
    json_class = widget_classes()["json"]
    if not any(isinstance(c, json_class) for c in server.components.values()):
        job.to_server(json_class())
    job.to_server(
        classes["cse"](
            model_locator_id=locator_id,
            submit_model_timeout=submit_model_timeout,
            validation_timeout=validation_timeout,
        )
    )
    add_validator = getattr(recipe, "add_cse_validator_if_needed", None)
    if callable(add_validator):
        add_validator()
    recipe._cse_added = True  # type: ignore[attr-defined]


__all__ = [
    "TRACKING_REGISTRY",
    "FedAvgRecipe",
    "NumpyCrossSiteEvalRecipe",
    "NumpyFedAvgRecipe",
    "Recipe",
    "add_cross_site_evaluation",
    "add_experiment_tracking",
]
