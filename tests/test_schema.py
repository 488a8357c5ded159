"""Schema problems: unknown keys, missing sections, wrong types, component shape, meta and deploy map shape."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, CLIENT_FILE, META, SERVER, SERVER_FILE, line_of, make_job, report_lines

from flruntime import validate_job
from flruntime.config.schema import check_schema
from flruntime.config.source import Source

TRAIN_NOT_SENT = (
    f"{CLIENT_FILE}:6: $.executors[0].tasks[0]: warning: no workflow sends task 'train' "
    "(the server's workflows send: nothing)"
)
TRAIN_NOT_HANDLED = (
    f"{SERVER_FILE}:5: $.workflows[0]: task 'train' is sent to clients but no executor in {CLIENT_FILE} handles it "
    '(add an executor with "tasks": ["train"])'
)
NO_AGGREGATOR = (
    f"{SERVER_FILE}:10: $.workflows[0].args.aggregator_id: aggregator_id: no component 'aggregator' "
    "(add a component with that id)"
)


def server(**changes: Any) -> dict[str, Any]:
    """The default server config with top-level keys changed (a value of None removes the key)."""
    doc = copy.deepcopy(SERVER)
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def client(**changes: Any) -> dict[str, Any]:
    """The default client config with top-level keys changed (a value of None removes the key)."""
    doc = copy.deepcopy(CLIENT)
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def second_component(component: dict[str, Any]) -> dict[str, Any]:
    """The default server config with its second component (the aggregator) replaced."""
    return server(components=[SERVER["components"][0], component])


def at(job: Path, file: str, needle: str, rest: str, nth: int = 1) -> str:
    """``FILE:LINE: rest`` with LINE found by searching the file's text for ``needle``."""
    return f"{file}:{line_of(job / file, needle, nth)}: {rest}"


# --- top-level keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needle", "expected", "more"),
    [
        pytest.param(
            {"workflowz": []},
            '"workflowz"',
            "$.workflowz: unknown top-level key 'workflowz' (did you mean 'workflows'?)",
            [],
            id="misspelt-section-beside-the-real-one",
        ),
        pytest.param(
            {"component": {"id": "x", "path": "parts.Net"}},
            '"component"',
            "$.component: unknown top-level key 'component' (did you mean 'components'?)",
            [],
            id="dict-valued-misspelt-section",
        ),
        pytest.param(
            {"extra": {"a": 1}},
            '"extra"',
            "$.extra: unknown top-level key 'extra' (top-level keys are sections or scalar variables)",
            [],
            id="dict-valued-unknown-key",
        ),
        pytest.param(
            {"task_data_filter": []},
            '"task_data_filter"',
            "$.task_data_filter: unknown top-level key 'task_data_filter' (did you mean 'task_data_filters'?)",
            [],
            id="misspelt-filter-section",
        ),
    ],
)
def test_unknown_top_level_key(
    tmp_path: Path, changes: dict[str, Any], needle: str, expected: str, more: list[str]
) -> None:
    job = make_job(tmp_path / "job", server=server(**changes))
    assert report_lines(job) == [at(job, SERVER_FILE, needle, expected), *more]


def test_misspelt_section_instead_of_the_real_one(tmp_path: Path) -> None:
    doc = server(workflows=None)
    doc["workflowz"] = SERVER["workflows"]
    job = make_job(tmp_path / "job", server=doc)
    assert report_lines(job) == [
        at(
            job,
            SERVER_FILE,
            '"workflowz"',
            "$.workflowz: unknown top-level key 'workflowz' (did you mean 'workflows'?)",
        ),
        f"{SERVER_FILE}:1: $: missing required key 'workflows'",
        TRAIN_NOT_SENT,
    ]


def test_list_variables_are_not_mistaken_for_sections(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server(site_names=["a", "b"], exclude_vars=["x"]))
    assert report_lines(job) == []


