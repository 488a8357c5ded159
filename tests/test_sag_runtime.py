"""ScatterAndGather through the real engines: late, missing, failing clients and aborts."""

import threading
import time

import numpy as np
import pytest
from wfkit import Engines, sag_job

from flruntime.runtime.communicator import SHUTDOWN
from flruntime.runtime.server import RunStatus
from flruntime.runtime.simulator import simulate


def final_model(ws):
    return np.load(ws / "server" / "global.npy")


def site_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("site-") and t.is_alive()]


def test_a_late_client_is_left_out_of_every_round_and_its_results_are_dropped(tmp_path):
    job = sag_job(tmp_path / "job", num_rounds=2, min_clients=2, wait=0, trainer_args={"late_site": "site-3"})
    result = simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:COMPLETED" and result.rounds_completed == 2
    # each round: the mean of site-1's 1 and site-2's 2; site-3 answers only after the round closed
    np.testing.assert_array_equal(final_model(tmp_path / "ws"), np.full(3, 3.0, dtype=np.float32))
    assert result.late_results == 2
    log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert "dropping result of task 'train' from site-3: its task was already closed" in log


def test_a_client_that_never_connects_does_not_stop_rounds_once_min_clients_answered(tmp_path):
    job = sag_job(tmp_path / "job", num_rounds=3, min_clients=2, wait=0)
    engines = Engines(job, tmp_path / "ws", running=["site-1", "site-2"], registered=["site-3"])
    outcome = engines.run()
    assert outcome.status == RunStatus.COMPLETED, outcome.error
    np.testing.assert_array_equal(final_model(tmp_path / "ws"), np.full(3, 4.5, dtype=np.float32))
    assert engines.comm.pull("site-3", timeout=0) is SHUTDOWN  # no task left standing: each was withdrawn


@pytest.mark.parametrize(
    ("ignore", "clients", "min_clients", "status", "expected", "error"),
    [
        (None, 3, 2, "FINISHED:COMPLETED", 2 * 2.5, ""),
        (True, 2, 2, "FINISHED:COMPLETED", 2 * 2.0, ""),
        (
            None,
            2,
            2,
            "FINISHED:EXECUTION_EXCEPTION",
            None,
            "round 0: only 1 of min_clients=2 results could be aggregated; "
            "site-1: RuntimeError: site-1 fails on purpose",
        ),
        (
            False,
            3,
            2,
            "FINISHED:EXECUTION_EXCEPTION",
            None,
            "round 0: site-1 failed and ignore_result_error is false; site-1: RuntimeError: site-1 fails on purpose",
        ),
    ],
    ids=["dynamic-enough-left", "ignore-always", "dynamic-too-few", "never-ignore"],
)
def test_a_failing_client(tmp_path, ignore, clients, min_clients, status, expected, error):
    job = sag_job(
        tmp_path / "job",
        num_rounds=2,
        min_clients=min_clients,
        wait=5,
        workflow_args={"ignore_result_error": ignore},
        trainer_args={"fail_site": "site-1"},
    )
    result = simulate(job, n_clients=clients, workspace=tmp_path / "ws", progress=None)
    assert result.status == status
    assert result.error == (f"RuntimeError: {error}" if error else "")
    if expected is not None:
        np.testing.assert_array_equal(final_model(tmp_path / "ws"), np.full(3, expected, dtype=np.float32))
    else:
        assert not (tmp_path / "ws" / "server" / "global.npy").exists()
    assert "site-1 fails on purpose" in (tmp_path / "ws" / "site-1" / "log.txt").read_text()
    assert site_threads() == []


def test_abort_mid_round_stops_the_job_and_every_client(tmp_path):
    job = sag_job(
        tmp_path / "job",
        num_rounds=5,
        min_clients=2,
        wait=5,
        trainer_args={"block_site": "site-2", "block_round": 1},
        widgets=[{"id": "abort", "path": "wf_parts.AbortInRound", "args": {"round": 1}}],
    )
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.status == "FINISHED:ABORTED" and result.rounds_completed == 1
    np.testing.assert_array_equal(final_model(tmp_path / "ws"), np.full(3, 1.5, dtype=np.float32))  # round 0 only
    assert site_threads() == []
    assert "aborted while training" in (tmp_path / "ws" / "site-2" / "log.txt").read_text()


def test_server_engine_abort_from_another_thread(tmp_path):
    job = sag_job(
        tmp_path / "job", num_rounds=5, min_clients=2, trainer_args={"block_site": "site-2", "block_round": 2}
    )
    engines = Engines(job, tmp_path / "ws", running=["site-1", "site-2"], registered=[])
    blocked = tmp_path / "ws" / "site-2" / "blocked"

    def abort_when_blocked():
        while not blocked.exists():
            time.sleep(0.005)
        engines.server.abort()

    aborter = threading.Thread(target=abort_when_blocked, daemon=True)
    aborter.start()
    outcome = engines.run()
    aborter.join(timeout=30)
    assert outcome.status == RunStatus.ABORTED
    np.testing.assert_array_equal(final_model(tmp_path / "ws"), np.full(3, 3.0, dtype=np.float32))  # rounds 0, 1
    assert all(c.ctx.abort.is_set() for c in engines.clients)
