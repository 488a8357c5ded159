"""The MLflow receiver against a real ``mlflow server`` process that goes away mid-run and comes back."""

import time

import pytest
from flruntime.components.tracking.mlflow_receiver import MLflowReceiver
from mlflowkit import free_port, start_server, stop_server

from flruntime.events.bus import EventBus
from flruntime.runtime.context import RunContext
from flruntime.tracking.emit import emit
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

pytestmark = pytest.mark.slow


def test_no_metric_lost_across_a_tracking_server_outage(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port, store = free_port(), tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    server = start_server(port, store, tmp_path / "server.log")
    uri = f"http://127.0.0.1:{port}"
    ctx = RunContext("job123", "server", tmp_path / "ws", tmp_path, EventBus("server"))
    receiver = MLflowReceiver(tracking_uri=uri, kw_args={"experiment_name": "outage"}, buffer_flush_time=0.2)
    receiver.setup(ctx)

    def log_steps(start: int, stop: int) -> None:
        for step in range(start, stop):
            record = AnalyticsRecord.make("loss", step / 10, AnalyticsDataType.METRIC, LogWriterName.MLFLOW, step)
            ctx.bus.fire("fed.analytix_log_stats", origin="site-1", record=record.to_dict())
            emit(ctx, record)  # the local event is not subscribed by default: must not double count

    try:
        log_steps(0, 100)
        deadline = time.monotonic() + 60
        while receiver.written < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.written == 100
        stop_server(server)
        log_steps(100, 200)  # during the outage: buffered, never raises
        time.sleep(1.5)  # let the flusher hit the outage
        server = start_server(port, store, tmp_path / "server.log")
        log_steps(200, 300)
        receiver.teardown(ctx)
        client = MlflowClient(tracking_uri=uri)
        run = client.search_runs([client.get_experiment_by_name("outage").experiment_id])[0]
        history = client.get_metric_history(run.info.run_id, "loss")
    finally:
        stop_server(server)
    assert sorted(m.step for m in history) == list(range(300))
    assert receiver.dropped == 0
    log_text = (tmp_path / "server.log").read_text()
    assert log_text  # the real server wrote its own log


def test_fedavg_pt_into_a_real_mlflow_server(tmp_path, monkeypatch):
    """fedavg_pt with 3 sites logging into an `mlflow server`: MLflow holds exactly what each script logged."""
    import json
    import re

    from mlflow.tracking import MlflowClient

    from flruntime.runtime.simulator import simulate
    from flruntime.templates import create_job

    port, store = free_port(), tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    server = start_server(port, store, tmp_path / "server.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        job = create_job("fedavg_pt", tmp_path / "job", overrides={"num_rounds": 3, "num_sites": 3})
        path = job / "app/config/config_fed_server.json"
        config = json.loads(path.read_text())
        receiver = next(c for c in config["components"] if c["id"] == "mlflow_receiver")
        receiver["args"]["tracking_uri"] = uri
        path.write_text(json.dumps(config))
        result = simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
        assert result.ok, result.error
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("fedavg_pt").experiment_id])
        by_site = {r.data.tags["site"]: r for r in runs}
        assert set(by_site) == {"site-1", "site-2", "site-3", "server"}
        line = re.compile(r"round (\d+): val_acc_global_model=([\d.]+) train_loss=([\d.]+) lr=\S+ diff_norm=([\d.]+)")
        for site in ("site-1", "site-2", "site-3"):
            logged = {
                int(m[1]): (float(m[2]), float(m[3]), float(m[4]))
                for m in line.finditer((tmp_path / "ws" / site / "log.txt").read_text())
            }
            assert sorted(logged) == [0, 1, 2]
            run_id = by_site[site].info.run_id
            for i, name in enumerate(("val_acc_global_model", "train_loss", "diff_norm")):
                stored = {m.step: m.value for m in client.get_metric_history(run_id, name)}
                assert stored == pytest.approx({r: v[i] for r, v in logged.items()}, abs=1e-4), (site, name)
    finally:
        stop_server(server)