@pytest.mark.parametrize(
    ("side", "doc", "expected"),
    [
        pytest.param(
            "server",
            server(format_version=None),
            [f"{SERVER_FILE}:1: $: missing required key 'format_version'"],
            id="server-format_version",
        ),
        pytest.param(
            "client",
            client(format_version=None),
            [f"{CLIENT_FILE}:1: $: missing required key 'format_version'"],
            id="client-format_version",
        ),
        pytest.param(
            "server",
            server(workflows=None),
            [f"{SERVER_FILE}:1: $: missing required key 'workflows'", TRAIN_NOT_SENT],
            id="workflows",
        ),
        pytest.param(
            "client",
            client(executors=None),
            [f"{CLIENT_FILE}:1: $: missing required key 'executors'", TRAIN_NOT_HANDLED],
            id="executors",
        ),
    ],
)
def test_missing_section(tmp_path: Path, side: str, doc: dict[str, Any], expected: list[str]) -> None:
    job = make_job(tmp_path / "job", **{side: doc})
    assert report_lines(job) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(1, "must be 2, got 1", id="one"),
        pytest.param(3, "must be 2, got 3", id="three"),
        pytest.param("2", 'must be 2, got "2"', id="quoted"),
        pytest.param(None, "must be 2, got null", id="null"),
    ],
)
def test_format_version_must_be_2(tmp_path: Path, value: Any, message: str) -> None:
    doc = server()
    doc["format_version"] = value
    job = make_job(tmp_path / "job", server=doc)
    assert report_lines(job) == [f"{SERVER_FILE}:2: $.format_version: {message}"]


# --- components -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "component",
    [
        pytest.param({"id": "aggregator", "args": {}}, id="args-only"),
        pytest.param({"id": "aggregator"}, id="id-only"),
    ],
)
def test_component_without_class(tmp_path: Path, component: dict[str, Any]) -> None:
    job = make_job(tmp_path / "job", server=second_component(component))
    assert report_lines(job) == [
        f"{SERVER_FILE}:28: $.components[1]: no class given "
        '(add "path": "package.module.Class" (or "name" with a registered short name))',
        NO_AGGREGATOR,
    ]


def test_workflow_and_executor_without_class(tmp_path: Path) -> None:
    job = make_job(
        tmp_path / "job",
        server=server(workflows=[{"id": "fedavg", "args": {}}]),
        client=client(executors=[{"tasks": ["train"], "executor": {"args": {"lr": 0.1}}}]),
    )
    hint = '(add "path": "package.module.Class" (or "name" with a registered short name))'
    assert report_lines(job) == [
        f"{SERVER_FILE}:5: $.workflows[0]: no class given {hint}",
        f"{CLIENT_FILE}:8: $.executors[0].executor: no class given {hint}",
    ]


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        pytest.param(
            {"id": "aggregator", "path": "parts.WeightedAggregator", "arg": {}},
            "31: $.components[1].arg: unknown key 'arg' (did you mean 'args'?)",
            id="misspelt-args",
        ),
        pytest.param(
            {"id": "aggregator", "path": "parts.WeightedAggregator", "args": [1]},
            "31: $.components[1].args: expected an object, got a list",
            id="args-list",
        ),
        pytest.param(
            {"id": "aggregator", "path": "parts.WeightedAggregator", "disabled": "no"},
            "31: $.components[1].disabled: expected true or false, got a string",
            id="disabled-string",
        ),
    ],
)
def test_component_shape(tmp_path: Path, component: dict[str, Any], expected: str) -> None:
    job = make_job(tmp_path / "job", server=second_component(component))
    assert report_lines(job) == [f"{SERVER_FILE}:{expected}"]


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        pytest.param(
            {"id": 5, "path": "parts.WeightedAggregator"},
            "29: $.components[1].id: expected a string, got an integer",
            id="id-int",
        ),
        pytest.param(
            {"path": "parts.WeightedAggregator"}, "28: $.components[1]: missing required key 'id'", id="no-id"
        ),
        pytest.param({"id": "aggregator", "path": ""}, "30: $.components[1].path: must not be empty", id="empty-path"),
        pytest.param(
            {"id": "aggregator", "path": 7},
            "30: $.components[1].path: expected a string, got an integer",
            id="path-number",
        ),
    ],
)
def test_component_id_and_path(tmp_path: Path, component: dict[str, Any], expected: str) -> None:
    job = make_job(tmp_path / "job", server=second_component(component))
    assert report_lines(job) == [f"{SERVER_FILE}:{expected}", NO_AGGREGATOR]


