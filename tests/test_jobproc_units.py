"""The parts of a job process, one at a time: the no-progress limits, the status channel and commands, the
watch's rules, and failing a client's tasks in the communicator (JobProcess itself: tests/test_job_process.py)."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from flruntime.errors import UsageError
from flruntime.jobproc.process import JobProcess
from flruntime.jobproc.watch import SiteJobWatch, duration, progress_limit
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.messages import ModelMessage, ReturnCode, Task, TaskResult

GiB, MiB = 2**30, 2**20


def test_progress_limits():
    assert progress_limit({}) == 1800.0
    assert progress_limit({}, {"progress_timeout": 60}) == 60.0
    assert progress_limit({"progress_timeout": 0}, {"progress_timeout": 60}) == 0.0
    with pytest.raises(UsageError) as err:
        progress_limit({"progress_timeout": "soon"})
    assert str(err.value) == "meta.json: progress_timeout: 'soon' is not a number of seconds (0 turns the check off)"
    assert [duration(s) for s in (1800, 7200, 45, 90, 4)] == ["30 min", "2 h", "45 s", "90 s", "4 s"]


def child(tmp_path: Path, code: str, **kwargs) -> JobProcess:
    """A job process running ``code`` instead of flruntime.jobproc (it reads its spec line first)."""
    script = tmp_path / "child.py"
    head = "import sys, json\n"
    script.write_text(head + "spec = json.loads(sys.stdin.readline())\n" + textwrap.dedent(code))
    return JobProcess(
        [sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log.txt", **kwargs
    )


@pytest.mark.slow
def test_status_messages_arrive_in_order_and_commands_reach_the_child(tmp_path):
    code = """
    import os
    from flruntime.jobproc.status import StatusWriter
    out = StatusWriter.from_env()
    for i in range(200):
        out.send("n", i=i)
    out.send("echo", line=sys.stdin.readline().strip(), spec=spec)
    """
    got: list[dict] = []
    proc = child(tmp_path, code, on_status=got.append)
    stdin = proc.start({"hello": 1})
    stdin.write('{"cmd": "ping"}\n')
    stdin.flush()
    assert proc.wait(60) == 0
    proc.terminate()
    assert [m["i"] for m in got[:-1]] == list(range(200))
    assert got[-1] == {"kind": "echo", "line": '{"cmd": "ping"}', "spec": {"hello": 1}}


class FakeProc:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self.ended = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.ended = True
        if self.returncode is None:
            self.returncode = -15

    def exit_cause(self) -> str:
        return "exited with code 1"


def test_the_watch_fails_a_task_that_made_no_progress():
    watch = SiteJobWatch("site-1", progress_timeout=0.3)
    watch.on_status({"kind": "task", "name": "train", "round": 2})
    watch.on_status({"kind": "alive", "idle": 0.0})
    proc = FakeProc()
    why = watch.watch(proc, threading.Event(), poll=0.02)  # type: ignore[arg-type]
    assert why == "site-1: the training script made no progress for 0.3 s"
    assert proc.ended


def test_a_task_with_its_own_time_limit_is_left_to_it_and_a_finished_task_is_not_watched():
    watch = SiteJobWatch("site-1", progress_timeout=0.1)
    watch.on_status({"kind": "task", "name": "train", "round": 0, "timeout": 600})
    time.sleep(0.2)
    assert watch.idle_for() == 0.0
    watch.on_status({"kind": "task", "name": "train", "round": 1})
    watch.on_status({"kind": "task_done", "name": "train"})
    time.sleep(0.2)
    assert watch.idle_for() == 0.0


def test_the_watch_names_the_task_a_dead_process_was_running():
    watch = SiteJobWatch("site-1")
    watch.on_status({"kind": "task", "name": "validate", "round": 3})
    proc = FakeProc()
    proc.returncode = 1
    assert watch.watch(proc, threading.Event()) == (  # type: ignore[arg-type]
        "job process on site-1 exited with code 1 during task 'validate' (round 3)"
    )


def test_an_abort_ends_the_process_and_is_not_a_failure():
    stop = threading.Event()
    stop.set()
    proc = FakeProc()
    assert SiteJobWatch("site-1").watch(proc, stop) == ""  # type: ignore[arg-type]
    assert proc.ended


def test_a_failed_client_fails_its_open_task_and_later_ones_with_the_reason():
    comm = Communicator(["site-1", "site-2"])
    seen: list[TaskResult] = []
    done = threading.Event()

    def serve() -> None:
        task = comm.pull("site-2", 5)
        assert isinstance(task, Task)
        comm.submit(TaskResult(task.task_id, task.name, "site-2", ReturnCode.OK, ModelMessage({})))
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    threading.Timer(0.2, lambda: comm.fail("site-1", "job process on site-1 exited with code 1")).start()
    got = comm.broadcast_and_wait("train", ModelMessage({}), on_result=seen.append, timeout=30)
    assert done.is_set()
    assert got["site-1"].rc == ReturnCode.EXECUTION_EXCEPTION
    assert {r.site: r.error for r in seen} == {"site-1": "job process on site-1 exited with code 1", "site-2": ""}
    again = comm.broadcast_and_wait("train", ModelMessage({}), targets=["site-1"], timeout=5)
    assert again["site-1"].error == "job process on site-1 exited with code 1"
    comm.register("site-1")  # it may come back
    assert "site-1" not in comm.failures
