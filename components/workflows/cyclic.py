"""NVFlare's ``CyclicController`` (``nvflare.app_common.workflows.cyclic_ctl``): the model relayed client to client.

Each round the model goes to the clients one after another, in the round's relay order; each client's result
becomes the model the next one gets (through the shareable generator: a FULL result replaces the model, a DIFF is
added). The order is ``FIXED`` (the clients' order, every round), ``RANDOM`` (shuffled each round),
``RANDOM_WITHOUT_SAME_IN_A_ROW`` (shuffled, never the same client twice in a row across rounds) or a list of
client names. A client that does not pick its task up within ``task_assignment_timeout`` seconds is skipped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from flruntime.components.workflows.args import check_number
from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL
from flruntime.components.workflows.waits import StopWhen

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor, ShareableGenerator, Workflow
from flruntime.runtime.context import ServerContext
from flruntime.runtime.messages import ModelMessage, ReturnCode

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "cyclic_snapshot.json"


class RelayOrder:
    """NVFlare's relay orders."""

    FIXED = "FIXED"
    RANDOM = "RANDOM"
    RANDOM_WITHOUT_SAME_IN_A_ROW = "RANDOM_WITHOUT_SAME_IN_A_ROW"


SUPPORTED_ORDERS = (RelayOrder.FIXED, RelayOrder.RANDOM, RelayOrder.RANDOM_WITHOUT_SAME_IN_A_ROW)


def order_problem(order: object) -> str:
    """Why ``order`` is not a relay order ("" when it is one)."""
    if isinstance(order, list):
        return "" if all(isinstance(name, str) for name in order) else "order must be a list of client names"
    return "" if order in SUPPORTED_ORDERS else f"order must be in {SUPPORTED_ORDERS} or a list"