# --- wrong types of sections and variables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "doc", "expected"),
    [
        pytest.param(
            "server",
            server(workflows={"id": "fedavg", "path": "parts.FedAvg"}),
            [f"{SERVER_FILE}:4: $.workflows: expected a list, got an object", TRAIN_NOT_SENT],
            id="workflows-object",
        ),
        pytest.param(
            "server",
            server(workflows=[]),
            [f"{SERVER_FILE}:4: $.workflows: must not be empty", TRAIN_NOT_SENT],
            id="workflows-empty",
        ),
        pytest.param(
            "server",
            server(components="persistor"),
            [
                f"{SERVER_FILE}:15: $.components: expected a list, got a string",
                NO_AGGREGATOR,
                f"{SERVER_FILE}:11: $.workflows[0].args.persistor_id: persistor_id: no component 'persistor' "
                "(add a component with that id)",
            ],
            id="components-string",
        ),
        pytest.param(
            "client",
            client(executors=[{"tasks": "train", "executor": {"path": "parts.Trainer"}}]),
            [f"{CLIENT_FILE}:5: $.executors[0].tasks: expected a list, got a string", TRAIN_NOT_HANDLED],
            id="tasks-string",
        ),
        pytest.param(
            "client",
            client(executors=[{"tasks": [], "executor": {"path": "parts.Trainer"}}]),
            [f"{CLIENT_FILE}:5: $.executors[0].tasks: must not be empty", TRAIN_NOT_HANDLED],
            id="tasks-empty",
        ),
        pytest.param(
            "client",
            client(executors=[{"tasks": ["train"]}]),
            [f"{CLIENT_FILE}:4: $.executors[0]: missing required key 'executor'", TRAIN_NOT_HANDLED],
            id="executor-missing",
        ),
        pytest.param(
            "client",
            client(executors=[{"tasks": ["train"], "executor": {"path": "parts.Trainer"}, "task": 1}]),
            [f"{CLIENT_FILE}:11: $.executors[0].task: unknown key 'task' (did you mean 'tasks'?)"],
            id="executor-entry-unknown-key",
        ),
        pytest.param(
            "client",
            client(task_result_filters=[{"tasks": ["train"]}]),
            [f"{CLIENT_FILE}:17: $.task_result_filters[0]: missing required key 'filters'"],
            id="filter-chain-without-filters",
        ),
        pytest.param(
            "client",
            client(
                task_result_filters=[
                    {
                        "tasks": ["train"],
                        "filters": [{"path": "parts.Labeler", "args": {"label": "x"}}],
                        "direction": "up",
                    }
                ]
            ),
            [f'{CLIENT_FILE}:29: $.task_result_filters[0].direction: must be one of "in", "out", "inout", got "up"'],
            id="filter-direction",
        ),
        pytest.param(
            "server",
            server(tags=[{"a": 1}]),
            [f"{SERVER_FILE}:35: $.tags[0]: expected a string or a number or true or false or null, got an object"],
            id="list-variable-of-objects",
        ),
        pytest.param(
            "server",
            server(server={"heart_beat_timeout": 0}),
            [f"{SERVER_FILE}:35: $.server.heart_beat_timeout: 0 is less than or equal to the minimum of 0"],
            id="server-timeout-not-positive",
        ),
        pytest.param(
            "server",
            server(server={"heart_beat_timout": 60}),
            [
                f"{SERVER_FILE}:35: $.server.heart_beat_timout: unknown key 'heart_beat_timout' "
                "(did you mean 'heart_beat_timeout'?)"
            ],
            id="server-section-misspelt-key",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, side: str, doc: dict[str, Any], expected: list[str]) -> None:
    job = make_job(tmp_path / "job", **{side: doc})
    assert report_lines(job) == expected


def test_every_schema_problem_has_code_schema(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server(format_version=1, workflowz=[], extra={"a": 1}, workflows={}))
    report = validate_job(job)
    assert {p.code for p in report.problems if p.file == SERVER_FILE} == {"schema"}
    assert [p.format() for p in report.problems if p.file == SERVER_FILE] == [
        f"{SERVER_FILE}:24: $.workflowz: unknown top-level key 'workflowz' (did you mean 'workflows'?)",
        f"{SERVER_FILE}:25: $.extra: unknown top-level key 'extra' (top-level keys are sections or scalar variables)",
        f"{SERVER_FILE}:2: $.format_version: must be 2, got 1",
        f"{SERVER_FILE}:4: $.workflows: expected a list, got an object",
    ]


# --- meta -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        pytest.param(
            {"name": "demo", "min_clients": 1},
            ["meta.json:1: $: missing required key 'deploy_map'"],
            id="no-deploy_map",
        ),
        pytest.param([1], ["meta.json:1: $: expected an object, got a list"], id="meta-is-a-list"),
        pytest.param(
            {**META, "deploy_map": ["app"]},
            ["meta.json:4: $.deploy_map: expected an object, got a list"],
            id="deploy_map-list",
        ),
        pytest.param(
            {**META, "deploy_map": {"app": "@ALL"}},
            [
                'meta.json:4: $.deploy_map: no site is named in deploy_map (deploy an app to ["@ALL"] or to "server" '
                "and client names)",
                "meta.json:5: $.deploy_map.app: expected a list, got a string",
            ],
            id="deploy_map-value-string",
        ),
        pytest.param(
            {**META, "deploy_map": {"app": [1]}},
            [
                'meta.json:4: $.deploy_map: no site is named in deploy_map (deploy an app to ["@ALL"] or to "server" '
                "and client names)",
                "meta.json:6: $.deploy_map.app[0]: expected a string, got an integer",
            ],
            id="deploy_map-site-number",
        ),
        pytest.param(
            {**META, "deploy_map": {}},
            [
                'meta.json:4: $.deploy_map: no site is named in deploy_map (deploy an app to ["@ALL"] or to "server" '
                "and client names)",
                "meta.json:4: $.deploy_map: must not be empty",
            ],
            id="deploy_map-empty",
        ),
        pytest.param(
            {**META, "min_clients": "2"},
            ["meta.json:3: $.min_clients: expected an integer, got a string"],
            id="min_clients-string",
        ),
        pytest.param(
            {**META, "min_clients": 0},
            ["meta.json:3: $.min_clients: 0 is less than the minimum of 1"],
            id="min_clients-zero",
        ),
        pytest.param(
            {**META, "mandatory_clients": ["site-1", "site-1"]},
            ["meta.json:9: $.mandatory_clients: has repeated items (list each item once)"],
            id="mandatory_clients-repeated",
        ),
        pytest.param(
            {**META, "name": ""},
            ["meta.json:2: $.name: must not be empty"],
            id="empty-name",
        ),
    ],
)
def test_meta_shape(tmp_path: Path, meta: Any, expected: list[str]) -> None:
    job = make_job(tmp_path / "job", meta=meta)
    assert report_lines(job) == expected


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my app", id="space"),
        pytest.param("-app", id="leading-dash"),
        pytest.param("_app", id="leading-underscore"),
    ],
)
def test_app_name_pattern(tmp_path: Path, name: str) -> None:
    job = make_job(tmp_path / "job", meta={**META, "deploy_map": {name: ["@ALL"]}})
    key = f"['{name}']" if not name.isidentifier() else f".{name}"
    assert report_lines(job) == [
        f"meta.json:5: $.deploy_map{key}: app '{name}' does not exist (no folder {name}/config/) "
        "(existing folders: app)",
        f'meta.json:4: $.deploy_map: "{name}" is not allowed here (must match ^[A-Za-z0-9][A-Za-z0-9._-]*$)',
    ]


