"""Helpers for runtime tests: tiny numpy jobs whose components live in the job's own custom/ folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

SIM_PARTS = textwrap.dedent(
    '''
    """Numpy components for simulator tests."""

    import threading

    import numpy as np

    from flruntime.roles import Executor, ModelPersistor
    from flruntime.runtime.messages import ModelMessage, ParamsType


    class ZeroPersistor(ModelPersistor):
        def __init__(self, size: int = 3) -> None:
            self.size = size

        def load(self, ctx):
            saved = ctx.workspace / "global.npy"
            if ctx.resume and saved.exists():
                return ModelMessage({"w": np.load(saved)})
            return ModelMessage({"w": np.zeros(self.size, dtype=np.float32)})

        def save(self, model, ctx):
            np.save(ctx.workspace / "global.npy", model.params["w"])


    class AddSiteNumber(Executor):
        """Sends site-k's number k as the weight difference, weighted by k local steps."""

        def __init__(self, fail_in_round: int = -1) -> None:
            self.fail_in_round = fail_in_round

        def execute(self, task, data, ctx):
            k = int(ctx.site.rsplit("-", 1)[1])
            if ctx.current_round == self.fail_in_round and k == 1:
                raise RuntimeError("site-1 fails on purpose")
            diff = np.full_like(data.params["w"], float(k))
            return ModelMessage({"w": diff}, ParamsType.DIFF, meta={"NUM_STEPS_CURRENT_ROUND": k})
    '''
)


def sim_job(
    root: Path, *, num_rounds: int = 3, min_clients: int = 2, client_args: dict[str, Any] | None = None, wait: float = 5
) -> Path:
    """Write a FedAvg job whose clients send their site number as the weight difference."""
    (root / "app" / "config").mkdir(parents=True)
    (root / "app" / "custom").mkdir(parents=True)
    (root / "app" / "custom" / "sim_parts.py").write_text(SIM_PARTS)
    meta = {"name": root.name, "min_clients": min_clients, "deploy_map": {"app": ["@ALL"]}}
    server = {
        "format_version": 2,
        "num_rounds": num_rounds,
        "workflows": [
            {
                "id": "fedavg",
                "name": "ScatterAndGather",
                "args": {
                    "min_clients": min_clients,
                    "num_rounds": "{num_rounds}",
                    "persistor_id": "persistor",
                    "wait_time_after_min_received": wait,
                },
            }
        ],
        "components": [
            {"id": "persistor", "path": "sim_parts.ZeroPersistor"},
            {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
            {"id": "aggregator", "name": "InTimeAccumulateWeightedAggregator"},
        ],
    }
    client = {
        "format_version": 2,
        "executors": [{"tasks": ["train"], "executor": {"path": "sim_parts.AddSiteNumber", "args": client_args or {}}}],
    }
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "app" / "config" / "config_fed_server.json").write_text(json.dumps(server))
    (root / "app" / "config" / "config_fed_client.json").write_text(json.dumps(client))
    return root
