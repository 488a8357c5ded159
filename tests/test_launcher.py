"""The launcher executor with real training-script processes (marked slow: they start Python processes)."""

import json
import re
import subprocess
import sys
import time

import pytest
from clientkit import (
    NVF_CELL_PIPE,
    NVF_FILE_PIPE,
    NVF_LAUNCHER_EXEC,
    NVF_PT_LAUNCHER_EXEC,
    NVF_SUBPROCESS,
    TORCH_SCRIPT,
    alive,
    assert_model,
    client_job,
    expected_model,
    final_model,
)
from flruntime.components.launchers.subprocess import SubprocessLauncher

from flruntime.events.bus import EventBus
from flruntime.runtime.context import RunContext
from flruntime.runtime.simulator import simulate

pytestmark = pytest.mark.slow

FILE_PIPE = {
    "id": "pipe",
    "path": NVF_FILE_PIPE,
    "args": {"mode": "PASSIVE", "root_path": "{WORKSPACE}/{JOB_ID}/{SITE_NAME}", "file_check_interval": 0.02},
}
CELL_PIPE = {
    "id": "pipe",
    "path": NVF_CELL_PIPE,
    "args": {
        "mode": "PASSIVE",
        "site_name": "{SITE_NAME}",
        "token": "{JOB_ID}",
        "root_url": "{ROOT_URL}",
        "secure_mode": "{SECURE_MODE}",
        "workspace_dir": "{WORKSPACE}",
    },
}
PIPES = {"file": FILE_PIPE, "cell": CELL_PIPE}


def launcher_job(root, *, pipe="file", script_args="", launch_once=True, executor_args=None, **job):
    launcher = {
        "id": "launcher",
        "path": NVF_SUBPROCESS,
        "args": {"script": f"python3 -u custom/train.py --out {{WORKSPACE}} {script_args}", "launch_once": launch_once},
    }
    executor = {
        "path": NVF_LAUNCHER_EXEC,
        "args": {
            "pipe_id": "pipe",
            "launcher_id": "launcher",
            "params_transfer_type": "DIFF",
            "read_interval": 0.05,
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": 60,
            **(executor_args or {}),
        },
    }
    return client_job(root, executor, components=[PIPES[pipe], launcher], **job)


def run(job, tmp_path):
    return simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)


def pids(tmp_path, site):
    return [int(p) for p in (tmp_path / "ws" / site / "pids.txt").read_text().split()]


def assert_no_script_left(tmp_path):
    for site in ("site-1", "site-2"):
        left = [p for p in pids(tmp_path, site) if alive(p)]
        assert left == [], f"{site}: processes still running: {left}"


def log_of(tmp_path, site):
    return (tmp_path / "ws" / site / "log.txt").read_text()


@pytest.mark.parametrize("pipe", ["file", "cell"])
def test_launched_script_trains_and_stops_at_the_end(tmp_path, pipe):
    job = launcher_job(tmp_path / "job", pipe=pipe)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))
    assert_no_script_left(tmp_path)
    for site in ("site-1", "site-2"):
        assert len(pids(tmp_path, site)) == 1  # launch_once: one process served both rounds
        # the script saw the end of the job (receive() returned None) and left its loop by itself
        assert (tmp_path / "ws" / site / "exit.txt").read_text().startswith(f"clean-exit {site}")
        assert "ended with exit code 0" in log_of(tmp_path, site)


def test_config_file_is_written_in_the_site_workspace_for_the_script(tmp_path):
    job = launcher_job(tmp_path / "job", pipe="cell")
    assert run(job, tmp_path).ok
    cfg = json.loads((tmp_path / "ws" / "site-2" / "config" / "client_api_config.json").read_text())
    assert cfg["site_name"] == "site-2" and cfg["job_id"] == "simulate_job"
    task = cfg["TASK_EXCHANGE"]
    assert task["pipe"]["CLASS_NAME"] == "SocketPipe" and task["pipe"]["ARG"]["mode"] == "ACTIVE"
    assert task["transfer_type"] == "DIFF" and task["HEARTBEAT_TIMEOUT"] == 60
    assert not (tmp_path / "job" / "app" / "config" / "client_api_config.json").exists()


