"""A Python job API: describe a FedAvg job in code, export it as a job folder, run it in the simulator.

The job folder stays the source of truth: :meth:`FedAvgRecipe.export` writes an ordinary folder that
``flruntime validate`` checks and ``flruntime simulate`` runs; :meth:`FedAvgRecipe.run` does both.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.errors import UsageError

_C = "flruntime.components."


@dataclass
class FedAvgRecipe:
    """FedAvg of a PyTorch model whose clients run ``train_script`` through the Client API.

    Args:
        name: the job's name.
        min_clients: results needed before a round is aggregated.
        num_rounds: rounds to run.
        initial_model: an ``nn.Module`` whose class is defined in a module next to ``train_script``
            (its current weights become the initial global model), or a class path ``"net.Net"`` of such a module.
        train_script: the client's training script; every ``.py`` file in its folder is shipped in ``custom/``.
        train_args: the script's command-line arguments.
        params_transfer_type: ``DIFF`` (clients send weight differences) or ``FULL``.
        key_metric: the metric the script reports that selects the best global model.
        cross_site_eval: also run cross-site evaluation after training.
    """

    name: str
    min_clients: int
    num_rounds: int
    initial_model: Any
    train_script: str | Path
    train_args: str = ""
    params_transfer_type: str = "DIFF"
    key_metric: str = "val_acc"
    cross_site_eval: bool = False
    server_components: list[dict[str, Any]] = field(default_factory=list)
    client_components: list[dict[str, Any]] = field(default_factory=list)

    def _model_spec(self, custom: Path) -> dict[str, Any]:
        model = self.initial_model
        if isinstance(model, str):
            return {"path": model}
        cls = type(model)
        module = sys.modules.get(cls.__module__)
        source = Path(inspect.getfile(module)) if module is not None and hasattr(module, "__file__") else None
        script_dir = Path(self.train_script).resolve().parent
        if source is None or source.resolve().parent != script_dir or cls.__module__ == "__main__":
            raise UsageError(
                f"define {cls.__name__} in a module next to {Path(self.train_script).name} "
                f"(found it in {source or cls.__module__}) so the server can import it"
            )
        import torch

        torch.save(model.state_dict(), custom / "initial_model.pt")
        return {"path": f"{source.stem}.{cls.__qualname__}"}

    def export(self, job_dir: str | Path) -> Path:
        """Write the job folder and return its path (an existing folder is replaced)."""
        script = Path(self.train_script)
        if not script.is_file():
            raise UsageError(f"train_script '{script}' does not exist")
        if self.params_transfer_type not in ("DIFF", "FULL"):
            raise UsageError(f"params_transfer_type must be DIFF or FULL, got {self.params_transfer_type!r}")
        root = Path(job_dir)
        if root.exists():
            shutil.rmtree(root)
        config, custom = root / "app" / "config", root / "app" / "custom"
        config.mkdir(parents=True)
        custom.mkdir(parents=True)
        for py in script.resolve().parent.glob("*.py"):
            shutil.copy2(py, custom / py.name)
        persistor_args: dict[str, Any] = {"model": self._model_spec(custom)}
        if (custom / "initial_model.pt").exists():
            persistor_args["source_ckpt_file_full_name"] = "{APP_DIR}/custom/initial_model.pt"
        kind = "WEIGHT_DIFF" if self.params_transfer_type == "DIFF" else "WEIGHTS"
        workflows: list[dict[str, Any]] = [
            {
                "id": "fedavg",
                "path": _C + "workflows.scatter_and_gather.ScatterAndGather",
                "args": {
                    "min_clients": "{min_clients}",
                    "num_rounds": "{num_rounds}",
                    "wait_time_after_min_received": 5,
                    "persistor_id": "persistor",
                },
            }
        ]
        components: list[dict[str, Any]] = [
            {"id": "persistor", "path": _C + "persistors.pt_file.PTFileModelPersistor", "args": persistor_args},
            {"id": "shareable_generator", "path": _C + "shareables.full_model.FullModelShareableGenerator"},
            {
                "id": "aggregator",
                "path": _C + "aggregators.intime.InTimeAccumulateWeightedAggregator",
                "args": {"expected_data_kind": kind},
            },
            {
                "id": "model_selector",
                "path": _C + "widgets.model_selector.IntimeModelSelector",
                "args": {"key_metric": self.key_metric},
            },
        ]
        tasks = ["train"]
        if self.cross_site_eval:
            workflows.append(
                {
                    "id": "cross_site_eval",
                    "path": _C + "workflows.cross_site_eval.CrossSiteModelEval",
                    "args": {"model_locator_id": "model_locator"},
                }
            )
            components += [
                {
                    "id": "model_locator",
                    "path": _C + "locators.pt_file.PTFileModelLocator",
                    "args": {"pt_persistor_id": "persistor"},
                },
                {"id": "json_generator", "path": _C + "widgets.validation_json.ValidationJsonGenerator"},
            ]
            tasks += ["validate", "submit_model"]
        server = {
            "format_version": 2,
            "num_rounds": self.num_rounds,
            "min_clients": self.min_clients,
            "workflows": workflows,
            "components": components + self.server_components,
        }
        client = {
            "format_version": 2,
            "executors": [
                {
                    "tasks": tasks,
                    "executor": {
                        "path": _C + "executors.in_process.PTInProcessClientAPIExecutor",
                        "args": {
                            "task_script_path": script.name,
                            "task_script_args": self.train_args,
                            "params_transfer_type": self.params_transfer_type,
                        },
                    },
                }
            ],
            "components": list(self.client_components),
        }
        meta = {"name": self.name, "min_clients": self.min_clients, "deploy_map": {"app": ["@ALL"]}}
        for path, data in (
            (root / "meta.json", meta),
            (config / "config_fed_server.json", server),
            (config / "config_fed_client.json", client),
        ):
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return root

    def run(
        self,
        job_dir: str | Path,
        *,
        n_clients: int | None = None,
        workspace: str | Path | None = None,
        threads: int | None = None,
        progress: Any = sys.stderr,
    ) -> Any:
        """Export the job to ``job_dir`` and run it in the simulator; returns the SimulationResult.

        Raises:
            ConfigError: when the exported job does not validate.
        """
        from flruntime.runtime.simulator import simulate

        root = self.export(job_dir)
        return simulate(
            root, n_clients=n_clients or self.min_clients, workspace=workspace, threads=threads, progress=progress
        )

    def execute(self, env: Any, job_dir: str | Path | None = None) -> Any:
        """Export the job and run it in ``env``: the simulator, or a running federation through an admin's kit.

        ``env`` is a :class:`~flruntime.environments.SimEnv` or a :class:`~flruntime.environments.ProdEnv`.

        Args:
            env: where to run.
            job_dir: where to export the job folder (default: a new temporary folder).

        Returns:
            A :class:`~flruntime.environments.Run`: ``get_status()``, ``get_result()`` (the results folder).
        """
        from flruntime.environments import export_dir

        root = self.export(job_dir or export_dir(self.name))
        return env.deploy(root, self.min_clients)
