"""Deploy-map checks: which apps exist, where they go, and whether the sites named fit the meta file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, PARTS, SERVER, dump, line_of, make_job, report_lines, write

from flruntime import validate_job


def meta(deploy_map: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A meta document with the given deploy map (min_clients 1 unless given)."""
    return {"name": "demo", "min_clients": 1, **more, "deploy_map": deploy_map}


def add_app(job: Path, name: str, *, server: bool = False, client: bool = False) -> None:
    """Add app folder ``name`` with the default server and/or client config and the test components."""
    if server:
        write(job / name / "config" / "config_fed_server.json", dump(SERVER))
    if client:
        write(job / name / "config" / "config_fed_client.json", dump(CLIENT))
    write(job / name / "custom" / "parts.py", PARTS)


def at_meta(job: Path, needle: str, rest: str, nth: int = 1) -> str:
    """``meta.json:LINE: rest`` with LINE found by searching meta.json for ``needle``."""
    return f"meta.json:{line_of(job / 'meta.json', needle, nth)}: {rest}"


def test_explicit_deploy_map_with_several_apps_is_valid(tmp_path: Path) -> None:
    job = make_job(
        tmp_path / "job",
        meta=meta({"app_server": ["server"], "app_a": ["site-1"], "app_b": ["site-2", "site-3"]}, min_clients=3),
        server=None,
        client=None,
        custom={},
    )
    add_app(job, "app_server", server=True)
    add_app(job, "app_a", client=True)
    add_app(job, "app_b", client=True)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == []
    assert sorted((a.config.app, a.config.side) for a in report.apps) == [
        ("app_a", "client"),
        ("app_b", "client"),
        ("app_server", "server"),
    ]


def test_app_does_not_exist(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": ["server"], "trainer": ["site-1"]}))
    assert report_lines(job) == [
        at_meta(
            job,
            '"trainer"',
            "$.deploy_map.trainer: app 'trainer' does not exist (no folder trainer/config/) (existing folders: app)",
        )
    ]


def test_app_does_not_exist_in_an_empty_job_folder(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job / "meta.json", dump(meta({"app": ["@ALL"]})))
    assert report_lines(job) == [
        at_meta(
            job,
            '"app"',
            "$.deploy_map.app: app 'app' does not exist (no folder app/config/) (create the app folder with config/)",
        )
    ]


def test_existing_folders_are_listed_sorted_without_hidden_ones(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"ap": ["@ALL"]}))
    (job / "zeta").mkdir()
    (job / ".git").mkdir()
    assert report_lines(job) == [
        at_meta(
            job, '"ap"', "$.deploy_map.ap: app 'ap' does not exist (no folder ap/config/) (existing folders: app, zeta)"
        )
    ]


ALL_MIXED = "no other site may be listed when @ALL is used (use @ALL alone, or list server and clients explicitly)"


@pytest.mark.parametrize(
    ("deploy_map", "needle", "key"),
    [
        pytest.param({"app": ["@ALL", "server"]}, '"app"', "app", id="same-app"),
        pytest.param({"app": ["site-1", "@ALL"]}, '"app"', "app", id="all-listed-second"),
        pytest.param({"app": ["@all", "site-1"]}, '"app"', "app", id="lower-case-all"),
    ],
)
def test_all_mixed_with_other_sites(tmp_path: Path, deploy_map: dict[str, list[str]], needle: str, key: str) -> None:
    job = make_job(tmp_path / "job", meta=meta(deploy_map))
    assert report_lines(job) == [at_meta(job, needle, f"$.deploy_map.{key}: {ALL_MIXED}")]


