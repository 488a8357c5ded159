"""NVFlare's ``ModelController``: the base of server workflows written as a plain ``run()`` over FLModels.

A user subclasses :class:`ModelController` and overrides ``run(self)``; inside it, ``self.load_model()``,
``self.sample_clients()``, ``self.send_model_and_wait()`` / ``self.send_model()`` and ``self.save_model()`` do
the work, with models as :class:`~flruntime.runtime.messages.ModelMessage` (NVFlare's ``FLModel``); the engine
calls it as ``run(ctx)`` (see :mod:`flruntime.components.workflows.user_run`).

Results come back in arrival order, each with ``meta["client_name"]`` (the site) and ``meta["props"]`` (the meta
of the model that was sent). A failed result either fails the job (``ignore_result_error=False``, NVFlare's
``panic``) or is left out with a warning. ``send_model`` returns at once; its callback runs for each result in a
thread of its own (never under the communicator's lock, so a callback may send again).
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from flruntime.components.workflows.args import check_number
from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL
from flruntime.components.workflows.user_run import entry
from flruntime.components.workflows.waits import StopWhen

from flruntime.compat.component import LogMethods, Signal
from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor, Workflow
from flruntime.runtime.context import ServerContext
from flruntime.runtime.log_context import as_site
from flruntime.runtime.messages import ModelMessage, ParamsType, ReturnCode, TaskResult

#: NVFlare's ``AppConstants.DEFAULT_PERSISTOR_ID``.
DEFAULT_PERSISTOR_ID = "persistor"
#: NVFlare's ``AppConstants.TASK_TRAIN``.
TASK_TRAIN = "train"
#: Meta key of a result: the client that sent it.
CLIENT_NAME = "client_name"
#: Meta key of a result: the meta of the model that was sent for it.
PROPS = "props"
#: NVFlare's ``AppConstants.CLIENT_UNKNOWN``.
CLIENT_UNKNOWN = "unknown"
#: Seconds the end of ``run`` waits for each ``send_model`` thread once its task was cancelled.
JOIN_WAIT = 10.0

ModelCallback = Callable[[ModelMessage], None]


@dataclass(frozen=True)
class PreparedSend:
    """A send whose arguments were checked: call it with a sink for each result (it returns when the task is done).

    Attributes:
        run: the send.
        sites: the clients it goes to.
    """

    run: Callable[[ModelCallback], None]
    sites: list[str]

    def __call__(self, sink: ModelCallback) -> None:
        """Send, and hand each admitted result to ``sink`` as it arrives (under the communicator's lock)."""
        self.run(sink)


class ModelController(LogMethods, Workflow):
    """The base of FLModel-based server workflows (NVFlare's ``ModelController``): subclass it, override ``run``.

    Args:
        persistor_id: the model persistor that ``load_model`` and ``save_model`` use. When no component has this
            id (the default ``persistor`` may be absent), the controller runs without one: ``load_model`` returns
            an empty model and ``save_model`` logs an error, as in NVFlare.
        ignore_result_error: False: a failed client result fails the job (NVFlare's ``panic``); True: it is left
            out of the results with a warning.
        allow_empty_global_weights: let ``load_model`` return a model without parameters when the persistor (and
            any earlier workflow) provide none; otherwise that fails the job.
        task_check_period: kept as ``self._task_check_period`` for subclasses that poll (results are pushed).
    """

    #: In the class that defines ``run``: the constructor arg naming the task that ``run`` sends (None: the task
    #: is always the default) and that default. Left None, the tasks are not known before the run.
    _run_task_arg: tuple[str | None, str] | None = None

    def __init__(
        self,
        persistor_id: Annotated[str, Ref(ModelPersistor, optional=True)] = DEFAULT_PERSISTOR_ID,
        ignore_result_error: bool = False,
        allow_empty_global_weights: bool = False,
        task_check_period: float = 0.5,
    ) -> None:
        if not isinstance(persistor_id, str):
            raise TypeError(f"persistor_id must be a str but got {type(persistor_id).__name__}")
        check_number("task_check_period", task_check_period, positive=True)
        self._persistor_id = persistor_id
        self._ignore_result_error = ignore_result_error
        self._allow_empty_global_weights = allow_empty_global_weights
        self._task_check_period = float(task_check_period)
        self.persistor: ModelPersistor | None = None
        self.logger = logging.getLogger(type(self).__name__)
        self.fl_ctx: Any = None  # NVFlare's FLContext has no counterpart: the controller's methods need none
        self.engine: Any = None
        self.abort_signal: Signal | None = None
        self.site_name = ""
        self.job_id = ""
        self.current_round: int | None = 0
        self.total_rounds: int | None = 0
        self._ctx: ServerContext | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._standing = 0
        self._threads: list[threading.Thread] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("run")
        if callable(own) and not getattr(own, "__flruntime_entry__", False):
            setattr(cls, "run", entry(own))  # noqa: B010 - a method assigned after the class was made

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str] | None:
        """The task the class's own ``run`` sends; None when a subclass wrote ``run`` (known only at run time)."""
        owner = next((k for k in cls.__mro__ if "run" in k.__dict__), None)
        spec = owner.__dict__.get("_run_task_arg") if owner is not None else None
        if spec is None:
            return None
        arg, default = spec
        return {str(args.get(arg, default)) if arg else default}

    @abstractmethod
    def run(self, ctx: ServerContext | None = None) -> None:
        """The workflow. Subclasses override it as ``run(self)``; the engine's ``run(ctx)`` calls it."""

    # --- the run's context ----------------------------------------------------------------------------------

    @property
    def ctx(self) -> ServerContext:
        """The running job's server context (only while ``run`` runs)."""
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call its methods from run()")
        return self._ctx

    def _control_flow(self, ctx: ServerContext, body: Callable[[], None]) -> None:
        """Bind ``ctx``, run ``body`` (the user's ``run``), then cancel what it left standing."""
        self._bind(ctx)
        try:
            self.info("Beginning model controller run.")
            try:
                body()
            except Exception as exc:
                if not ctx.abort.is_set():
                    raise
                # the job is being aborted (or a result failed it, which ctx.failure says): that is the outcome
                self.warning(f"run() ended while the job was being aborted: {type(exc).__name__}: {exc}")
        finally:
            self._unbind(ctx)

    def _bind(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._halt.clear()
        self.abort_signal = Signal(event=ctx.abort)
        self.site_name, self.job_id = ctx.site, ctx.job_id
        self.persistor = self._find_persistor(ctx)
        self.initialize()

    def _unbind(self, ctx: ServerContext) -> None:
        standing = self.get_num_standing_tasks()
        if standing:
            self.warning(f"{standing} task(s) sent with send_model were still standing when run() returned: cancelled")
        self._halt.set()
        ctx.communicator.wake()
        for thread in self._threads:
            thread.join(timeout=JOIN_WAIT)
        self._threads = []
        try:
            self.finalize()
        finally:
            self._ctx = None

    def _find_persistor(self, ctx: ServerContext) -> ModelPersistor | None:
        if not self._persistor_id:
            return None
        found = ctx.components.get(self._persistor_id)
        if isinstance(found, ModelPersistor):
            return found
        if found is None:
            self.info(f"no component '{self._persistor_id}': running without a model persistor")
        else:
            self.warning(
                f"component '{self._persistor_id}' is a {type(found).__name__}, not a model persistor: "
                "running without one"
            )
        return None

    def initialize(self) -> None:  # noqa: B027 - a hook subclasses may override
        """Called when the run starts, before ``run`` (NVFlare's ``FLComponentWrapper.initialize``)."""

    def finalize(self) -> None:  # noqa: B027 - a hook subclasses may override
        """Called when ``run`` has returned (NVFlare's ``FLComponentWrapper.finalize``)."""

    def panic(self, reason: str) -> None:
        """Fail the job because of ``reason`` (NVFlare's ``system_panic``): every wait ends, the job ends failed."""
        self.error(reason)
        ctx = self.ctx
        ctx.fail(reason)
        ctx.communicator.wake()

    def is_aborted(self) -> bool:
        """True once the job is being aborted."""
        return self._ctx is not None and self._ctx.abort.is_set()

    def _raise_if_failed(self) -> None:
        if self._ctx is not None and self._ctx.failure:
            raise RuntimeError(self._ctx.failure)

    # --- models -------------------------------------------------------------------------------------------

    def load_model(self) -> ModelMessage:
        """Return the initial global model from the persistor (an empty model when there is none).

        When the persistor loads no parameters, the model an earlier workflow left as ``global_model``
        (``InitializeGlobalWeights``) is used, unless ``allow_empty_global_weights``.

        Raises:
            RuntimeError: no parameters anywhere and ``allow_empty_global_weights`` is false.
        """
        ctx = self.ctx
        if self.persistor is None:
            self.info("persistor not configured, creating empty initial FLModel")
            model = ModelMessage({}, ParamsType.FULL)
        else:
            self.info("loading initial model from persistor")
            loaded = self.persistor.load(ctx)
            if not loaded.params and not self._allow_empty_global_weights:
                loaded = ctx.models.get(GLOBAL_MODEL) or loaded
            if loaded.params:
                model = ModelMessage(dict(loaded.params), ParamsType.FULL, meta=dict(loaded.meta))
            elif self._allow_empty_global_weights:
                model = ModelMessage({}, ParamsType.FULL)
            else:
                raise RuntimeError(
                    f"neither persistor '{self._persistor_id}' nor an earlier workflow provided a global model "
                    "(set allow_empty_global_weights to start from an empty one)"
                )
        ctx.models[GLOBAL_MODEL] = model
        ctx.bus.fire(EventType.INITIAL_MODEL_LOADED, model=model)
        return model

    def save_model(self, model: ModelMessage) -> None:
        """Save ``model`` with the persistor (without one, log an error: the model is not saved)."""
        if self.persistor is None:
            self.error("persistor not configured, model will not be saved")
            return
        self.info("Start persist model on server.")
        self.persistor.save(model, self.ctx)
        self.info("End persist model on server.")

    # --- clients and tasks --------------------------------------------------------------------------------

    def sample_clients(self, num_clients: int | None = None) -> list[str]:
        """Return ``num_clients`` client names chosen at random (all clients when None, 0 or more than there are).

        Raises:
            TypeError / ValueError: ``num_clients`` is not a positive int.
        """
        clients = self.ctx.communicator.clients()
        if num_clients:
            check_number("num_clients", num_clients, positive=True, integer=True)
            if num_clients < len(clients):
                random.shuffle(clients)
                clients = clients[:num_clients]
                self.info(
                    f"num_clients ({num_clients}) is less than the number of available clients. "
                    f"Returning a random subset of ({num_clients}) clients."
                )
            elif num_clients > len(clients):
                self.error(
                    f"num_clients ({num_clients}) is greater than the number of available clients. "
                    f"Returning all ({len(clients)}) available clients."
                )
        self.info(f"Sampled clients: {clients}")
        return clients

    def send_model_and_wait(
        self,
        task_name: str = TASK_TRAIN,
        data: ModelMessage | None = None,
        targets: list[str] | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
    ) -> list[ModelMessage]:
        """Send ``data`` as task ``task_name`` and return the results (in arrival order) once the task is done.

        The task is done when ``min_responses`` results came (None: every target's), or after ``timeout``
        seconds (0: no limit); later results are dropped.

        Args:
            task_name: the task.
            data: the model to send.
            targets: client names (None: every client).
            min_responses: results to wait for (None or 0: all).
            timeout: seconds to wait at most (0: no limit).

        Returns:
            The results, each with ``meta["client_name"]``.
        """
        results = self.broadcast_model(
            data, task_name=task_name, targets=targets, min_responses=min_responses, timeout=timeout
        )
        return results or []

    def send_model(
        self,
        task_name: str = TASK_TRAIN,
        data: ModelMessage | None = None,
        targets: list[str] | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
        callback: ModelCallback | None = None,
    ) -> None:
        """Send ``data`` as task ``task_name`` and return at once; ``callback(result)`` runs for each result.

        :meth:`get_num_standing_tasks` counts the task until it is done and its callbacks have run. Arguments as
        for :meth:`send_model_and_wait`.
        """
        self.broadcast_model(
            data,
            task_name=task_name,
            targets=targets,
            min_responses=min_responses,
            timeout=timeout,
            blocking=False,
            callback=callback,
        )

    def broadcast_model(
        self,
        data: ModelMessage | None,
        task_name: str = TASK_TRAIN,
        targets: list[Any] | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
        wait_time_after_min_received: float = 0,
        blocking: bool = True,
        callback: ModelCallback | None = None,
    ) -> list[ModelMessage] | None:
        """Send a model to clients (NVFlare's ``BaseModelController.broadcast_model``).

        Args:
            data: the model to send.
            task_name: the task.
            targets: client names, or objects with a ``name`` (None: every client).
            min_responses: results to wait for (None or 0: all targets').
            timeout: seconds to wait at most (0: no limit).
            wait_time_after_min_received: once ``min_responses`` came, wait this much longer for the rest.
            blocking: wait and return the results; False: return None at once and call ``callback`` per result.
            callback: called with each result when not ``blocking``.

        Raises:
            TypeError / ValueError: a bad argument, or an unknown client name.
            RuntimeError: a result failed the job (``ignore_result_error`` false).
        """
        if not blocking and not callable(callback):
            raise TypeError(f"callback must be defined if blocking is False, but got {type(callback).__name__}")
        send = self.prepare_send(data, task_name, targets, min_responses, timeout, wait_time_after_min_received)
        if not blocking:
            assert callback is not None
            self._send_async(task_name, send, callback)
            return None
        results: list[ModelMessage] = []
        send(results.append)
        self._raise_if_failed()
        expected = min_responses if min_responses else len(send.sites)
        if targets is not None and len(results) != expected:
            self.warning(
                f"Number of results ({len(results)}) is different from number of expected responses ({expected})."
            )
        return results

    def prepare_send(
        self,
        data: ModelMessage | None,
        task_name: str = TASK_TRAIN,
        targets: list[Any] | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
        wait_time_after_min_received: float = 0,
    ) -> PreparedSend:
        """Check a send's arguments and return it: call it with a sink that takes each result as it arrives.

        The sink runs under the communicator's lock (keep it short: fold the result in, or queue it). Arguments
        as for :meth:`broadcast_model`.
        """
        if not isinstance(task_name, str):
            raise TypeError(f"task_name must be a string but got {type(task_name).__name__}")
        if not isinstance(data, ModelMessage):
            raise TypeError(f"data must be a FLModel but got {type(data).__name__}")
        if data.params is None and data.metrics is None:
            raise ValueError("FLModel without params and metrics is NOT supported.")
        check_number("min_responses", 0 if min_responses is None else min_responses, integer=True)
        check_number("timeout", timeout)
        check_number("wait_time_after_min_received", wait_time_after_min_received)
        self._raise_if_failed()
        sites = self._target_names(targets)
        self._set_round(data)
        self.info(f"Sending task {task_name} to {sites if targets else 'all clients'}")
        send = functools.partial(
            self._send, task_name, data, sites, min_responses or None, float(timeout), wait_time_after_min_received
        )
        return PreparedSend(send, sites)

    def get_num_standing_tasks(self) -> int:
        """The tasks sent with :meth:`send_model` that are not done yet (or whose callbacks are still running)."""
        with self._lock:
            return self._standing

    def _target_names(self, targets: list[Any] | None) -> list[str]:
        clients = self.ctx.communicator.clients()
        if not targets:
            return clients
        names = [t if isinstance(t, str) else str(getattr(t, "name", t)) for t in targets]
        unknown = [n for n in names if n not in clients]
        if unknown:
            raise ValueError(f"unknown client(s) {unknown}: the clients are {clients}")
        return names

    def _set_round(self, data: ModelMessage) -> None:
        """The model's round becomes the run's (NVFlare's ``set_fl_context``)."""
        ctx = self.ctx
        if data.current_round is not None:
            ctx.current_round = data.current_round
        if data.total_rounds is not None:
            ctx.total_rounds = data.total_rounds

    @staticmethod
    def _headers(data: ModelMessage) -> dict[str, Any]:
        """Task headers from the model's rounds (clients echo them; ``contribution_round`` as NVFlare's cookie)."""
        headers: dict[str, Any] = {}
        if data.current_round is not None:
            headers["current_round"] = data.current_round
            headers["contribution_round"] = data.current_round
        if data.total_rounds is not None:
            headers["num_rounds"] = data.total_rounds
        start = getattr(data, "start_round", None)  # NVFlare's FLModel field, set by ported code
        if start is not None:
            headers["start_round"] = start
        return headers

    def _send(
        self,
        task_name: str,
        data: ModelMessage,
        sites: list[str],
        min_responses: int | None,
        timeout: float,
        wait_time_after_min_received: float,
        sink: Callable[[ModelMessage], None],
    ) -> None:
        """Send and wait; each admitted result goes to ``sink`` as it arrives (under the communicator's lock)."""
        ctx = self.ctx
        sent_meta = dict(data.meta)

        def on_result(result: TaskResult) -> None:
            model = self._admit(result, sent_meta)
            if model is not None:
                sink(model)

        ctx.communicator.broadcast_and_wait(
            task_name,
            data.copy(),
            targets=sites,
            min_responses=min_responses,
            wait_time_after_min_received=wait_time_after_min_received,
            timeout=timeout,
            headers=self._headers(data),
            on_result=on_result,
            abort=StopWhen(ctx.abort, self._halt),
        )

    def _admit(self, result: TaskResult, sent_meta: dict[str, Any]) -> ModelMessage | None:
        """The result as a model for the workflow, or None when it failed (then ignored or failing the job)."""
        site, rnd = result.site, result.headers.get("current_round")
        if result.rc != ReturnCode.OK or result.data is None:
            code = f"{result.rc}" + (f" ({result.error})" if result.error else "")
            if self._ignore_result_error:
                self.warning(f"Ignore the result from {site} at round {rnd}. Result error code: {code}")
            else:
                self.panic(
                    f"Result from {site} is bad, error code: {code}. {type(self).__name__} exiting at round {rnd}."
                )
            return None
        model = result.data
        if model.current_round is None and rnd is not None:
            model.current_round = int(rnd)
        model.meta[PROPS] = dict(sent_meta)
        model.meta[CLIENT_NAME] = site
        bus = self.ctx.bus
        bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site=site, result=model)
        bus.fire(EventType.AFTER_CONTRIBUTION_ACCEPT, site=site, accepted=True)
        return model

    def _send_async(self, task_name: str, send: PreparedSend, callback: ModelCallback) -> None:
        """Run ``send`` in a thread; a second thread hands its results to ``callback`` (outside any lock)."""
        site = self.ctx.site
        results: queue.SimpleQueue[ModelMessage | None] = queue.SimpleQueue()

        def sending() -> None:
            with as_site(site):
                try:
                    send(results.put)
                except Exception:
                    self.logger.exception("sending task '%s' failed", task_name)
                finally:
                    results.put(None)

        def delivering() -> None:
            with as_site(site):
                try:
                    while (model := results.get()) is not None:
                        try:
                            callback(model)
                        except Exception as exc:
                            self.error(f"Unsuccessful callback {callback} for task {task_name}: {exc}")
                finally:
                    with self._lock:
                        self._standing -= 1

        with self._lock:
            self._standing += 1
        threads = [
            threading.Thread(target=sending, name=f"{site}:{task_name}-send", daemon=True),
            threading.Thread(target=delivering, name=f"{site}:{task_name}-callback", daemon=True),
        ]
        self._threads.extend(threads)
        for thread in threads:
            thread.start()

    # --- NVFlare's FLComponentWrapper conveniences -------------------------------------------------------------

    def get_component(self, component_id: str) -> Any:
        """The server component with this id, or None."""
        return self.ctx.components.get(component_id)

    def get_run_dir(self) -> str:
        """The server's folder for the job (its workspace)."""
        return str(self.ctx.workspace)

    def get_app_dir(self) -> str:
        """The server app's folder (config/ and custom/)."""
        return str(self.ctx.app_dir)

    def event(self, event_type: str) -> None:
        """Fire ``event_type`` on the server's bus (with the current round)."""
        self.ctx.bus.fire(str(event_type), round=self.current_round)