def test_meta_allows_nvflare_extra_keys(tmp_path: Path) -> None:
    meta = {
        **META,
        "resource_spec": {"site-1": {"num_of_gpus": 1}},
        "custom_props": {},
        "study": "s",
        "job_folder_name": "x",
    }
    job = make_job(tmp_path / "job", meta=meta)
    assert report_lines(job) == []


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        pytest.param(
            "client",
            {"format_version": 2, "executor": [{"tasks": ["train"], "executor": {"path": "parts.Trainer"}}]},
            [
                "x.json:3: $.executor: unknown top-level key 'executor' (did you mean 'executors'?)",
                "x.json:1: $: missing required key 'executors'",
            ],
            id="client-misspelt-executors",
        ),
        pytest.param(
            "client",
            {"format_version": 2, "executors": [], "workflows": [{"path": "parts.FedAvg"}]},
            [
                "x.json:3: $.executors: must not be empty",
                "x.json:4: $.workflows[0]: expected a string or a number or true or false or null, got an object",
            ],
            id="client-with-server-section",
        ),
        pytest.param("meta", {"deploy_map": {"app": ["@ALL"]}, "deploy_mapp": []}, [], id="meta-allows-extra-keys"),
    ],
)
def test_check_schema_on_a_source(kind: str, data: dict[str, Any], expected: list[str]) -> None:
    positions = {(): (1, 1), **{(key,): (n, 3) for n, key in enumerate(data, start=2)}}
    source = Source(Path("x.json"), "x.json", data, positions)
    assert [p.format() for p in check_schema(kind, source)] == expected
