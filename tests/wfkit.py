"""Helpers for workflow tests: job folders whose numpy parts live in the job's custom/ folder, and engines.

:data:`WF_PARTS` (``custom/wf_parts.py``) holds a persistor, a trainer whose behaviour the test picks per
site and round (fail, answer late, block until aborted), a server widget that aborts the job mid-round, and
an executor that trains, submits its model and validates models (for cross-site evaluation). Sites
coordinate through files in the simulator's workspace (``<ws>/<site>``), never through long sleeps.
"""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

from flruntime.events.bus import EventBus
from flruntime.runtime.client import ClientEngine
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import RunContext, ServerContext
from flruntime.runtime.server import ServerEngine, ServerOutcome
from flruntime.transport.inprocess import InProcessConnection
from flruntime.validation import build_job_site

WF_PARTS = textwrap.dedent(
    '''
    """Numpy components for workflow tests."""

    import json
    import time

    import numpy as np

    from flruntime.events.types import EventType
    from flruntime.roles import Executor, ModelPersistor
    from flruntime.runtime.messages import ModelMessage, ParamsType


    def wait_for(check, ctx, what, limit=30.0):
        """Poll ``check`` every few milliseconds (the job's abort ends the wait)."""
        deadline = time.monotonic() + limit
        while not check():
            if ctx.abort.wait(0.005):
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ctx.site}: gave up waiting for {what}")
        return True


    class ZeroPersistor(ModelPersistor):
        def __init__(self, size: int = 3) -> None:
            self.size = size

        def load(self, ctx):
            return ModelMessage({"w": np.zeros(self.size, dtype=np.float32)})

        def save(self, model, ctx):
            np.save(ctx.workspace / "global.npy", model.params["w"])


    class Trainer(Executor):
        """Sends site-k's number k as the weight difference (one local step), unless told otherwise.

        fail_site fails (in fail_round, or every round when it is -1); late_site answers only after the
        server wrote its snapshot for the round (its result is late; the other sites answer only once it has
        started the round's task); block_site blocks in block_round until
        the job is aborted, after writing ``<its workspace>/blocked`` (the other sites answer that round only
        once it is blocked).
        """

        def __init__(self, fail_site: str = "", fail_round: int = -1, late_site: str = "",
                     block_site: str = "", block_round: int = -1) -> None:
            self.fail_site, self.fail_round = fail_site, fail_round
            self.late_site = late_site
            self.block_site, self.block_round = block_site, block_round

        def execute(self, task, data, ctx):
            k = int(ctx.site.rsplit("-", 1)[1])
            rnd = ctx.current_round
            if ctx.site == self.fail_site and self.fail_round in (-1, rnd):
                raise RuntimeError(f"{ctx.site} fails on purpose")
            if self.late_site:
                started = ctx.run.workspace.parent / self.late_site / f"started-{rnd}"
                if ctx.site == self.late_site:
                    started.write_text("yes")
                    snapshot = ctx.run.workspace.parent / "server" / "fedavg_snapshot.json"

                    def closed():
                        return snapshot.exists() and json.loads(snapshot.read_text())["next_round"] > rnd

                    wait_for(closed, ctx, f"the server to close round {rnd}")
                else:
                    wait_for(started.exists, ctx, f"{self.late_site} to start round {rnd}")
            if self.block_site and rnd == self.block_round:
                blocked = ctx.run.workspace.parent / self.block_site / "blocked"
                if ctx.site == self.block_site:
                    blocked.write_text("yes")
                    ctx.abort.wait(60)
                    raise RuntimeError("aborted while training")
                wait_for(blocked.exists, ctx, f"{self.block_site} to block")
            diff = np.full_like(data.params["w"], float(k))
            return ModelMessage({"w": diff}, ParamsType.DIFF, meta={"NUM_STEPS_CURRENT_ROUND": 1})


    class AbortInRound:
        """A server widget: aborts the job when the first result of round ``round`` has been accepted."""

        def __init__(self, round: int = 1) -> None:
            self.round = round

        def setup(self, ctx):
            self.ctx = ctx
            ctx.bus.subscribe(EventType.AFTER_CONTRIBUTION_ACCEPT, self.accepted)

        def accepted(self, event):
            if self.ctx.current_round == self.round:
                self.ctx.abort.set()


    def total(params):
        return float(sum(float(np.sum(v)) for v in params.values()))


    class CSEExecutor(Executor):
        """train: adds k to every variable (one step) and reports how close the received model's sum is to
        ``target`` (initial_metrics.val_acc = -(sum - target)²); submit_model: the last local model (zeros before
        any training);
        validate: {"score": sum of the model + k}; fail_site fails to validate fail_owner's model."""

        def __init__(self, target: float = 4.5, fail_site: str = "", fail_owner: str = "") -> None:
            self.target = target
            self.fail_site, self.fail_owner = fail_site, fail_owner
            self.local = None

        def execute(self, task, data, ctx):
            k = int(ctx.site.rsplit("-", 1)[1])
            if task == "train":
                self.local = {n: v + k for n, v in data.params.items()}
                metric = -((total(data.params) - self.target) ** 2)
                diff = {n: np.full_like(v, k) for n, v in data.params.items()}
                meta = {"NUM_STEPS_CURRENT_ROUND": 1, "initial_metrics": {"val_acc": metric}}
                return ModelMessage(diff, ParamsType.DIFF, meta=meta)
            if task == "submit_model":
                assert ctx.headers["submit_model_name"] == "best_model"
                local = self.local if self.local is not None else {"w": np.zeros(2, np.float32)}
                return ModelMessage(local, ParamsType.FULL)
            if task == "validate":
                owner = ctx.headers["_model_owner_"]
                if ctx.site == self.fail_site and owner == self.fail_owner:
                    raise RuntimeError(f"cannot validate {owner}")
                return ModelMessage(metrics={"score": total(data.params) + k})
            raise ValueError(f"unknown task {task}")
    '''
)

