"""The global model as a PyTorch checkpoint file (NVFlare's ``PTFileModelPersistor``).

The initial model comes from ``source_ckpt_file_full_name``, else from the ``model``'s ``state_dict()``;
on resume, from the global model file the earlier run saved. Inside flruntime the parameters are numpy
arrays; the files hold ``{"model": state_dict of tensors, "meta_props": {...}}``, written atomically.
Variables that ``exclude_vars`` matches are never sent out; they keep their initial values in the files.

Checkpoints are never unpickled in full unless the site says so: the job's ``source_ckpt_file_full_name`` loads
with ``torch.load(weights_only=True)`` (tensors and plain containers only), whatever the job's
``load_weights_only``, unless the site's process runs with ``FLRUNTIME_ALLOW_PICKLE_CHECKPOINTS=1``
(:data:`ENV_ALLOW_PICKLE`); then a job's ``load_weights_only=false`` (NVFlare's default) loads it in full. Files
the persistor saved itself always load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import tempfile
import threading
from pathlib import Path, PurePath
from typing import Annotated, Any

import numpy as np
import torch

from flruntime.events.bus import Event, Subscription
from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor, PersistorFilter
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

log = logging.getLogger(__name__)

StateDict = dict[str, Any]

#: Set to ``1`` in the site's environment to let jobs' checkpoints be unpickled in full (``weights_only=False``).
ENV_ALLOW_PICKLE = "FLRUNTIME_ALLOW_PICKLE_CHECKPOINTS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)")


def site_allows_pickle() -> bool:
    """Whether this site lets jobs' checkpoints be unpickled in full (:data:`ENV_ALLOW_PICKLE` set to ``1``)."""
    return os.environ.get(ENV_ALLOW_PICKLE, "").strip().lower() in _TRUE


def load_job_checkpoint(path: Path, load_weights_only: bool) -> Any:
    """``torch.load`` a checkpoint that a job supplied, safely unless the site allows otherwise.

    It loads with ``weights_only=True`` unless the site allows full loads (:func:`site_allows_pickle`) and the job
    does not ask for ``load_weights_only``.

    Raises:
        ValueError: (one line) the checkpoint holds objects ``weights_only=True`` refuses, and why it was not
            loaded in full.
    """
    full = site_allows_pickle() and not load_weights_only
    try:
        return torch.load(path, map_location="cpu", weights_only=not full)
    except pickle.UnpicklingError as exc:
        if full:
            raise
        found = _UNSUPPORTED.search(str(exc))
        what = f"a pickled {found.group(1)}" if found else "objects other than tensors and plain containers"
        if load_weights_only:
            how = "save it as a plain state_dict (load_weights_only is true: a full load is never tried)"
        else:
            how = f"save it as a plain state_dict, or start the site with {ENV_ALLOW_PICKLE}=1 to allow full loads"
        raise ValueError(
            f"{path}: not loaded: the checkpoint holds {what}, and job checkpoints load with "
            f"torch.load(weights_only=True) (unpickling can run code); {how}"
        ) from None


