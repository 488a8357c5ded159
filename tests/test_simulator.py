import json
import subprocess
import sys

import numpy as np
import pytest
from simkit import sim_job

from flruntime.cli.main import main
from flruntime.errors import ConfigError, UsageError
from flruntime.runtime.simulator import simulate


def expected_after(rounds: int, sites: list[int]) -> float:
    """Each round adds the step-weighted mean of the site numbers: Σk·k / Σk."""
    return rounds * sum(k * k for k in sites) / sum(sites)


def test_fedavg_runs_and_aggregates_weighted_by_steps(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=3, min_clients=3)
    result = simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
    assert result.ok and result.rounds_completed == 3 and result.num_rounds == 3
    final = np.load(tmp_path / "ws" / "server" / "global.npy")
    np.testing.assert_allclose(final, np.full(3, expected_after(3, [1, 2, 3]), dtype=np.float32), rtol=1e-6)
    summary = json.loads((tmp_path / "ws" / "results.json").read_text())
    assert summary["status"] == "FINISHED:COMPLETED"
    assert summary["clients"] == ["site-1", "site-2", "site-3"]
    assert summary["bytes_to_clients"] > 0 and summary["bytes_to_server"] > 0


def test_each_site_has_its_own_log(tmp_path):
    job = sim_job(tmp_path / "job", client_args={"fail_in_round": 1})
    simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
    site1 = (tmp_path / "ws" / "site-1" / "log.txt").read_text()
    site2 = (tmp_path / "ws" / "site-2" / "log.txt").read_text()
    server = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert "site-1 fails on purpose" in site1
    assert "site-1 fails on purpose" not in site2
    assert "workflow 'fedavg' finished" in server
    assert "round 1: site-1 returned EXECUTION_EXCEPTION" in server


def test_failing_client_is_skipped_when_enough_others_answer(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=2, min_clients=2, client_args={"fail_in_round": 1})
    result = simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
    assert result.ok
    final = np.load(tmp_path / "ws" / "server" / "global.npy")
    np.testing.assert_allclose(final, expected_after(1, [1, 2, 3]) + expected_after(1, [2, 3]), rtol=1e-6)


def test_resume_continues_from_the_last_saved_round(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=2, min_clients=2)
    simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    # a longer job over the same workspace: resume runs only the missing rounds from the saved model
    sim_job(tmp_path / "job4", num_rounds=4, min_clients=2)
    result = simulate(tmp_path / "job4", n_clients=2, workspace=tmp_path / "ws", resume=True, progress=None)
    assert result.ok and result.rounds_completed == 2
    final = np.load(tmp_path / "ws" / "server" / "global.npy")
    np.testing.assert_allclose(final, expected_after(4, [1, 2]), rtol=1e-6)


def test_progress_and_summary_are_printed(tmp_path, capsys):
    job = sim_job(tmp_path / "job", num_rounds=2)
    assert main(["simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")]) == 0
    err = capsys.readouterr().err
    assert "round 0 done: 2/2 clients" in err and "round 1 done: 2/2 clients" in err
    assert "FINISHED:COMPLETED after 2 round(s)" in err and str(tmp_path / "ws" / "results.json") in err


def test_usage_errors(tmp_path):
    job = sim_job(tmp_path / "job")
    with pytest.raises(UsageError, match="no clients to simulate"):
        simulate(job, progress=None, workspace=tmp_path / "ws")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="is not empty and was not made by flruntime"):
        simulate(job, n_clients=2, workspace=tmp_path / "mine", progress=None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(UsageError, match="nothing to resume"):
        simulate(job, n_clients=2, workspace=tmp_path / "fresh", resume=True, progress=None)


def test_invalid_job_is_refused_before_anything_runs(tmp_path):
    job = sim_job(tmp_path / "job")
    cfg = job / "app" / "config" / "config_fed_server.json"
    cfg.write_text(cfg.read_text().replace('"persistor_id": "persistor"', '"persistor_id": "persister"'))
    with pytest.raises(ConfigError, match="no component 'persister'"):
        simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert not (tmp_path / "ws").exists()


def test_cli_exit_codes(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=1, min_clients=2, client_args={"fail_in_round": 0})
    # min_clients 2 of 2 and site-1 fails: the round cannot be aggregated with enough results → job fails (3)
    run = subprocess.run(
        [sys.executable, "-m", "flruntime", "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3, run.stderr
    assert "the job did not complete: RuntimeError: round 0: only 1 of min_clients=2 results" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "flruntime",
            "simulate",
            str(job),
            "-c",
            "site-1,site-2",
            "-w",
            str(tmp_path / "ws2"),
            "-o",
            "num_round=3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "did you mean 'num_rounds'?" in run.stderr


def test_a_component_failing_at_setup_fails_that_site_with_the_reason(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=1, min_clients=1)
    (job / "app/custom/bad_setup.py").write_text(
        "class BadSetup:\n    def setup(self, ctx):\n        raise OSError(f'no GPU on {ctx.site}')\n"
    )
    cfg = job / "app/config/config_fed_client.json"
    client = json.loads(cfg.read_text())
    client["components"] = [{"id": "bad", "path": "bad_setup.BadSetup"}]
    cfg.write_text(json.dumps(client))
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert not result.ok
    server_log = (tmp_path / "ws/server/log.txt").read_text()
    assert "the site could not start: OSError: no GPU on site-1" in server_log


def test_threads_cap_how_many_tasks_run_at_once(tmp_path):
    job = sim_job(tmp_path / "job", num_rounds=2, min_clients=4)
    (job / "app/custom/counting.py").write_text(
        "import threading, time\n"
        "import numpy as np\n"
        "from flruntime.roles import Executor\n"
        "from flruntime.runtime.messages import ModelMessage, ParamsType\n"
        "LOCK, RUNNING, PEAK = threading.Lock(), [0], [0]\n"
        "class Counting(Executor):\n"
        "    def execute(self, task, data, ctx):\n"
        "        with LOCK:\n"
        "            RUNNING[0] += 1\n"
        "            PEAK[0] = max(PEAK[0], RUNNING[0])\n"
        "        time.sleep(0.05)\n"
        "        with LOCK:\n"
        "            RUNNING[0] -= 1\n"
        "        (ctx.run.workspace / 'peak.txt').write_text(str(PEAK[0]))\n"
        "        return ModelMessage({'w': np.ones(3, np.float32)}, ParamsType.DIFF)\n"
    )
    cfg = job / "app/config/config_fed_client.json"
    client = json.loads(cfg.read_text())
    client["executors"][0]["executor"] = {"path": "counting.Counting"}
    cfg.write_text(json.dumps(client))
    assert simulate(job, n_clients=4, threads=1, workspace=tmp_path / "ws", progress=None).ok
    peaks = {int((tmp_path / "ws" / f"site-{k}" / "peak.txt").read_text()) for k in range(1, 5)}
    assert peaks == {1}