class CyclicController(Workflow):
    """Cyclic (relay) federated learning (NVFlare's ``CyclicController``).

    Args:
        num_rounds: rounds to run; each relays the model through every client of the round's order.
        task_assignment_timeout: seconds a client may take to pick its task up before it is skipped.
        persistor_id: the model persistor: loads the initial model, saves it every ``persist_every_n_rounds``
            rounds and at the end.
        shareable_generator_id: turns the model into task data and applies each client's result.
        task_name: the task sent.
        task_check_period: accepted for NVFlare compatibility (results are pushed).
        persist_every_n_rounds: save the model every n rounds (0: only at the end).
        snapshot_every_n_rounds: write the resume snapshot every n rounds (0: never).
        order: ``FIXED``, ``RANDOM``, ``RANDOM_WITHOUT_SAME_IN_A_ROW`` or a list of client names.
        allow_early_termination: a client result with return code ``EARLY_TERMINATION`` ends the workflow
            (False: it is ignored with a warning and the relay goes on).
    """

    def __init__(
        self,
        num_rounds: int = 5,
        task_assignment_timeout: int = 10,
        persistor_id: Annotated[str, Ref(ModelPersistor)] = "persistor",
        shareable_generator_id: Annotated[str, Ref(ShareableGenerator)] = "shareable_generator",
        task_name: str = "train",
        task_check_period: float = 0.5,
        persist_every_n_rounds: int = 1,
        snapshot_every_n_rounds: int = 1,
        order: str | list[str] = RelayOrder.FIXED,
        allow_early_termination: bool = False,
    ) -> None:
        check_number("num_rounds", num_rounds, integer=True)
        check_number("task_assignment_timeout", task_assignment_timeout)
        check_number("persist_every_n_rounds", persist_every_n_rounds, integer=True)
        check_number("snapshot_every_n_rounds", snapshot_every_n_rounds, integer=True)
        for name, value in (
            ("persistor_id", persistor_id),
            ("shareable_generator_id", shareable_generator_id),
            ("task_name", task_name),
        ):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string but got {type(value).__name__}")
        problem = order_problem(order)
        if problem:
            raise ValueError(problem)
        self.num_rounds = num_rounds
        self.task_assignment_timeout = float(task_assignment_timeout)
        self.persistor_id = persistor_id
        self.shareable_generator_id = shareable_generator_id
        self.task_name = task_name
        self.persist_every_n_rounds = persist_every_n_rounds
        self.snapshot_every_n_rounds = snapshot_every_n_rounds
        self.order: str | list[str] = list(order) if isinstance(order, list) else order
        self.allow_early_termination = allow_early_termination
        self._last_client: str | None = None

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """The relayed task."""
        return {str(args.get("task_name", "train"))}

    @classmethod
    def validate_args(cls, args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Report an ``order`` that is not a relay order (before the job runs)."""
        if "order" in args and order_problem(args["order"]):
            yield "order", order_problem(args["order"])

    def relay_order(self, ctx: ServerContext) -> list[str]:
        """The clients of this round's relay, in order.

        Raises:
            RuntimeError: fewer than two clients are connected, or ``order`` names one that is not.
        """
        active = ctx.communicator.clients()
        if len(active) <= 1:
            raise RuntimeError(f"Not enough active client sites ({len(active)}).")
        if isinstance(self.order, list):
            missing = [name for name in self.order if name not in active]
            if missing:
                raise RuntimeError(f"Required client site ({missing[0]}) is not in active clients.")
            targets = list(self.order)
        else:
            targets = list(active)
            if self.order in (RelayOrder.RANDOM, RelayOrder.RANDOM_WITHOUT_SAME_IN_A_ROW):
                random.shuffle(targets)
                if self.order == RelayOrder.RANDOM_WITHOUT_SAME_IN_A_ROW and targets[0] == self._last_client:
                    targets.append(targets.pop(0))
        self._last_client = targets[-1]
        return targets

    def _first_round(self, ctx: ServerContext) -> int:
        snapshot = ctx.workspace / SNAPSHOT_FILE
        if ctx.resume and snapshot.is_file():
            state = json.loads(snapshot.read_text(encoding="utf-8"))
            log.info("resuming at round %s from %s", state["next_round"], snapshot)
            return int(state["next_round"])
        return 0

    def run(self, ctx: ServerContext) -> None:
        """Relay the model through the clients for every round, then save it.

        Raises:
            RuntimeError: fewer than two clients, or a client's task failed (the model it was given is saved).
        """
        persistor = ctx.component(self.persistor_id, ModelPersistor)
        generator = ctx.component(self.shareable_generator_id, ShareableGenerator)
        model = persistor.load(ctx)
        ctx.models[GLOBAL_MODEL] = model
        ctx.total_rounds = self.num_rounds
        ctx.bus.fire(EventType.INITIAL_MODEL_LOADED, model=model)
        if len(ctx.communicator.clients()) <= 1:
            raise RuntimeError("Not enough client sites.")
        try:
            for rnd in range(self._first_round(ctx), self.num_rounds):
                if ctx.abort.is_set():
                    return
                ctx.current_round = rnd
                targets = self.relay_order(ctx)
                log.info("round %d: relay on %s", rnd, targets)
                ctx.bus.fire(EventType.ROUND_STARTED, round=rnd, model=model)
                done, model, stop = self._relay(ctx, generator, model, rnd, targets)
                if ctx.abort.is_set():
                    return
                last = rnd == self.num_rounds - 1
                if self.persist_every_n_rounds and (rnd + 1) % self.persist_every_n_rounds == 0 and not last:
                    persistor.save(model, ctx)
                if self.snapshot_every_n_rounds and (rnd + 1) % self.snapshot_every_n_rounds == 0:
                    (ctx.workspace / SNAPSHOT_FILE).write_text(json.dumps({"next_round": rnd + 1}), encoding="utf-8")
                ctx.bus.fire(EventType.ROUND_DONE, round=rnd, model=model, contributors=done, failed=[], metrics={})
                if stop:
                    log.info("round %d: a client ended the workflow early", rnd)
                    return
        finally:
            persistor.save(model, ctx)  # NVFlare's stop_controller: the last model, however the run ended

    def _relay(
        self, ctx: ServerContext, generator: ShareableGenerator, model: ModelMessage, rnd: int, targets: list[str]
    ) -> tuple[list[str], ModelMessage, bool]:
        """One round's relay: returns the clients whose results were applied, the model, whether to stop."""
        done: list[str] = []
        for site in targets:
            data = generator.to_task_data(model, ctx)
            data.current_round, data.total_rounds = rnd, self.num_rounds
            deadline = time.monotonic() + self.task_assignment_timeout

            def unassigned(site: str = site, deadline: float = deadline) -> bool:
                return time.monotonic() > deadline and self.task_name in ctx.communicator.waiting(site)

            stop = StopWhen(ctx.abort, condition=unassigned)
            results = ctx.communicator.broadcast_and_wait(
                self.task_name,
                data,
                targets=[site],
                headers={"current_round": rnd, "num_rounds": self.num_rounds, "contribution_round": rnd},
                abort=stop,
            )
            if ctx.abort.is_set():
                return done, model, False
            result = results.get(site)
            if result is None:
                log.warning(
                    "round %d: %s did not pick its task up within %.0f s (or went away): skipped",
                    rnd,
                    site,
                    self.task_assignment_timeout,
                )
                continue
            if result.rc == ReturnCode.EARLY_TERMINATION:
                if result.data is not None and result.data.params:
                    model = generator.update(model, result.data, ctx)
                if self.allow_early_termination:
                    log.info("round %d: stopping the workflow: %s returned %s", rnd, site, result.rc)
                    return done, model, True
                log.warning("round %d: ignored %s from %s: early termination is not allowed", rnd, result.rc, site)
                continue
            if result.rc != ReturnCode.OK or result.data is None:
                cause = f": {result.error}" if result.error else ""
                raise RuntimeError(f"round {rnd}: {site} returned {result.rc}{cause}; the relay stopped")
            ctx.bus.fire(EventType.BEFORE_CONTRIBUTION_ACCEPT, site=site, result=result.data)
            model = generator.update(model, result.data, ctx)
            model.current_round = rnd
            ctx.models[GLOBAL_MODEL] = model
            ctx.bus.fire(EventType.AFTER_CONTRIBUTION_ACCEPT, site=site, accepted=True)
            done.append(site)
        return done, model, False
