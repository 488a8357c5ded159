"""``BaseFedJob``: a ``FedJob`` with the usual widgets (``nvflare.job_config.base_fed_job``, 2.7+).

The server gets a ``ValidationJsonGenerator`` (id ``json_generator``) and an ``IntimeModelSelector`` on
``key_metric`` (``model_selector``), optionally a receiver (``receiver``), a persistor (``persistor``) and a
locator (``locator``); every client a ``ConvertToFedEvent`` of ``analytix_log_stats`` (``event_to_fed``), so
the scripts' metrics reach the server. ``False`` for ``convert_to_fed_event`` or ``analytics_receiver``
leaves that part out.
"""

from __future__ import annotations

from typing import Any

from flruntime.compat.jobapi.export import remember_init_args
from flruntime.compat.jobapi.fed_job import FedJob, validate_object_for_job


def widget_classes() -> dict[str, type]:
    """The widget classes a base job places (their objects remember their arguments)."""
    from flruntime.components.tracking.convert_to_fed_event import ConvertToFedEvent
    from flruntime.components.tracking.receiver import AnalyticsReceiver
    from flruntime.components.widgets.model_selector import IntimeModelSelector
    from flruntime.components.widgets.validation_json import ValidationJsonGenerator

    remember_init_args(ConvertToFedEvent, IntimeModelSelector, ValidationJsonGenerator)
    return {
        "convert": ConvertToFedEvent,
        "receiver": AnalyticsReceiver,
        "selector": IntimeModelSelector,
        "json": ValidationJsonGenerator,
    }


class BaseFedJob(FedJob):
    """A job with the validation-results writer, a model selector and metric forwarding already placed.

    Args:
        name: the job's name.
        min_clients: ``min_clients`` of the meta file.
        mandatory_clients: sites the job cannot run without.
        key_metric: the metric that selects the best global model ("" or None: no selector).
        validation_json_generator: instead of a ``ValidationJsonGenerator()``.
        intime_model_selector: instead of an ``IntimeModelSelector(key_metric=key_metric)``.
        convert_to_fed_event: instead of ``ConvertToFedEvent(events_to_convert=["analytix_log_stats"])``;
            False: none.
        analytics_receiver: a receiver for the server (None or False: none).
        model_persistor: a persistor for the server (id ``persistor``).
        model_locator: a model locator for the server (id ``locator``).
        model_selector: NVFlare 2.8's name for ``intime_model_selector``.

    Raises:
        JobApiError: an object of the wrong kind.
    """

    def __init__(
        self,
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
        super().__init__(name=name, min_clients=min_clients, mandatory_clients=mandatory_clients)
        classes = widget_classes()
        self.comp_ids: dict[str, str] = {}
        if validation_json_generator:
            validate_object_for_job("validation_json_generator", validation_json_generator, classes["json"])
        else:
            validation_json_generator = classes["json"]()
        self.to_server(validation_json_generator, id="json_generator")
        selector = intime_model_selector or model_selector
        if selector:
            self.to_server(selector, id="model_selector")
        elif key_metric:
            self.to_server(classes["selector"](key_metric=key_metric), id="model_selector")
        if convert_to_fed_event:
            validate_object_for_job("convert_to_fed_event", convert_to_fed_event, classes["convert"])
        elif convert_to_fed_event is None:
            convert_to_fed_event = classes["convert"](events_to_convert=["analytix_log_stats"])
        self.convert_to_fed_event = convert_to_fed_event or None
        if analytics_receiver:
            validate_object_for_job("analytics_receiver", analytics_receiver, classes["receiver"])
            self.to_server(analytics_receiver, id="receiver")
        if model_persistor:
            self.comp_ids["persistor_id"] = self.to_server(model_persistor, id="persistor")
        if model_locator:
            self.comp_ids["locator_id"] = self.to_server(model_locator, id="locator")

    def set_up_client(self, target: str) -> None:
        """Give each new client target the ``ConvertToFedEvent`` (id ``event_to_fed``)."""
        if self.convert_to_fed_event is not None:
            self.to(self.convert_to_fed_event, target, id="event_to_fed")


__all__ = ["BaseFedJob"]
