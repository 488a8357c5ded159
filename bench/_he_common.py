"""What both HE benchmark drivers share (numpy only: it runs in flruntime's and in NVFlare's environment).

The model is ResNet-18's state dict (conv weights, BatchNorm weight/bias/running stats/counter, a 10-class
head: 122 tensors, most of them small) at a channel width that gives the wanted parameter count. One
FedAvg round is driven by hand: the server's task data goes to a client, which decrypts it, "trains"
(a random difference of the model's shapes) and encrypts its weighted result; the server decodes and
accepts every result, aggregates, updates the global model, passes it through its persistor filter and
encodes the next task data. Round 0 makes the global model encrypted; round 1 is measured.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

#: NVFlare's CKKS parameters: its HEBuilder defaults (flruntime uses its own defaults, ``HEParams()``).
N, COEFF_BITS, SCALE_BITS = 8192, [60, 40, 40], 40
#: A message as it crosses the wire (NVFlare: FOBS bytes; flruntime: the codec's bytearray, which its transports
#: hand to the decoder as they received it).
Wire = TypeVar("Wire", bytes, bytearray)
#: Distinct client updates (the other clients resend one of them: the server's work is the same).
DISTINCT = 2


def resnet18_layout(width: int, classes: int = 10) -> list[tuple[str, list[int]]]:
    """ResNet-18's state-dict names and shapes with ``width`` channels in the first stage."""
    out: list[tuple[str, list[int]]] = []

    def bn(name: str, c: int) -> None:
        out.extend((f"{name}.{s}", [c]) for s in ("weight", "bias", "running_mean", "running_var"))
        out.append((f"{name}.num_batches_tracked", []))

    out.append(("conv1.weight", [width, 3, 7, 7]))
    bn("bn1", width)
    c_in = width
    for stage, mult in enumerate((1, 2, 4, 8), 1):
        c = width * mult
        for block in range(2):
            out.append((f"layer{stage}.{block}.conv1.weight", [c, c_in, 3, 3]))
            bn(f"layer{stage}.{block}.bn1", c)
            out.append((f"layer{stage}.{block}.conv2.weight", [c, c, 3, 3]))
            bn(f"layer{stage}.{block}.bn2", c)
            if block == 0 and stage > 1:
                out.append((f"layer{stage}.{block}.downsample.0.weight", [c, c_in, 1, 1]))
                bn(f"layer{stage}.{block}.downsample.1", c)
            c_in = c
    out += [("fc.weight", [classes, c_in]), ("fc.bias", [classes])]
    return out


def layout_for(params: float) -> list[tuple[str, list[int]]]:
    """The ResNet-18 layout whose size is closest to ``params``."""
    return min((resnet18_layout(w) for w in range(4, 200)), key=lambda lay: abs(size(lay) - params))


def size(layout: list[tuple[str, list[int]]]) -> int:
    """Number of parameters."""
    return sum(math.prod(s) for _, s in layout)


def model(layout: list[tuple[str, list[int]]], seed: int, scale: float) -> dict[str, np.ndarray]:
    """float32 arrays of the layout's shapes, normal(0, scale)."""
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, scale, s).astype(np.float32) for n, s in layout}


def run_round_bench(
    cfg: dict[str, Any],
    server_task: Callable[[Any], Wire],
    client_decrypt: Callable[[Wire, str], dict[str, np.ndarray]],
    client_encrypt: Callable[[dict[str, np.ndarray], int, str], Wire],
    server_accept: Callable[[Wire, str, int], None],
    server_update: Callable[[int], None],
) -> dict[str, Any]:
    """Run rounds 0 and 1 with the given hooks and return round 1's numbers (and the check of round 2's model).

    Hooks: ``server_task(round) -> task bytes``; ``client_decrypt(task bytes, site) -> global model``;
    ``client_encrypt(update, steps, site) -> result bytes``; ``server_accept(result bytes, site, round)``;
    ``server_update(round)``. Each side's wire (de)serialisation is part of its hook.
    """
    layout = [(n, list(s)) for n, s in cfg["layout"]]
    clients = int(cfg["clients"])
    plain = {n: v.astype(np.float64) for n, v in model(layout, 0, 0.05).items()}
    updates = [model(layout, 1 + k, 0.01) for k in range(DISTINCT)]
    steps = [10 + k for k in range(DISTINCT)]
    out: dict[str, Any] = {}
    for rnd in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        task = server_task(rnd)
        t_task, c_task = time.perf_counter() - t0, time.process_time() - c0
        if rnd == 2:  # only check what round 1 produced
            got = client_decrypt(task, "site-1")
            err = max(float(np.max(np.abs(np.asarray(got[n], np.float64).ravel() - plain[n].ravel()))) for n in plain)
            out["max_rel_err"] = err / max(float(np.max(np.abs(v))) for v in plain.values())
            break
        results: list[Wire] = []
        for k in range(DISTINCT):
            t0, c0 = time.perf_counter(), time.process_time()
            client_decrypt(task, f"site-{k + 1}")
            t1, c1 = time.perf_counter(), time.process_time()
            res = client_encrypt(updates[k], steps[k], f"site-{k + 1}")
            t2, c2 = time.perf_counter(), time.process_time()
            results.append(res)
            if rnd == 1 and k == 0:
                out["decrypt_s"], out["encrypt_s"] = t1 - t0, t2 - t1
                out["decrypt_cpu_s"], out["encrypt_cpu_s"] = c1 - c0, c2 - c1
                out["up_bytes_per_param"] = len(res) / size(layout)
                out["down_bytes_per_param"] = len(task) / size(layout)
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(clients):
            server_accept(results[k % DISTINCT], f"site-{k + 1}", rnd)
        server_update(rnd)
        if rnd == 1:
            out["aggregate_s"] = time.perf_counter() - t0 + t_task
            out["aggregate_cpu_s"] = time.process_time() - c0 + c_task
        weight = sum(steps[k % DISTINCT] for k in range(clients))
        for n in plain:
            total = sum(updates[k % DISTINCT][n].astype(np.float64) * steps[k % DISTINCT] for k in range(clients))
            plain[n] = plain[n] + total / weight
        del results
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def emit(result: dict[str, Any]) -> None:
    """Print the worker's one JSON line."""
    print("HE-BENCH " + json.dumps(result), flush=True)
