"""Helpers for HE tests: key folders, site contexts with their startup/ folders, and one FedAvg step by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flruntime.events.bus import EventBus
from flruntime.he.contexts import install_contexts
from flruntime.he.keys import HEParams, write_keys
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import ModelMessage, ParamsType

#: Small keys keep the tests fast: 4096 values per ciphertext, 80-bit modulus (128-bit secure), scale 2**30.
SMALL = HEParams(4096, (50, 30), 30)


def make_keys(folder: Path, params: HEParams | None = SMALL) -> Path:
    """Write a key folder (``server_context.tenseal``, ``client_context.tenseal``) and return it."""
    write_keys(folder, params)
    return folder


def site_ctx(ws: Path, site: str) -> RunContext:
    """A run context whose workspace is ``ws/site`` (contexts are looked up in its ``startup/``)."""
    (ws / site).mkdir(parents=True, exist_ok=True)
    return RunContext("job", site, ws / site, ws / "app", EventBus(site))


def workspace(keys: Path, ws: Path, clients: list[str]) -> dict[str, RunContext]:
    """A simulator-like workspace with the key folder installed; the run contexts by site."""
    install_contexts(keys, ws, clients)
    return {site: site_ctx(ws, site) for site in ["server", *clients]}


def task(ctx: RunContext, name: str = "train", rnd: int = 0) -> TaskContext:
    """A task context of ``ctx``'s site."""
    return TaskContext(ctx, name, f"{name}-{rnd}", {"current_round": rnd})


def diff(params: dict[str, np.ndarray], steps: int) -> ModelMessage:
    """A training result: the difference ``params`` after ``steps`` local steps."""
    return ModelMessage(dict(params), ParamsType.DIFF, meta={"NUM_STEPS_CURRENT_ROUND": steps})


def receive(ctx: RunContext, model: ModelMessage, rnd: int = 0) -> dict[str, np.ndarray]:
    """What a client's HEModelDecryptor does with task ``train`` of round ``rnd``: decrypt ``model`` (as it
    crosses the wire) and keep it for the task's encryptor, which adds a difference to it; the params it hands on."""
    from flruntime.components.he.decryptor import HEModelDecryptor

    from flruntime.transport.codec import decode, encode

    dec = HEModelDecryptor()
    dec.setup(ctx)
    data = decode(encode(model))
    assert isinstance(data, ModelMessage)
    return dict(dec.process(data, task(ctx, "train", rnd)).params or {})


def relative_error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """max |got - want| / max |want| over every variable."""
    err = max(float(np.max(np.abs(np.asarray(got[k], np.float64) - want[k]), initial=0.0)) for k in want)
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in want.values())
    return err / scale
