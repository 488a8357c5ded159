import threading
from pathlib import Path

import pytest
from clientkit import (
    NUMPY_SCRIPT,
    NVF_INPROC,
    NVF_PT_INPROC,
    TORCH_SCRIPT,
    assert_model,
    client_job,
    expected_model,
    final_model,
)
from flruntime.components.executors.in_process import InProcessClientAPIExecutor, PTInProcessClientAPIExecutor

from flruntime.events.bus import EventBus
from flruntime.runtime.context import RunContext
from flruntime.runtime.simulator import simulate
from flruntime.validation import validate_job


def in_process(args="", **extra):
    base = {"task_script_path": "train.py", "task_script_args": args, "result_pull_interval": 0.05}
    return {"path": NVF_INPROC, "args": {**base, "params_transfer_type": "DIFF", **extra}}


def run(job, tmp_path):
    return simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)


def log_of(tmp_path, site):
    return (tmp_path / "ws" / site / "log.txt").read_text()


@pytest.mark.parametrize(
    ("transfer", "kind"), [("FULL", "WEIGHTS"), ("DIFF", "WEIGHT_DIFF")], ids=["full", "diff-from-full"]
)
def test_numpy_script_fedavg(tmp_path, transfer, kind):
    job = client_job(tmp_path / "job", in_process(params_transfer_type=transfer), expected_data_kind=kind)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert result.rounds_completed == 2
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))


@pytest.mark.parametrize(
    ("transfer", "kind"), [("FULL", "WEIGHTS"), ("DIFF", "WEIGHT_DIFF")], ids=["full", "diff-from-full"]
)
def test_torch_script_state_dict_in_and_out(tmp_path, transfer, kind):
    executor = {
        "path": NVF_PT_INPROC,
        "args": {"task_script_path": "train_pt.py", "params_transfer_type": transfer, "result_pull_interval": 0.05},
    }
    job = client_job(tmp_path / "job", executor, scripts={"train_pt.py": TORCH_SCRIPT}, expected_data_kind=kind)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))


def test_each_script_sees_its_own_arguments_and_ends_when_the_job_ends(tmp_path):
    job = client_job(tmp_path / "job", in_process("--out {WORKSPACE}"))
    assert run(job, tmp_path).ok
    for site in ("site-1", "site-2"):
        exits = (tmp_path / "ws" / site / "exit.txt").read_text().splitlines()
        assert exits == [f"clean-exit {site} argv=['--out', '{tmp_path / 'ws' / site}']"]
        assert f"{site}: the training script" in log_of(tmp_path, site) and "returned" in log_of(tmp_path, site)


def test_script_error_fails_the_task_and_the_job_when_errors_are_not_ignored(tmp_path):
    job = client_job(tmp_path / "job", in_process("--fail-round 1"), ignore_result_error=False)
    result = run(job, tmp_path)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert "round 1: site-1 failed and ignore_result_error is false" in result.error
    log = log_of(tmp_path, "site-1")
    assert "ValueError: site-1 cannot train round 1" in log
    assert "task 'train' failed (EXECUTION_EXCEPTION): ScriptFailed: the training script" in log
    assert "ValueError: site-1 cannot train round 1" not in log_of(tmp_path, "site-2")


def test_after_a_script_error_later_tasks_fail_cleanly(tmp_path):
    job = client_job(tmp_path / "job", in_process("--fail-round 1"), num_rounds=3, ignore_result_error=True)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [2], [2]]))
    log = log_of(tmp_path, "site-1")
    assert log.count("(EXECUTION_EXCEPTION)") == 2
    assert "failed: ValueError: site-1 cannot train round 1; task 'train' cannot run" in log


def test_script_that_ends_early_makes_remaining_tasks_fail(tmp_path):
    job = client_job(tmp_path / "job", in_process("--stop-after 1"), ignore_result_error=True)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [2]]))
    log = log_of(tmp_path, "site-1")
    # the second task finds the script either already gone or on its way out: both end the task cleanly
    assert "the training script" in log
    assert ("returned; task 'train' cannot run" in log) or ("returned before sending the result of task 'train'" in log)


def test_missing_script_fails_every_task_with_a_clear_message(tmp_path):
    job = client_job(tmp_path / "job", in_process(task_script_path="nope.py"))
    result = run(job, tmp_path)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert "task_script_path 'nope.py': no such file" in log_of(tmp_path, "site-1")


def test_nvflare_in_process_configs_validate(tmp_path):
    job = client_job(tmp_path / "job", in_process())
    assert validate_job(job).errors == []
    bad = client_job(tmp_path / "bad", in_process(params_transfer_type="HALF"))
    messages = [(p.path[-1], p.message) for p in validate_job(bad).errors]  # found before anything is built
    assert messages == [("params_transfer_type", "params_transfer_type must be FULL or DIFF, got 'HALF'")]
    with pytest.raises(ValueError, match="params_transfer_type must be FULL or DIFF, got 'HALF'"):
        InProcessClientAPIExecutor("train.py", params_transfer_type="HALF")
    assert PTInProcessClientAPIExecutor("train.py").params_exchange_format == "pytorch"
    assert PTInProcessClientAPIExecutor("train.py").train_with_evaluation is True


def test_abort_unblocks_the_script(tmp_path):
    app = tmp_path / "app"
    (app / "custom").mkdir(parents=True)
    (app / "custom" / "train.py").write_text(NUMPY_SCRIPT)
    ctx = RunContext("job", "site-9", tmp_path / "ws", app, EventBus("site-9"))
    executor = InProcessClientAPIExecutor("train.py")
    executor.setup(ctx)
    runner = executor._runner
    assert runner is not None and runner.thread.name == "site-9:script"
    ctx.abort.set()
    assert runner.done.wait(10)
    assert runner.error is None and runner.ending == "returned"
    executor.teardown(ctx)
    assert not any(t.name == "site-9:script" for t in threading.enumerate())


def test_script_path_is_found_under_custom_or_the_app(tmp_path):
    app = tmp_path / "app"
    (app / "custom").mkdir(parents=True)
    (app / "custom" / "a.py").write_text("")
    (app / "b.py").write_text("")
    assert InProcessClientAPIExecutor("a.py").find_script(app) == (app / "custom" / "a.py").resolve()
    assert InProcessClientAPIExecutor("b.py").find_script(app) == (app / "b.py").resolve()
    with pytest.raises(FileNotFoundError, match=r"'c.py': no such file \(looked for .*custom/c.py"):
        InProcessClientAPIExecutor("c.py").find_script(Path(app))
