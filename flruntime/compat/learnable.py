"""NVFlare's application-side abstractions (``nvflare.app_common.abstract``): learnables and component roles.

``ModelLearnable`` is a dict with ``weights`` (arrays by name) and ``meta``. The role classes (persistor,
locator, shareable generator, aggregator, formatter, learner, model learner) declare NVFlare's methods; the
builder wraps subclasses so that flruntime's workflows and executors drive them (see
:mod:`flruntime.compat.adapters`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from flruntime.compat.component import FLComponent, LogMethods, Signal
from flruntime.compat.dxo import DXO, DataKind, MetaKey, from_shareable
from flruntime.compat.fl_context import FLContext
from flruntime.compat.shareable import Shareable
from flruntime.runtime.messages import ModelMessage, ParamsType


class Learnable(dict[str, Any]):
    """Something a workflow learns (a dict)."""


class ModelLearnableKey:
    """Keys of a :class:`ModelLearnable`."""

    WEIGHTS = "weights"
    META = "meta"


class ModelLearnable(Learnable):
    """A model: ``weights`` (arrays by name) and ``meta``."""


def validate_model_learnable(model_learnable: Any) -> str:
    """Why ``model_learnable`` is not a well-formed ModelLearnable, or ""."""
    if not isinstance(model_learnable, ModelLearnable):
        return f"expected a ModelLearnable, got {type(model_learnable).__name__}"
    if not isinstance(model_learnable.get(ModelLearnableKey.WEIGHTS), dict):
        return "its 'weights' is not a dict"
    meta = model_learnable.get(ModelLearnableKey.META)
    if meta is not None and not isinstance(meta, dict):
        return "its 'meta' is not a dict"
    return ""


def make_model_learnable(weights: dict[str, Any], meta_props: dict[str, Any] | None) -> ModelLearnable:
    """A ModelLearnable of ``weights`` and ``meta_props``."""
    ml = ModelLearnable()
    ml[ModelLearnableKey.WEIGHTS] = weights
    ml[ModelLearnableKey.META] = meta_props
    return ml


def model_learnable_to_dxo(ml: ModelLearnable) -> DXO:
    """A WEIGHTS DXO of the learnable's weights and meta."""
    problem = validate_model_learnable(ml)
    if problem:
        raise ValueError(f"invalid ModelLearnable: {problem}")
    return DXO(DataKind.WEIGHTS, ml[ModelLearnableKey.WEIGHTS], ml.get(ModelLearnableKey.META) or {})


class LearnablePersistor(FLComponent, ABC):
    """Loads and saves a Learnable."""

    @abstractmethod
    def load(self, fl_ctx: FLContext) -> Learnable:
        """Load the learnable."""

    @abstractmethod
    def save(self, learnable: Learnable, fl_ctx: FLContext) -> None:
        """Save the learnable."""


class ModelPersistor(LearnablePersistor, ABC):
    """Loads the initial global model and saves global models (override ``load_model`` and ``save_model``).

    Args:
        filter_id: accepted for NVFlare compatibility (persistor filters are flruntime components of their own).
    """

    def __init__(self, filter_id: str | None = None) -> None:
        super().__init__()
        self.filter_id = filter_id

    def load(self, fl_ctx: FLContext) -> ModelLearnable:
        """Same as :meth:`load_model`."""
        return self.load_model(fl_ctx)

    def save(self, learnable: Learnable, fl_ctx: FLContext) -> None:
        """Same as :meth:`save_model`."""
        if not isinstance(learnable, ModelLearnable):
            learnable = ModelLearnable(learnable)
        self.save_model(learnable, fl_ctx)

    @abstractmethod
    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        """Return the initial (or last saved) model."""

    @abstractmethod
    def save_model(self, model_learnable: ModelLearnable, fl_ctx: FLContext) -> None:
        """Save the global model."""

    def get_model_inventory(self, fl_ctx: FLContext) -> dict[str, Any]:  # noqa: ARG002
        """The saved models by name (the default: none)."""
        return {}

    def get_model(self, model_file: str, fl_ctx: FLContext) -> ModelLearnable | None:  # noqa: ARG002
        """Saved model ``model_file`` (the default: None)."""
        return None


class ModelLocator(FLComponent, ABC):
    """Finds server-side models by name for cross-site evaluation."""

    @abstractmethod
    def get_model_names(self, fl_ctx: FLContext) -> list[str]:
        """The names of the models it can locate."""

    @abstractmethod
    def locate_model(self, model_name: str, fl_ctx: FLContext) -> DXO | None:
        """Model ``model_name`` as a DXO, or None."""


