"""Benchmark: one HE FedAvg round (CKKS, TenSEAL contexts), flruntime's HE components vs NVFlare 2.9.0's.

Each tool uses its default keys, both 128-bit secure (NVFlare's ``HEBuilder``: degree 8192, primes
60/40/40, scale 2**40; flruntime's ``HEParams()``: degree 8192, primes 60/40, scale 2**36, see
``flruntime.he.keys``), the same model (ResNet-18's 122-tensor state dict at a width giving about
``--sizes`` parameters) and the same updates. ``bench/_he_common.py`` drives a round by hand with each
tool's own components and wire format (flruntime: ``HEModelEncryptor`` / ``HEModelDecryptor`` filters,
``HEInTimeAccumulateWeightedAggregator``, ``HEModelShareableGenerator``, ``HEModelSerializeFilter`` and the
wire codec; NVFlare: the same classes from ``nvflare.app_opt.he`` with FLContext / Shareable / DXO objects
and FOBS, in a subprocess of ``.venv-nvflare``). Round 0 makes the server's global model encrypted;
round 1 is measured:

* ``encrypt_s``: one client weighs and encrypts its update and serialises the result for the wire;
* ``aggregate_s``: the server decodes and accepts ``--clients`` results, aggregates, updates the encrypted
  global model (NVFlare: adds the encrypted mean; flruntime: the sum of the clients' encrypted new models
  becomes it), passes it through the persistor filter and encodes the next task data;
* ``decrypt_s``: one client decodes and decrypts the global model;
* ``round_s``: their sum, the round's critical path (clients encrypt in parallel on their own machines);
  ``round_cpu_s`` the same in CPU time of the process (both tools run these steps in one thread), which a
  busy machine disturbs less than wall time;
* ``up_B/param`` / ``down_B/param``: bytes of one client's result and of the task data per parameter;
* ``peak_MiB``: peak RSS of the worker process (one process per tool, size and client count);
* ``rel_err``: max |decrypted global - plaintext FedAvg| / max |global| after the round.

Messages cross the "wire" as each tool's transports hand them over: FOBS ``bytes`` for NVFlare, the codec's
``bytearray`` for flruntime (what its in-process and streaming transports pass to ``decode``). Each
configuration runs in a fresh process. Without the NVFlare environment only flruntime is measured.
The table ends with one JSON line holding every number.

Usage::

    python bench/he.py [--sizes 1e6,10e6] [--clients 2,8] [--nvflare-python PATH] [--only flruntime|nvflare]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _he_common as common  # noqa: E402

DEFAULT_NVFLARE_PYTHON = Path(__file__).resolve().parents[1] / ".venv-nvflare" / "bin" / "python"
NVFLARE_SETUP = "python3 -m venv .venv-nvflare && .venv-nvflare/bin/pip install nvflare==2.9.0 tenseal"


def flruntime_worker(cfg: dict[str, Any]) -> None:
    """Drive flruntime's HE components for one configuration and print the JSON line."""
    import logging

    from flruntime.components.he.aggregator import HEInTimeAccumulateWeightedAggregator
    from flruntime.components.he.decryptor import HEModelDecryptor
    from flruntime.components.he.encryptor import HEModelEncryptor
    from flruntime.components.he.serialize_filter import HEModelSerializeFilter
    from flruntime.components.he.shareable_generator import HEModelShareableGenerator

    from flruntime.events.bus import EventBus
    from flruntime.he.contexts import install_contexts
    from flruntime.he.keys import HEParams, write_keys
    from flruntime.runtime.context import RunContext, TaskContext
    from flruntime.runtime.messages import ModelMessage, ParamsType
    from flruntime.transport.codec import decode, encode

    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="flruntime-he-bench-"))
    write_keys(root / "keys", HEParams())
    sites = [f"site-{k + 1}" for k in range(common.DISTINCT)]
    install_contexts(root / "keys", root / "ws", sites)
    ctxs = {s: RunContext("bench", s, root / "ws" / s, root, EventBus(s)) for s in ["server", *sites]}
    server = ctxs["server"]
    agg, gen, ser = HEInTimeAccumulateWeightedAggregator(), HEModelShareableGenerator(), HEModelSerializeFilter()
    for component in (agg, gen, ser):
        component.setup(server)
    enc, dec = {}, {}
    for site in sites:
        enc[site], dec[site] = HEModelEncryptor(), HEModelDecryptor()
        enc[site].setup(ctxs[site])
        dec[site].setup(ctxs[site])
    layout = [(n, list(s)) for n, s in cfg["layout"]]
    state: dict[str, Any] = {"model": ModelMessage(common.model(layout, 0, 0.05))}

    def server_task(rnd: int) -> bytearray:
        server.current_round = rnd
        agg.reset(server)
        data = gen.to_task_data(state["model"], server)
        data.current_round = rnd
        return encode(data)

    def client_decrypt(task: bytearray, site: str) -> dict[str, np.ndarray]:
        message = decode(task)
        assert isinstance(message, ModelMessage)
        out = dec[site].process(message, TaskContext(ctxs[site], "train", "t"))
        return dict(out.params or {})

    def client_encrypt(update: dict[str, np.ndarray], steps: int, site: str) -> bytearray:
        result = ModelMessage(dict(update), ParamsType.DIFF, meta={"NUM_STEPS_CURRENT_ROUND": steps})
        return encode(enc[site].process(result, TaskContext(ctxs[site], "train", "t")))

    def server_accept(result: bytearray, site: str, rnd: int) -> None:
        message = decode(result)
        assert isinstance(message, ModelMessage)
        if not agg.accept(site, message, server):
            raise RuntimeError(f"flruntime's aggregator rejected {site}'s result")

    def server_update(rnd: int) -> None:
        model = gen.update(state["model"], agg.aggregate(server), server)
        state["model"] = ser.process_post_load(ser.process_pre_save(model, server), server)

    out = common.run_round_bench(cfg, server_task, client_decrypt, client_encrypt, server_accept, server_update)
    common.emit({"tool": "flruntime", **out})


