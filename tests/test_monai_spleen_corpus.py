"""NVFlare's MONAI spleen jobs, unchanged, with the template's small bundle standing in for the spleen bundle.

As in NVFlare's example, the bundle is put at ``app/config/spleen_ct_segmentation`` and its ``dataset_dir`` is
pointed at the data (here: generated volumes); the job configs are the corpus copies, class paths and all.
"""

import json

import pytest
from monaikit import copy_bundle, synthetic_data
from test_conformance import CORPUS, _writable_copy

from flruntime import validate_job
from flruntime.errors import UsageError
from flruntime.runtime.simulator import simulate

SPLEEN = "spleen_ct_segmentation"


def spleen_job(tmp_path, name, data=None, with_bundle=True):
    job = tmp_path / name
    _writable_copy(CORPUS / name, job)
    if not with_bundle:
        return job
    bundle = copy_bundle(job / "app", SPLEEN)
    if data is not None:  # NVFlare's README: sed the bundle's dataset_dir to where the data is
        train = bundle / "configs" / "train.json"
        config = json.loads(train.read_text())
        config["dataset_dir"] = str(data)
        train.write_text(json.dumps(config, indent=4))
    return job


@pytest.mark.parametrize("name", ["spleen_ct_segmentation_local", "spleen_ct_segmentation_sim"])
def test_spleen_jobs_validate(tmp_path, name):
    report = validate_job(spleen_job(tmp_path, name))
    assert [p.format() for p in report.problems] == []
    classes = {found.target.rsplit(".", 1)[1]: found.via for app in report.apps for found in app.classes.values()}
    assert classes["ClientAlgoExecutor"] == classes["MonaiBundlePersistor"] == "alias"
    assert classes["MonaiAlgo"] == "import"


@pytest.mark.slow
def test_spleen_sim_job_runs_two_rounds(tmp_path):
    data = tmp_path / "data"
    synthetic_data().write_dataset(data, num_train=4, num_val=2, size=32, seed=1)
    job = spleen_job(tmp_path, "spleen_ct_segmentation_sim", data)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", overrides={"num_rounds": 2}, progress=None)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    server = tmp_path / "ws" / "server"
    cse = json.loads((server / "cross_site_val" / "cross_val_results.json").read_text())
    models = ["SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt", "site-1", "site-2"]
    assert {site: sorted(scores) for site, scores in cse.items()} == {"site-1": models, "site-2": models}
    assert all(0.0 <= s["val_mean_dice"] <= 1.0 for scores in cse.values() for s in scores.values())
    assert not (server / "cross_site_val" / "model_shareables").exists()  # cleanup_models: true


def test_a_missing_bundle_stops_the_run_before_it_starts(tmp_path):
    job = spleen_job(tmp_path, "spleen_ct_segmentation_sim", with_bundle=False)
    expected = f"server: bundle config not found: {job}/app/config/{SPLEEN}/configs/train.json (check bundle_root)"
    with pytest.raises(UsageError) as caught:
        simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert str(caught.value) == expected


@pytest.mark.slow
def test_spleen_local_job_runs_into_a_real_mlflow_server(tmp_path, mlflow_server):
    """spleen_ct_segmentation_local unchanged but for its hard-coded tracking URI (pointed at a real server)."""
    from mlflow.tracking import MlflowClient
    from test_conformance_run import _point_mlflow_at

    data = tmp_path / "data"
    synthetic_data().write_dataset(data, num_train=4, num_val=2, size=32, seed=1)
    job = spleen_job(tmp_path, "spleen_ct_segmentation_local", data)
    _point_mlflow_at(job, mlflow_server)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", overrides={"num_rounds": 2}, progress=None)
    assert result.ok, result.error
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("monai-spleen-experiment").experiment_id])
    metrics = {r.data.tags["site"]: set(r.data.metrics) for r in runs if r.data.tags["site"] != "server"}
    assert set(metrics) == {"site-1", "site-2"}
    for names in metrics.values():  # iteration loss and epoch metrics streamed by the Ignite stats handler
        assert {"loss", "val_mean_dice"} <= names, names  # the bundle output dict holds "loss"


@pytest.mark.slow
def test_spleen_he_job_runs_two_rounds(tmp_path):
    """spleen_ct_segmentation_he unchanged (with its two wrong NVFlare class paths), keys from `he keys`."""
    from flruntime.he.keys import write_keys

    data = tmp_path / "data"
    synthetic_data().write_dataset(data, num_train=4, num_val=2, size=32, seed=1)
    job = spleen_job(tmp_path, "spleen_ct_segmentation_he", data)
    write_keys(tmp_path / "keys")
    result = simulate(
        job,
        n_clients=2,
        workspace=tmp_path / "ws",
        overrides={"num_rounds": 2},
        he_context_dir=tmp_path / "keys",
        progress=None,
    )
    assert result.ok, result.error
    cse = json.loads((tmp_path / "ws/server/cross_site_val/cross_val_results.json").read_text())
    assert sorted(cse) == ["site-1", "site-2"]
    assert all(0.0 <= s["val_mean_dice"] <= 1.0 for scores in cse.values() for s in scores.values())