NET = textwrap.dedent(
    '''
    """A tiny network whose weights start at zero."""

    import torch


    class Net(torch.nn.Module):
        def __init__(self, n_in: int = 2) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(n_in, 1)
            torch.nn.init.zeros_(self.fc.weight)
            torch.nn.init.zeros_(self.fc.bias)
    '''
)


def write_job(
    root: Path,
    server: dict[str, Any],
    client: dict[str, Any],
    *,
    min_clients: int = 2,
    custom: dict[str, str] | None = None,
) -> Path:
    """Write a job folder with one app for every site; ``custom`` adds files to ``custom/`` (name → text)."""
    (root / "app" / "config").mkdir(parents=True)
    (root / "app" / "custom").mkdir(parents=True)
    for name, text in {"wf_parts.py": WF_PARTS, **(custom or {})}.items():
        (root / "app" / "custom" / name).write_text(text)
    meta = {"name": root.name, "min_clients": min_clients, "deploy_map": {"app": ["@ALL"]}}
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "app" / "config" / "config_fed_server.json").write_text(json.dumps({"format_version": 2, **server}))
    (root / "app" / "config" / "config_fed_client.json").write_text(json.dumps({"format_version": 2, **client}))
    return root


def sag_job(
    root: Path,
    *,
    num_rounds: int = 2,
    min_clients: int = 2,
    wait: float = 0,
    workflow_args: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None,
    widgets: list[dict[str, Any]] | None = None,
) -> Path:
    """A FedAvg job over ``w`` (3 zeros) whose clients send their site number as the difference."""
    args = {
        "min_clients": min_clients,
        "num_rounds": num_rounds,
        "persistor_id": "persistor",
        "wait_time_after_min_received": wait,
        **(workflow_args or {}),
    }
    server = {
        "workflows": [{"id": "fedavg", "name": "ScatterAndGather", "args": args}],
        "components": [
            {"id": "persistor", "path": "wf_parts.ZeroPersistor"},
            {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
            {"id": "aggregator", "name": "InTimeAccumulateWeightedAggregator"},
            *(widgets or []),
        ],
    }
    client = {"executors": [{"tasks": ["train"], "executor": {"path": "wf_parts.Trainer", "args": trainer_args or {}}}]}
    return write_job(root, server, client, min_clients=min_clients)


class Engines:
    """A server engine and some client engines on one communicator, like the simulator, but the test decides
    which registered clients actually run (a client that never runs is a client that never connects)."""

    def __init__(self, job: Path, ws: Path, *, running: list[str], registered: list[str]) -> None:
        self.comm = Communicator()
        server_graph = build_job_site(job, "server", workspace=str(ws / "server"))
        (ws / "server").mkdir(parents=True, exist_ok=True)
        self.server_ctx = ServerContext("job", "server", ws / "server", server_graph.app_dir, EventBus("server"))
        self.server = ServerEngine(server_graph, self.server_ctx, self.comm)
        self.clients: list[ClientEngine] = []
        for site in running:
            graph = build_job_site(job, site, workspace=str(ws / site))
            (ws / site).mkdir(parents=True, exist_ok=True)
            ctx = RunContext("job", site, ws / site, graph.app_dir, EventBus(site))
            self.clients.append(ClientEngine(graph, ctx, InProcessConnection(self.comm), poll_timeout=0.05))
        for site in [*running, *registered]:  # every client is known before the server starts, as in the simulator
            self.comm.register(site)
        self.threads = [threading.Thread(target=c.run, name=f"{c.ctx.site}:engine") for c in self.clients]

    def run(self) -> ServerOutcome:
        """Run the server to the end; then stop the clients (aborting them when the server was aborted)."""
        for t in self.threads:
            t.start()
        try:
            return self.server.run()
        finally:
            if self.server_ctx.abort.is_set():
                for c in self.clients:
                    c.ctx.abort.set()
            for t in self.threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in self.threads), "a client engine did not stop"