def run_worker(tool: str, cfg: dict[str, Any], python: Path) -> dict[str, Any]:
    """Run one configuration in a fresh process and return its numbers (or the error)."""
    here = Path(__file__).resolve().parent
    if tool == "flruntime":
        cmd = [sys.executable, str(here / "he.py"), "--worker", json.dumps(cfg)]
    else:
        cmd = [str(python), str(here / "_nvflare_he.py"), json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("HE-BENCH "):
            data: dict[str, Any] = json.loads(line[len("HE-BENCH ") :])
            data["round_s"] = data["encrypt_s"] + data["aggregate_s"] + data["decrypt_s"]
            data["round_cpu_s"] = data["encrypt_cpu_s"] + data["aggregate_cpu_s"] + data["decrypt_cpu_s"]
            return data
    tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-3:]
    return {"tool": tool, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


COLUMNS = [
    ("encrypt_s", "{:.2f}"),
    ("aggregate_s", "{:.2f}"),
    ("decrypt_s", "{:.2f}"),
    ("round_s", "{:.2f}"),
    ("round_cpu_s", "{:.2f}"),
    ("up_bytes_per_param", "{:.1f}"),
    ("down_bytes_per_param", "{:.1f}"),
    ("peak_rss_mib", "{:.0f}"),
    ("max_rel_err", "{:.1e}"),
]


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per tool and configuration, then the round-time ratio NVFlare / flruntime."""
    head = [
        "params",
        "clients",
        "tool",
        "enc s",
        "agg s",
        "dec s",
        "round s",
        "round CPU s",
        "up B/p",
        "down B/p",
        "peak MiB",
        "rel err",
    ]
    print(" | ".join(head))
    for row in rows:
        cells = [f"{row['params'] / 1e6:.2f}M", str(row["clients"]), row["tool"]]
        if "error" in row:
            cells.append(row["error"])
        else:
            cells += [fmt.format(row[key]) for key, fmt in COLUMNS]
        print(" | ".join(cells))
    by_key = {(r["params"], r["clients"], r["tool"]): r for r in rows if "error" not in r}
    for (params, clients, tool), ours in sorted(by_key.items()):
        theirs = by_key.get((params, clients, "nvflare"))
        if tool == "flruntime" and theirs:
            print(
                f"{params / 1e6:.2f}M params, {clients} clients: flruntime {theirs['round_s'] / ours['round_s']:.1f}x "
                f"faster per round ({theirs['round_cpu_s'] / ours['round_cpu_s']:.1f}x less CPU), "
                f"{theirs['up_bytes_per_param'] / ours['up_bytes_per_param']:.1f}x smaller uploads, "
                f"{theirs['peak_rss_mib'] / ours['peak_rss_mib']:.1f}x less peak memory"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e6,10e6", help="parameter counts (comma-separated)")
    parser.add_argument("--clients", default="2,8", help="client counts (comma-separated)")
    parser.add_argument("--nvflare-python", type=Path, default=DEFAULT_NVFLARE_PYTHON)
    parser.add_argument("--only", choices=["flruntime", "nvflare"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        flruntime_worker(json.loads(args.worker))
        return 0
    tools = [args.only] if args.only else ["flruntime", "nvflare"]
    if "nvflare" in tools and not args.nvflare_python.is_file():
        print(f"no NVFlare environment at {args.nvflare_python}; create it with: {NVFLARE_SETUP}", file=sys.stderr)
        tools.remove("nvflare")
    rows = []
    for size in (float(s) for s in args.sizes.split(",")):
        layout = common.layout_for(size)
        for clients in (int(c) for c in args.clients.split(",")):
            for tool in tools:
                row = run_worker(tool, {"layout": layout, "clients": clients}, args.nvflare_python)
                row.update(params=common.size(layout), tensors=len(layout), clients=clients)
                rows.append(row)
                print(f"# {row}", file=sys.stderr, flush=True)
    print_table(rows)
    print(json.dumps({"benchmark": "he", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