def test_pytorch_launcher_executor_over_a_socket(tmp_path):
    job = launcher_job(tmp_path / "job", pipe="cell")
    client = tmp_path / "job" / "app" / "config" / "config_fed_client.json"
    config = json.loads(client.read_text())
    config["executors"][0]["executor"]["path"] = NVF_PT_LAUNCHER_EXEC
    config["components"][1]["args"]["script"] = "python3 -u custom/train_pt.py"
    client.write_text(json.dumps(config))
    (tmp_path / "job" / "app" / "custom" / "train_pt.py").write_text(TORCH_SCRIPT)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))


@pytest.mark.parametrize("pipe", ["file", "cell"])
def test_script_crash_fails_the_task_and_the_next_round_relaunches_it(tmp_path, pipe):
    job = launcher_job(
        tmp_path / "job", pipe=pipe, script_args="--crash-round 1", num_rounds=3, ignore_result_error=True
    )
    result = run(job, tmp_path)
    assert result.ok, result.error
    # round 1 is site-2's alone; the relaunched site-1 script contributes again in round 2
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [2], [1, 2]]))
    log = log_of(tmp_path, "site-1")
    assert "task 'train' failed (EXECUTION_EXCEPTION)" in log
    assert "the training script exited with code 3 during task 'train' (round 1)" in log
    assert "relaunching it for task 'train'" in log
    assert len(pids(tmp_path, "site-1")) == 2 and len(pids(tmp_path, "site-2")) == 1
    assert "EXECUTION_EXCEPTION" not in log_of(tmp_path, "site-2")
    assert_no_script_left(tmp_path)


def test_script_crash_fails_the_job_when_result_errors_are_not_ignored(tmp_path):
    job = launcher_job(tmp_path / "job", script_args="--crash-round 1", num_rounds=3, ignore_result_error=False)
    result = run(job, tmp_path)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    assert result.error.startswith("RuntimeError: round 1: site-1 failed and ignore_result_error is false; site-1: ")
    assert "exited with code 3" in result.error  # the cause is named in the job's error
    assert "exited with code 3" in log_of(tmp_path, "site-1")
    assert_no_script_left(tmp_path)


def test_a_process_per_task_when_not_launched_once(tmp_path):
    job = launcher_job(tmp_path / "job", launch_once=False)
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))
    for site in ("site-1", "site-2"):
        assert len(pids(tmp_path, site)) == 2
        assert (tmp_path / "ws" / site / "exit.txt").read_text().count("clean-exit") == 2
    assert_no_script_left(tmp_path)


def test_heartbeat_timeout_fails_the_task_of_a_frozen_script(tmp_path):
    job = launcher_job(
        tmp_path / "job",
        script_args="--freeze-round 1",
        num_rounds=3,
        ignore_result_error=True,
        executor_args={"heartbeat_interval": 0.1, "heartbeat_timeout": 1.0},
    )
    result = run(job, tmp_path)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [2], [1, 2]]))
    log = log_of(tmp_path, "site-1")
    assert "no heartbeat from the training script for 1 s during task 'train' (round 1)" in log
    assert len(pids(tmp_path, "site-1")) == 2
    assert_no_script_left(tmp_path)


def test_script_that_never_calls_init_fails_the_task_with_its_exit_code(tmp_path):
    job = launcher_job(tmp_path / "job", num_rounds=1, ignore_result_error=False)
    (tmp_path / "job" / "app" / "custom" / "train.py").write_text("import sys\nprint('no flare here')\nsys.exit(5)\n")
    result = run(job, tmp_path)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    log = log_of(tmp_path, "site-1")
    assert "the training script exited with code 5 before calling flare.init()" in log
    assert "no flare here" in log  # the script's output is in the site's log


