import json
import textwrap

import pytest
from simkit import sim_job

from flruntime.runtime.simulator import simulate

TRACKING_PARTS = textwrap.dedent(
    '''
    import numpy as np

    from flruntime.roles import Executor
    from flruntime.runtime.messages import ModelMessage, ParamsType
    from flruntime.tracking.emit import emit
    from flruntime.tracking.record import AnalyticsDataType as T, AnalyticsRecord, LogWriterName as W


    class LoggingTrainer(Executor):
        """Logs `steps` metrics per round (value = site number + step / 1000) and a parameter."""

        def __init__(self, steps: int = 5) -> None:
            self.steps = steps

        def execute(self, task, data, ctx):
            k = int(ctx.site.rsplit("-", 1)[1])
            rnd = ctx.current_round
            for i in range(self.steps):
                step = rnd * self.steps + i
                emit(ctx.run, AnalyticsRecord.make("train_loss", k + step / 1000, T.METRIC, W.MLFLOW, step))
                emit(ctx.run, AnalyticsRecord.make("acc", {"a": step}, T.SCALARS, W.TORCH_TB, step))
            emit(ctx.run, AnalyticsRecord.make("lr", 0.1, T.PARAMETER, W.MLFLOW))
            return ModelMessage({"w": np.ones_like(data.params["w"])}, ParamsType.DIFF)
    '''
)


def tracking_job(root, server_components, client_components, steps=5, rounds=2):
    job = sim_job(root, num_rounds=rounds, min_clients=2)
    (job / "app/custom/tracking_parts.py").write_text(TRACKING_PARTS)
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    server["components"] += server_components
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    client["executors"][0]["executor"] = {"path": "tracking_parts.LoggingTrainer", "args": {"steps": steps}}
    client["components"] = client_components
    (job / "app/config/config_fed_server.json").write_text(json.dumps(server))
    (job / "app/config/config_fed_client.json").write_text(json.dumps(client))
    return job


FORWARD = [
    {
        "id": "event_to_fed",
        "path": "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent",
        "args": {"events_to_convert": ["analytix_log_stats"]},
    }
]


def test_server_side_mlflow_in_embedded_sqlite(tmp_path):
    from mlflow.tracking import MlflowClient

    job = tracking_job(
        tmp_path / "job",
        [
            {
                "id": "mlflow",
                "path": "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver",
                "args": {"kw_args": {"experiment_name": "exp", "run_name": "run"}},
            }
        ],
        FORWARD,
    )
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ws' / 'server' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("exp")
    runs = {r.data.tags["site"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"site-1", "site-2", "server"}
    for k in (1, 2):
        run = runs[f"site-{k}"]
        assert run.info.run_name == f"site-{k}-simula-run"
        assert run.data.tags["job_id"] == "simulate_job"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(10))
        assert {m.step: m.value for m in history} == pytest.approx({s: k + s / 1000 for s in range(10)})
        assert len(client.get_metric_history(run.info.run_id, "a")) == 10  # TB SCALARS became MLflow metrics
        assert run.data.params == {"lr": "0.1"}
        assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs["server"].info.run_id, "config")}
    assert artifacts == {"config/config_fed_client.json", "config/config_fed_server.json"}


def test_site_side_mlflow_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    site_mlflow = {
        "id": "site_mlflow",
        "path": "flruntime.components.tracking.mlflow_receiver.MLflowReceiver",
        "args": {"events": ["analytix_log_stats"], "kw_args": {"experiment_name": "local"}},
    }
    job = tracking_job(
        tmp_path / "job",
        [{"id": "tb", "name": "TBAnalyticsReceiver", "args": {"events": ["fed.analytix_log_stats"]}}],
        [site_mlflow, *FORWARD],
        steps=3,
        rounds=1,
    )
    assert simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None).ok
    from mlflow.tracking import MlflowClient

    for k in (1, 2):
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ws' / f'site-{k}' / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("local").experiment_id])
        assert {r.data.tags["site"] for r in runs} == {f"site-{k}"}
        acc = EventAccumulator(str(tmp_path / "ws" / "server" / "tb_events" / f"site-{k}"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train_loss")] == [0, 1, 2]
    assert not (tmp_path / "ws" / "server" / "mlflow.db").exists()


def test_wandb_offline_run_per_site(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb = {
        "id": "wandb",
        "path": "nvflare.app_opt.tracking.wandb.wandb_receiver.WandBReceiver",
        "args": {
            "wandb_args": {"name": "demo", "project": "fl", "job_type": "train"},
            "events": ["fed.analytix_log_stats"],
        },
    }
    job = tracking_job(tmp_path / "job", [wandb], FORWARD, steps=3, rounds=1)
    assert simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None).ok
    runs = sorted((tmp_path / "ws" / "server" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    names = set()
    for run in runs:
        files = list(run.glob("run-*.wandb"))
        assert len(files) == 1 and files[0].stat().st_size > 0
        names |= {
            n for n in ("site-1-simulate_job-demo", "site-2-simulate_job-demo") if n.encode() in files[0].read_bytes()
        }
    assert names == {"site-1-simulate_job-demo", "site-2-simulate_job-demo"}


def test_the_tensorboard_receiver_does_not_load_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from flruntime.components.tracking.tb_receiver import summary_writer; "
        "import tempfile; w = summary_writer()(tempfile.mkdtemp()); w.add_scalar('a', 1.0, 0); w.close(); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout) == (0, "False\n"), out.stderr
