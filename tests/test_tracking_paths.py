"""Metrics from training scripts reach the server's MLflow store: in process, and from a launched script."""

import textwrap

import pytest
from clientkit import NVF_CELL_PIPE, NVF_FILE_PIPE, NVF_INPROC, NVF_LAUNCHER_EXEC, NVF_SUBPROCESS, client_job

from flruntime.runtime.simulator import simulate

STEPS = 4
WRITER_SCRIPT = textwrap.dedent(
    f"""
    import numpy as np

    import flruntime.client as flare
    from flruntime.client.tracking import MLflowWriter, SummaryWriter, WandBWriter

    flare.init()
    k = int(flare.get_site_name().rsplit("-", 1)[1])
    tb, ml, wb = SummaryWriter(), MLflowWriter(), WandBWriter()
    ml.log_params({{"site_number": k}})
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        rnd = model.current_round
        for i in range({STEPS}):
            step = rnd * {STEPS} + i
            tb.add_scalar("train_loss", k + step / 100, step)
            ml.log_metric("lr", 0.01, step)
            wb.log({{"acc": step / 10}}, step)
        ml.set_tag("last_round", str(rnd))
        flare.send(flare.FLModel(params={{n: np.asarray(v) + k for n, v in model.params.items()}},
                                 meta={{"NUM_STEPS_CURRENT_ROUND": k}}))
    """
)
MLFLOW = {"id": "mlflow", "name": "MLflowReceiver", "args": {"kw_args": {"experiment_name": "paths"}}}
FORWARD = {"id": "event_to_fed", "name": "ConvertToFedEvent", "args": {"events_to_convert": ["analytix_log_stats"]}}


def read_back(ws):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'server' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("paths").experiment_id])
    out = {}
    for run in runs:
        site = run.data.tags["site"]
        if site == "server":
            continue
        out[site] = {
            name: sorted((m.step, round(m.value, 6)) for m in client.get_metric_history(run.info.run_id, name))
            for name in ("train_loss", "lr", "acc")
        }
        out[site]["params"] = run.data.params
        out[site]["last_round"] = run.data.tags.get("last_round")
    return out


def expected(k, rounds=2):
    steps = range(rounds * STEPS)
    return {
        "train_loss": [(s, round(k + s / 100, 6)) for s in steps],
        "lr": [(s, 0.01) for s in steps],
        "acc": [(s, round(s / 10, 6)) for s in steps],
        "params": {"site_number": str(k)},
        "last_round": str(rounds - 1),
    }


def add_server_receiver(job):
    import json

    path = job / "app/config/config_fed_server.json"
    server = json.loads(path.read_text())
    server["components"].append(MLFLOW)
    path.write_text(json.dumps(server))


def test_writers_in_process(tmp_path):
    executor = {"path": NVF_INPROC, "args": {"task_script_path": "train.py", "params_transfer_type": "DIFF"}}
    job = client_job(tmp_path / "job", executor, components=[FORWARD], scripts={"train.py": WRITER_SCRIPT})
    add_server_receiver(job)
    assert simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None).ok
    assert read_back(tmp_path / "ws") == {"site-1": expected(1), "site-2": expected(2)}


@pytest.mark.slow
@pytest.mark.parametrize("metrics_pipe", [None, NVF_CELL_PIPE], ids=["over-task-pipe", "metric-relay"])
def test_writers_in_a_launched_script(tmp_path, metrics_pipe):
    components = [
        {"id": "launcher", "path": NVF_SUBPROCESS, "args": {"script": "python3 -u custom/train.py"}},
        {"id": "pipe", "path": NVF_FILE_PIPE, "args": {"mode": "PASSIVE", "root_path": "{WORKSPACE}/pipe"}},
    ]
    if metrics_pipe:
        # sag_pt's layout: a second pipe for metrics, a relay that sends them to the server, a configurator
        components += [
            {
                "id": "metrics_pipe",
                "path": metrics_pipe,
                "args": {"mode": "PASSIVE", "site_name": "{SITE_NAME}", "token": "{JOB_ID}"},
            },
            {
                "id": "metric_relay",
                "path": "nvflare.app_common.widgets.metric_relay.MetricRelay",
                "args": {"pipe_id": "metrics_pipe", "event_type": "fed.analytix_log_stats"},
            },
            {
                "id": "config_preparer",
                "path": "nvflare.app_common.widgets.external_configurator.ExternalConfigurator",
                "args": {"component_ids": ["metric_relay"]},
            },
        ]
    else:
        components.append(FORWARD)
    executor = {
        "path": NVF_LAUNCHER_EXEC,
        "args": {"pipe_id": "pipe", "launcher_id": "launcher", "params_transfer_type": "DIFF", "heartbeat_timeout": 30},
    }
    job = client_job(tmp_path / "job", executor, components=components, scripts={"train.py": WRITER_SCRIPT})
    add_server_receiver(job)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    assert read_back(tmp_path / "ws") == {"site-1": expected(1), "site-2": expected(2)}
