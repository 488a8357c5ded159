"""``flruntime poc``: prepare, start, stop, clean. Start and stop run the kits' real scripts with $PYTHON pointing
at a fake interpreter (a shell script), so processes really start and stop without ``flruntime site start``."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509

from flruntime.cli.main import main
from flruntime.provision import load_project, verify_kit
from flruntime.provision.poc import load, running_pids

SITES = ("server", "site-1", "site-2")


def _kit(ws: Path, name: str) -> Path:
    return ws / "example_project" / "prod_00" / name


def _fake_python(tmp_path: Path, body: str = "exec sleep 300") -> Path:
    """A stand-in for `$PYTHON -m flruntime site start --kit KIT`: notes its arguments in KIT/fake.txt."""
    path = tmp_path / "fake-python"
    path.write_text(f'#!/bin/sh\necho "$@" >> "$6/fake.txt"\n{body}\n')
    path.chmod(0o755)
    return path


def _kill_all(ws: Path) -> None:
    for kit in (ws / "example_project" / "prod_00").glob("*"):
        for pid in running_pids(kit):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A prepared 2-client POC workspace (via $FLRUNTIME_POC_WORKSPACE); every process it started is killed after."""
    path = tmp_path / "poc"
    monkeypatch.setenv("FLRUNTIME_POC_WORKSPACE", str(path))
    monkeypatch.setenv("PYTHON", str(_fake_python(tmp_path)))
    assert main(["poc", "prepare", "-n", "2"]) == 0
    yield path
    _kill_all(path)


def _wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- prepare ----------------------------------------------------------------------------------------------------


def test_prepare_provisions_server_clients_and_admin(tmp_path, capsys):
    ws = tmp_path / "poc"
    assert main(["poc", "prepare", "-n", "3", "-w", str(ws), "--port", "9100"]) == 0
    out = capsys.readouterr().out
    assert f"site-3: {_kit(ws, 'site-3')}" in out
    assert (
        f"POC workspace ready at {ws}: server 127.0.0.1:9100 (admin port 9101), clients site-1, site-2, site-3, "
        "admin admin@nvidia.com" in out
    )
    assert f"start it with: flruntime poc start -w {ws}" in out
    assert sorted(p.name for p in ws.iterdir()) == ["example_project", "poc.json", "project.yml"]
    project = load_project(ws / "project.yml")
    assert [(p.name, p.type) for p in project.participants] == [
        ("server", "server"),
        ("site-1", "client"),
        ("site-2", "client"),
        ("site-3", "client"),
        ("admin@nvidia.com", "admin"),
    ]
    assert project.of_type("admin")[0].role == "project_admin" and project.he is None
    server = json.loads((_kit(ws, "server") / "startup" / "fed_server.json").read_text())["servers"][0]
    assert server["service"]["target"] == "127.0.0.1:9100" and server["admin_port"] == 9101
    client = json.loads((_kit(ws, "site-2") / "startup" / "fed_client.json").read_text())
    assert client["servers"][0]["service"]["target"] == "127.0.0.1:9100"
    admin = json.loads((_kit(ws, "admin@nvidia.com") / "startup" / "fed_admin.json").read_text())["admin"]
    assert (admin["host"], admin["port"], admin["role"]) == ("127.0.0.1", 9101, "project_admin")
    cert = x509.load_pem_x509_certificate((_kit(ws, "server") / "startup" / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["server", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for name in (*SITES, "site-3", "admin@nvidia.com"):
        verify_kit(_kit(ws, name), ws / "example_project" / "state" / "rootCA.pem")
    assert [m.name for m in load(ws).sites] == ["server", "site-1", "site-2", "site-3"]
    assert not list(tmp_path.glob(".poc.new-*"))  # the staging folder is gone


def test_prepare_default_workspace_and_ports(tmp_path, monkeypatch):
    monkeypatch.setenv("FLRUNTIME_POC_WORKSPACE", str(tmp_path / "from-env"))
    assert main(["poc", "prepare"]) == 0
    marker = json.loads((tmp_path / "from-env" / "poc.json").read_text())
    assert marker["port"] == 8002 and [p["name"] for p in marker["participants"]] == [*SITES, "admin@nvidia.com"]
    server = json.loads((_kit(tmp_path / "from-env", "server") / "startup" / "fed_server.json").read_text())
    assert server["servers"][0]["admin_port"] == 8003


def test_prepare_with_he_puts_contexts_in_the_kits(tmp_path):
    pytest.importorskip("tenseal")  # the `he` extra; CI installs it
    ws = tmp_path / "poc"
    assert main(["poc", "prepare", "-n", "1", "--he", "-w", str(ws)]) == 0
    assert (_kit(ws, "server") / "startup" / "server_context.tenseal").is_file()
    assert (_kit(ws, "site-1") / "startup" / "client_context.tenseal").is_file()
    assert load_project(ws / "project.yml").he is not None


def test_prepare_replaces_a_stopped_poc_only_with_force(ws, capsys):
    root = (ws / "example_project" / "state" / "rootCA.pem").read_bytes()
    assert main(["poc", "prepare", "-n", "1"]) == 2
    assert capsys.readouterr().err == f"flruntime: error: {ws}: a POC workspace exists (use --force to replace it)\n"
    assert _kit(ws, "site-2").is_dir()
    assert main(["poc", "prepare", "-n", "1", "--force"]) == 0
    assert not _kit(ws, "site-2").exists() and _kit(ws, "site-1").is_dir()
    assert (ws / "example_project" / "state" / "rootCA.pem").read_bytes() != root  # a new project CA


def test_prepare_never_replaces_a_folder_that_is_no_poc_workspace(tmp_path, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["poc", "prepare", "-w", str(other), "--force"]) == 2
    err = capsys.readouterr().err
    assert err == f"flruntime: error: {other} exists and is not a POC workspace (no poc.json): choose another -w\n"
    assert (other / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["poc", "prepare", "-w", str(empty)]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "0"], "-n must be at least 1, got 0"),
        (["--port", "65535"], "--port must be 1 to 65534 (the admin port is PORT+1), got 65535"),
    ],
)
def test_prepare_usage_errors(tmp_path, capsys, argv, message):
    assert main(["poc", "prepare", "-w", str(tmp_path / "poc"), *argv]) == 2
    assert capsys.readouterr().err == f"flruntime: error: {message}\n"
    assert not (tmp_path / "poc").exists()