def test_all_in_one_app_and_sites_in_another(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": ["@ALL"], "extra": ["site-9"]}))
    add_app(job, "extra", client=True)
    assert report_lines(job) == [at_meta(job, '"app"', f"$.deploy_map.app: {ALL_MIXED}")]


@pytest.mark.parametrize(
    "deploy_map",
    [
        pytest.param({"app": ["site-1"]}, id="one-client"),
        pytest.param({"app": ["site-1", "site-2"]}, id="two-clients"),
        pytest.param({"app": ["Server", "site-1"]}, id="server-is-case-sensitive"),
    ],
)
def test_no_server_app(tmp_path: Path, deploy_map: dict[str, list[str]]) -> None:
    job = make_job(tmp_path / "job", meta=meta(deploy_map))
    assert report_lines(job) == [
        at_meta(
            job, '"deploy_map"', '$.deploy_map: no app is deployed to the server (add "server" to one app\'s site list)'
        )
    ]


def test_site_given_two_apps(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": ["server", "site-1"], "second": ["site-1"]}))
    add_app(job, "second", client=True)
    assert report_lines(job) == [
        at_meta(
            job,
            '"second"',
            "$.deploy_map.second: site 'site-1' gets two apps ('app' and 'second') (each site runs exactly one app)",
        )
    ]


def test_server_given_two_apps(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": ["server", "site-1"], "other": ["server"]}))
    add_app(job, "other", server=True)
    assert report_lines(job) == [
        at_meta(
            job,
            '"other"',
            "$.deploy_map.other: site 'server' gets two apps ('app' and 'other') (each site runs exactly one app)",
        )
    ]


@pytest.mark.parametrize(
    ("sites", "min_clients", "named"),
    [
        pytest.param(["server", "site-1"], 2, 1, id="one-of-two"),
        pytest.param(["server", "site-1", "site-2"], 3, 2, id="two-of-three"),
        pytest.param(["server"], 1, 0, id="server-only"),
    ],
)
def test_min_clients_larger_than_named_clients(tmp_path: Path, sites: list[str], min_clients: int, named: int) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": sites}, min_clients=min_clients))
    assert report_lines(job) == [
        at_meta(
            job,
            '"min_clients"',
            f"$.min_clients: min_clients is {min_clients} but deploy_map names only {named} client(s) "
            "(lower min_clients or deploy to more sites)",
        )
    ]


def test_min_clients_is_not_checked_against_all(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app": ["@ALL"]}, min_clients=50))
    assert report_lines(job) == []


def test_mandatory_client_not_deployed(tmp_path: Path) -> None:
    job = make_job(
        tmp_path / "job",
        meta=meta({"app": ["server", "site-1", "site-2"]}, mandatory_clients=["site-1", "site-3", "site-4"]),
    )
    assert report_lines(job) == [
        at_meta(
            job,
            '"site-3"',
            "$.mandatory_clients[1]: mandatory client 'site-3' is not in deploy_map (deploy an app to it or remove it)",
        ),
        at_meta(
            job,
            '"site-4"',
            "$.mandatory_clients[2]: mandatory client 'site-4' is not in deploy_map (deploy an app to it or remove it)",
        ),
    ]


@pytest.mark.parametrize(
    ("deploy_map", "missing", "side", "stem"),
    [
        pytest.param({"app": ["server", "site-1"]}, "server", "the server", "config_fed_server", id="server"),
        pytest.param({"app": ["@ALL"]}, "server", "the server", "config_fed_server", id="all-needs-server"),
        pytest.param({"app": ["server", "site-1"]}, "client", "clients", "config_fed_client", id="client"),
        pytest.param({"app": ["@ALL"]}, "client", "clients", "config_fed_client", id="all-needs-client"),
    ],
)
def test_app_without_the_config_its_deployment_needs(
    tmp_path: Path, deploy_map: dict[str, list[str]], missing: str, side: str, stem: str
) -> None:
    job = make_job(tmp_path / "job", meta=meta(deploy_map), **{missing: None})
    assert report_lines(job) == [
        at_meta(
            job,
            '"app"',
            f"$.deploy_map.app: app 'app' is deployed to {side} but has no {stem}.json (add app/config/{stem}.json)",
        )
    ]


def test_client_only_app_needs_no_server_config(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=meta({"app_server": ["server"], "app": ["site-1"]}), server=None)
    add_app(job, "app_server", server=True)
    assert report_lines(job) == []


def test_flat_app_folder_without_server_config(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job / "meta.json", dump(meta({"app_server": ["server"], "app_1": ["site-1"]})))
    write(job / "app_server" / "config_fed_client.json", dump(CLIENT))
    write(job / "app_1" / "config_fed_client.json", dump(CLIENT))
    write(job / "app_1" / "custom" / "parts.py", PARTS)
    assert report_lines(job) == [
        at_meta(
            job,
            '"app_server"',
            "$.deploy_map.app_server: app 'app_server' is deployed to the server but has no config_fed_server.json "
            "(add app_server/config_fed_server.json)",
        )
    ]


def test_every_deploy_map_mistake_at_once(tmp_path: Path) -> None:
    deploy_map = {"app": ["site-1", "site-2"], "app2": ["site-2"], "ghost": ["site-3"]}
    job = make_job(tmp_path / "job", meta=meta(deploy_map, min_clients=4, mandatory_clients=["site-9"]))
    add_app(job, "app2", client=True)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [
        at_meta(
            job, '"deploy_map"', '$.deploy_map: no app is deployed to the server (add "server" to one app\'s site list)'
        ),
        at_meta(
            job,
            '"app2"',
            "$.deploy_map.app2: site 'site-2' gets two apps ('app' and 'app2') (each site runs exactly one app)",
        ),
        at_meta(
            job,
            '"min_clients"',
            "$.min_clients: min_clients is 4 but deploy_map names only 3 client(s) "
            "(lower min_clients or deploy to more sites)",
        ),
        at_meta(
            job,
            '"site-9"',
            "$.mandatory_clients[0]: mandatory client 'site-9' is not in deploy_map (deploy an app to it or remove it)",
        ),
        at_meta(
            job,
            '"ghost"',
            "$.deploy_map.ghost: app 'ghost' does not exist (no folder ghost/config/) (existing folders: app, app2)",
        ),
    ]
    assert {p.code for p in report.problems} == {"deploy-map"}
