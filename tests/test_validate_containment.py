"""Job code never ends the process that checks it: ``flruntime validate``, the simulator's preflight and the server's
submit check a job with custom/ code in a short-lived child, and whatever that code does at import (exit, crash, hang,
allocate) is one problem line. Over-long names are problem lines too, never an internal error.

Every expectation is the exact line a user sees, located in a real job folder.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT_FILE, META, PARTS, SERVER_FILE, line_of, make_job

from flruntime.cli.main import main
from flruntime.errors import UsageError
from flruntime.federation import commands as commands_module
from flruntime.federation.archive import zip_folder
from flruntime.federation.commands import AdminCommands
from flruntime.federation.jobs import JobStore
from flruntime.federation.kit import Member
from flruntime.jobproc.check import check_job
from flruntime.transport.streaming import iter_bytes, read_control

EXIT_HINT = "(move that code under if __name__ == '__main__')"
LONG = "a" * 300
LONG_SHOWN = "'" + "a" * 40 + "…'"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(params=["process", "in-process"])
def cli(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``flruntime ARGS...`` as ``python -m flruntime`` or through ``main([...])``."""
    if request.param == "process":

        def run_process(*args: str | Path) -> Result:
            proc = subprocess.run(
                [sys.executable, "-m", "flruntime", *map(str, args)], capture_output=True, text=True, timeout=120
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)

        return run_process

    def run_main(*args: str | Path) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run_main


def at(job: Path, file: str, json_path: str, needle: str, text: str) -> str:
    return f"{file}:{line_of(job / file, needle)}: {json_path}: {text}"


def first_use(job: Path, text: str) -> str:
    """The problem at the first class path of the default job (the server's workflow)."""
    return at(job, SERVER_FILE, "$.workflows[0].path", '"path": "parts.FedAvg"', text)


def every_use(job: Path, text: str) -> list[str]:
    """The problem at every class path of the default job: each one imports the module again."""
    return [
        first_use(job, text),
        at(job, SERVER_FILE, "$.components[0].path", '"path": "parts.Persistor"', text),
        at(job, SERVER_FILE, "$.components[0].args.model.path", '"path": "parts.Net"', text),
        at(job, SERVER_FILE, "$.components[1].path", '"path": "parts.WeightedAggregator"', text),
        at(job, CLIENT_FILE, "$.executors[0].executor.path", '"path": "parts.Trainer"', text),
    ]


def job_importing(root: Path, prefix: str, **more: str) -> Path:
    """The default job whose ``parts.py`` runs ``prefix`` first (and further custom modules ``more``)."""
    return make_job(root, custom={"parts.py": prefix + PARTS, **more})


# ---------------------------------------------------------------- flruntime validate


def test_system_exit_at_import_is_a_problem_of_every_use(tmp_path: Path, cli: Callable[..., Result]) -> None:
    job = job_importing(tmp_path / "job", "raise SystemExit(7)\n")
    result = cli("validate", job)
    assert result.code == 1, result.err
    assert result.out.splitlines() == every_use(
        job, f"custom/parts.py: importing it exited the process with code 7 {EXIT_HINT}"
    )
    assert result.err == "demo: 5 problem(s)\n"


def test_os_exit_at_import_is_one_problem(tmp_path: Path, cli: Callable[..., Result]) -> None:
    job = job_importing(tmp_path / "job", "import os\nos._exit(9)\n")
    result = cli("validate", job)
    assert (result.code, result.err) == (1, "demo: 1 problem(s)\n")
    assert result.out.splitlines() == [
        first_use(job, f"custom/parts.py: importing it exited the process with code 9 {EXIT_HINT}")
    ]


