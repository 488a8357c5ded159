"""``flruntime validate``: exit codes, one problem per line, JSON output, usage errors; as a process and in-process."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, CLIENT_FILE, PARTS, SERVER, SERVER_FILE, dump, line_of, make_job, write

from flruntime.cli.main import main


@dataclass(frozen=True)
class Result:
    """What one command line run ended with."""

    code: int
    out: str
    err: str


Runner = Callable[..., Result]


@pytest.fixture(params=["process", "in-process"])
def cli(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run ``flruntime ARGS...`` either as ``python -m flruntime`` or through ``main([...])``."""
    if request.param == "process":

        def run_process(*args: str | Path) -> Result:
            proc = subprocess.run(
                [sys.executable, "-m", "flruntime", *map(str, args)], capture_output=True, text=True, timeout=120
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)

        return run_process

    def run_main(*args: str | Path) -> Result:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse exits for usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run_main


def server_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SERVER)
    doc.update(changes)
    return doc


def bad_job(root: Path) -> Path:
    """A job with two problems: a misspelt reference and a string where an int belongs."""
    doc = server_with(num_rounds="3")
    doc["workflows"][0]["args"]["aggregator_id"] = "agregator"
    return make_job(root, server=doc)


def bad_job_lines(job: Path) -> list[str]:
    server = job / SERVER_FILE
    return [
        f"{SERVER_FILE}:{line_of(server, '{num_rounds}')}: $.workflows[0].args.num_rounds: argument 'num_rounds' of "
        "FedAvg expects int, got str '3' (write 3 without quotes)",
        f"{SERVER_FILE}:{line_of(server, 'agregator')}: $.workflows[0].args.aggregator_id: aggregator_id: no component "
        "'agregator' (did you mean 'aggregator'?)",
    ]


def warning_job(root: Path) -> Path:
    """A valid job whose client handles a task no workflow sends."""
    doc = copy.deepcopy(CLIENT)
    doc["executors"][0]["tasks"] = ["train", "extra"]
    return make_job(root, client=doc)


def two_app_job(root: Path) -> Path:
    """app_server for the server, app_1 for site-1 (with a mistake), app_2 for site-2."""
    meta = {
        "name": "two",
        "min_clients": 2,
        "deploy_map": {"app_server": ["server"], "app_1": ["site-1"], "app_2": ["site-2"]},
    }
    write(root / "meta.json", dump(meta))
    write(root / "app_server/config/config_fed_server.json", dump(SERVER))
    broken = copy.deepcopy(CLIENT)
    broken["executors"][0]["executor"]["args"] = {"lr": 0.1, "epoch": 2}
    write(root / "app_1/config/config_fed_client.json", dump(broken))
    write(root / "app_2/config/config_fed_client.json", dump(CLIENT))
    for app in ("app_server", "app_1", "app_2"):
        write(root / app / "custom" / "parts.py", PARTS)
    return root


# --- exit 0 -----------------------------------------------------------------------------------------------------------


def test_valid_job(cli: Runner, tmp_path: Path) -> None:
    result = cli("validate", make_job(tmp_path / "job"))
    assert result == Result(0, "", "demo: valid\n")


def test_warnings_do_not_fail(cli: Runner, tmp_path: Path) -> None:
    job = warning_job(tmp_path / "job")
    line = line_of(job / CLIENT_FILE, '"extra"')
    result = cli("validate", job)
    assert result == Result(
        0,
        f"{CLIENT_FILE}:{line}: $.executors[0].tasks[1]: warning: no workflow sends task 'extra' "
        "(the server's workflows send: train)\n",
        "demo: valid, 1 warning(s)\n",
    )


# --- exit 1 -----------------------------------------------------------------------------------------------------------


def test_invalid_job_prints_every_problem_one_per_line(cli: Runner, tmp_path: Path) -> None:
    job = bad_job(tmp_path / "job")
    result = cli("validate", job)
    assert result.code == 1
    assert result.out.splitlines() == bad_job_lines(job)
    assert result.err == "demo: 2 problem(s)\n"


def test_problems_and_warnings_together(cli: Runner, tmp_path: Path) -> None:
    job = warning_job(tmp_path / "job")
    write(job / SERVER_FILE, dump(server_with(format_version=1)))
    result = cli("validate", job)
    assert result.code == 1
    assert result.out.splitlines() == [
        f"{SERVER_FILE}:2: $.format_version: must be 2, got 1",
        f"{CLIENT_FILE}:{line_of(job / CLIENT_FILE, 'extra')}: $.executors[0].tasks[1]: warning: no workflow sends "
        "task 'extra' (the server's workflows send: train)",
    ]
    assert result.err == "demo: 1 problem(s), 1 warning(s)\n"


