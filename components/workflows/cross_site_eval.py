"""Cross-site model evaluation (NVFlare's ``CrossSiteModelEval``): every site validates every model.

The clients are asked for their best local model (task ``submit_model``); each model that comes back is
sent at once to every participating client for validation (task ``validate``, header ``_model_owner_``),
as are the server's models from the model locator (owner ``SRV_<name>``). Validations of different
models run concurrently; each client works through its tasks in order. Every validation result fires
``VALIDATION_RESULT_RECEIVED`` with ``{"model_owner", "data_client", "metrics"}`` (a
:class:`~flruntime.components.widgets.validation_json.ValidationJsonGenerator` turns them into the
results file). Models and results are also kept in ``<workspace>/<cross_val_dir>/`` as
:mod:`flruntime.transport.codec` bytes: ``model_shareables/<owner>`` and
``result_shareables/<data_client>_<owner>``.

A failed submission or validation is logged and recorded as ``{}`` (as NVFlare does), but an evaluation that
validated nothing at all (no model to send, or every validation failed) raises: the job fails and its error says
why (NVFlare logs the errors and completes with an empty results file).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Annotated, Any

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelLocator, Workflow
from flruntime.runtime.context import ServerContext
from flruntime.runtime.log_context import as_site
from flruntime.runtime.messages import MetaKey, ModelMessage, ReturnCode, TaskResult
from flruntime.transport.codec import encode

log = logging.getLogger(__name__)

#: Prefix of the owner name of a server model.
SERVER_PREFIX = "SRV_"
MODELS_DIR = "model_shareables"
RESULTS_DIR = "result_shareables"
#: What ``submit_model`` asks the clients for.
BEST_MODEL = "best_model"


def _file_name(name: str) -> str:
    """A model owner or site name as one file name (server model names may hold a path)."""
    return name.replace("/", "_").replace("\\", "_")


def _detail(result: TaskResult) -> str:
    return f"{result.rc}: {result.error}" if result.error else str(result.rc)


def _listing(reasons: list[str], keep: int = 3) -> str:
    """``a; b; c; and 2 more`` (the first ``keep`` reasons, sorted)."""
    shown = sorted(reasons)[:keep]
    more = len(reasons) - len(shown)
    return "; ".join(shown + ([f"and {more} more"] if more else []))


class CrossSiteModelEval(Workflow):
    """Collects the clients' models and the server's, and has every participating client validate each.

    Args:
        task_check_period: seconds between checks while waiting for clients to connect.
        cross_val_dir: the folder in the server's workspace for the models and results.
        submit_model_timeout: seconds to wait for the clients' models (0: no limit).
        validation_timeout: seconds to wait for the validations of one model (0: no limit).
        model_locator_id: the model locator of the server's models ("" for none).
        formatter_id: accepted for NVFlare compatibility (formatters are not supported; ignored).
        submit_model_task_name: the task that asks a client for its model ("": only the server's models are
            evaluated, as NVFlare's ``NumpyCrossSiteEvalRecipe`` asks).
        validation_task_name: the task that asks a client to validate a model.
        cleanup_models: delete the saved models when the workflow ends (the results are kept).
        participating_clients: the clients taking part (default: every connected client).
        wait_for_clients_timeout: seconds to wait for the participating clients to connect.

    Attributes:
        results: ``results[data_client][model_owner]`` = the metrics (``{}`` when the validation failed).
    """

    def __init__(
        self,
        task_check_period: float = 0.5,
        cross_val_dir: str = "cross_site_val",
        submit_model_timeout: float = 600,
        validation_timeout: float = 6000,
        model_locator_id: Annotated[str, Ref(ModelLocator)] = "",
        formatter_id: str = "",
        submit_model_task_name: str = "submit_model",
        validation_task_name: str = "validate",
        cleanup_models: bool = False,
        participating_clients: list[str] | None = None,
        wait_for_clients_timeout: float = 300,
    ) -> None:
        for name, value in (
            ("task_check_period", task_check_period),
            ("submit_model_timeout", submit_model_timeout),
            ("validation_timeout", validation_timeout),
            ("wait_for_clients_timeout", wait_for_clients_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number but got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if task_check_period <= 0:
            raise ValueError(f"task_check_period must be positive, got {task_check_period}")
        path = PurePath(cross_val_dir)
        if not cross_val_dir or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"cross_val_dir must be a relative folder inside the workspace, got {cross_val_dir!r}")
        if participating_clients is not None and (
            not isinstance(participating_clients, list) or not all(isinstance(c, str) for c in participating_clients)
        ):
            raise TypeError("participating_clients must be a list of client names")
        self.task_check_period = float(task_check_period)
        self.cross_val_dir = cross_val_dir
        self.submit_model_timeout = float(submit_model_timeout)
        self.validation_timeout = float(validation_timeout)
        self.model_locator_id = model_locator_id
        self.formatter_id = formatter_id
        self.submit_model_task_name = submit_model_task_name
        self.validation_task_name = validation_task_name
        self.cleanup_models = cleanup_models
        self.participating_clients = list(participating_clients) if participating_clients else None
        self.wait_for_clients_timeout = float(wait_for_clients_timeout)
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._validated = 0
        self._failures: list[str] = []

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """The submit-model (unless "") and validate tasks."""
        tasks = {
            str(args.get("submit_model_task_name", "submit_model")),
            str(args.get("validation_task_name", "validate")),
        }
        return tasks - {""}

    # --- the flow -----------------------------------------------------------------------------------------

    def _participants(self, ctx: ServerContext) -> list[str]:
        """The clients taking part, once they are connected (empty when the job is aborted meanwhile)."""
        comm = ctx.communicator
        deadline = time.monotonic() + self.wait_for_clients_timeout
        while not ctx.abort.is_set():
            connected = comm.clients()
            if self.participating_clients is None and connected:
                return connected
            wanted = self.participating_clients or []
            missing = [c for c in wanted if c not in connected]
            if wanted and not missing:
                return list(wanted)
            if time.monotonic() >= deadline:
                what = f"participating clients {', '.join(missing)}" if missing else "any client"
                wait = self.wait_for_clients_timeout
                raise RuntimeError(f"cross-site evaluation: {what} did not connect within {wait} s")
            ctx.abort.wait(self.task_check_period)
        return []

    def run(self, ctx: ServerContext) -> None:
        """Collect the models and have each validated by every participating client."""
        if self.formatter_id:
            log.info("formatter_id '%s' is ignored: results go to a ValidationJsonGenerator", self.formatter_id)
        participants = self._participants(ctx)
        if not participants:
            return
        root = ctx.workspace / self.cross_val_dir
        for sub in (MODELS_DIR, RESULTS_DIR):
            shutil.rmtree(root / sub, ignore_errors=True)
            (root / sub).mkdir(parents=True)
        self.results = {site: {} for site in participants}
        self._validated, self._failures = 0, []
        log.info("cross-site evaluation with clients %s", ", ".join(participants))
        workers: list[threading.Thread] = []
        server_why = "no model locator is configured (model_locator_id is empty)"
        not_submitted: list[str] = []
        try:
            if self.model_locator_id:
                locator = ctx.component(self.model_locator_id, ModelLocator)
                names = locator.model_names(ctx)
                missing = []
                for name in names:
                    model = locator.locate(name, ctx)
                    if model is None:
                        log.error("the model locator has no model '%s'; it is not validated", name)
                        missing.append(f"'{name}'")
                        continue
                    workers.append(self._validate_later(ctx, participants, SERVER_PREFIX + name, model))
                server_why = "the model locator found no server model " + (
                    f"(it has no model {', '.join(missing)})" if missing else "(it names none)"
                )

            def on_submit(result: TaskResult) -> None:
                if result.rc != ReturnCode.OK or result.data is None or not result.data.params:
                    log.error("%s did not submit a model (%s)", result.site, _detail(result))
                    why = _detail(result) if result.rc != ReturnCode.OK else "an empty model"
                    not_submitted.append(f"{result.site}: {why}")
                    return
                workers.append(self._validate_later(ctx, participants, result.site, result.data))

            if self.submit_model_task_name:
                got = ctx.communicator.broadcast_and_wait(
                    self.submit_model_task_name,
                    ModelMessage(meta={MetaKey.SUBMIT_MODEL_NAME.value: BEST_MODEL}),
                    targets=participants,
                    timeout=self.submit_model_timeout,
                    headers={MetaKey.SUBMIT_MODEL_NAME.value: BEST_MODEL},
                    on_result=on_submit,
                    abort=ctx.abort,
                )
                not_submitted += [
                    f"{site}: no answer within {self.submit_model_timeout} s"
                    for site in participants
                    if site not in got
                ]
            else:
                not_submitted.append("submit_model_task_name is empty")
            for worker in workers:
                worker.join()
        finally:
            if self.cleanup_models:
                shutil.rmtree(root / MODELS_DIR, ignore_errors=True)
        log.info("cross-site evaluation finished: %d models were sent for validation", len(workers))
        if ctx.abort.is_set():
            return
        if not workers:
            raise RuntimeError(
                f"cross-site evaluation evaluated nothing: no client submitted a model ({_listing(not_submitted)}) "
                f"and {server_why}"
            )
        if not self._validated:
            raise RuntimeError(
                f"cross-site evaluation evaluated nothing: every validation of the {len(workers)} model(s) failed "
                f"({_listing(self._failures) or 'see the server log'})"
            )

    def _validate_later(
        self, ctx: ServerContext, participants: list[str], owner: str, model: ModelMessage
    ) -> threading.Thread:
        """Start saving ``model`` and sending it to every participant for validation, in a thread of its own."""
        worker = threading.Thread(
            target=self._validate, args=(ctx, participants, owner, model), name=f"{ctx.site}:cse:{owner}", daemon=True
        )
        worker.start()
        return worker

    def _validate(self, ctx: ServerContext, participants: list[str], owner: str, model: ModelMessage) -> None:
        with as_site(ctx.site):
            try:
                (ctx.workspace / self.cross_val_dir / MODELS_DIR / _file_name(owner)).write_bytes(encode(model))
                data = model.copy()
                data.meta[MetaKey.MODEL_OWNER.value] = owner
                log.info("sending model %s to %s for validation", owner, ", ".join(participants))
                got = ctx.communicator.broadcast_and_wait(
                    self.validation_task_name,
                    data,
                    targets=participants,
                    timeout=self.validation_timeout,
                    headers={MetaKey.MODEL_OWNER.value: owner},
                    on_result=lambda result: self._on_validation(ctx, owner, result),
                    abort=ctx.abort,
                )
                for site in participants:
                    if site not in got:
                        log.error("no validation of model %s from %s (timed out or aborted)", owner, site)
                        self._record(site, owner, {}, f"model {owner} on {site}: no answer")
            except Exception as exc:
                log.exception("validating model %s failed", owner)
                with self._lock:
                    self._failures.append(f"model {owner}: {type(exc).__name__}: {exc}")

    def _record(self, site: str, owner: str, metrics: dict[str, Any], failure: str | None = None) -> None:
        """Keep one validation's metrics; ``failure`` says why it failed (the metrics are ``{}`` then)."""
        with self._lock:
            self.results.setdefault(site, {})[owner] = metrics
            if failure is None:
                self._validated += 1
            else:
                self._failures.append(failure)

    def _on_validation(self, ctx: ServerContext, owner: str, result: TaskResult) -> None:
        site = result.site
        if result.rc != ReturnCode.OK or result.data is None:
            log.error("validation of model %s on %s failed (%s)", owner, site, _detail(result))
            self._record(site, owner, {}, f"model {owner} on {site}: {_detail(result)}")
            return
        metrics = dict(result.data.metrics or {})
        path: Path = ctx.workspace / self.cross_val_dir / RESULTS_DIR / _file_name(f"{site}_{owner}")
        path.write_bytes(encode(result.data))
        self._record(site, owner, metrics)
        log.info("validation of model %s on %s: %s", owner, site, metrics)
        ctx.bus.fire(EventType.VALIDATION_RESULT_RECEIVED, model_owner=owner, data_client=site, metrics=metrics)
