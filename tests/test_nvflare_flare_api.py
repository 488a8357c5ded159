"""NVFlare's FLARE API (``nvflare.fuel.flare_api``) without NVFlare, driving a real federation.

A script in the shape of NVFlare's admin-API notebooks runs as its own Python process with the shim on its path,
against a provisioned project (server, site-1, site-2; admin@acme.org, project_admin; viewer@acme.org, member)
whose server and clients run as separate processes over gRPC with mutual TLS.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from flruntime.compat import pythonpath_with_shim
from flruntime.compat.flare_api import Session, basic_cb_with_print, new_secure_session
from flruntime.compat.flare_api_records import app_of, job_meta, job_summary
from flruntime.compat.flare_api_spec import (
    AuthenticationError,
    InvalidArgumentError,
    InvalidJobDefinition,
    JobNotFound,
    MonitorReturnCode,
    NoConnection,
    SessionClosed,
)
from flruntime.provision import load_project, provision
from flruntime.provision.poc import prepare
from tests.fedkit import Federation, free_port, np_job, project_doc, provision_project

ADMIN = "admin@acme.org"
VIEWER = "viewer@acme.org"

#: The notebook: each step's outcome goes into ``out``, printed as one JSON line at the end.
NOTEBOOK = textwrap.dedent(
    """
    import json
    import os
    import sys
    import time

    import nvflare.fuel.flare_api.flare_api as flare_api_module
    from nvflare.fuel.flare_api.api_spec import (
        AuthorizationError,
        InvalidTarget,
        JobNotDone,
        JobNotFound,
        MonitorReturnCode,
        SessionClosed,
    )
    from nvflare.fuel.flare_api.flare_api import basic_cb_with_print, new_insecure_session, new_secure_session

    admin_kit, member_kit, quick_job, long_job, gpu_job = sys.argv[1:6]
    out = {"module": flare_api_module.__file__}


    def failure(call, *args):
        try:
            call(*args)
        except Exception as e:
            return [type(e).__name__, str(e)]
        return None


    sess = new_secure_session("admin@acme.org", admin_kit)
    info = sess.get_system_info()
    print(info)
    out["clients"] = sorted(c.name for c in info.client_info)
    out["server_status"] = info.server_info.status

    job_id = sess.submit_job(quick_job)
    rc = sess.monitor_job(job_id, poll_interval=0.2, cb=basic_cb_with_print, cb_run_counter={"count": 0})
    out["quick"] = {"id": job_id, "rc": rc.name, "is_enum": rc == MonitorReturnCode.JOB_FINISHED}
    out["meta"] = sess.get_job_meta(job_id)
    out["list"] = sess.list_jobs()
    out["detailed"] = sess.list_jobs(detailed=True)
    out["prefixes"] = [
        len(sess.list_jobs(id_prefix=job_id[:8].upper(), name_prefix="NP_")),
        len(sess.list_jobs(name_prefix="other")),
    ]
    sess.set_timeout(30)
    out["connected"] = [c.name for c in sess.get_connected_client_list()]
    sess.unset_timeout()
    result = sess.download_job_result(job_id)
    out["download"] = [result, sorted(
        os.path.relpath(os.path.join(d, f), result) for d, _, files in os.walk(result) for f in files
    )]
    out["stats_server"] = sess.show_stats(job_id, "server")
    out["stats_clients"] = sess.show_stats(job_id, "client", ["site-2"])
    out["errors"] = sess.show_errors(job_id, "all")

    long_id = sess.submit_job(long_job)
    seen = []


    def until_round_1(session, jid, meta, *args, **kwargs):
        seen.append(meta["status"])
        return not (meta["status"] == "RUNNING" and meta["rounds"] >= 1)


    out["long"] = {"id": long_id, "rc": sess.monitor_job(long_id, 0, 0.2, until_round_1).name}
    out["long"]["timeout_rc"] = sess.monitor_job(long_id, timeout=0.5, poll_interval=0.2).name
    info = sess.get_system_info()
    out["long"]["server_status"] = info.server_info.status
    out["long"]["jobs"] = [[j.job_id, j.app_name] for j in info.job_info]
    for _ in range(50):  # the clients say which jobs they run with their heartbeats (every 0.5 s here)
        status = sess.get_client_job_status()
        if all(row.get("job_id") == long_id for row in status):
            break
        time.sleep(0.2)
    out["long"]["client_status"] = status
    out["long"]["delete_running"] = failure(sess.delete_job, long_id)
    sess.abort_job(long_id)
    out["long"]["after_abort_rc"] = sess.monitor_job(long_id, poll_interval=0.2).name
    out["long"]["status"] = sess.get_job_meta(long_id)["status"]
    out["long"]["abort_again"] = failure(sess.abort_job, long_id)

    clone_id = sess.clone_job(job_id)
    sess.monitor_job(clone_id, poll_interval=0.2)
    out["clone"] = {"id": clone_id, "meta": sess.get_job_meta(clone_id)}
    sess.delete_job(clone_id)
    out["clone"]["after_delete"] = failure(sess.get_job_meta, clone_id)
    out["clone"]["ids_left"] = [r["job_id"] for r in sess.list_jobs(reverse=True)]
    out["clone"]["limit_1"] = [r["job_id"] for r in sess.list_jobs(limit=1)]

    unknown = "5b5c8e2e-0000-4000-8000-000000000000"
    out["unknown"] = {
        name: failure(getattr(sess, name), unknown)
        for name in ("get_job_meta", "abort_job", "delete_job", "clone_job", "download_job_result")
    }
    out["unknown"]["show_stats"] = failure(sess.show_stats, unknown, "server")
    out["bad_target"] = failure(sess.show_stats, job_id, "client", ["site-9"])
    out["bad_target_type"] = failure(sess.show_stats, job_id, "nowhere")
    out["bad_folder"] = failure(sess.submit_job, "no_such_job_folder")
    out["bad_client"] = failure(sess.get_client_job_status, ["site-9"])

    waiting = sess.submit_job(gpu_job)  # it needs a GPU no site has: it stays queued
    out["queued"] = {"download": failure(sess.download_job_result, waiting), "abort": failure(sess.abort_job, waiting)}
    out["queued"]["status"] = sess.get_job_meta(waiting)["status"]
    sess.delete_job(waiting)

    with new_secure_session("viewer@acme.org", member_kit) as member:
        out["member"] = {
            "list": [r["job_id"] for r in member.list_jobs()],
            "meta": member.get_job_meta(job_id)["status"],
            "submit": failure(member.submit_job, quick_job),
            "abort": failure(member.abort_job, job_id),
            "download": failure(member.download_job_result, job_id),
        }
    out["member"]["closed"] = failure(member.list_jobs)

    with new_insecure_session(admin_kit) as insecure:
        out["insecure"] = [insecure.username, len(insecure.list_jobs())]

    sess.close()
    out["closed"] = failure(sess.get_job_meta, job_id)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("flare_api")
    federation = Federation(
        root,
        ["site-1", "site-2"],
        others=[{"name": VIEWER, "type": "admin", "org": "acme", "role": "member"}],
        env={"FLRUNTIME_STATS_INTERVAL": "0.3"},
    )
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in ("site-1", "site-2"):
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org acme\) registered")
    yield federation
    federation.stop_all()