def test_json_format_of_a_module_that_exits(tmp_path: Path, cli: Callable[..., Result]) -> None:
    job = job_importing(tmp_path / "job", "import os\nos._exit(9)\n")
    result = cli("validate", job, "--format", "json")
    assert result.code == 1
    doc = json.loads(result.out)
    assert (doc["valid"], doc["errors"], doc["warnings"]) == (False, 1, 0)
    assert doc["problems"] == [
        {
            "file": SERVER_FILE,
            "path": "$.workflows[0].path",
            "message": "custom/parts.py: importing it exited the process with code 9",
            "hint": "move that code under if __name__ == '__main__'",
            "line": line_of(job / SERVER_FILE, '"path": "parts.FedAvg"'),
            "column": doc["problems"][0]["column"],
            "code": "check-process",
            "severity": "error",
        }
    ]


def test_the_module_a_custom_module_imports_is_named(tmp_path: Path) -> None:
    job = job_importing(tmp_path / "job", "import helper\n", **{"helper.py": "import os\nos._exit(3)\n"})
    assert check_job(job).errors == [
        first_use(job, f"custom/helper.py: importing it exited the process with code 3 {EXIT_HINT}")
    ]


def test_a_crash_at_import_names_the_signal(tmp_path: Path) -> None:
    job = job_importing(tmp_path / "job", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert check_job(job).errors == [first_use(job, "custom/parts.py: importing it was killed by signal 11 (SIGSEGV)")]


def test_a_hang_at_import_ends_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_importing(tmp_path / "job", "import time\ntime.sleep(3600)\n")
    monkeypatch.setenv("FLRUNTIME_CHECK_TIMEOUT", "4")
    assert main(["validate", str(job)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        first_use(
            job,
            "custom/parts.py: importing it did not finish within 4 s "
            "(do slow work when the job runs, not at import, or raise FLRUNTIME_CHECK_TIMEOUT)",
        )
    ]


def test_allocating_past_the_limit_is_a_memory_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_importing(tmp_path / "job", "hog = bytearray(64 * 2**30)\n")
    monkeypatch.setenv("FLRUNTIME_CHECK_MEMORY_MB", "512")
    assert main(["validate", str(job)]) == 1
    assert capsys.readouterr().out.splitlines() == every_use(
        job,
        "custom/parts.py: importing it ran out of memory "
        "(a job check may use 512 MiB; import less at module level, or raise FLRUNTIME_CHECK_MEMORY_MB)",
    )


def test_job_code_that_exits_outside_an_import(tmp_path: Path) -> None:
    """A classmethod the checks call (sent_tasks) ends the child: a line for the job as a whole."""
    parts = PARTS.replace('return {args.get("train_task_name", "train")}', "import os\n        os._exit(4)", 1)
    job = make_job(tmp_path / "job", custom={"parts.py": parts})
    assert check_job(job).errors == ["meta.json: $: checking the job exited the process with code 4"]


def test_job_code_that_raises_system_exit_outside_an_import(tmp_path: Path) -> None:
    parts = PARTS.replace('return {args.get("train_task_name", "train")}', "raise SystemExit(5)", 1)
    job = make_job(tmp_path / "job", custom={"parts.py": parts})
    line = line_of(job / "app/custom/parts.py", "raise SystemExit(5)")
    assert check_job(job).errors == [
        f"app/custom/parts.py:{line}: $: this code exited the process with code 5 while the job was checked"
    ]


def test_what_job_code_starts_at_import_is_killed_with_the_check(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    prefix = (
        "import os, subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "os._exit(3)\n"
    )
    job = job_importing(tmp_path / "job", prefix)
    assert check_job(job).errors == [
        first_use(job, f"custom/parts.py: importing it exited the process with code 3 {EXIT_HINT}")
    ]
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    for _ in range(200):  # SIGKILL is delivered at once; a zombie waits for init to reap it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_only_a_job_with_custom_code_is_checked_in_a_child(tmp_path: Path) -> None:
    with_code = make_job(tmp_path / "with")
    assert check_job(with_code).isolated is True
    meta = {**META, "deploy_map": {"app": ["server", "site-1", "site-2"]}, "min_clients": 2}
    server = {"format_version": 2, "workflows": [{"id": "wf", "name": "FedAvg", "args": {"num_rounds": 1}}]}
    client = {
        "format_version": 2,
        "executors": [{"tasks": ["train"], "executor": {"name": "NPTrainer", "args": {}}}],
    }
    without = make_job(tmp_path / "without", meta=meta, server=server, client=client, custom={})
    result = check_job(without)
    assert result.isolated is False
    assert (result.name, result.client_sites, result.deploy_map) == (
        "demo",
        ["site-1", "site-2"],
        {"app": ["server", "site-1", "site-2"]},
    )
    assert result.meta == meta


def test_the_child_reports_usage_errors_and_facts(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job")
    with pytest.raises(UsageError, match=r"^override 'num_round' names no variable of this job \(did you mean"):
        check_job(job, overrides={"num_round": 2})
    result = check_job(job, overrides={"num_rounds": 2}, job_id="j-1")
    assert (result.valid, result.errors, result.isolated) == (True, [], True)
    assert (result.name, result.client_sites, result.deploy_map) == ("demo", [], {"app": ["@ALL"]})


# ---------------------------------------------------------------- over-long names


def test_an_app_name_too_long_for_a_folder(tmp_path: Path, cli: Callable[..., Result]) -> None:
    meta = copy.deepcopy(META)
    meta["deploy_map"] = {LONG: ["@ALL"]}
    job = make_job(tmp_path / "job", meta=meta)
    result = cli("validate", job)
    assert (result.code, result.err) == (1, "demo: 1 problem(s)\n")
    assert result.out.splitlines() == [
        f"meta.json:{line_of(job / 'meta.json', 'deploy_map')}: $.deploy_map: app name {LONG_SHOWN} is too long "
        "(300 characters; a file name may have at most 255)"
    ]


def test_a_site_name_too_long_for_a_folder(tmp_path: Path) -> None:
    meta = copy.deepcopy(META)
    meta["deploy_map"] = {"app": ["server", LONG]}
    job = make_job(tmp_path / "job", meta=meta)
    line = line_of(job / "meta.json", '"app"')
    assert check_job(job).errors == [
        f"meta.json:{line}: $.deploy_map.app: site name {LONG_SHOWN} is too long "
        "(300 characters; a file name may have at most 255)"
    ]


def test_an_app_name_that_makes_a_path_too_long(tmp_path: Path) -> None:
    deep = "/".join(["b" * 200] * 25)  # every part fits, the whole path does not
    meta = copy.deepcopy(META)
    meta["deploy_map"] = {deep: ["@ALL"]}
    job = make_job(tmp_path / "job", meta=meta)
    size = len(os.fsencode(os.path.abspath(job / deep / "config" / "config_fed_client.json.default")))
    errors = check_job(job).errors  # the schema also refuses the "/" in the name, on its own line
    line = line_of(job / "meta.json", "deploy_map")
    shown = "'" + "b" * 40 + "…'"
    assert (
        f"meta.json:{line}: $.deploy_map: app name {shown} makes a path too long ({size} bytes; a path may "
        "have at most 4095)" in errors
    )


def test_a_job_folder_name_too_long(tmp_path: Path, cli: Callable[..., Result]) -> None:
    result = cli("validate", tmp_path / LONG)
    assert result.code == 2
    assert result.err == (
        f"flruntime: error: job folder {LONG_SHOWN} is too long (300 characters; a file name may have at most 255)\n"
    )


def test_simulate_refuses_an_app_name_too_long(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = copy.deepcopy(META)
    meta["deploy_map"] = {LONG: ["@ALL"]}
    job = make_job(tmp_path / "job", meta=meta)
    assert main(["simulate", str(job), "-n", "1", "-w", str(tmp_path / "ws")]) == 1
    line = line_of(job / "meta.json", "deploy_map")
    assert capsys.readouterr().err == (
        f"flruntime: error: meta.json:{line}: $.deploy_map: app name {LONG_SHOWN} is too long "
        "(300 characters; a file name may have at most 255)\n"
    )
    assert not (tmp_path / "ws").exists()


def test_simulate_refuses_a_job_name_too_long_for_its_default_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(tmp_path / "job", meta={**META, "name": LONG})
    assert main(["simulate", str(job), "-n", "1"]) == 1
    assert capsys.readouterr().err == (
        f"flruntime: error: meta.json: $.name: job name {LONG_SHOWN} is too long (300 characters; a file name may "
        "have at most 255) (pass -w WORKSPACE)\n"
    )


def test_simulate_checks_custom_code_in_a_child_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = job_importing(tmp_path / "job", "import os\nos._exit(9)\n")
    assert main(["simulate", str(job), "-n", "1", "-w", str(tmp_path / "ws")]) == 1
    assert capsys.readouterr().err == (
        "flruntime: error: "
        + first_use(job, f"custom/parts.py: importing it exited the process with code 9 {EXIT_HINT}")
        + "\n"
    )
    assert not (tmp_path / "ws").exists()


# ---------------------------------------------------------------- the server's submit


class _Settings:
    max_upload = 16 * 2**20


class _Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []

    def write(self, *entry: Any) -> None:
        self.entries.append(entry)


class _Server:
    """What AdminCommands.submit uses of a FederationServer: the job store, settings, audit, sites, wake."""

    def __init__(self, workspace: Path) -> None:
        self.store = JobStore(workspace)
        self.settings = _Settings()
        self.audit = _Audit()
        self.woken = 0

    def sites_of(self, named: list[str], deploy_map: dict[str, list[str]]) -> list[str]:
        return named or ["site-1", "site-2"]

    def wake(self) -> None:
        self.woken += 1


ADMIN = Member("admin@acme.org", "admin", "acme", "project_admin")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    fake = _Server(tmp_path / "server")
    yield fake
    fake.store.close()


def submit(server: _Server, job: Path) -> dict[str, Any]:
    commands = AdminCommands(server)  # type: ignore[arg-type]
    return read_control(commands.submit(ADMIN, iter_bytes(zip_folder(job), name="")))


def job_folders(server: _Server) -> list[str]:
    return sorted(p.name for p in server.store.root.iterdir() if p.is_dir())


@pytest.mark.parametrize(
    ("prefix", "code"),
    [pytest.param("import os\nos._exit(3)\n", 3, id="os-exit"), pytest.param("raise SystemExit(3)\n", 3, id="exit")],
)
def test_submit_of_code_that_exits_refuses_the_job_and_keeps_nothing(
    tmp_path: Path, server: _Server, prefix: str, code: int
) -> None:
    job = job_importing(tmp_path / "job", prefix)
    reply = submit(server, job)
    assert reply["ok"] is False
    assert reply["errors"][0] == first_use(
        job, f"custom/parts.py: importing it exited the process with code {code} {EXIT_HINT}"
    )
    assert job_folders(server) == [] and server.store.all() == []
    assert server.audit.entries[-1][5] == "failed"


def test_submit_queues_a_valid_job_without_importing_its_code_here(tmp_path: Path, server: _Server) -> None:
    marker = tmp_path / "imported_by"
    job = job_importing(tmp_path / "job", f"import os\nopen({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
    reply = submit(server, job)
    assert reply["ok"] is True, reply
    assert job_folders(server) == [reply["job_id"]]
    rec = server.store.get(reply["job_id"])
    assert rec is not None and (rec.name, rec.sites) == ("demo", ["site-1", "site-2"])
    assert str(os.getpid()) not in marker.read_text().split() and "parts" not in sys.modules
    assert server.woken == 1


def test_submit_keeps_nothing_when_checking_fails_unexpectedly(
    tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(commands_module, "check_job", broken)
    reply = submit(server, make_job(tmp_path / "job"))
    assert reply == {"ok": False, "errors": ["the server could not check the job: RuntimeError: boom"]}
    assert job_folders(server) == []


def test_submit_keeps_nothing_when_queueing_fails(
    tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(rec: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(server.store, "add", broken)
    with pytest.raises(OSError, match="disk full"):
        submit(server, make_job(tmp_path / "job"))
    assert job_folders(server) == []