BAD_INPUTS: list[Any] = [
    pytest.param("meta.json", b'{"name": "x",', id="truncated-meta"),
    pytest.param("meta.json", b"\xff\xfe{}", id="not-utf8"),
    pytest.param("meta.json", b"[]", id="meta-list"),
    pytest.param("meta.json", b'{"deploy_map": {"app": [{"sites": 5}]}}', id="deploy-map-junk"),
    pytest.param(SERVER_FILE, b'{"format_version": 2, "workflows": [{"path": 5, "args": []}]}', id="junk-workflow"),
    pytest.param(SERVER_FILE, b'{"format_version": 2, "task_data_filters": [{"tasks": 1.5}]}', id="junk-filter-chain"),
    pytest.param(SERVER_FILE, b"[" * 5000 + b"]" * 5000, id="deep-json"),
    pytest.param("app/config/config_fed_server.yaml", b"a: &x [*x]\n", id="recursive-yaml"),
    pytest.param("app/config/config_fed_server.conf", b"a = ${b}\nb = ${a}\n", id="hocon-cycle"),
    pytest.param(CLIENT_FILE, b'{"format_version": 2, "executors": [{"tasks": "x", "executor": 1}]}', id="junk-client"),
]


@pytest.mark.parametrize(("name", "content"), BAD_INPUTS)
def test_bad_input_never_shows_a_traceback(cli: Runner, tmp_path: Path, name: str, content: bytes) -> None:
    job = make_job(tmp_path / "job", server=None if name.startswith("app/config/config_fed_server") else SERVER)
    (job / name).write_bytes(content)
    result = cli("validate", job)
    assert result.code == 1, result
    assert "Traceback" not in result.err
    assert result.out
    assert all(line.startswith(("meta.json", "app/config/")) for line in result.out.splitlines()), result.out
    assert result.err.startswith("demo: ") or result.err.startswith("job: ")


# --- --format json ----------------------------------------------------------------------------------------------------


def test_json_output_of_an_invalid_job(cli: Runner, tmp_path: Path) -> None:
    job = bad_job(tmp_path / "job")
    result = cli("validate", job, "--format", "json")
    assert (result.code, result.err) == (1, "")
    report = json.loads(result.out)
    assert {k: report[k] for k in ("valid", "errors", "warnings")} == {"valid": False, "errors": 2, "warnings": 0}
    assert set(report) == {"job", "valid", "errors", "warnings", "problems"}
    server = job / SERVER_FILE
    assert report["problems"] == [
        {
            "file": SERVER_FILE,
            "line": line_of(server, "{num_rounds}"),
            "column": 9,
            "path": "$.workflows[0].args.num_rounds",
            "message": "argument 'num_rounds' of FedAvg expects int, got str '3'",
            "hint": "write 3 without quotes",
            "severity": "error",
            "code": "arg-type",
        },
        {
            "file": SERVER_FILE,
            "line": line_of(server, "agregator"),
            "column": 9,
            "path": "$.workflows[0].args.aggregator_id",
            "message": "aggregator_id: no component 'agregator'",
            "hint": "did you mean 'aggregator'?",
            "severity": "error",
            "code": "reference",
        },
    ]


def test_json_output_of_a_valid_job_with_a_warning(cli: Runner, tmp_path: Path) -> None:
    job = warning_job(tmp_path / "job")
    result = cli("validate", job, "--format", "json")
    assert (result.code, result.err) == (0, "")
    report = json.loads(result.out)
    assert report["job"] == str(job)
    assert {k: report[k] for k in ("valid", "errors", "warnings")} == {"valid": True, "errors": 0, "warnings": 1}
    (problem,) = report["problems"]
    assert problem == {
        "file": CLIENT_FILE,
        "line": line_of(job / CLIENT_FILE, "extra"),
        "column": 9,
        "path": "$.executors[0].tasks[1]",
        "message": "no workflow sends task 'extra'",
        "hint": "the server's workflows send: train",
        "severity": "warning",
        "code": "task-unused",
    }


def test_json_output_of_a_clean_job(cli: Runner, tmp_path: Path) -> None:
    job = make_job(tmp_path / "job")
    result = cli("validate", "--format", "json", job)
    assert result.code == 0
    assert json.loads(result.out) == {"job": str(job), "valid": True, "errors": 0, "warnings": 0, "problems": []}


