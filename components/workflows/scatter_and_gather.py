"""FedAvg as scatter-and-gather (NVFlare's ``ScatterAndGather``): send the global model, aggregate in time."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import numpy as np

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import Aggregator, ModelPersistor, ShareableGenerator, Workflow
from flruntime.runtime.context import ServerContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ReturnCode, TaskResult
from flruntime.runtime.streamed import Discard, ResultSink
from flruntime.transport.codec import ArraySpec

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "fedavg_snapshot.json"
#: The name under which an earlier workflow leaves the initial global model (NVFlare's ``global_model``).
GLOBAL_MODEL = "global_model"


class RoundMetrics:
    """The step-weighted mean of the scalar metrics clients report with their results in one round."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.weight: dict[str, float] = {}

    def add(self, result: ModelMessage) -> None:
        """Fold in one result's numeric metrics, weighted by its local steps."""
        weight = float(result.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0) or 1.0)
        for name, value in (result.metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.total[name] = self.total.get(name, 0.0) + weight * float(value)
                self.weight[name] = self.weight.get(name, 0.0) + weight

    def mean(self) -> dict[str, float]:
        """Return each metric's weighted mean."""
        return {k: self.total[k] / self.weight[k] for k in self.total}


class _Accepting:
    """A result streaming into the aggregator; when it is whole and accepted, the round counts it."""

    def __init__(
        self, inner: ResultSink, on_accept: Callable[[], object], ctx: ServerContext, site: str, data: ModelMessage
    ) -> None:
        self.inner, self.on_accept, self.ctx, self.site, self.data = inner, on_accept, ctx, site, data

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Pass a piece to the aggregator."""
        self.inner.write(name, start, values)

    def close(self) -> bool:
        """Count the result when the aggregator accepted it."""
        self.ctx.bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site=self.site, result=self.data, streamed=True)
        if self.inner.close():
            self.on_accept()
            return True
        self.ctx.bus.fire(EventType.AFTER_CONTRIBUTION_ACCEPT, site=self.site, accepted=False)
        return False

    def fail(self, reason: str) -> None:
        """The stream broke off."""
        self.inner.fail(reason)


class ScatterAndGather(Workflow):
    """Runs FedAvg rounds: broadcast the global model, fold results into the aggregator as they arrive.

    Args:
        min_clients: results needed before a round may end (capped at the number of clients, with a warning).
        num_rounds: rounds to run.
        start_round: the first round's number.
        wait_time_after_min_received: seconds to wait for more results once ``min_clients`` have arrived.
        aggregator_id: the aggregator.
        persistor_id: the model persistor ("" for none). When it loads no parameters, the model an earlier
            workflow left as ``global_model`` (``InitializeGlobalWeights``) is used.
        shareable_generator_id: turns the global model into task data and applies aggregates.
        train_task_name: the task sent to clients.
        train_timeout: seconds a round may take (0: no limit).
        ignore_result_error: True: skip failed results; False: a failed result fails the job; None: skip
            them while enough results remain to reach ``min_clients``.
        allow_empty_global_weights: allow a persistor that loads no parameters.
        task_check_period: accepted for NVFlare compatibility (results are pushed, not polled).
        persist_every_n_rounds: save the global model every n rounds (and after the last).
        snapshot_every_n_rounds: write the resume snapshot every n rounds (and after the last).
    """

    def __init__(
        self,
        min_clients: int = 1000,
        num_rounds: int = 5,
        start_round: int = 0,
        wait_time_after_min_received: float = 10,
        aggregator_id: Annotated[str, Ref(Aggregator)] = "aggregator",
        persistor_id: Annotated[str, Ref(ModelPersistor)] = "",
        shareable_generator_id: Annotated[str, Ref(ShareableGenerator)] = "shareable_generator",
        train_task_name: str = "train",
        train_timeout: float = 0,
        ignore_result_error: bool | None = None,
        allow_empty_global_weights: bool = False,
        task_check_period: float = 0.5,
        persist_every_n_rounds: int = 1,
        snapshot_every_n_rounds: int = 1,
    ) -> None:
        for name, value, low in (
            ("min_clients", min_clients, 1),
            ("num_rounds", num_rounds, 0),
            ("start_round", start_round, 0),
            ("persist_every_n_rounds", persist_every_n_rounds, 0),
            ("snapshot_every_n_rounds", snapshot_every_n_rounds, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be int but got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if wait_time_after_min_received < 0 or train_timeout < 0:
            raise ValueError("wait_time_after_min_received and train_timeout must not be negative")
        self.min_clients = min_clients
        self.num_rounds = num_rounds
        self.start_round = start_round
        self.wait_time_after_min_received = float(wait_time_after_min_received)
        self.aggregator_id = aggregator_id
        self.persistor_id = persistor_id
        self.shareable_generator_id = shareable_generator_id
        self.train_task_name = train_task_name
        self.train_timeout = float(train_timeout)
        self.ignore_result_error = ignore_result_error
        self.allow_empty_global_weights = allow_empty_global_weights
        self.persist_every_n_rounds = persist_every_n_rounds
        self.snapshot_every_n_rounds = snapshot_every_n_rounds

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """The train task."""
        return {str(args.get("train_task_name", "train"))}

    def _first_round(self, ctx: ServerContext) -> int:
        snapshot = ctx.workspace / SNAPSHOT_FILE
        if ctx.resume and snapshot.is_file():
            state = json.loads(snapshot.read_text(encoding="utf-8"))
            log.info("resuming at round %s from %s", state["next_round"], snapshot)
            return int(state["next_round"])
        return self.start_round

    def _snapshot(self, ctx: ServerContext, next_round: int) -> None:
        path = ctx.workspace / SNAPSHOT_FILE
        path.write_text(
            json.dumps({"next_round": next_round, "end_round": self.start_round + self.num_rounds}), encoding="utf-8"
        )

    def run(self, ctx: ServerContext) -> None:
        """Run the rounds."""
        aggregator = ctx.component(self.aggregator_id, Aggregator)
        generator = ctx.component(self.shareable_generator_id, ShareableGenerator)
        persistor = ctx.component(self.persistor_id, ModelPersistor) if self.persistor_id else None
        comm = ctx.communicator
        end_round = self.start_round + self.num_rounds
        ctx.total_rounds = self.num_rounds
        model = persistor.load(ctx) if persistor is not None else ModelMessage({})
        if not model.params and not self.allow_empty_global_weights:
            model = ctx.models.get(GLOBAL_MODEL) or model  # e.g. set by InitializeGlobalWeights, as in NVFlare
            if not model.params:
                raise RuntimeError(
                    "the persistor loaded no model parameters and no earlier workflow provided them "
                    "(set allow_empty_global_weights to allow)"
                )
        ctx.bus.fire(EventType.INITIAL_MODEL_LOADED, model=model)
        clients = comm.clients()
        need = self.min_clients
        if need > len(clients):
            log.warning("min_clients is %d but only %d clients take part; waiting for all of them", need, len(clients))
            need = len(clients)
        for rnd in range(self._first_round(ctx), end_round):
            if ctx.abort.is_set():
                return
            ctx.current_round = rnd
            ctx.bus.fire(EventType.ROUND_STARTED, round=rnd, model=model)
            data = generator.to_task_data(model, ctx)
            data.current_round, data.total_rounds = rnd, self.num_rounds
            ok: list[str] = []
            failed: list[str] = []
            why: dict[str, str] = {}
            metrics = RoundMetrics()

            def admit(
                result: TaskResult, rnd: int = rnd, failed: list[str] = failed, why: dict[str, str] = why
            ) -> ModelMessage | None:  # the result's data when it is for this round and did not fail
                if result.rc != ReturnCode.OK or result.data is None:
                    failed.append(result.site)
                    if result.error:
                        why[result.site] = result.error
                    log.warning("round %d: %s returned %s %s", rnd, result.site, result.rc, result.error)
                    return None
                if result.headers.get("contribution_round") != rnd:
                    log.warning(
                        "round %d: discarding a result from %s made for round %s",
                        rnd,
                        result.site,
                        result.headers.get("contribution_round"),
                    )
                    return None
                result.data.current_round = rnd
                return result.data

            def accepted(site: str, data: ModelMessage, ok: list[str] = ok, metrics: RoundMetrics = metrics) -> bool:
                ctx.bus.fire(EventType.AFTER_CONTRIBUTION_ACCEPT, site=site, accepted=True)
                ok.append(site)
                metrics.add(data)
                return True

            def on_result(result: TaskResult, admit: Callable[..., ModelMessage | None] = admit) -> None:
                data = admit(result)
                if data is None:
                    return
                ctx.bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site=result.site, result=data)
                if aggregator.accept(result.site, data, ctx):
                    accepted(result.site, data)
                else:
                    ctx.bus.fire(EventType.AFTER_CONTRIBUTION_ACCEPT, site=result.site, accepted=False)

            def on_stream(
                result: TaskResult, arrays: list[ArraySpec], admit: Callable[..., ModelMessage | None] = admit
            ) -> ResultSink | None:
                data = admit(result)
                if data is None:
                    return Discard()
                sink = aggregator.open_contribution(result.site, data, arrays, ctx)
                if sink is None:
                    return None
                return _Accepting(sink, lambda: accepted(result.site, data), ctx, result.site, data)

            comm.broadcast_and_wait(
                self.train_task_name,
                data,
                targets=clients,
                min_responses=need,
                wait_time_after_min_received=self.wait_time_after_min_received,
                timeout=self.train_timeout,
                headers={"current_round": rnd, "num_rounds": self.num_rounds, "contribution_round": rnd},
                on_result=on_result,
                on_stream=on_stream,
                abort=ctx.abort,
            )
            if ctx.abort.is_set():
                return
            causes = "".join(f"; {site}: {text}" for site, text in why.items())
            if failed and self.ignore_result_error is False:
                raise RuntimeError(f"round {rnd}: {', '.join(failed)} failed and ignore_result_error is false{causes}")
            if not ok:
                raise RuntimeError(f"round {rnd}: no client result could be aggregated{causes}")
            if self.ignore_result_error is None and len(ok) < need:
                raise RuntimeError(
                    f"round {rnd}: only {len(ok)} of min_clients={need} results could be aggregated{causes}"
                )
            ctx.bus.fire(EventType.BEFORE_AGGREGATION, round=rnd, model=model)
            aggregate = aggregator.aggregate(ctx)
            ctx.bus.fire(EventType.AFTER_AGGREGATION, round=rnd, aggregate=aggregate)
            model = generator.update(model, aggregate, ctx)
            model.current_round = rnd
            last = rnd == end_round - 1
            if persistor is not None and (
                last or (self.persist_every_n_rounds and (rnd + 1) % self.persist_every_n_rounds == 0)
            ):
                persistor.save(model, ctx)
            if last or (self.snapshot_every_n_rounds and (rnd + 1) % self.snapshot_every_n_rounds == 0):
                self._snapshot(ctx, rnd + 1)
            ctx.bus.fire(
                EventType.ROUND_DONE,
                round=rnd,
                model=model,
                contributors=list(ok),
                failed=list(failed),
                metrics=metrics.mean(),
            )
            aggregator.reset(ctx)
