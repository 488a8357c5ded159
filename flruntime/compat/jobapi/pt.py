"""PyTorch jobs: ``PTModel``, ``BaseFedJob`` and ``FedAvgJob`` (``nvflare.app_opt.pt.job_config``).

``PTModel(model)`` places a ``PTFileModelPersistor`` holding the model (id ``persistor``; the model is
written as ``{"path": <its class>, "args": ...}``, its module copied into ``custom/``) and a
``PTFileModelLocator`` (``locator``). ``FedAvgJob`` adds NVFlare's ``FedAvg`` workflow (id ``controller``)
with ``num_clients`` and ``num_rounds``.
"""

from __future__ import annotations

from typing import Any

from flruntime.compat.jobapi import base_fed_job
from flruntime.compat.jobapi.export import remember_init_args
from flruntime.compat.jobapi.fed_job import FedJob, JobCtx
from flruntime.errors import JobApiError


def _is_module(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def pt_classes() -> dict[str, type]:
    """The PyTorch component classes these jobs place (their objects remember their arguments)."""
    from flruntime.components.locators.pt_file import PTFileModelLocator
    from flruntime.components.persistors.pt_file import PTFileModelPersistor
    from flruntime.components.tracking.tb_receiver import TBAnalyticsReceiver
    from flruntime.components.workflows.fedavg import FedAvg

    remember_init_args(PTFileModelLocator, PTFileModelPersistor, TBAnalyticsReceiver, FedAvg)
    return {
        "locator": PTFileModelLocator,
        "persistor": PTFileModelPersistor,
        "tb": TBAnalyticsReceiver,
        "fedavg": FedAvg,
    }


class PTModel:
    """A PyTorch model for the server: its persistor and locator.

    Args:
        model: the ``nn.Module`` whose weights start the training.
        persistor: a persistor instead of ``PTFileModelPersistor(model=model)``.
        locator: a locator instead of ``PTFileModelLocator(pt_persistor_id=...)``.
    """

    def __init__(self, model: Any, persistor: Any = None, locator: Any = None) -> None:
        from flruntime import roles
        from flruntime.compat.jobapi.fed_job import validate_object_for_job
        from flruntime.compat.learnable import ModelLocator, ModelPersistor

        if persistor is not None:
            validate_object_for_job("persistor", persistor, (roles.ModelPersistor, ModelPersistor))
        if locator is not None:
            validate_object_for_job("locator", locator, (roles.ModelLocator, ModelLocator))
        self.model = model
        self.persistor = persistor
        self.locator = locator

    def add_to_fed_job(self, job: FedJob, ctx: JobCtx) -> dict[str, str]:
        """Place the persistor and the locator; return ``{"persistor_id", "locator_id"}``.

        Raises:
            JobApiError: the model is not an ``nn.Module``.
        """
        if not _is_module(self.model):
            raise JobApiError(
                f"Unable to add {self.model!r} to job with PTFileModelPersistor. "
                f"Expected nn.Module but got {type(self.model).__name__}."
            )
        classes = pt_classes()
        persistor_id = job.add_component("persistor", self.persistor or classes["persistor"](model=self.model), ctx)
        locator = self.locator or classes["locator"](pt_persistor_id=persistor_id)
        locator_id = job.add_component("locator", locator, ctx)
        return {"persistor_id": persistor_id, "locator_id": locator_id}


class BaseFedJob(base_fed_job.BaseFedJob):
    """:class:`~flruntime.compat.jobapi.base_fed_job.BaseFedJob` with a PyTorch model and TensorBoard.

    Args:
        initial_model: the ``nn.Module`` to start from (placed with :class:`PTModel`).
        name: the job's name.
        min_clients: ``min_clients`` of the meta file.
        mandatory_clients: sites the job cannot run without.
        key_metric: the metric that selects the best global model.
        validation_json_generator: see the base class.
        intime_model_selector: see the base class.
        convert_to_fed_event: see the base class.
        analytics_receiver: the server's receiver (None: a ``TBAnalyticsReceiver()``; False: none).
        model_persistor: the persistor for ``initial_model``.
        model_locator: the locator for ``initial_model``.
        model_selector: NVFlare 2.8's name for ``intime_model_selector``.
    """

    def __init__(
        self,
        initial_model: Any = None,
        name: str = "fed_job",
        min_clients: int = 1,
        mandatory_clients: list[str] | None = None,
        key_metric: str | None = "accuracy",
        validation_json_generator: Any = None,
        intime_model_selector: Any = None,
        convert_to_fed_event: Any = None,
        analytics_receiver: Any = None,
        model_persistor: Any = None,
        model_locator: Any = None,
        model_selector: Any = None,
    ) -> None:
        classes = pt_classes()
        if analytics_receiver is None:
            analytics_receiver = classes["tb"]()
        super().__init__(
            name=name,
            min_clients=min_clients,
            mandatory_clients=mandatory_clients,
            key_metric=key_metric,
            validation_json_generator=validation_json_generator,
            intime_model_selector=intime_model_selector,
            convert_to_fed_event=convert_to_fed_event,
            analytics_receiver=analytics_receiver,
            model_selector=model_selector,
        )
        self.initial_model = initial_model
        if initial_model is not None:
            self.comp_ids.update(
                self.to_server(PTModel(model=initial_model, persistor=model_persistor, locator=model_locator))
            )


class FedAvgJob(BaseFedJob):
    """FedAvg of a PyTorch model: :class:`BaseFedJob` plus NVFlare's ``FedAvg`` workflow; add the executors.

    Args:
        initial_model: the ``nn.Module`` to start from.
        n_clients: clients each round waits for (``FedAvg(num_clients=...)``).
        num_rounds: rounds to run.
        name: the job's name.
        min_clients: ``min_clients`` of the meta file.
        mandatory_clients: sites the job cannot run without.
        key_metric: the metric that selects the best global model.
        convert_to_fed_event: see :class:`BaseFedJob` (False: the clients forward no metrics).
        analytics_receiver: see :class:`BaseFedJob` (False: no receiver on the server).

    Raises:
        JobApiError: ``initial_model`` is not an ``nn.Module``.
    """

    def __init__(
        self,
        initial_model: Any,
        n_clients: int,
        num_rounds: int,
        name: str = "fed_job",
        min_clients: int = 1,
        mandatory_clients: list[str] | None = None,
        key_metric: str = "accuracy",
        convert_to_fed_event: Any = None,
        analytics_receiver: Any = None,
    ) -> None:
        if not _is_module(initial_model):
            raise JobApiError(f"Expected initial model to be nn.Module, but got type {type(initial_model).__name__}.")
        super().__init__(
            initial_model,
            name,
            min_clients,
            mandatory_clients,
            key_metric,
            convert_to_fed_event=convert_to_fed_event,
            analytics_receiver=analytics_receiver,
        )
        fedavg = pt_classes()["fedavg"]
        self.to_server(fedavg(num_clients=n_clients, num_rounds=num_rounds, persistor_id=self.comp_ids["persistor_id"]))


__all__ = ["BaseFedJob", "FedAvgJob", "PTModel"]