def test_json_problem_without_a_line(cli: Runner, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    report = json.loads(cli("validate", job, "--format", "json").out)
    assert report["problems"] == [
        {
            "file": "meta.json",
            "line": 0,
            "column": 0,
            "path": "$",
            "message": "no meta.json (or meta.conf / meta.yml) in the job folder",
            "hint": 'add meta.json with {"name": ..., "deploy_map": {"app": ["@ALL"]}, "min_clients": 1}',
            "severity": "error",
            "code": "missing-file",
        }
    ]


# --- exit 2 -----------------------------------------------------------------------------------------------------------


def explicit_job(root: Path) -> Path:
    meta = {"name": "demo", "min_clients": 2, "deploy_map": {"app": ["server", "site-1", "site-2"]}}
    return make_job(root, meta=meta)


USAGE_ERRORS: list[Any] = [
    pytest.param(
        ["-o", "num_rounds"],
        "flruntime: error: override 'num_rounds' is not of the form key=value\n",
        id="override-syntax",
    ),
    pytest.param(["-o", "=5"], "flruntime: error: override '=5' is not of the form key=value\n", id="override-no-key"),
    pytest.param(
        ["-o", "num_round=5"],
        "flruntime: error: override 'num_round' names no variable of this job (did you mean 'num_rounds'?)\n",
        id="override-unknown",
    ),
    pytest.param(
        ["--site", "site_1"],
        "flruntime: error: site 'site_1' runs no app of this job (did you mean 'site-1'?)\n",
        id="site-close",
    ),
    pytest.param(
        ["--site", "hospital"],
        "flruntime: error: site 'hospital' runs no app of this job (the deploy map names: server, site-1, site-2)\n",
        id="site-far",
    ),
    pytest.param(
        ["--bogus"], "flruntime: error: unrecognized arguments: --bogus (see flruntime --help)\n", id="unknown-option"
    ),
    pytest.param(
        ["--format", "xml"],
        "flruntime validate: error: argument --format: invalid choice: 'xml' (choose from 'text', 'json') "
        "(see flruntime validate --help)\n",
        id="bad-format",
    ),
]


@pytest.mark.parametrize(("args", "stderr"), USAGE_ERRORS)
def test_usage_errors(cli: Runner, tmp_path: Path, args: list[str], stderr: str) -> None:
    job = explicit_job(tmp_path / "job")
    assert cli("validate", job, *args) == Result(2, "", stderr)


def test_nonexistent_folder(cli: Runner, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert cli("validate", missing) == Result(2, "", f"flruntime: error: job folder '{missing}' does not exist\n")


def test_file_instead_of_folder(cli: Runner, tmp_path: Path) -> None:
    file = write(tmp_path / "meta.json", "{}")
    assert cli("validate", file) == Result(2, "", f"flruntime: error: '{file}' is not a folder\n")


def test_legacy_job_format_is_refused_by_validate_and_simulate(cli: Runner, tmp_path: Path) -> None:
    app = tmp_path / "my_app"  # NVFlare's legacy format: one app, config/ at the top, no meta file
    write(app / "config" / "config_fed_server.json", dump(SERVER))
    write(app / "config" / "config_fed_client.json", dump(CLIENT))
    write(app / "custom" / "parts.py", PARTS)
    line = (
        "meta.json: $: meta.[json|conf|yml] not existing for job my_app, possible in legacy job format (config/ at "
        f"the top of the folder, no meta file) (upgrade the job structure: 'flruntime job convert {app} -o "
        f"{app}_job' wraps it as app 'my_app' of a job)"
    )
    assert cli("validate", app) == Result(1, line + "\n", "my_app: 1 problem(s)\n")
    assert cli("simulate", app, "-n", "1", "-w", tmp_path / "ws") == Result(1, "", f"flruntime: error: {line}\n")
    assert not (tmp_path / "ws").exists()


def test_missing_job_dir(cli: Runner) -> None:
    result = cli("validate")
    assert result == Result(
        2,
        "",
        "flruntime validate: error: the following arguments are required: JOB_DIR (see flruntime validate --help)\n",
    )


def test_overrides_are_applied(cli: Runner, tmp_path: Path) -> None:
    job = bad_job(tmp_path / "job")
    result = cli("validate", job, "-o", "num_rounds=4")
    assert result.code == 1
    assert result.out.splitlines() == bad_job_lines(job)[1:]
    assert result.err == "demo: 1 problem(s)\n"


def test_override_with_a_string_value(cli: Runner, tmp_path: Path) -> None:
    job = make_job(tmp_path / "job")
    result = cli("validate", job, "-o", "num_rounds=many")
    line = line_of(job / SERVER_FILE, "{num_rounds}")
    assert result == Result(
        1,
        f"{SERVER_FILE}:{line}: $.workflows[0].args.num_rounds: argument 'num_rounds' of FedAvg expects int, "
        "got str 'many'\n",
        "demo: 1 problem(s)\n",
    )


# --- --site -----------------------------------------------------------------------------------------------------------


def test_site_restricts_to_its_app(cli: Runner, tmp_path: Path) -> None:
    job = two_app_job(tmp_path / "job")
    problem = (
        f"app_1/config/config_fed_client.json:{line_of(job / 'app_1/config/config_fed_client.json', 'epoch')}: "
        "$.executors[0].executor.args.epoch: unknown argument 'epoch' for Trainer (did you mean 'epochs'?)\n"
    )
    assert cli("validate", job) == Result(1, problem, "two: 1 problem(s)\n")
    assert cli("validate", job, "--site", "site-1") == Result(1, problem, "two: 1 problem(s)\n")
    assert cli("validate", job, "--site", "site-2") == Result(0, "", "two: valid\n")
    assert cli("validate", job, "--site", "server") == Result(0, "", "two: valid\n")


def test_site_checks_only_its_side(cli: Runner, tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with(format_version=1))
    assert cli("validate", job, "--site", "site-1") == Result(0, "", "demo: valid\n")
    assert cli("validate", job, "--site", "server") == Result(
        1, f"{SERVER_FILE}:2: $.format_version: must be 2, got 1\n", "demo: 1 problem(s)\n"
    )
