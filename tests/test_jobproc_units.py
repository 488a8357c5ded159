"""The parts of a job process, one at a time: memory sizes and limits, exit causes, ending a whole job,
the status channel, the watch's no-progress rule, and failing a client's tasks in the communicator."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from flruntime.errors import UsageError
from flruntime.jobproc.limits import format_memory, memory_limit, parse_memory
from flruntime.jobproc.process import ENV_TOKEN, JobProcess
from flruntime.jobproc.watch import SiteJobWatch, duration, progress_limit
from flruntime.runtime.communicator import Communicator
from flruntime.runtime.messages import ModelMessage, ReturnCode, Task, TaskResult

GiB, MiB = 2**30, 2**20


@pytest.mark.parametrize(
    ("value", "size"),
    [("4GiB", 4 * GiB), ("512MiB", 512 * MiB), ("2G", 2 * GiB), ("100MB", 100_000_000), ("1.5GiB", int(1.5 * GiB)),
     (4, 4 * GiB), (0.5, GiB // 2), (None, None), ("", None), (0, None)],
)  # fmt: skip
def test_sizes_as_people_write_them(value, size):
    assert parse_memory(value, "x") == size


@pytest.mark.parametrize("value", ["4 giga", "lots", True, "-1GiB"])
def test_a_bad_size_is_one_line_naming_where(value):
    with pytest.raises(UsageError) as err:
        parse_memory(value, "local/resources.json: job_memory_limit")
    assert str(err.value) == (
        f'local/resources.json: job_memory_limit: {value!r} is not a size (write e.g. "4GiB" or "512MiB")'
    )


def test_format_memory():
    assert (format_memory(4 * GiB), format_memory(600 * MiB), format_memory(int(1.5 * GiB))) == (
        "4 GiB",
        "600 MiB",
        "1.5 GiB",
    )


@pytest.mark.parametrize(
    ("site", "spec", "want"),
    [
        ({}, {}, None),
        ({"job_memory_limit": "4GiB"}, {}, 4 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-1": {"memory_limit": "8GiB"}}, 8 * GiB),
        ({"job_memory_limit": "4GiB", "job_memory_max": "6GiB"}, {"site-1": {"memory_limit": "8GiB"}}, 6 * GiB),
        ({"job_memory_max": "6GiB"}, {}, 6 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-2": {"memory_limit": "1GiB"}}, 4 * GiB),
    ],
    ids=["none", "site-default", "job-wins", "site-max-caps", "max-alone", "other-site"],
)
def test_which_memory_limit_applies(site, spec, want):
    assert memory_limit(site, spec, "site-1") == want


def test_a_bad_job_limit_names_meta_json():
    with pytest.raises(UsageError, match=r"^meta.json: resource_spec.site-1.memory_limit: 'huge' is not a size"):
        memory_limit({}, {"site-1": {"memory_limit": "huge"}}, "site-1")


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
    head = "from flruntime.jobproc.process import enter_limits\nenter_limits()\nimport sys, json\n"
    script.write_text(head + "spec = json.loads(sys.stdin.readline())\n" + textwrap.dedent(code))
    return JobProcess(
        [sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log.txt", **kwargs
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("sys.exit(3)", "exited with code 3"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "was killed by signal 9 (SIGKILL)"),
        ("import ctypes\nctypes.string_at(0)", "was killed by signal 11 (SIGSEGV)"),
        ("pass", "exited with code 0"),
    ],
    ids=["exit", "sigkill", "segfault", "clean"],
)
def test_exit_causes(tmp_path, code, cause):
    proc = child(tmp_path, code)
    proc.start({})
    assert proc.wait(60) is not None
    proc.terminate()
    assert proc.exit_cause() == cause


@pytest.mark.slow
def test_past_its_memory_limit_a_job_process_is_stopped_and_the_limit_named(tmp_path):
    code = """
    hog = []
    while True:
        hog.append(bytearray(32 * 2**20))
        for i in range(0, len(hog[-1]), 4096):
            hog[-1][i] = 1
    """
    proc = child(tmp_path, code, memory_limit=300 * MiB)
    proc.start({})
    assert proc.wait(120) is not None
    proc.terminate()
    assert proc.limit_kind in ("cgroup", "rlimit")
    assert proc.exit_cause() in (
        "was killed by signal 9 (memory limit 300 MiB reached)",
        "exited with code 1 (MemoryError: memory limit 300 MiB reached)",
    )


@pytest.mark.slow
def test_terminate_ends_every_process_of_the_job_even_those_that_left_its_session(tmp_path):
    code = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen(["sleep", "1000"])
    subprocess.Popen(["sleep", "1001"], start_new_session=True)
    print("started", flush=True)
    time.sleep(1000)
    """
    proc = child(tmp_path, code)
    proc.start({})
    deadline = time.monotonic() + 30
    while "started" not in (tmp_path / "log.txt").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    marked = [p for p in psutil.process_iter() if _env(p).get(ENV_TOKEN) == proc.token]
    assert len(marked) == 3
    proc.terminate(grace=0.5)
    assert all(not psutil.pid_exists(p.pid) or p.status() == psutil.STATUS_ZOMBIE for p in marked)
    assert proc.exit_cause() == "was killed by signal 9 (SIGKILL)"
    proc.terminate()  # idempotent


def _env(p: psutil.Process) -> dict[str, str]:
    try:
        return p.environ()
    except psutil.Error:
        return {}


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
