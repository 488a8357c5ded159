"""End to end: fedavg_he_pt against fedavg_pt (same seed, same rounds) in the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flruntime.components.he.decryptor import HEModelDecryptor
from flruntime.components.persistors.pt_file import split_checkpoint
from hekit import make_keys

from flruntime.events.bus import EventBus
from flruntime.graph.locate import job_imports
from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT, HEParams
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import ModelMessage
from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

pytest.importorskip("tenseal")
pytestmark = pytest.mark.slow

ROUNDS, SITES = 4, 2
VARS = {"num_rounds": ROUNDS, "num_sites": SITES, "alpha": 100.0, "seed": 3}


def run(template, tmp_path, **kwargs):
    job = create_job(template, tmp_path / template, overrides=VARS)
    torch.manual_seed(0)  # the server builds the initial model: the same weights in both runs
    result = simulate(job, n_clients=SITES, workspace=tmp_path / f"ws_{template}", progress=None, **kwargs)
    assert result.ok, result.error
    return job, result


def decrypted_global(ws, keys):
    """The server's saved (encrypted) global model, decrypted with a client's key."""
    state, meta, _ = split_checkpoint(torch.load(ws / "server/FL_global_model.pt", weights_only=True), "global")
    assert meta["PROCESSED_ALGORITHM"] == "CKKS"
    assert all(t.dtype == torch.uint8 for t in state.values()), "the server saved plaintext weights"
    params = {k: v.numpy().tobytes() for k, v in state.items()}
    ctx = RunContext("job", "site-1", ws / "site-1", ws, EventBus("site-1"))
    decryptor = HEModelDecryptor(str(keys / CLIENT_CONTEXT))
    return decryptor.process(ModelMessage(params, meta=meta), TaskContext(ctx, "validate", "t")).params


def test_he_fedavg_reaches_the_accuracy_of_plain_fedavg(tmp_path):
    keys = make_keys(tmp_path / "keys", HEParams())
    job, plain = run("fedavg_pt", tmp_path)
    he_job, he = run("fedavg_he_pt", tmp_path, he_context_dir=keys)
    assert he.rounds_completed == plain.rounds_completed == ROUNDS
    # the clients' validation of each round's global model, mean over the sites
    plain_acc = [m["val_acc"] for m in plain.round_metrics]
    he_acc = [m["val_acc"] for m in he.round_metrics]
    print("per-round val_acc", plain_acc, he_acc)
    assert np.max(np.abs(np.subtract(plain_acc, he_acc))) <= 0.005, (plain_acc, he_acc)

    ws = tmp_path / "ws_fedavg_he_pt"
    assert sorted(p.name for p in (ws / "server" / "startup").iterdir()) == [SERVER_CONTEXT]
    he_weights = decrypted_global(ws, keys)
    plain_state = torch.load(tmp_path / "ws_fedavg_pt/server/FL_global_model.pt", weights_only=True)["model"]
    with job_imports(job / "app" / "custom"):
        from digits_data import central_datasets
        from fedavg_net import DigitsCNN
        from training import accuracy

        test_set = central_datasets(VARS["seed"])[1]
        accuracies = []
        for state in (plain_state, {k: torch.from_numpy(np.asarray(v)) for k, v in he_weights.items()}):
            net = DigitsCNN()
            net.load_state_dict(state)
            accuracies.append(accuracy(net, test_set))
    print("final accuracy", accuracies)
    assert accuracies[0] >= 0.8, accuracies
    assert abs(accuracies[0] - accuracies[1]) <= 0.005, accuracies
    # (the weights themselves drift apart by ~1e-2 over the rounds: SGD amplifies differences of 1e-7; the
    # aggregate of one round matches the plaintext one to 1e-6, see test_he_components.py)
    # cross-site evaluation ran on the decrypted models
    assert he.files.get("cross_site_val/cross_val_results.json")