# --- clean ------------------------------------------------------------------------------------------------------


def test_clean_removes_the_workspace(ws, capsys):
    assert main(["poc", "clean"]) == 0
    assert capsys.readouterr().out == f"removed the POC workspace {ws}\n"
    assert not ws.exists()
    assert main(["poc", "clean"]) == 2
    assert capsys.readouterr().err == (
        f"flruntime: error: {ws} does not exist: run flruntime poc prepare first (or give -w)\n"
    )


def test_clean_refuses_a_folder_that_is_no_poc_workspace(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["poc", "clean", "-w", str(tmp_path / "data")]) == 2
    assert "is not a POC workspace (no poc.json)" in capsys.readouterr().err
    assert (tmp_path / "data").is_dir()


# --- start / stop (real processes) ------------------------------------------------------------------------------


@pytest.mark.slow
def test_start_runs_every_kit_and_stop_waits_until_they_are_gone(ws, capsys):
    assert main(["poc", "start", "-ex", "admin@nvidia.com"]) == 0
    out = capsys.readouterr().out.splitlines()
    for i, name in enumerate(SITES):  # the server first
        kit = _kit(ws, name)
        assert out[i].startswith(f"{name}: started (pid ")
        assert f"log in {kit / 'log.txt'}" in out[i]
        pids = running_pids(kit)
        assert len(pids) == 2  # the restart loop and the (fake) `flruntime site start`
        assert (kit / "fake.txt").read_text() == f"-m flruntime site start --kit {kit}\n"
    admin = _kit(ws, "admin@nvidia.com")
    assert out[3] == (
        f"admin@nvidia.com: the admin console is not started; open it with {admin / 'startup' / 'fl_admin.sh'}"
    )
    assert out[4] == "stop with: flruntime poc stop"
    started = {name: running_pids(_kit(ws, name)) for name in SITES}
    # starting again leaves running participants alone
    assert main(["poc", "start", "-p", "site-1"]) == 0
    assert capsys.readouterr().out.startswith(f"site-1: already running (pid {' '.join(map(str, started['site-1']))})")
    assert running_pids(_kit(ws, "site-1")) == started["site-1"]

    assert main(["poc", "stop"]) == 0
    assert capsys.readouterr().out.splitlines() == ["site-2: stopped", "site-1: stopped", "server: stopped"]
    assert _wait_gone([pid for pids in started.values() for pid in pids], timeout=1)
    for name in SITES:
        kit = _kit(ws, name)
        assert not (kit / "pid.fl").exists() and not (kit / "child_pid.fl").exists()
        assert f"{name}: stopped (last exit code" in (kit / "log.txt").read_text()
    assert main(["poc", "stop"]) == 0
    assert capsys.readouterr().out.splitlines() == ["site-2: not running", "site-1: not running", "server: not running"]


