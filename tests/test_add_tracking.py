import json

import pytest
from simkit import sim_job

from flruntime.cli.main import main
from flruntime.errors import UsageError
from flruntime.tracking.add import add_experiment_tracking


def _components(job, side):
    return json.loads((job / "app/config" / f"config_fed_{side}.json").read_text())["components"]


def test_adds_server_receiver_and_forwarder(tmp_path):
    job = sim_job(tmp_path / "job")
    add_experiment_tracking(job, "mlflow", {"tracking_uri": "http://127.0.0.1:5000"})
    server = _components(job, "server")[-1]
    assert server["id"] == "receiver" and server["path"].endswith("MLflowReceiver")
    assert server["args"] == {
        "tracking_uri": "http://127.0.0.1:5000",
        "kw_args": {"experiment_name": "job-experiment", "run_name": "job"},
    }
    assert [c["id"] for c in _components(job, "client")] == ["event_to_fed"]


def test_client_side_only(tmp_path):
    job = sim_job(tmp_path / "job")
    add_experiment_tracking(job, "tensorboard", client_side=True, server_side=False)
    assert _components(job, "server")[-1]["id"] == "aggregator"
    client = _components(job, "client")
    assert client == [
        {
            "id": "client_receiver",
            "path": "flruntime.components.tracking.tb_receiver.TBAnalyticsReceiver",
            "args": {"events": ["analytix_log_stats"]},
        }
    ]


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("mlfow", {}, "invalid tracking type 'mlfow' (choose mlflow, tensorboard, wandb)"),
        (
            "mlflow",
            {"tracking_url": "x"},
            "tracking_config key 'tracking_url' is not an argument of MLflowReceiver (did you mean 'tracking_uri'?)",
        ),
    ],
    ids=["bad-type", "bad-key"],
)
def test_clear_errors(tmp_path, kind, config, message):
    job = sim_job(tmp_path / "job")
    before = (job / "app/config/config_fed_server.json").read_text()
    with pytest.raises(UsageError) as err:
        add_experiment_tracking(job, kind, config)
    assert str(err.value) == message
    assert (job / "app/config/config_fed_server.json").read_text() == before


def test_cli_add_tracking_validates(tmp_path, capsys):
    job = sim_job(tmp_path / "job")
    assert main(["job", "add-tracking", str(job), "--type", "mlflow", "-o", "buffer_flush_time=0.5"]) == 0
    assert "added mlflow tracking" in capsys.readouterr().out
    assert _components(job, "server")[-1]["args"]["buffer_flush_time"] == 0.5
    assert main(["job", "add-tracking", str(job), "--type", "mlflow"]) == 2
    assert "already has a component with id 'receiver'" in capsys.readouterr().err