class ShareableGenerator(FLComponent, ABC):
    """Converts between the global model (a Learnable) and the task data (a Shareable)."""

    @abstractmethod
    def learnable_to_shareable(self, model: Learnable, fl_ctx: FLContext) -> Shareable:
        """Task data for ``model``."""

    @abstractmethod
    def shareable_to_learnable(self, shareable: Shareable, fl_ctx: FLContext) -> Learnable:
        """The new global model from the round's aggregate."""


class Aggregator(FLComponent, ABC):
    """Folds client results into one, as they arrive."""

    @abstractmethod
    def accept(self, shareable: Shareable, fl_ctx: FLContext) -> bool:
        """Take one result in (the contributor is ``fl_ctx``'s peer context); False when rejected."""

    @abstractmethod
    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        """The aggregate of everything accepted."""

    def reset(self, fl_ctx: FLContext) -> None:  # noqa: B027 - NVFlare's optional hook
        """Forget what was accepted (called by flruntime before each round)."""


class Formatter(FLComponent, ABC):
    """Formats cross-site validation results into a string."""

    @abstractmethod
    def format(self, fl_ctx: FLContext) -> str:
        """The results, formatted."""


class Learner(FLComponent, ABC):
    """Training and validation logic that NVFlare's ``LearnerExecutor`` drives."""

    def initialize(self, parts: dict[str, Any], fl_ctx: FLContext) -> None:  # noqa: B027 - optional hook
        """Set up (called once, at the start of the run)."""

    def train(self, data: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        """Train on the received model; return the result."""
        raise NotImplementedError(f"{type(self).__name__} does not implement train")

    def get_model_for_validation(self, model_name: str, fl_ctx: FLContext) -> Shareable:
        """The local model called ``model_name`` (for the ``submit_model`` task)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_model_for_validation")

    def validate(self, data: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        """Validate the received model; return its metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not implement validate")

    def abort(self, fl_ctx: FLContext) -> None:  # noqa: B027 - optional hook
        """Stop what runs."""

    def finalize(self, fl_ctx: FLContext) -> None:  # noqa: B027 - optional hook
        """Clean up (called once, at the end of the run)."""


class ModelLearner(LogMethods, ABC):  # noqa: B024 - every method is an optional hook, as in NVFlare
    """Training logic on FLModels that NVFlare's ``ModelLearnerExecutor`` drives.

    The executor sets the attributes before each call: ``site_name``, ``job_id``, ``app_root``, ``engine``,
    ``workspace``, ``fl_ctx``, ``abort_signal``, ``current_round``, ``total_rounds``, ``shareable``, ``args``.
    """

    def __init__(self) -> None:
        self.engine: Any = None
        self.fl_ctx: FLContext | None = None
        self.workspace: Any = None
        self.shareable: Shareable | None = None
        self.args: dict[str, Any] = {}
        self.site_name = ""
        self.job_id = ""
        self.app_root = ""
        self.job_root = ""
        self.abort_signal: Signal | None = None
        self.current_round: int | None = None
        self.total_rounds: int | None = None
        self.logger = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")
        self._stop_reason = ""

    def is_aborted(self) -> bool:
        """True when the task or the run is aborted."""
        return bool(self.abort_signal is not None and self.abort_signal.triggered)

    def get_component(self, component_id: str) -> Any:
        """The site's component ``component_id``."""
        return self.engine.get_component(component_id) if self.engine is not None else None

    def stop_task(self, reason: str) -> None:
        """Stop the current task with ``reason``."""
        self._stop_reason = reason
        if self.abort_signal is not None:
            self.abort_signal.trigger(reason)

    def panic(self, reason: str) -> None:
        """Stop the run with ``reason``."""
        if self.engine is not None:
            self.engine.panic(f"{type(self).__name__}: {reason}")

    def initialize(self) -> None:  # noqa: B027 - optional hook
        """Set up (once, at the start of the run)."""

    def train(self, model: ModelMessage) -> ModelMessage | str:
        """Train from ``model``; return the result or a ReturnCode."""
        raise NotImplementedError(f"{type(self).__name__} does not implement train")

    def get_model(self, model_name: str) -> ModelMessage | str:
        """The local model called ``model_name``, or a ReturnCode."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_model")

    def validate(self, model: ModelMessage) -> ModelMessage | str:
        """Metrics of ``model`` on local data, or a ReturnCode."""
        raise NotImplementedError(f"{type(self).__name__} does not implement validate")

    def configure(self, model: ModelMessage) -> None:  # noqa: B027 - optional hook
        """Take a configuration sent by the server."""

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Stop what runs."""

    def finalize(self) -> None:  # noqa: B027 - optional hook
        """Clean up (once, at the end of the run)."""


class FLModelUtils:
    """Conversions between FLModels and DXOs / Shareables (``nvflare.app_common.utils.fl_model_utils``)."""

    @staticmethod
    def to_dxo(fl_model: ModelMessage) -> DXO:
        """A DXO of the model: WEIGHTS / WEIGHT_DIFF with params, METRICS without."""
        meta = dict(fl_model.meta or {})
        if fl_model.params is not None:
            kind = DataKind.WEIGHT_DIFF if fl_model.params_type == ParamsType.DIFF else DataKind.WEIGHTS
            if fl_model.metrics:
                meta[MetaKey.INITIAL_METRICS] = fl_model.metrics
            return DXO(kind, dict(fl_model.params), meta)
        if fl_model.metrics is not None:
            return DXO(DataKind.METRICS, dict(fl_model.metrics), meta)
        raise ValueError("an FLModel with neither params nor metrics cannot become a DXO")

    @staticmethod
    def to_shareable(fl_model: ModelMessage) -> Shareable:
        """A Shareable of the model (with its round headers)."""
        from flruntime.compat.constants import AppConstants

        if fl_model.params is None and fl_model.metrics is None:
            out = Shareable()
        else:
            out = FLModelUtils.to_dxo(fl_model).to_shareable()
        if fl_model.current_round is not None:
            out.set_header(AppConstants.CURRENT_ROUND, fl_model.current_round)
        if fl_model.total_rounds is not None:
            out.set_header(AppConstants.NUM_ROUNDS, fl_model.total_rounds)
        return out

    @staticmethod
    def from_dxo(dxo: DXO) -> ModelMessage:
        """The FLModel a DXO describes."""
        meta = dict(dxo.meta or {})
        if dxo.data_kind in (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF):
            metrics = meta.pop(MetaKey.INITIAL_METRICS, None)
            params_type = ParamsType.DIFF if dxo.data_kind == DataKind.WEIGHT_DIFF else ParamsType.FULL
            return ModelMessage(dict(dxo.data), params_type, metrics, meta)
        if dxo.data_kind == DataKind.METRICS:
            return ModelMessage(None, metrics=dict(dxo.data), meta=meta)
        raise ValueError(f"a {dxo.data_kind} DXO cannot become an FLModel (only WEIGHTS, WEIGHT_DIFF, METRICS)")

    @staticmethod
    def from_shareable(shareable: Shareable, fl_ctx: FLContext | None = None) -> ModelMessage:  # noqa: ARG004
        """The FLModel a Shareable carries (with its round headers)."""
        from flruntime.compat.constants import AppConstants

        model = FLModelUtils.from_dxo(from_shareable(shareable)) if "DXO" in shareable else ModelMessage(None)
        current, total = shareable.get_header(AppConstants.CURRENT_ROUND), shareable.get_header(AppConstants.NUM_ROUNDS)
        model.current_round = int(current) if current is not None else None
        model.total_rounds = int(total) if total is not None else None
        return model

    @staticmethod
    def get_meta_prop(model: ModelMessage, key: str, default: Any = None) -> Any:
        """Meta property ``key`` of ``model``."""
        return (model.meta or {}).get(key, default)

    @staticmethod
    def set_meta_prop(model: ModelMessage, key: str, value: Any) -> ModelMessage:
        """Set meta property ``key`` of ``model``; returns it."""
        model.meta[key] = value
        return model

    @staticmethod
    def get_configs(model: ModelMessage) -> dict[str, Any] | None:
        """The ``configs`` meta of ``model``."""
        return (model.meta or {}).get(MetaKey.CONFIGS)

    @staticmethod
    def update_model(model: ModelMessage, model_update: ModelMessage, replace_meta: bool = True) -> ModelMessage:
        """Apply ``model_update`` to ``model`` (adding a DIFF, replacing with a FULL); returns ``model``."""
        if model_update.params is not None:
            if model_update.params_type == ParamsType.DIFF and model.params is not None:
                diff = model_update.params
                model.params = {k: v + diff[k] if k in diff else v for k, v in model.params.items()}
            else:
                model.params = dict(model_update.params)
            model.params_type = ParamsType.FULL
        model.meta = dict(model_update.meta) if replace_meta else {**model.meta, **model_update.meta}
        if model_update.metrics is not None:
            model.metrics = dict(model_update.metrics)
        return model


__all__ = [
    "Aggregator",
    "FLModelUtils",
    "Formatter",
    "Learnable",
    "LearnablePersistor",
    "Learner",
    "ModelLearnable",
    "ModelLearnableKey",
    "ModelLearner",
    "ModelLocator",
    "ModelPersistor",
    "ShareableGenerator",
    "make_model_learnable",
    "model_learnable_to_dxo",
    "validate_model_learnable",
]
