"""The dashboard's parts without a federation: logins and sessions (Flask's test client), the workspace readers,
start errors, the command, and its imports (none of the federation server)."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from flruntime.dashboard import start_dashboard
from flruntime.dashboard.auth import LoginTokens, Sessions, Viewer
from flruntime.dashboard.views import CurveReader, cross_val, model_files, tail
from flruntime.errors import UsageError
from flruntime.federation.commands import AdminCommands
from flruntime.federation.kit import Member
from flruntime.federation.policy import AuditLog
from flruntime.transport.streaming import control

ALICE = Viewer("alice@acme.org", "acme", "member")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_login_token_works_once_and_only_before_it_expires():
    clock = Clock()
    tokens = LoginTokens(ttl=60, clock=clock)
    first, second = tokens.issue(ALICE), tokens.issue(ALICE)
    assert first != second and len(first) >= 40
    assert tokens.redeem(first) == ALICE
    assert tokens.redeem(first) is None  # used up
    assert tokens.redeem("forged") is None
    clock.now += 61
    assert tokens.redeem(second) is None  # expired


def test_a_session_lives_until_closed_or_expired():
    clock = Clock()
    sessions = Sessions(ttl=60, clock=clock)
    first, second = sessions.open(ALICE), sessions.open(ALICE)
    assert first != second and len(first) >= 40
    assert sessions.get(first) == ALICE
    sessions.close(first)
    assert sessions.get(first) is None
    assert sessions.get("forged") is None
    clock.now += 61
    assert sessions.get(second) is None  # expired, and forgotten
    assert len(sessions) == 0


def _host(tmp_path: Path) -> SimpleNamespace:
    member = Member(ALICE.name, "admin", ALICE.org, ALICE.role)
    return SimpleNamespace(
        kit=SimpleNamespace(project="demo", name="server", host="localhost", members={member.name: member}),
        store=SimpleNamespace(all=lambda: [], get=lambda job_id: None),
        workspace=tmp_path,
        snapshot=lambda: {"sites": {}, "uptime_s": 1.0},
    )


def test_a_copied_session_cookie_is_refused_after_logout(tmp_path: Path):
    pytest.importorskip("flask")
    from flruntime.dashboard.app import create_app

    tokens, sessions = LoginTokens(), Sessions()
    app = create_app(_host(tmp_path), tokens, sessions)  # type: ignore[arg-type]
    name = app.config["SESSION_COOKIE_NAME"]
    browser = app.test_client()
    assert browser.get("/api/overview").status_code == 401
    login = browser.get("/login?token=" + tokens.issue(ALICE))
    assert (login.status_code, login.headers["Location"]) == (303, "/")
    cookie = browser.get_cookie(name)
    assert cookie is not None and len(sessions) == 1
    copied = cookie.value
    assert browser.get("/api/overview").json["me"] == {"name": ALICE.name, "org": ALICE.org, "role": ALICE.role}

    thief = app.test_client()  # the same cookie, elsewhere: works while the session lives
    thief.set_cookie(name, copied)
    assert thief.get("/api/overview").status_code == 200

    assert browser.get("/logout").status_code == 200
    assert browser.get_cookie(name) is None and len(sessions) == 0
    replay = app.test_client()
    replay.set_cookie(name, copied)
    refused = replay.get("/api/overview")
    assert (refused.status_code, refused.json) == (
        401,
        {"error": "not logged in: get a login link with `flruntime admin -c dashboard_login`"},
    )
    assert replay.get("/").status_code == 401
    assert thief.get("/api/overview").status_code == 401


def test_logging_in_again_closes_the_previous_session(tmp_path: Path):
    pytest.importorskip("flask")
    from flruntime.dashboard.app import create_app

    tokens, sessions = LoginTokens(), Sessions()
    app = create_app(_host(tmp_path), tokens, sessions)  # type: ignore[arg-type]
    name = app.config["SESSION_COOKIE_NAME"]
    browser = app.test_client()
    browser.get("/login?token=" + tokens.issue(ALICE))
    cookie = browser.get_cookie(name)
    assert cookie is not None
    browser.get("/login?token=" + tokens.issue(ALICE))
    assert len(sessions) == 1
    old = app.test_client()
    old.set_cookie(name, cookie.value)
    assert old.get("/api/overview").status_code == 401
    assert browser.get("/api/overview").status_code == 200


DASHBOARD = Path(__file__).resolve().parents[1] / "flruntime" / "dashboard"


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (TYPE_CHECKING blocks and functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in DASHBOARD.glob("*.py")))
def test_the_dashboard_does_not_import_the_federation_server(module: str):
    imported = _imported_modules(DASHBOARD / module)
    assert not {
        n for n in imported if n == "flruntime.federation.server" or n.startswith("flruntime.federation.server.")
    }
    assert "flruntime.federation.FederationServer" not in imported  # nor through the package


def test_tail_returns_the_last_lines(tmp_path: Path):
    log = tmp_path / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    text = tail(log, 200)
    assert text.splitlines() == [f"line {i}" for i in range(4800, 5000)]
    assert tail(tmp_path / "missing.txt") == ""
    log.write_text("only\nno newline")
    assert tail(log, 200) == "only\nno newline\n"


def test_curves_are_read_incrementally_one_trace_per_site_and_tag(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"

    def line(site: str, tag: str, value: float, step: int) -> str:
        return json.dumps({"site": site, "tag": tag, "value": value, "step": step, "time": 0}) + "\n"

    path.write_text(line("site-1", "train_loss", 2.0, 0) + line("site-1", "system/cpu_percent", 5, 0))
    reader = CurveReader()
    assert [c["tag"] for c in reader.curves(tmp_path)] == ["train_loss", "system/cpu_percent"]
    with path.open("a") as f:  # one more line and half of another
        f.write(line("site-2", "train_loss", 1.5, 0) + line("site-1", "train_loss", 1.0, 1)[:20])
    curves = reader.curves(tmp_path)
    assert curves[0]["traces"] == [
        {"site": "site-1", "x": [0], "y": [2.0]},
        {"site": "site-2", "x": [0], "y": [1.5]},
    ]
    with path.open("a") as f:
        f.write(line("site-1", "train_loss", 1.0, 1)[20:] + "not json\n")
    assert reader.curves(tmp_path)[0]["traces"][0] == {"site": "site-1", "x": [0, 1], "y": [2.0, 1.0]}
    path.write_text(line("site-3", "acc", 0.5, 7))  # replaced (e.g. a resumed job): read again
    assert reader.curves(tmp_path) == [{"tag": "acc", "traces": [{"site": "site-3", "x": [7], "y": [0.5]}]}]
    path.unlink()
    assert reader.curves(tmp_path) == []


def test_the_cross_site_matrix_has_a_row_per_site_and_server_models_first(tmp_path: Path):
    results = {
        "site-2": {"site-1": {"val_acc": 0.8}, "SRV_FL_global_model.pt": {"val_acc": 0.9, "val_loss": 0.3}},
        "site-1": {"site-1": {"val_acc": 0.7}, "site-2": {"val_acc": 0.6}},
    }
    (tmp_path / "cross_site_val").mkdir()
    (tmp_path / "cross_site_val" / "cross_val_results.json").write_text(json.dumps(results))
    acc, loss = cross_val(tmp_path)
    assert acc == {
        "metric": "val_acc",
        "sites": ["site-1", "site-2"],
        "models": ["SRV_FL_global_model.pt", "site-1", "site-2"],
        "z": [[None, 0.7, 0.6], [0.9, 0.8, None]],
    }
    assert loss["metric"] == "val_loss" and loss["z"] == [[None, None, None], [0.3, None, None]]
    assert cross_val(tmp_path / "nothing") == []


def test_model_files_are_the_run_folders_models(tmp_path: Path):
    for rel in ("FL_global_model.pt", "models/server.npy", "log.txt", "cross_site_val/model_shareables/x.pt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert model_files(tmp_path) == ["FL_global_model.pt", "models/server.npy"]
    assert model_files(tmp_path / "none") == []


def test_start_dashboard_says_what_is_wrong_with_the_port():
    server = SimpleNamespace()
    with pytest.raises(UsageError, match=r"FLRUNTIME_DASHBOARD_PORT='http': not a port number"):
        start_dashboard(server, "http")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"a port is 0 to 65535"):
        start_dashboard(server, 70000)  # type: ignore[arg-type]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=rf"cannot serve the dashboard on 127\.0\.0\.1:{port}: Address already"):
            start_dashboard(server, port)  # type: ignore[arg-type]


def test_dashboard_login_without_a_dashboard_is_one_line_and_audited(tmp_path: Path):
    server = SimpleNamespace(dashboard=None, audit=AuditLog(tmp_path / "audit.log"))
    commands = AdminCommands(server)  # type: ignore[arg-type]
    reply = json.loads(
        commands.run(Member("alice@acme.org", "admin", "acme", "member"), control(command="dashboard_login"))
    )
    assert reply == {
        "ok": False,
        "error": "the server runs no dashboard (start it with FLRUNTIME_DASHBOARD_PORT set, 0 for a free port)",
    }
    assert [(e["command"], e["result"]) for e in server.audit.entries()] == [("dashboard_login", "failed")]


def test_site_rows_show_every_client_with_its_latest_sample_gpu_included(tmp_path: Path):
    from flruntime.dashboard.views import site_rows
    from flruntime.federation.jobs import JobRecord

    stats = tmp_path / "job-1" / "sites" / "site-1" / "stats.jsonl"
    stats.parent.mkdir(parents=True)
    sample = {"time": 5.0, "cpu_percent": 80.0, "rss_mib": 900.0, "mem_percent": 3.0}
    stats.write_text(
        json.dumps({**sample, "cpu_percent": 1.0}) + "\n" + json.dumps({**sample, "gpu_util_percent": 97.0}) + "\n"
    )
    members = {
        "site-1": Member("site-1", "client", "acme"),
        "site-2": Member("site-2", "client", "clinic"),
        "admin@acme.org": Member("admin@acme.org", "admin", "acme", "project_admin"),
    }
    seen = {"site-1": {"online": True, "last_seen_s": 0.5, "jobs": [], "version": "0.1.0", "resources": {}}}
    server = SimpleNamespace(
        workspace=tmp_path,
        kit=SimpleNamespace(members=members),
        snapshot=lambda: {"sites": seen},
        store=SimpleNamespace(all=lambda: [JobRecord("job-1", "j", "admin@acme.org", 1.0, sites=["site-1"])]),
    )
    one, two = site_rows(server)  # type: ignore[arg-type]
    assert (one["name"], one["online"], one["version"]) == ("site-1", True, "0.1.0")
    assert one["stats"] == {**sample, "gpu_util_percent": 97.0, "job_id": "job-1"}
    assert (two["name"], two["org"], two["online"], two["last_heartbeat"], two["stats"]) == (
        "site-2",
        "clinic",
        False,
        None,
        None,
    )
