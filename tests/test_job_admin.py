"""Job management on a real federation: the job store, the scheduler, admin commands, roles, audit, bad input.

One project: server, site-1 and site-2 (org acme), site-3 (org clinic), and admins of every role:
admin@acme.org (project_admin), boss@acme.org (org_admin), lead@clinic.org (lead), viewer@acme.org (member).
"""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest

from flruntime.errors import AuthError, ConfigError, UsageError
from flruntime.federation import AdminSession, load_kit
from flruntime.federation.policy import COMMANDS, allowed
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.streaming import iter_bytes, read_control
from tests.fedkit import Federation, fedavg_job, np_job

pytestmark = pytest.mark.slow

ADMINS = {
    "admin@acme.org": ("project_admin", "acme"),
    "boss@acme.org": ("org_admin", "acme"),
    "lead@clinic.org": ("lead", "clinic"),
    "viewer@acme.org": ("member", "acme"),
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("jobs")
    others = [
        {"name": n, "type": "admin", "org": org, "role": role}
        for n, (role, org) in ADMINS.items()
        if n != "admin@acme.org"
    ]
    federation = Federation(
        root,
        ["site-1", "site-2", "site-3@clinic"],
        others=others,
        env={"FLRUNTIME_MAX_UPLOAD_MB": "1", "FLRUNTIME_STATS_INTERVAL": "0.5"},
    )
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in ("site-1", "site-2", "site-3"):
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org \w+\) registered")
    yield federation
    federation.stop_all()


def session(fed: Federation, name: str = "admin@acme.org") -> AdminSession:
    return AdminSession(fed.kit(name))


def test_five_jobs_abort_download_and_a_server_restart(fed: Federation, tmp_path: Path):
    sites = ["site-1", "site-2"]
    with session(fed) as s:
        quick = [s.submit(np_job(tmp_path / f"np{i}", sites, rounds=2)) for i in range(3)]
        full = s.submit(fedavg_job(tmp_path / "fedavg", rounds=1))
        long = s.submit(np_job(tmp_path / "long", sites, rounds=200, sleep=0.5))
        listed = s.list_jobs()
        assert [r["job_id"] for r in listed] == [*quick, full, long]
        fed.wait_log("server", rf"job {long}: round 1 done")
        s.abort(long)
        assert s.wait(long, timeout=60)["status"] == "FINISHED:ABORTED"
        for job_id in [*quick, full]:
            rec = s.wait(job_id, timeout=300)
            assert rec["status"] == "FINISHED:COMPLETED", rec
            assert rec["submitter"] == "admin@acme.org" and rec["duration"] > 0
        got = s.download(full, tmp_path / "dl")
        assert (got / "FL_global_model.pt").is_file()
        assert set(json.loads((got / "cross_site_val" / "cross_val_results.json").read_text())) == set(sites)
        server_log = (got / "log.txt").read_text()
        assert "round 0 done with site-1, site-2" in server_log
        for site in sites:  # every site's log came to the server while the job ran
            assert "val_acc_global_model" in (got / "sites" / site / "log.txt").read_text()
            assert (got / "sites" / site / "stats.jsonl").read_text().count("cpu_percent") >= 1
        with sqlite3.connect(got / "mlflow.db") as db:  # system metrics reached the job's MLflow receiver too
            keys = {row[0] for row in db.execute("SELECT DISTINCT key FROM metrics")}
        assert {"system/cpu_percent", "system/rss_mib", "val_acc_global_model"} <= keys
        stats = s.show_stats(full)
        assert stats["server"]["rounds"] == 1 and stats["site-1"]["samples"] >= 1
        assert stats["site-1"]["rss_mib_max"] > 50
        text, offset = s.logs(full, "site-2")
        assert "val_acc_global_model" in text and offset == len(text.encode())
        assert s.logs(full, "site-2", offset) == ("", offset)
        before = s.list_jobs()
    starts = fed.log("server").count("listening on port")
    fed.kill("server")
    fed.start("server")
    fed.wait_log("server", r"listening on port", count=starts + 1)
    with session(fed) as s:
        assert s.list_jobs() == [
            {**rec, "duration": rec["duration"]} for rec in before
        ]  # nothing lost (finished jobs keep their duration)
        clone = s.clone(quick[0])
        rec = s.wait(clone, timeout=120)
        assert rec["status"] == "FINISHED:COMPLETED" and rec["origin"] == quick[0]