def _relative_name(arg: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{arg} must be a non-empty file name, got {value!r}")
    path = PurePath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{arg} must be a file name inside the workspace, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """JSON fallback for meta values: numpy scalars and arrays become numbers and lists, the rest text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Return ``meta`` reduced to JSON types, so a checkpoint loads with ``torch.load(weights_only=True)``."""
    return dict(json.loads(json.dumps(meta, default=_plain)))


def to_numpy(value: Any) -> Any:
    """Return a state-dict value as a numpy array (bfloat16 becomes float32; bytes stay bytes)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.to(torch.float32)
        return tensor.numpy().copy()  # not a view of the network's own parameters
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return np.asarray(value)


def storable(value: Any) -> Any:
    """Bytes (e.g. ciphertexts) as a uint8 tensor, which ``torch.load(weights_only=True)`` accepts; the rest as is."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return torch.from_numpy(np.frombuffer(value, dtype=np.uint8).copy())
    return value


def split_checkpoint(data: Any, source: str) -> tuple[StateDict, dict[str, Any], Any]:
    """Return ``(state_dict, meta_props, train_conf)`` of a checkpoint: a raw state dict or ``{"model": ...}``."""
    if not isinstance(data, dict):
        raise TypeError(f"{source}: a checkpoint must be a dict (a state dict or {{'model': ...}}), got {type(data)}")
    if "model" in data and isinstance(data["model"], dict):
        return dict(data["model"]), dict(data.get("meta_props") or {}), data.get("train_conf")
    return dict(data), {}, None


class PTFileModelPersistor(ModelPersistor):
    """Loads and saves the global model as a PyTorch checkpoint in the server's workspace.

    Args:
        exclude_vars: a regular expression; variables it finds (``re.search``) are left out of the model sent
            to clients and keep their initial values in the saved files.
        model: the network (an ``nn.Module``, usually a nested component) or the id of an ``nn.Module``
            component; its ``state_dict()`` is the initial model unless a checkpoint is given.
        global_model_file_name: the global model's file, in the workspace.
        best_global_model_file_name: the best global model's file (written on ``GLOBAL_BEST_MODEL_AVAILABLE``).
        source_ckpt_file_full_name: a checkpoint with the initial weights (absolute, or relative to the app's
            ``custom/`` folder, then to the app folder); a raw state dict or ``{"model": state_dict}``.
        filter_id: a persistor filter applied after loading and before saving.
        load_weights_only: load ``source_ckpt_file_full_name`` with ``torch.load(weights_only=True)``. It is
            loaded so anyway unless the site's environment has ``FLRUNTIME_ALLOW_PICKLE_CHECKPOINTS=1``: only then
            does ``false`` (the default, as in NVFlare) unpickle the checkpoint in full.
        allow_numpy_conversion: accepted for NVFlare compatibility; parameters are always numpy in flruntime.
    """

    def __init__(
        self,
        exclude_vars: str | None = None,
        model: torch.nn.Module | Annotated[str, Ref(torch.nn.Module)] | None = None,
        global_model_file_name: str = "FL_global_model.pt",
        best_global_model_file_name: str = "best_FL_global_model.pt",
        source_ckpt_file_full_name: str | None = None,
        filter_id: Annotated[str, Ref(PersistorFilter)] | None = None,
        load_weights_only: bool = False,
        allow_numpy_conversion: bool = True,
    ) -> None:
        if model is not None and not isinstance(model, (torch.nn.Module, str)):
            raise TypeError(f"model must be an nn.Module or the id of one, got {type(model).__name__}")
        self.exclude = re.compile(exclude_vars) if exclude_vars else None
        self.model = model
        self.global_model_file_name = _relative_name("global_model_file_name", global_model_file_name)
        self.best_global_model_file_name = _relative_name("best_global_model_file_name", best_global_model_file_name)
        self.source_ckpt_file_full_name = source_ckpt_file_full_name or None
        self.filter_id = filter_id or None
        self.load_weights_only = load_weights_only
        self.allow_numpy_conversion = allow_numpy_conversion
        self._lock = threading.RLock()
        self._state: StateDict = {}
        self._meta: dict[str, Any] = {}
        self._train_conf: Any = None
        self._latest: ModelMessage | None = None
        self._subs: list[Subscription] = []

    # --- lifecycle ------------------------------------------------------------------------------------

    def setup(self, ctx: RunContext) -> None:
        """Check the model reference and follow the rounds, to save the best model when told to."""
        self._network(ctx)
        if not self.allow_numpy_conversion:
            log.info("allow_numpy_conversion=false has no effect: flruntime models are numpy arrays")
        self._subs = [
            ctx.bus.subscribe(EventType.ROUND_STARTED, self._on_round_started),
            ctx.bus.subscribe(EventType.GLOBAL_BEST_MODEL_AVAILABLE, lambda event: self._on_best(event, ctx)),
        ]

    def teardown(self, ctx: RunContext) -> None:
        """Stop following events."""
        for sub in self._subs:
            sub.remove()
        self._subs = []

    def _network(self, ctx: RunContext) -> torch.nn.Module | None:
        if isinstance(self.model, str):
            obj = ctx.components.get(self.model)
            if not isinstance(obj, torch.nn.Module):
                raise TypeError(f"model: component '{self.model}' is not an nn.Module ({type(obj).__name__})")
            return obj
        return self.model

    def _filter(self, ctx: RunContext) -> PersistorFilter | None:
        return ctx.component(self.filter_id, PersistorFilter) if self.filter_id else None

    # --- loading ----------------------------------------------------------------------------------------

    def _source_path(self, ctx: RunContext) -> Path:
        assert self.source_ckpt_file_full_name is not None
        given = Path(self.source_ckpt_file_full_name)
        candidates = [given] if given.is_absolute() else [ctx.app_dir / "custom" / given, ctx.app_dir / given]
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"source_ckpt_file_full_name: no checkpoint at {' or '.join(str(p) for p in candidates)}"
        )

    def _initial_state(self, ctx: RunContext) -> tuple[StateDict, dict[str, Any], Any]:
        saved = ctx.workspace / self.global_model_file_name
        if ctx.resume and saved.is_file():
            log.info("resuming from the global model in %s", saved)
            return split_checkpoint(torch.load(saved, map_location="cpu", weights_only=True), str(saved))
        network = self._network(ctx)
        train_conf = {"train": {"model": type(network).__name__}} if network is not None else None
        if self.source_ckpt_file_full_name:
            path = self._source_path(ctx)
            log.info("loading the initial model from %s", path)
            data = load_job_checkpoint(path, self.load_weights_only)
            state, meta, conf = split_checkpoint(data, str(path))
            return state, meta, conf or train_conf
        if network is None:
            log.warning("no model and no source checkpoint: the initial global model is empty")
            return {}, {}, None
        return dict(network.state_dict()), {}, train_conf

    def _message(self, state: StateDict, meta: dict[str, Any], exclude: bool) -> ModelMessage:
        params = {k: to_numpy(v) for k, v in state.items() if not (exclude and self.exclude and self.exclude.search(k))}
        processed = meta.get(MetaKey.PROCESSED_KEYS) or {}
        for name, value in params.items():  # processed variables (ciphertexts) were saved as uint8 tensors
            if processed.get(name) and isinstance(value, np.ndarray) and value.dtype == np.uint8:
                params[name] = value.tobytes()
        return ModelMessage(params, ParamsType.FULL, meta=dict(meta))

    def load(self, ctx: RunContext) -> ModelMessage:
        """Return the initial global model (on resume: the saved one), without the excluded variables."""
        state, meta, train_conf = self._initial_state(ctx)
        with self._lock:
            self._state, self._meta, self._train_conf = state, meta, train_conf
            model = self._message(state, meta, exclude=True)
        flt = self._filter(ctx)
        return flt.process_post_load(model, ctx) if flt is not None else model

    # --- saving -----------------------------------------------------------------------------------------

    def _merged(self, model: ModelMessage) -> StateDict:
        """The current state with ``model``'s variables put in (cast to the dtype the state had)."""
        processed = model.meta.get(MetaKey.PROCESSED_KEYS) or {}
        state = dict(self._state)
        for name, value in (model.params or {}).items():
            old = state.get(name)
            if self._state and old is None:
                raise ValueError(f"the model has variable '{name}' that the checkpoint does not have")
            if processed.get(name) or isinstance(value, (bytes, bytearray)):
                state[name] = storable(value)
                continue
            tensor = torch.tensor(np.asarray(value))
            if isinstance(old, torch.Tensor):
                if tuple(old.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"variable '{name}' has shape {tuple(tensor.shape)} but the checkpoint has {tuple(old.shape)}"
                    )
                tensor = tensor.to(old.dtype)
            state[name] = tensor
        return state

    def _write(self, path: Path, state: StateDict, meta: dict[str, Any]) -> None:
        payload: dict[str, Any] = {"model": state, "meta_props": plain_meta(meta)}
        if self._train_conf:
            payload["train_conf"] = self._train_conf
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save(self, model: ModelMessage, ctx: RunContext) -> None:
        """Write the global model to ``global_model_file_name`` in the workspace."""
        flt = self._filter(ctx)
        if flt is not None:
            model = flt.process_pre_save(model, ctx)
        with self._lock:
            self._state = self._merged(model)
            self._meta = dict(model.meta)
            self._write(ctx.workspace / self.global_model_file_name, self._state, self._meta)

    def _on_round_started(self, event: Event) -> None:
        model = event.data.get("model")
        if isinstance(model, ModelMessage):
            self._latest = model

    def _on_best(self, event: Event, ctx: RunContext) -> None:
        """Save the model the clients validated (the global model at the start of the round) as the best."""
        model = event.data.get("model")
        model = model if isinstance(model, ModelMessage) else self._latest
        flt = self._filter(ctx)
        if model is not None and flt is not None:
            model = flt.process_pre_save(model, ctx)
        with self._lock:
            state = self._merged(model) if model is not None else self._state
            meta = dict(model.meta) if model is not None else self._meta
            path = ctx.workspace / self.best_global_model_file_name
            self._write(path, state, meta)
        log.info("saved the best global model (metric %s) to %s", event.data.get("metric"), path)

    # --- the model locator's view -----------------------------------------------------------------------

    def model_names(self, ctx: RunContext) -> list[str]:
        """Names of the saved models that exist: the global and the best global model files."""
        names = (self.global_model_file_name, self.best_global_model_file_name)
        return [name for name in names if (ctx.workspace / name).is_file()]

    def get_model(self, name: str, ctx: RunContext) -> ModelMessage | None:
        """Return the saved model ``name`` (every variable, FULL), or None when there is no such file."""
        if name not in (self.global_model_file_name, self.best_global_model_file_name):
            return None
        path = ctx.workspace / name
        if not path.is_file():
            return None
        state, meta, _ = split_checkpoint(torch.load(path, map_location="cpu", weights_only=True), str(path))
        model = self._message(state, meta, exclude=False)
        flt = self._filter(ctx)
        return flt.process_post_load(model, ctx) if flt is not None else model
