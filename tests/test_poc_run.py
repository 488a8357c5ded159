"""POC mode end to end through the command line: prepare, start, submit, list, abort, download, stop, clean."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from flruntime.cli.main import main
from tests.fedkit import FAST_ENV, flr, free_port, np_job

pytestmark = pytest.mark.slow


@pytest.fixture
def poc(tmp_path: Path):
    env = {**os.environ, **FAST_ENV, "FLRUNTIME_POC_WORKSPACE": str(tmp_path / "poc")}
    env.pop("FLRUNTIME_ADMIN_KIT", None)
    port = free_port()
    out = flr("poc", "prepare", "-n", "2", "--port", str(port), env=env)
    assert out.returncode == 0, out.stderr
    out = flr("poc", "start", env=env)
    assert out.returncode == 0, out.stderr
    yield env
    flr("poc", "stop", env=env)


def _wait_for(pattern: str, path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and re.search(pattern, path.read_text(errors="replace"))):
        assert time.monotonic() < deadline, f"{pattern!r} not in {path}"
        time.sleep(0.2)


def test_a_poc_federation_runs_submitted_jobs_from_the_command_line(poc, tmp_path: Path):
    server_log = tmp_path / "poc" / "example_project" / "prod_00" / "server" / "log.txt"
    _wait_for(r"client 'site-2' \(org \S+\) registered", server_log)
    _wait_for(r"client 'site-1' \(org \S+\) registered", server_log)
    sites = ["site-1", "site-2"]

    out = flr("job", "submit", "-j", str(np_job(tmp_path / "done", sites, rounds=2)), "--wait", env=poc)
    assert out.returncode == 0, out.stderr
    done = re.match(r"submitted job (\S+)\njob \1: FINISHED:COMPLETED\n$", out.stdout)
    assert done, out.stdout

    out = flr("job", "submit", "-j", str(np_job(tmp_path / "long", sites, rounds=100, sleep=1)), env=poc)
    long_id = out.stdout.split()[-1]
    _wait_for(rf"job {long_id}: round 0 done", server_log)
    out = flr("job", "abort", long_id, env=poc)
    assert (out.returncode, out.stdout) == (0, f"abort of job {long_id} requested\n")
    _wait_for(rf"job {long_id} \(np_fedavg\): FINISHED:ABORTED", server_log)

    out = flr("job", "list", env=poc)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["JOB", "ID", "NAME", "STATUS", "SUBMIT", "TIME", "RUN", "DURATION"]
    assert [line.split()[:3] for line in lines[1:]] == [
        [done.group(1), "np_fedavg", "FINISHED:COMPLETED"],
        [long_id, "np_fedavg", "FINISHED:ABORTED"],
    ]

    out = flr("job", "download", done.group(1), "-o", str(tmp_path / "dl"), env=poc)
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "dl" / done.group(1)
    assert out.stdout == f"downloaded job {done.group(1)} to {folder}\n"
    assert (folder / "models" / "server.npy").is_file()
    assert "round 1 done with site-1, site-2" in (folder / "log.txt").read_text()

    out = flr("job", "abort", "no-such-job", env=poc)
    assert (out.returncode, out.stderr) == (2, "flruntime: error: no job with id no-such-job\n")
    out = flr("job", "download", "no-such-job", "-o", str(tmp_path / "dl"), env=poc)
    assert (out.returncode, out.stderr) == (2, "flruntime: error: no job with id no-such-job\n")


def test_an_invalid_job_is_refused_before_upload(poc, tmp_path: Path):
    job = np_job(tmp_path / "bad", ["site-1", "site-2"], rounds=1)
    config = job / "app" / "config" / "config_fed_server.json"
    doc = json.loads(config.read_text())
    doc["workflows"][0]["args"]["num_roundz"] = 3
    config.write_text(json.dumps(doc, indent=2))
    out = flr("job", "submit", "-j", str(job), env=poc)
    assert out.returncode == 1
    assert out.stderr.startswith("flruntime: error: app/config/config_fed_server.json:")
    assert "num_roundz" in out.stderr
    assert flr("job", "list", "--json", env=poc).stdout.strip() == "[]"


def test_job_commands_need_an_admin_kit(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("FLRUNTIME_POC_WORKSPACE", str(tmp_path / "nothing"))
    monkeypatch.delenv("FLRUNTIME_ADMIN_KIT", raising=False)
    assert main(["job", "list"]) == 2
    assert capsys.readouterr().err == (
        "flruntime: error: no admin kit: pass --kit ADMIN_KIT (or set FLRUNTIME_ADMIN_KIT, or prepare a POC)\n"
    )


def test_an_he_job_runs_in_a_poc_with_the_provisioned_contexts(tmp_path: Path):
    env = {**os.environ, **FAST_ENV, "FLRUNTIME_POC_WORKSPACE": str(tmp_path / "poc")}
    env.pop("FLRUNTIME_HE_DIR", None)
    assert flr("poc", "prepare", "-n", "2", "--he", "--port", str(free_port()), env=env).returncode == 0
    assert flr("poc", "start", env=env).returncode == 0
    try:
        job = tmp_path / "he_job"
        assert (
            main(["job", "create", "-t", "fedavg_he_pt", "-w", str(job), "-o", "num_rounds=1", "-o", "num_sites=2"])
            == 0
        )
        out = flr("job", "submit", "-j", str(job), "--wait", "--timeout", "600", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        job_id = out.stdout.split()[2]
        server = tmp_path / "poc" / "example_project" / "prod_00" / "server"
        # the server holds only the public context; what it stored of the model is ciphertext
        assert sorted(p.name for p in (server / "startup").glob("*.tenseal")) == ["server_context.tenseal"]
        log = (server / job_id / "log.txt").read_text()
        assert "round 0 done with site-1, site-2" in log
        assert (server / job_id / "cross_site_val" / "cross_val_results.json").is_file()
    finally:
        flr("poc", "stop", env=env)


def test_job_logs_follow_prints_a_sites_log_until_the_job_ends(poc, tmp_path: Path):
    server_log = tmp_path / "poc" / "example_project" / "prod_00" / "server" / "log.txt"
    _wait_for(r"client 'site-2' \(org \S+\) registered", server_log)
    _wait_for(r"client 'site-1' \(org \S+\) registered", server_log)
    out = flr("job", "submit", "-j", str(np_job(tmp_path / "j", ["site-1", "site-2"], rounds=3, sleep=0.5)), env=poc)
    job_id = out.stdout.split()[-1]
    out = flr("job", "logs", job_id, "--site", "site-2", "--follow", env=poc)
    assert out.returncode == 0, out.stderr
    assert [line.split(": ", 1)[1] for line in out.stdout.splitlines() if "np_trainer" in line] == [
        f"site-2: round {r}: training (adding 1)" for r in range(3)
    ]
    out = flr("job", "logs", job_id, env=poc)
    assert f"job {job_id}: round 2 done with site-1, site-2" in out.stdout