@pytest.mark.slow
def test_start_and_stop_a_selection(ws, capsys):
    assert main(["poc", "start", "-p", "server", "site-2"]) == 0
    assert [name for name in SITES if running_pids(_kit(ws, name))] == ["server", "site-2"]
    assert main(["poc", "start", "-ex", "server", "site-2"]) == 0
    assert all(running_pids(_kit(ws, name)) for name in SITES)
    capsys.readouterr()
    assert main(["poc", "stop", "-p", "site-1"]) == 0
    assert capsys.readouterr().out == "site-1: stopped\n"
    assert [name for name in SITES if running_pids(_kit(ws, name))] == ["server", "site-2"]
    assert main(["poc", "stop", "-ex", "server"]) == 0
    assert capsys.readouterr().out == "site-1: not running\nsite-2: stopped\n"
    assert main(["poc", "stop"]) == 0


@pytest.mark.slow
def test_a_running_poc_is_neither_replaced_nor_cleaned(ws, capsys):
    assert main(["poc", "start", "-p", "site-1"]) == 0
    pids = running_pids(_kit(ws, "site-1"))
    capsys.readouterr()
    assert main(["poc", "prepare", "--force"]) == 4
    err = capsys.readouterr().err
    assert err == (
        f"flruntime: error: {ws}: cannot replace the POC workspace while participants run: site-1 "
        f"(pid {' '.join(map(str, pids))}); stop them with flruntime poc stop\n"
    )
    assert main(["poc", "clean"]) == 4
    assert "cannot remove the POC workspace while participants run: site-1" in capsys.readouterr().err
    assert _kit(ws, "site-1").is_dir() and running_pids(_kit(ws, "site-1")) == pids
    assert main(["poc", "stop"]) == 0
    assert main(["poc", "clean"]) == 0 and not ws.exists()


@pytest.mark.slow
def test_a_participant_that_ends_right_after_start_is_reported(ws, tmp_path, monkeypatch, capsys):
    # `site start` exiting with flruntime's usage error (2) ends the restart loop at once
    monkeypatch.setenv("PYTHON", str(_fake_python(tmp_path, "exit 2")))
    assert main(["poc", "start", "-p", "site-1"]) == 4
    log = _kit(ws, "site-1") / "log.txt"
    assert capsys.readouterr().err == f"flruntime: error: site-1 stopped right after starting: see {log}\n"
    assert "site-1: stopped (last exit code 2)" in log.read_text()


@pytest.mark.slow
def test_stop_during_the_restart_pause_does_not_restart(ws, tmp_path, monkeypatch, capsys):
    # a `site start` that fails (exit 3) is restarted after 5 s; a stop in that pause must end the loop
    monkeypatch.setenv("PYTHON", str(_fake_python(tmp_path, "exit 3")))
    assert main(["poc", "start", "-p", "site-1"]) == 0
    loop = running_pids(_kit(ws, "site-1"))
    assert len(loop) == 1  # the loop sleeps; no child runs
    capsys.readouterr()
    assert main(["poc", "stop", "--timeout", "15"]) == 0
    assert "site-1: stopped" in capsys.readouterr().out
    assert (_kit(ws, "site-1") / "fake.txt").read_text().count("site start") == 1


@pytest.mark.slow
def test_stop_gives_up_after_the_timeout_naming_the_processes(ws, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHON", str(_fake_python(tmp_path, "trap '' TERM\nexec sleep 300")))
    assert main(["poc", "start", "-p", "site-2"]) == 0
    pids = running_pids(_kit(ws, "site-2"))
    capsys.readouterr()
    assert main(["poc", "stop", "--timeout", "0.5"]) == 4
    err = capsys.readouterr().err
    assert err == (
        f"flruntime: error: still running 0.5 s after stop.sh: site-2 (pid {' '.join(map(str, pids))}); "
        "end them with kill PID\n"
    )


def test_start_and_stop_name_unknown_participants_and_admins(ws, capsys):
    assert main(["poc", "start", "-p", "site-9"]) == 2
    assert capsys.readouterr().err == (
        f"flruntime: error: no participant 'site-9' in the POC workspace {ws} "
        "(known: server, site-1, site-2, admin@nvidia.com)\n"
    )
    assert main(["poc", "start", "-p", "admin@nvidia.com"]) == 2
    console = _kit(ws, "admin@nvidia.com") / "startup" / "fl_admin.sh"
    assert capsys.readouterr().err == (
        f"flruntime: error: admin@nvidia.com is an admin: its console is not started by poc; open it with {console}\n"
    )
    assert main(["poc", "stop", "-ex", "nobody"]) == 2
    assert not any(running_pids(_kit(ws, name)) for name in SITES)


def test_start_without_a_poc_workspace(tmp_path, capsys):
    assert main(["poc", "start", "-w", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == (
        f"flruntime: error: {tmp_path / 'none'} does not exist: run flruntime poc prepare first (or give -w)\n"
    )


def test_poc_needs_a_command(capsys):
    with pytest.raises(SystemExit) as err:
        main(["poc"])
    assert err.value.code == 2