def test_a_job_that_was_running_when_the_server_died_can_be_resumed(fed: Federation, tmp_path: Path):
    with session(fed) as s:
        job_id = s.submit(np_job(tmp_path / "resume", ["site-1", "site-2"], rounds=6, sleep=0.5))
        fed.wait_log("server", rf"job {job_id}: round 2 done")
    starts = fed.log("server").count("listening on port")
    joins = {site: fed.log("server").count(f"client '{site}' (org acme) registered") for site in ("site-1", "site-2")}
    fed.kill("server")
    fed.start("server")
    fed.wait_log("server", r"listening on port", count=starts + 1)
    for site, seen in joins.items():
        fed.wait_log("server", rf"client '{site}' \(org acme\) registered", count=seen + 1)
    with session(fed) as s:
        rec = s.job(job_id)
        assert (rec["status"], rec["error"]) == ("FINISHED:ABORTED", "the server stopped while the job ran")
        again = s.resume(job_id)
        assert s.wait(again, timeout=120)["status"] == "FINISHED:COMPLETED"
    log = (fed.kit("server") / again / "log.txt").read_text()
    assert "round 0 started" not in log  # it went on from the last saved round
    assert f"job {again}: round 5 done" in log


def _expected(role: str, org: str, command: str, owner: str | None) -> bool:
    return allowed(role, org, command, owner) == ""


def test_every_role_and_command_is_authorised_as_the_policy_says_and_audited(fed: Federation, tmp_path: Path):
    with session(fed) as s:  # a job of org acme (submitted by the project admin)
        acme_job = s.submit(np_job(tmp_path / "acme", ["site-1", "site-2"], rounds=1))
        s.wait(acme_job, timeout=120)
        victims = {name: s.clone(acme_job) for name in ADMINS}  # one acme job for each admin to try to delete
    outcomes: dict[tuple[str, str], bool] = {}
    for name, (role, org) in ADMINS.items():
        with session(fed, name) as s:
            checks = {
                "list_jobs": lambda s=s: s.list_jobs(),
                "check_status": lambda s=s: s.check_status(),
                "list_sites": lambda s=s: s.list_sites(),
                "show_errors": lambda s=s: s.show_errors(acme_job),
                "show_stats": lambda s=s: s.show_stats(acme_job),
                "job_logs": lambda s=s: s.logs(acme_job),
                "download_job": lambda s=s, name=name: s.download(acme_job, tmp_path / name),
                "clone_job": lambda s=s: s.clone(acme_job),
                "resume_job": lambda s=s: s.resume(acme_job),
                "delete_job": lambda s=s, name=name: s.delete(victims[name]),
                "abort_job": lambda s=s, role=role: s.abort(s.clone(acme_job) if role == "project_admin" else acme_job),
                "submit_job": lambda s=s, name=name: s.submit(
                    np_job(tmp_path / f"by_{name}", ["site-1"], 1, min_clients=1)
                ),
            }
            if not _expected(role, org, "restart", "clinic"):  # allowed restarts are tested below
                checks["restart"] = lambda s=s: s.restart_clients(["site-3"])
            if not _expected(role, org, "shutdown", "acme"):
                checks["shutdown"] = lambda s=s: s.shutdown_clients(["site-1"])
            for command, call in checks.items():
                try:
                    call()
                    outcomes[(name, command)] = True
                except AuthError as exc:
                    assert str(exc).startswith("not authorised: "), exc
                    outcomes[(name, command)] = False
                except UsageError:  # allowed, but the server could not do it (e.g. abort a finished job)
                    outcomes[(name, command)] = True
    for (name, command), ok in outcomes.items():
        role, org = ADMINS[name]
        owner = "clinic" if command == "restart" else "acme"  # the job's submitter, or the client told
        assert ok == _expected(role, org, command, owner), (name, command, ok)
    audit = [json.loads(line) for line in (fed.kit("server") / "audit.log").read_text().splitlines()]
    refused = {(e["user"], e["command"]) for e in audit if e["result"] == "refused"}
    assert refused == {(n, c) for (n, c), ok in outcomes.items() if not ok}
    assert all({"time", "user", "org", "role", "command", "args", "result"} <= e.keys() for e in audit)
    assert set(COMMANDS) >= {c for _, c in outcomes}


