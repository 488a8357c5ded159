"""JobProcess with real processes: exit causes, OS-enforced memory limits (cgroup and RLIMIT_AS), ending a whole
process tree, the status pipe; and the memory sizes and limits a site and a job write."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from flruntime.errors import UsageError
from flruntime.jobproc import process as process_module
from flruntime.jobproc.limits import format_memory, memory_limit, parse_memory
from flruntime.jobproc.process import ENV_TOKEN, JobProcess
from flruntime.jobproc.status import ENV_STATUS_FD, StatusWriter

GiB, MiB = 2**30, 2**20
CGROUP_HERE = process_module._Cgroup.make("probe", 64 * MiB)
if CGROUP_HERE is not None:
    CGROUP_HERE.remove()


def python(tmp_path: Path, code: str, **kwargs) -> JobProcess:
    """A JobProcess running ``code`` in a plain ``python -c`` (nothing of flruntime's runs in it first)."""
    return JobProcess(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=dict(os.environ),
        log_path=tmp_path / "log.txt",
        **kwargs,
    )


def ended(proc: JobProcess) -> JobProcess:
    assert proc.wait(120) is not None, "the child did not end"
    proc.terminate()
    return proc


def wait_for(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in path.read_text()


def live_in_group(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group or session is ``pgid``."""
    found = []
    for p in psutil.process_iter():
        try:
            if pgid in (os.getpgid(p.pid), os.getsid(p.pid)) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def token_holders(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(ENV_TOKEN) == token and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


# --- sizes and which limit applies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [("4GiB", 4 * GiB), ("512MiB", 512 * MiB), ("2G", 2 * GiB), ("1.5GiB", 3 * GiB // 2), ("100MB", 100_000_000),
     ("2GB", 2_000_000_000), ("512Mi", 512 * MiB), (" 4 gib ", 4 * GiB), ("64KiB", 65536), (4, 4 * GiB),
     (0.5, GiB // 2), ("2", 2 * GiB), (None, None), ("", None), (0, None), (0.0, None), ("0GiB", None)],
    ids=repr,
)  # fmt: skip
def test_parse_memory(value, size):
    assert parse_memory(value, "x") == size


@pytest.mark.parametrize("value", ["4 giga", "lots", "-1GiB", "1e9", "4 GiB 2", True, False, -2, float("nan"),
                                   float("inf"), [4], {"GiB": 4}], ids=repr)  # fmt: skip
def test_a_bad_size_is_one_line_naming_where_and_what_to_write(value):
    with pytest.raises(UsageError) as err:
        parse_memory(value, "local/resources.json: job_memory_limit")
    assert str(err.value) == (
        f'local/resources.json: job_memory_limit: {value!r} is not a size (write e.g. "4GiB" or "512MiB")'
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [(4 * GiB, "4 GiB"), (512 * MiB, "512 MiB"), (3 * GiB // 2, "1.5 GiB"), (300 * MiB, "300 MiB"),
     (100_000_000, "95.37 MiB"), (2 * 2**40, "2 TiB"), (2048, "2 KiB"), (100, "100 B")],
)  # fmt: skip
def test_format_memory(size, text):
    assert format_memory(size) == text


@pytest.mark.parametrize(
    ("site", "spec", "want"),
    [
        ({}, {}, None),
        ({}, None, None),
        ({"job_memory_limit": "4GiB"}, {}, 4 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-1": {"memory_limit": "8GiB"}}, 8 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-1": {"memory_limit": "1GiB"}}, 1 * GiB),
        ({}, {"site-1": {"memory_limit": "2GiB", "num_of_gpus": 1}}, 2 * GiB),
        ({"job_memory_limit": "4GiB", "job_memory_max": "6GiB"}, {"site-1": {"memory_limit": "8GiB"}}, 6 * GiB),
        ({"job_memory_limit": "4GiB", "job_memory_max": "6GiB"}, {"site-1": {"memory_limit": "5GiB"}}, 5 * GiB),
        ({"job_memory_max": "6GiB"}, {}, 6 * GiB),
        ({"job_memory_limit": "8GiB", "job_memory_max": "6GiB"}, {}, 6 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-2": {"memory_limit": "1GiB"}}, 4 * GiB),
        ({"job_memory_limit": "4GiB"}, {"site-1": {}}, 4 * GiB),
    ],
    ids=["none", "no-spec", "site-default", "job-above-default", "job-below-default", "job-alone", "max-caps-job",
         "job-under-max", "max-alone", "max-caps-default", "other-site", "job-without-limit"],
)  # fmt: skip
def test_which_memory_limit_applies(site, spec, want):
    assert memory_limit(site, spec, "site-1") == want


@pytest.mark.parametrize(
    ("site", "spec", "message"),
    [
        ({}, {"site-1": {"memory_limit": "huge"}},
         "meta.json: resource_spec.site-1.memory_limit: 'huge' is not a size (write e.g. \"4GiB\" or \"512MiB\")"),
        ({"job_memory_limit": "4 giga"}, {},
         "local/resources.json: job_memory_limit: '4 giga' is not a size (write e.g. \"4GiB\" or \"512MiB\")"),
        ({"job_memory_max": "max"}, {},
         "local/resources.json: job_memory_max: 'max' is not a size (write e.g. \"4GiB\" or \"512MiB\")"),
        ({}, {"site-1": "4GiB"},
         "meta.json: resource_spec.site-1: '4GiB' is not an object (write e.g. {\"memory_limit\": \"4GiB\"})"),
    ],
    ids=["job", "site-default", "site-max", "spec-not-object"],
)  # fmt: skip
def test_a_bad_limit_names_its_file_and_key(site, spec, message):
    with pytest.raises(UsageError) as err:
        memory_limit(site, spec, "site-1")
    assert str(err.value) == message


# --- starting and exit causes --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("import sys; sys.exit(3)", "exited with code 3"),
        ("pass", "exited with code 0"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal 9 (SIGKILL)"),
        ("import ctypes; ctypes.string_at(0)", "was killed by signal 11 (SIGSEGV)"),
        ("raise MemoryError", "exited with code 1"),  # no limit set: not blamed on one
    ],
    ids=["exit-3", "clean", "sigkill", "segfault", "memoryerror-without-limit"],
)
def test_exit_causes(tmp_path, code, cause):
    proc = python(tmp_path, code)
    proc.start()
    assert proc.limit_kind == ""
    assert ended(proc).exit_cause() == cause


def test_before_it_starts():
    proc = JobProcess(["true"], cwd=Path("."), env=dict(os.environ), log_path=Path("unused"))
    assert (proc.pid, proc.returncode, proc.poll(), proc.exit_cause()) == (0, None, None, "was not started")
    proc.terminate()  # nothing to do


def test_a_missing_command_is_refused_before_anything_starts(tmp_path):
    proc = JobProcess(["no-such-command-xyz"], cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log.txt")
    with pytest.raises(FileNotFoundError, match="no-such-command-xyz"):
        proc.start()
    assert proc.pid == 0


@pytest.mark.slow
def test_it_runs_in_its_own_session_with_its_cwd_env_and_appended_log(tmp_path):
    (tmp_path / "log.txt").write_text("earlier run\n")
    proc = python(tmp_path, "import os, sys; print(os.getcwd(), os.environ['MINE'], os.getpid() == os.getsid(0));"
                            "print('err', file=sys.stderr); print(sys.stdin.readline().strip())")  # fmt: skip
    proc.env["MINE"] = "yes"
    proc.start({"a": 1})
    ended(proc)
    assert (tmp_path / "log.txt").read_text() == f'earlier run\n{tmp_path} yes True\nerr\n{{"a": 1}}\n'


@pytest.mark.slow
def test_terminate_ends_a_running_child_with_sigterm(tmp_path):
    proc = python(tmp_path, "import time; print('up', flush=True); time.sleep(1000)")
    proc.start()
    wait_for(tmp_path / "log.txt", "up")
    assert proc.poll() is None and proc.wait(0.1) is None and proc.exit_cause() == "is still running"
    proc.terminate()
    assert (proc.returncode, proc.exit_cause(), proc.killed_here) == (-15, "was killed by signal 15 (SIGTERM)", True)


# --- memory limits -------------------------------------------------------------------------------------------

HOG = """
hog = []
print("allocating", flush=True)
while True:
    chunk = bytearray(16 * 2**20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    hog.append(chunk)
"""


@pytest.fixture(params=["cgroup", "rlimit"])
def mechanism(request, monkeypatch):
    if request.param == "cgroup" and CGROUP_HERE is None:
        pytest.skip("no memory cgroup can be made here")
    if request.param == "rlimit":
        monkeypatch.setattr(process_module._Cgroup, "make", classmethod(lambda cls, name, limit: None))
    return request.param


@pytest.mark.slow
def test_past_its_memory_limit_a_job_is_stopped_and_the_limit_named(tmp_path, mechanism):
    proc = python(tmp_path, HOG, memory_limit=300 * MiB)
    proc.start()
    assert proc.limit_kind == mechanism
    ended(proc)
    assert (
        proc.exit_cause()
        == {
            "cgroup": "was killed by signal 9 (memory limit 300 MiB reached)",
            "rlimit": "exited with code 1 (MemoryError: memory limit 300 MiB reached)",
        }[mechanism]
    )
    if mechanism == "cgroup":
        peak = proc.peak_memory()
        assert peak is not None and 200 * MiB < peak <= 300 * MiB
    else:
        assert proc.peak_memory() is None


@pytest.mark.slow
def test_the_limit_is_in_place_before_the_command_runs(tmp_path, mechanism):
    code = """
    import os, resource
    print(resource.getrlimit(resource.RLIMIT_AS)[0], open("/proc/self/cgroup").read().count("/flruntime-"),
          os.environ.get("MALLOC_ARENA_MAX"), flush=True)
    """
    proc = python(tmp_path, code, memory_limit=1 * GiB)
    proc.env.pop("MALLOC_ARENA_MAX", None)
    proc.start()
    ended(proc)
    got = (tmp_path / "log.txt").read_text().split()
    assert (
        got
        == {
            "cgroup": [str(resource.RLIM_INFINITY), "1", "None"],
            "rlimit": [str(GiB), "0", "2"],
        }[mechanism]
    )


@pytest.mark.slow
@pytest.mark.skipif(CGROUP_HERE is None, reason="no memory cgroup can be made here")
def test_a_grandchild_past_the_limit_is_named_when_the_job_then_fails(tmp_path):
    code = f"""
    import subprocess, sys
    code = subprocess.run([sys.executable, "-c", {HOG!r}]).returncode
    print("grandchild ended with", code, flush=True)
    sys.exit(2)
    """
    proc = python(tmp_path, code, memory_limit=300 * MiB)
    proc.start()
    ended(proc)
    assert "grandchild ended with -9" in (tmp_path / "log.txt").read_text()
    assert proc.exit_cause() == "exited with code 2 (a process of the job was killed: memory limit 300 MiB reached)"


@pytest.mark.slow
def test_a_sigkill_from_elsewhere_under_a_limit_is_a_question(tmp_path, mechanism):
    proc = python(tmp_path, "import time; print('up', flush=True); time.sleep(1000)", memory_limit=1 * GiB)
    proc.start()
    wait_for(tmp_path / "log.txt", "up")
    os.kill(proc.pid, signal.SIGKILL)
    ended(proc)
    assert proc.exit_cause() == "was killed by signal 9 (SIGKILL; memory limit 1 GiB reached?)"


@pytest.mark.slow
def test_an_earlier_memoryerror_in_the_log_is_not_blamed(tmp_path, mechanism):
    (tmp_path / "log.txt").write_text("MemoryError from an earlier run\n")
    proc = python(tmp_path, "import sys; sys.exit(1)", memory_limit=1 * GiB)
    proc.start()
    assert ended(proc).exit_cause() == "exited with code 1"


# --- ending a whole job --------------------------------------------------------------------------------------

TREE = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sleep", "1000"])
subprocess.Popen(["sleep", "1001"], start_new_session=True)
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
subprocess.Popen([sys.executable, "-c", stubborn])
print("started", flush=True)
EXIT
time.sleep(1000)
"""


@pytest.mark.slow
@pytest.mark.parametrize("child_exits", [False, True], ids=["child-ignores-sigterm", "child-already-exited"])
def test_terminate_leaves_no_process_of_the_job(tmp_path, child_exits, mechanism):
    proc = python(tmp_path, TREE.replace("EXIT", "sys.exit(4)" if child_exits else ""), memory_limit=1 * GiB)
    proc.start()
    wait_for(tmp_path / "log.txt", "started")
    pgid = proc.pid
    if child_exits:
        assert proc.wait(60) == 4
    assert len(token_holders(proc.token)) == (3 if child_exits else 4)
    assert len(live_in_group(pgid)) == (2 if child_exits else 3)  # the sleep 1001 has a session of its own
    proc.terminate(grace=0.5)
    assert live_in_group(pgid) == [] and token_holders(proc.token) == []
    try:  # in the process group only zombies can be left (orphans whose init does not reap, as in some containers)
        os.killpg(pgid, 0)
    except ProcessLookupError:
        pass
    else:
        assert all(p.status() == psutil.STATUS_ZOMBIE for p in psutil.process_iter() if _pgid(p.pid) == pgid)
    cause = "exited with code 4" if child_exits else "was killed by signal 9 (SIGKILL)"
    assert proc.exit_cause() == cause
    if mechanism == "cgroup":
        assert proc._cgroup is not None and not proc._cgroup.path.exists()
    proc.terminate()  # idempotent
    assert proc.exit_cause() == cause


# --- the status pipe -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_status_messages_arrive_in_order_from_many_threads(tmp_path):
    code = """
    import os, pathlib, threading
    from flruntime.jobproc.status import StatusWriter
    out = StatusWriter.from_env()
    assert "FLRUNTIME_STATUS_FD" not in os.environ
    def burst(t):
        for i in range(300):
            out.send("n", thread=t, i=i, pad="x" * 5000)  # longer than a pipe's atomic write
    threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    out.send("done", value=object.__name__, path=pathlib.Path("/x"))
    """
    got: list[dict] = []
    proc = python(tmp_path, code, on_status=got.append)
    proc.start()
    assert proc.wait(60) == 0, (tmp_path / "log.txt").read_text()
    proc.terminate()
    for t in range(4):
        assert [m["i"] for m in got if m.get("thread") == t] == list(range(300))
    assert got[-1] == {"kind": "done", "value": "object", "path": "/x"}
    assert proc.last_status["done"] == got[-1] and proc.last_status["n"]["i"] == 299


@pytest.mark.slow
def test_malformed_status_lines_are_logged_and_ignored(tmp_path, caplog):
    code = """
    import os
    fd = int(os.environ["FLRUNTIME_STATUS_FD"])
    os.write(fd, b'{"kind": "a"}\\nnot json\\n[1, 2]\\n{"kind": "b", "x": 1}\\n')
    """
    got: list[dict] = []
    proc = python(tmp_path, code, on_status=got.append, name="site-1:job")
    proc.start()
    ended(proc)
    assert got == [{"kind": "a"}, {"kind": "b", "x": 1}]
    warnings = [r.getMessage() for r in caplog.records if "malformed status line" in r.getMessage()]
    assert warnings == [
        "site-1:job: ignoring a malformed status line: 'not json\\n'",
        "site-1:job: ignoring a malformed status line: '[1, 2]\\n'",
    ]


@pytest.mark.slow
def test_a_failing_callback_does_not_stop_the_reader(tmp_path):
    got: list[int] = []

    def on_status(message: dict) -> None:
        if message["i"] == 1:
            raise RuntimeError("boom")
        got.append(message["i"])

    code = """
    from flruntime.jobproc.status import StatusWriter
    out = StatusWriter.from_env()
    for i in range(3):
        out.send("n", i=i)
    """
    proc = python(tmp_path, code, on_status=on_status)
    proc.start()
    ended(proc)
    assert got == [0, 2]


@pytest.mark.slow
def test_the_writer_stops_quietly_when_the_parent_is_gone(tmp_path):
    read_fd, write_fd = os.pipe()
    code = """
    import sys
    from flruntime.jobproc.status import StatusWriter
    out = StatusWriter.from_env()
    sys.stdin.readline()
    for i in range(1000):
        out.send("n", i=i, pad="x" * 1000)
    print("still here", flush=True)
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, ENV_STATUS_FD: str(write_fd)},
        pass_fds=(write_fd,),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(write_fd)
    os.close(read_fd)  # the parent's end is gone before anything is written
    out, _ = child.communicate("go\n", timeout=60)
    assert (child.returncode, out) == (0, "still here\n")


def test_without_a_pipe_there_is_no_writer(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_STATUS_FD, raising=False)
    assert StatusWriter.from_env() is None
    with (tmp_path / "f").open("w") as f:  # a descriptor that is not a pipe is not taken for one
        monkeypatch.setenv(ENV_STATUS_FD, str(f.fileno()))
        assert StatusWriter.from_env() is None
    monkeypatch.setenv(ENV_STATUS_FD, "nope")
    assert StatusWriter.from_env() is None
