"""The HE variant of the MONAI bundle template: the spleen _he layout on the small bundle, in the simulator."""

import json

import pytest
import torch

from flruntime.he.keys import write_keys
from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

pytestmark = pytest.mark.slow


def test_monai_bundle_he_runs_with_an_encrypted_global_model(tmp_path):
    job = create_job("monai_bundle_he", tmp_path / "job", overrides={"num_rounds": 2})
    write_keys(tmp_path / "keys")
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", he_context_dir=tmp_path / "keys", progress=None)
    assert result.ok, result.error
    saved = torch.load(tmp_path / "ws/server/FL_global_model.pt", weights_only=True)["model"]
    assert saved and all(t.dtype == torch.uint8 for t in saved.values())  # ciphertext bytes only
    assert not list((tmp_path / "ws/server").rglob("client_context.tenseal"))  # the server never got the secret key
    cse = json.loads((tmp_path / "ws/server/cross_site_val/cross_val_results.json").read_text())
    assert sorted(cse) == ["site-1", "site-2"]
    for scores in cse.values():
        assert {"site-1", "site-2"} <= set(scores)
        assert all(0.0 <= s["val_mean_dice"] <= 1.0 for s in scores.values())