def test_bad_uploads_are_refused_and_the_store_is_unchanged(fed: Federation, tmp_path: Path):
    kit = load_kit(fed.kit("admin@acme.org"))
    channel = secure_channel(kit.target, kit.cert, kit.key, kit.root_cert, kit.server_name)
    stub = Stub(channel)
    with session(fed) as s:
        before = [r["job_id"] for r in s.list_jobs()]  # (jobs cloned by earlier tests may still be running)

        def upload(data: bytes) -> dict:
            return read_control(stub.stream_in("SubmitJob", iter_bytes(data, name="x"), 60))

        slip = io.BytesIO()
        with zipfile.ZipFile(slip, "w") as zf:
            zf.writestr("meta.json", "{}")
            zf.writestr("../../evil.py", "print('owned')")
        reply = upload(slip.getvalue())
        assert reply == {
            "ok": False,
            "errors": ["job upload from admin@acme.org: entry '../../evil.py' points outside the job folder; refused"],
        }
        reply = upload(b"\0" * (2 * 2**20))
        assert reply == {
            "ok": False,
            "errors": ["upload refused: message of 2097152 bytes is over the limit of 1048576 bytes"],
        }
        broken = io.BytesIO()
        with zipfile.ZipFile(broken, "w") as zf:
            zf.writestr("meta.json", '{"name": "broken", "deploy_map": {"app": ["@ALL"]},}')
        reply = upload(broken.getvalue())
        assert reply["ok"] is False and reply["errors"][0].startswith("meta.json:1:")
        legacy = io.BytesIO()  # NVFlare's legacy job format: one app, config/ at the top, no meta file
        with zipfile.ZipFile(legacy, "w") as zf:
            zf.writestr("config/config_fed_server.json", '{"format_version": 2, "workflows": []}')
        reply = read_control(stub.stream_in("SubmitJob", iter_bytes(legacy.getvalue(), name="my_app"), 60))
        assert reply == {"ok": False, "errors": [legacy_line("my_app", "my_app")]}  # no path of the server's
        app = tmp_path / "my_app"
        (app / "config").mkdir(parents=True)
        (app / "config" / "config_fed_server.json").write_text('{"format_version": 2, "workflows": []}')
        with pytest.raises(ConfigError) as info:  # checked here, before anything is uploaded
            s.submit(app)
        assert str(info.value) == legacy_line("my_app", str(app))
        with pytest.raises(UsageError, match=r"^no job with id nope$"):
            s.abort("nope")
        with pytest.raises(UsageError, match=r"^no job with id nope$"):
            s.download("nope", tmp_path)
        assert [r["job_id"] for r in s.list_jobs()] == before
    channel.close()
    assert not list((fed.kit("server")).rglob("evil.py"))


def legacy_line(name: str, folder: str) -> str:
    """The refusal of a legacy single-app folder ``name``, whose hint names it ``folder``."""
    return (
        f"meta.json: $: meta.[json|conf|yml] not existing for job {name}, possible in legacy job format (config/ at "
        f"the top of the folder, no meta file) (upgrade the job structure: 'flruntime job convert {folder} -o "
        f"{folder}_job' wraps it as app '{name}' of a job)"
    )


def test_shutdown_and_restart_of_clients(fed: Federation):
    with session(fed) as s:
        assert s.restart_clients(["site-3"]) == ["site-3"]
        fed.procs["site-3"].wait(timeout=60)
        assert (fed.kit("site-3") / "restart.fl").exists()
        with pytest.raises(UsageError, match=r"^no client named site-9 in the project"):
            s.shutdown_clients(["site-9"])
        fed.start("site-3")
        fed.wait_log("server", r"client 'site-3' \(org clinic\) registered again")
        status = s.check_status("client", ["site-3"])
        assert status["clients"][0]["name"] == "site-3"
        sites = {row["name"]: row for row in s.list_sites()}
        assert sites["server"]["type"] == "server" and sites["site-3"]["org"] == "clinic"