def run_notebook(fed: Federation, tmp_path: Path) -> tuple[dict[str, Any], str]:
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    sites = ["site-1", "site-2"]
    quick = np_job(tmp_path / "quick", sites, rounds=2)
    long = np_job(tmp_path / "long", sites, rounds=100, sleep=0.5)
    gpu = np_job(tmp_path / "gpu", sites, rounds=1)
    meta = json.loads((gpu / "meta.json").read_text())
    (gpu / "meta.json").write_text(json.dumps({**meta, "resource_spec": {"site-1": {"num_of_gpus": 1}}}))
    env = {**os.environ, "PYTHONPATH": pythonpath_with_shim(os.environ.get("PYTHONPATH")) or ""}
    proc = subprocess.run(
        [sys.executable, str(script), str(fed.kit(ADMIN)), str(fed.kit(VIEWER)), str(quick), str(long), str(gpu)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + fed.log("server")[-3000:]
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("RESULT "), proc.stdout
    return json.loads(last.removeprefix("RESULT ")), proc.stdout


@pytest.mark.slow
def test_a_notebook_written_for_the_flare_api_drives_a_federation(fed: Federation, tmp_path: Path) -> None:
    out, stdout = run_notebook(fed, tmp_path)
    assert out["module"].endswith("flruntime/compat/shim/nvflare/fuel/flare_api/flare_api.py")

    # get_system_info: the connected clients, nothing running yet
    assert out["clients"] == ["site-1", "site-2"] and out["server_status"] == "stopped"
    assert "SystemInfo\nserver_info:\nstatus: stopped, start_time: " in stdout
    assert "\nclient_info:\nsite-1(last_connect_time: " in stdout

    # submit + monitor_job with basic_cb_with_print: the finished job's meta is printed last, after a newline
    quick = out["quick"]["id"]
    assert out["quick"] == {"id": quick, "rc": "JOB_FINISHED", "is_enum": True}
    printed = "{'name': 'np_fedavg', 'min_clients': 2, 'deploy_map': {'app': ['server', 'site-1', 'site-2']}, "
    assert f"\n\n{printed}'job_id': '{quick}', " in stdout
    assert stdout.splitlines()[-2].startswith(printed) and "'status': 'FINISHED:COMPLETED'" in stdout.splitlines()[-2]

    meta = out["meta"]
    assert {k: meta[k] for k in ("job_id", "name", "status", "submitter_name", "submitter_org", "submitter_role")} == {
        "job_id": quick,
        "name": "np_fedavg",
        "status": "FINISHED:COMPLETED",
        "submitter_name": ADMIN,
        "submitter_org": "acme",
        "submitter_role": "project_admin",
    }
    assert meta["deploy_map"] == {"app": ["server", "site-1", "site-2"]} and meta["min_clients"] == 2
    assert meta["rounds"] == 2 and meta["sites"] == ["site-1", "site-2"]
    assert meta["duration"].startswith("0:00:") and meta["start_time"][:2] == "20"
    assert meta["submit_time_iso"][:19] == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(meta["submit_time"]))

    # list_jobs: NVFlare's summary rows, or the whole meta
    (row,) = out["list"]
    assert set(row) == {"job_id", "job_name", "status", "submit_time", "duration"}
    assert (row["job_id"], row["job_name"], row["status"]) == (quick, "np_fedavg", "FINISHED:COMPLETED")
    assert row["submit_time"] == meta["submit_time_iso"] and row["duration"] == meta["duration"]
    assert [m["job_id"] for m in out["detailed"]] == [quick] and out["detailed"][0]["deploy_map"] == meta["deploy_map"]
    assert out["prefixes"] == [1, 0] and out["connected"] == ["site-1", "site-2"]

    # download_job_result: the kit's transfer/<job id>/ with job/, workspace/ and meta.json
    folder, files = out["download"]
    assert folder == str((fed.kit(ADMIN) / "transfer" / quick).resolve())
    assert {
        "meta.json",
        "job/meta.json",
        "job/app/config/config_fed_server.json",
        "job/app/config/config_fed_client.json",
        "workspace/log.txt",
        "workspace/models/server.npy",
        "workspace/sites/site-1/log.txt",
        "workspace/sites/site-2/log.txt",
    } <= set(files)
    assert json.loads((Path(folder) / "meta.json").read_text())["status"] == "FINISHED:COMPLETED"
    assert "round 1 done with site-1, site-2" in (Path(folder) / "workspace" / "log.txt").read_text()

    # show_stats / show_errors, by target
    assert out["stats_server"] == {
        "server": {
            "status": "FINISHED:COMPLETED",
            "rounds": 2,
            "duration_s": out["stats_server"]["server"]["duration_s"],
            "sites": ["site-1", "site-2"],
        }
    }
    assert list(out["stats_clients"]) == ["site-2"] and out["stats_clients"]["site-2"]["samples"] >= 1
    assert out["errors"] == {}

    # the long job: the callback ends monitoring, a timeout, the running job in the system info, abort
    long = out["long"]
    assert long["rc"] == "ENDED_BY_CB" and long["timeout_rc"] == "TIMEOUT"
    assert long["server_status"] == "started" and long["jobs"] == [[long["id"], "app"]]
    assert long["client_status"] == [
        {"client_name": "site-1", "app_name": "app", "job_id": long["id"], "status": "started"},
        {"client_name": "site-2", "app_name": "app", "job_id": long["id"], "status": "started"},
    ]
    assert long["delete_running"] == ["JobNotDone", f"job {long['id']} is still running"]
    assert (long["after_abort_rc"], long["status"], long["abort_again"]) == ("JOB_FINISHED", "FINISHED:ABORTED", None)

    # clone, then delete: gone
    clone = out["clone"]
    assert clone["meta"]["cloned_from"] == quick and clone["meta"]["status"] == "FINISHED:COMPLETED"
    assert clone["after_delete"] == ["JobNotFound", f"no such job: {clone['id']}"]
    assert clone["ids_left"] == [long["id"], quick] and clone["limit_1"] == [long["id"]]

    # NVFlare's exceptions, with NVFlare's texts
    unknown = "5b5c8e2e-0000-4000-8000-000000000000"
    assert out["unknown"] == {
        name: ["JobNotFound", f"no such job: {unknown}"]
        for name in ("get_job_meta", "abort_job", "delete_job", "clone_job", "download_job_result", "show_stats")
    }
    assert out["bad_target"] == ["InvalidTarget", f"invalid client(s): site-9 (job {quick} runs on site-1, site-2)"]
    assert out["bad_target_type"] == [
        "ValueError",
        "invalid target_type nowhere: must be one of ['all', 'server', 'client']",
    ]
    assert out["bad_client"] == ["InvalidTarget", "no client named site-9 in the project (clients: site-1, site-2)"]
    queued = out["queued"]
    assert queued["download"][0] == "JobNotDone" and queued["download"][1].endswith(
        " has no results yet (status SUBMITTED)"
    )
    assert (queued["abort"], queued["status"]) == (None, "FINISHED:ABORTED")
    assert out["bad_folder"] == [
        "InvalidJobDefinition",
        "job_definition_path 'no_such_job_folder' is not a valid folder",
    ]

    # a member may view, not submit, abort or download; the server's audit log has each refusal
    member = out["member"]
    assert member["list"] == [quick, long["id"]] and member["meta"] == "FINISHED:COMPLETED"
    assert member["submit"] == [
        "AuthorizationError",
        f"user not authorized for the action 'submit_job {tmp_path / 'quick'}: "
        "role member may only view; submit_job needs submit'",
    ]
    assert member["abort"] == [
        "AuthorizationError",
        f"user not authorized for the action 'abort_job {quick}: role member may only view; abort_job needs manage'",
    ]
    assert member["download"] == [
        "AuthorizationError",
        f"user not authorized for the action 'download_job {quick}: "
        "role member may only view; download_job needs manage'",
    ]
    assert member["closed"] == out["closed"] == ["SessionClosed", "session closed"]
    assert out["insecure"] == [ADMIN, 2]
    audit = [json.loads(line) for line in (fed.kit("server") / "audit.log").read_text().splitlines()]
    refused = [(e["command"], e["role"]) for e in audit if e["user"] == VIEWER and e["result"] == "refused"]
    assert refused == [("submit_job", "member"), ("abort_job", "member"), ("download_job", "member")]
    commands = {e["command"] for e in audit if e["user"] == ADMIN}
    assert {"submit_job", "list_jobs", "abort_job", "clone_job", "delete_job", "download_job", "show_stats"} <= commands


@pytest.mark.slow
def test_an_admin_the_server_does_not_know_is_not_authenticated(fed: Federation, tmp_path: Path) -> None:
    late = {"name": "late@acme.org", "type": "admin", "org": "acme", "role": "project_admin"}
    viewer = {"name": VIEWER, "type": "admin", "org": "acme", "role": "member"}
    path = tmp_path / "proj.yml"  # provisioned again, with the same CA, after the server started
    path.write_text(yaml.safe_dump(project_doc("proj", fed.port, ["site-1", "site-2"], others=[viewer, late])))
    kit = provision(load_project(path), fed.root / "ws").prod_dir / "late@acme.org"
    with pytest.raises(AuthenticationError) as err:
        new_secure_session("late@acme.org", kit, timeout=5.0)
    assert str(err.value) == (
        "user not authenticated: refused by server 'server': 'late@acme.org' is not a participant of project 'proj'"
    )


def test_a_session_to_a_server_that_is_not_there(tmp_path: Path) -> None:
    prod = provision_project(tmp_path, "gone", free_port(), ["site-1"])
    started = time.monotonic()
    with pytest.raises(NoConnection, match=r"^cannot connect to FLARE in 1\.0 seconds \(cannot reach the server at"):
        new_secure_session(ADMIN, prod / ADMIN, timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 5


def test_a_username_that_is_not_the_kits(tmp_path: Path) -> None:
    prod = provision_project(tmp_path, "p", free_port(), ["site-1"])
    with pytest.raises(AuthenticationError) as err:
        new_secure_session("bob@acme.org", prod / ADMIN)
    assert str(err.value) == (
        f"user not authenticated: the startup kit at {prod / ADMIN} is for '{ADMIN}', not for 'bob@acme.org'"
    )


@pytest.mark.parametrize(
    ("kit", "message"),
    [
        (
            "nowhere",
            "{root}/nowhere: not a startup kit (no startup/ folder with fed_server.json, fed_client.json, "
            "fed_admin.json); pass the folder provision made",
        ),
        ("site-1", "{root}/site-1: this is the kit of client 'site-1', not of an admin"),
    ],
    ids=["no-kit", "client-kit"],
)
def test_a_folder_that_is_not_an_admin_kit(tmp_path: Path, kit: str, message: str) -> None:
    prod = provision_project(tmp_path, "p", free_port(), ["site-1"])
    with pytest.raises(InvalidArgumentError) as err:
        Session(ADMIN, str(prod / kit))
    assert str(err.value) == message.format(root=prod)


def test_a_session_checks_its_arguments_and_jobs_before_calling_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = provision_project(tmp_path, "p", free_port(), ["site-1"])
    job = np_job(tmp_path / "bad", ["site-1"], rounds=1, min_clients=1)
    (job / "app" / "config" / "config_fed_client.json").unlink()
    with Session(ADMIN, prod / ADMIN, debug=True) as s:
        with pytest.raises(InvalidJobDefinition) as err:  # checked here, before anything is uploaded
            s.submit_job(str(job))
        assert str(err.value) == (
            "invalid job definition: meta.json:5: $.deploy_map.app: app 'app' is deployed to clients but has no "
            "config_fed_client.json (add app/config/config_fed_client.json)"
        )
        assert capsys.readouterr().out == f"DEBUG: submit_job {job}\n"
        assert s.upload_dir == s.download_dir == str((prod / ADMIN / "transfer").resolve())
        (prod / ADMIN / "transfer" / "hello").mkdir()
        assert s.get_available_apps_to_upload() == ["hello"]
        with pytest.raises(JobNotFound, match=r"^job_id is required but not specified\.$"):
            s.get_job_meta("")
        with pytest.raises(ValueError, match=r"^limit must be None or int but got <class 'str'>$"):
            s.list_jobs(limit="3")  # type: ignore[arg-type]
    with pytest.raises(SessionClosed, match=r"^session closed$"):
        s.list_jobs()


RECORD = {
    "job_id": "j1",
    "name": "np_fedavg",
    "submitter": ADMIN,
    "submitter_org": "acme",
    "submitter_role": "project_admin",
    "submit_time": 1700000000.25,
    "status": "FINISHED:COMPLETED",
    "sites": ["site-1"],
    "start_time": 1700000001.5,
    "end_time": 1700000013.75,
    "error": "",
    "rounds": 2,
    "origin": "j0",
    "resume": False,
    "duration": 12.25,
    "meta": {"name": "np_fedavg", "deploy_map": {"app_server": ["server"], "app": ["@ALL"]}, "min_clients": 1},
}


def test_job_meta_and_rows_have_nvflare_s_keys() -> None:
    meta = job_meta(RECORD)
    assert meta["duration"] == "0:00:12.250000" and meta["cloned_from"] == "j0" and "error" not in meta
    assert meta["start_time"] == str(__import__("datetime").datetime.fromtimestamp(1700000001.5))
    assert meta["deploy_map"] == RECORD["meta"]["deploy_map"] and meta["min_clients"] == 1  # type: ignore[index]
    assert job_summary({**RECORD, "duration": None}) == {
        "job_id": "j1",
        "job_name": "np_fedavg",
        "status": "FINISHED:COMPLETED",
        "submit_time": meta["submit_time_iso"],
        "duration": "N/A",
    }
    assert job_meta({**RECORD, "resume": True, "error": "boom"})["resumed_from"] == "j0"
    assert (app_of(meta, "server"), app_of(meta, "site-7"), app_of({}, "server")) == ("app_server", "app", "?")


def test_basic_cb_with_print_prints_three_metas_then_dots() -> None:
    counter = {"count": 0}
    out = io.StringIO()
    with redirect_stdout(out):
        for status in ["RUNNING"] * 5 + ["FINISHED:COMPLETED"]:
            assert basic_cb_with_print(None, "j1", {"status": status}, cb_run_counter=counter)  # type: ignore[arg-type]
    running = "{'status': 'RUNNING'}\n"
    assert out.getvalue() == running * 3 + "..\n{'status': 'FINISHED:COMPLETED'}\n"
    assert counter == {"count": 6}
    assert MonitorReturnCode.ENDED_BY_CB == 2


def test_the_poc_admin_kit_is_where_nvflare_notebooks_look(tmp_path: Path) -> None:
    poc = tmp_path / "nvflare" / "poc"  # NVFlare's /tmp/nvflare/poc, given as `flruntime poc prepare -w`
    prepare(poc, clients=2, port=free_port())
    with Session("admin@nvidia.com", str(poc / "example_project" / "prod_00" / "admin@nvidia.com")) as s:
        assert (s.username, s.kit.role) == ("admin@nvidia.com", "project_admin")
        assert s.upload_dir == str(poc / "example_project" / "prod_00" / "admin@nvidia.com" / "transfer")