def test_subprocess_launcher_runs_in_the_app_folder_with_custom_on_the_path(tmp_path):
    app = tmp_path / "app"
    (app / "custom").mkdir(parents=True)
    (app / "custom" / "helper.py").write_text("VALUE = 42\n")
    (app / "custom" / "main.py").write_text(
        "import os, helper\nprint('cwd', os.getcwd(), 'value', helper.VALUE, 'api', os.environ['X_API'])\n"
    )
    ctx = RunContext("job", "site-3", tmp_path / "ws", app, EventBus("site-3"))
    launcher = SubprocessLauncher("python3 custom/main.py", clean_up_script=f"{sys.executable} -c \"print('cleaned')\"")
    launcher.setup(ctx)
    assert launcher.command()[0] == sys.executable
    launcher.launch(ctx, {"X_API": "ex"})
    assert launcher.pid is not None
    code = launcher.stop()
    assert code == 0 and launcher.exit_code() == 0 and not launcher.is_running()
    assert not alive(launcher.pid)


def test_subprocess_launcher_terminates_a_script_that_does_not_stop(tmp_path, caplog):
    ctx = RunContext("job", "site-3", tmp_path / "ws", tmp_path, EventBus("site-3"))
    launcher = SubprocessLauncher(f"{sys.executable} -c 'import time; time.sleep(600)'")
    launcher.launch(ctx)
    pid = launcher.pid
    code = launcher.stop(grace=0.0)
    assert code == -15 and not alive(pid)


def test_subprocess_launcher_reports_a_missing_program(tmp_path):
    ctx = RunContext("job", "site-3", tmp_path / "ws", tmp_path, EventBus("site-3"))
    with pytest.raises(FileNotFoundError):
        SubprocessLauncher("no-such-program-xyz --flag").launch(ctx)
    with pytest.raises(ValueError, match="script must be a command line"):
        SubprocessLauncher("   ")


DYING_CLIENT = """
import json, os, sys, threading
from flruntime.runtime.simulator import simulate
import flruntime.components.executors.launcher as launcher_executor

both = threading.Barrier(2)

def die(self, endpoint, task, ctx):
    with open(os.path.join(sys.argv[2], ctx.site + "-pids.json"), "w") as fh:
        json.dump(self._launcher.pids, fh)
    both.wait(60)
    os._exit(9)  # the client process vanishes mid-task: no STOP, no teardown

launcher_executor.ClientAPILauncherExecutor._wait_result = die
simulate(sys.argv[1], n_clients=2, workspace=os.path.join(sys.argv[2], "ws"), progress=None)
"""


@pytest.mark.parametrize("pipe", ["file", "cell"])
def test_scripts_do_not_outlive_a_vanished_client(tmp_path, pipe):
    """A script whose client process died ends by itself (heartbeat timeout or closed connection)."""
    job = launcher_job(tmp_path / "job", pipe=pipe, executor_args={"heartbeat_interval": 0.1, "heartbeat_timeout": 1.0})
    runner = tmp_path / "dying_client.py"
    runner.write_text(DYING_CLIENT)
    done = subprocess.run(
        [sys.executable, str(runner), str(job), str(tmp_path)], timeout=120, capture_output=True, check=False
    )
    assert done.returncode == 9, done.stderr.decode()
    launched = [
        pid for site in ("site-1", "site-2") for pid in json.loads((tmp_path / f"{site}-pids.json").read_text())
    ]
    assert len(launched) == 2
    deadline = time.monotonic() + 60  # a safety net: the scripts give up after the 1 s heartbeat timeout
    while any(alive(p) for p in launched) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in launched if alive(p)] == []


def test_script_that_is_slow_to_call_init_is_stopped(tmp_path):
    job = launcher_job(tmp_path / "job", num_rounds=1, executor_args={"external_pre_init_timeout": 0.5})
    (tmp_path / "job" / "app" / "custom" / "train.py").write_text("import time\ntime.sleep(60)\n")
    result = run(job, tmp_path)
    assert result.status == "FINISHED:EXECUTION_EXCEPTION"
    log = log_of(tmp_path, "site-1")
    assert "the training script did not call flare.init() within 0.5 s of its start" in log
    launched = [int(p) for p in re.findall(r"launched the training script \(pid (\d+)\)", log)]
    assert launched and not any(alive(p) for p in launched)
