"""``{var}`` substitution: typed whole-string placeholders, text formatting, sources and their order, errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, CLIENT_FILE, META, SERVER, SERVER_FILE, line_of, make_job, report_lines

from flruntime import Report, UsageError, validate_job
from flruntime.config.variables import parse_override


def server_with(label: Any = None, **top: Any) -> dict[str, Any]:
    """The default server config with the workflow's ``label`` argument and extra top-level keys."""
    doc = copy.deepcopy(SERVER)
    doc.update(top)
    if label is not None:
        doc["workflows"][0]["args"]["label"] = label
    return doc


def client_with(**executor_args: Any) -> dict[str, Any]:
    """The default client config with extra arguments for its executor."""
    doc = copy.deepcopy(CLIENT)
    doc["executors"][0]["executor"]["args"].update(executor_args)
    return doc


def data_of(report: Report, side: str) -> dict[str, Any]:
    """The substituted document of one side of the job's first app."""
    return next(a.config.data for a in report.apps if a.config.side == side)


def workflow_args(report: Report) -> dict[str, Any]:
    """The substituted arguments of the server's first workflow."""
    return data_of(report, "server")["workflows"][0]["args"]


def valid(job: Path, **kwargs: Any) -> Report:
    """Validate ``job`` and require that it has no problem at all."""
    report = validate_job(job, **kwargs)
    assert [p.format() for p in report.problems] == []
    return report


# --- whole-string placeholders keep the variable's type -------------------------------------------------------------


def test_whole_string_placeholder_keeps_int(tmp_path: Path) -> None:
    report = valid(make_job(tmp_path / "job"))
    assert workflow_args(report)["num_rounds"] == 3
    assert type(workflow_args(report)["num_rounds"]) is int


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        pytest.param("verbose", True, id="bool"),
        pytest.param("lr", 0.25, id="float"),
        pytest.param("epochs", 4, id="int"),
    ],
)
def test_whole_string_placeholder_keeps_scalar_types(tmp_path: Path, arg: str, value: Any) -> None:
    doc = client_with(**{arg: "{setting}"})
    doc["setting"] = value
    report = valid(make_job(tmp_path / "job", client=doc))
    got = data_of(report, "client")["executors"][0]["executor"]["args"][arg]
    assert (got, type(got)) == (value, type(value))


def test_whole_string_placeholder_keeps_list(tmp_path: Path) -> None:
    doc = copy.deepcopy(SERVER)
    doc["excluded"] = ["bias", "running_mean"]
    doc["components"][1]["args"] = {"exclude": "{excluded}"}
    report = valid(make_job(tmp_path / "job", server=doc))
    assert data_of(report, "server")["components"][1]["args"]["exclude"] == ["bias", "running_mean"]


def test_placeholder_with_surrounding_spaces_is_still_whole(tmp_path: Path) -> None:
    doc = server_with()
    doc["workflows"][0]["args"]["num_rounds"] = " {num_rounds} "
    report = valid(make_job(tmp_path / "job", server=doc))
    assert workflow_args(report)["num_rounds"] == 3


def test_variables_may_refer_to_variables(tmp_path: Path) -> None:
    report = valid(make_job(tmp_path / "job", server=server_with(num_rounds="{rounds}", rounds=6)))
    assert workflow_args(report)["num_rounds"] == 6
    assert data_of(report, "server")["num_rounds"] == 6


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        pytest.param("round-{num_rounds}", "round-3", id="int-in-text"),
        pytest.param("{num_rounds}{num_rounds}", "33", id="two-placeholders"),
        pytest.param("{flag}!", "True!", id="bool-in-text"),
        pytest.param("x{empty}y", "xy", id="empty-string"),
    ],
)
def test_embedded_placeholder_becomes_text(tmp_path: Path, label: str, expected: str) -> None:
    report = valid(make_job(tmp_path / "job", server=server_with(label, flag=True, empty="")))
    assert workflow_args(report)["label"] == expected


@pytest.mark.parametrize(
    "label",
    [
        pytest.param('{"a": 1}', id="json-text"),
        pytest.param("{ num_rounds }", id="spaces-inside"),
        pytest.param("{1st}", id="not-an-identifier"),
        pytest.param("{}", id="empty-braces"),
        pytest.param("${num_rounds}", id="shell-style-keeps-dollar"),
    ],
)
def test_braces_without_a_name_are_left_alone(tmp_path: Path, label: str) -> None:
    expected = "$3" if label == "${num_rounds}" else label
    report = valid(make_job(tmp_path / "job", server=server_with(label)))
    assert workflow_args(report)["label"] == expected


# --- where values come from -----------------------------------------------------------------------------------------


def test_meta_values_are_variables(tmp_path: Path) -> None:
    meta = {**META, "study": "cifar", "min_clients": 1}
    doc = server_with("{study}")
    doc["workflows"][0]["args"]["num_rounds"] = "{min_clients}"
    report = valid(make_job(tmp_path / "job", meta=meta, server=doc))
    assert workflow_args(report)["label"] == "cifar"
    assert workflow_args(report)["num_rounds"] == 1


def test_config_value_wins_over_meta_value(tmp_path: Path) -> None:
    meta = {**META, "num_rounds": 9}
    report = valid(make_job(tmp_path / "job", meta=meta))
    assert workflow_args(report)["num_rounds"] == 3


def test_meta_lists_are_not_variables(tmp_path: Path) -> None:
    meta = {**META, "mandatory_clients": []}
    job = make_job(tmp_path / "job", meta=meta, server=server_with("{mandatory_clients}"))
    path = job / SERVER_FILE
    assert report_lines(job) == [
        f"{SERVER_FILE}:{line_of(path, '{mandatory_clients}')}: $.workflows[0].args.label: "
        "unresolved variable '{mandatory_clients}' (did you mean '{min_clients}'?)"
    ]


def test_system_values(tmp_path: Path) -> None:
    meta = {"name": "demo", "min_clients": 1, "deploy_map": {"app": ["server", "alpha"]}}
    job = make_job(
        tmp_path / "job",
        meta=meta,
        server=server_with("{JOB_ID}|{SITE_NAME}|{WORKSPACE}|{APP_DIR}|{JOB_CUSTOM_DIR}|{JOB_CONFIG_DIR}"),
        client=client_with(verbose="{SECURE_MODE}"),
    )
    report = valid(job, job_id="job-42", workspace="/ws")
    app = job / "app"
    assert workflow_args(report)["label"] == f"job-42|server|/ws|{app}|{app / 'custom'}|{app / 'config'}"
    assert data_of(report, "client")["executors"][0]["executor"]["args"]["verbose"] is True


@pytest.mark.parametrize(
    ("deploy_map", "site"),
    [
        pytest.param({"app": ["@ALL"]}, "site-1", id="all-sites"),
        pytest.param({"app": ["server", "hospital-a", "hospital-b"]}, "hospital-a", id="named-sites"),
    ],
)
def test_site_name_of_a_client_app(tmp_path: Path, deploy_map: dict[str, list[str]], site: str) -> None:
    doc = copy.deepcopy(CLIENT)
    doc["executors"][0]["executor"]["args"] = {"lr": 0.1}
    doc["executors"][0]["tasks"] = ["train"]
    doc["site_label"] = "{SITE_NAME}"
    report = valid(make_job(tmp_path / "job", meta={**META, "deploy_map": deploy_map}, client=doc))
    assert data_of(report, "client")["site_label"] == site


def test_site_option_names_the_site(tmp_path: Path) -> None:
    meta = {"name": "demo", "min_clients": 2, "deploy_map": {"app": ["server", "site-1", "site-2"]}}
    job = make_job(tmp_path / "job", meta=meta, client={**CLIENT, "who": "{SITE_NAME}"})
    report = valid(job, site="site-2")
    assert data_of(report, "client")["who"] == "site-2"


# --- overrides --------------------------------------------------------------------------------------------------------


def test_override_wins_and_replaces_the_config_value(tmp_path: Path) -> None:
    report = valid(make_job(tmp_path / "job"), overrides={"num_rounds": 7})
    assert workflow_args(report)["num_rounds"] == 7
    assert data_of(report, "server")["num_rounds"] == 7
    assert report.variables[("app", "server")]["num_rounds"].origin == "override"


def test_override_of_a_meta_value(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta={**META, "study": "a"}, server=server_with("{study}"))
    report = valid(job, overrides={"study": "b"})
    assert workflow_args(report)["label"] == "b"


def test_override_of_a_system_value(tmp_path: Path) -> None:
    report = valid(make_job(tmp_path / "job", server=server_with("{JOB_ID}")), overrides={"JOB_ID": "mine"})
    assert workflow_args(report)["label"] == "mine"


def test_override_supplies_a_variable_the_config_only_uses(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with("{run_label}"))
    report = valid(job, overrides={"run_label": "nightly"})
    assert workflow_args(report)["label"] == "nightly"


def test_override_keeps_its_type_in_text(tmp_path: Path) -> None:
    report = valid(make_job(tmp_path / "job", server=server_with("r{num_rounds}")), overrides={"num_rounds": 12})
    assert workflow_args(report)["label"] == "r12"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "num_round", "override 'num_round' names no variable of this job (did you mean 'num_rounds'?)", id="close"
        ),
        pytest.param(
            "zzz",
            "override 'zzz' names no variable of this job (flruntime job show-variables JOB_DIR lists them)",
            id="far",
        ),
    ],
)
def test_override_naming_no_variable_is_a_usage_error(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_job(make_job(tmp_path / "job"), overrides={name: 5})
    assert str(caught.value) == message


def test_override_of_another_sides_variable_is_accepted_for_one_site(tmp_path: Path) -> None:
    """The simulator builds each client with the job's overrides, e.g. the server's num_rounds."""
    job = make_job(tmp_path / "job")
    assert validate_job(job, site="site-1", overrides={"num_rounds": 3}).errors == []
    with pytest.raises(UsageError, match="override 'num_round' names no variable of this job"):
        validate_job(job, site="site-1", overrides={"num_round": 3})


# --- problems ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "message"),
    [
        pytest.param(
            "{num_round}", "unresolved variable '{num_round}' (did you mean '{num_rounds}'?)", id="did-you-mean"
        ),
        pytest.param(
            "run-{nothing_like_it}",
            "unresolved variable '{nothing_like_it}' "
            '(define a top-level "nothing_like_it" in the config or pass -o nothing_like_it=VALUE)',
            id="no-close-name",
        ),
        pytest.param("{SITE}", "unresolved variable '{SITE}' (did you mean '{SITE_NAME}'?)", id="system-name"),
    ],
)
def test_unresolved_variable(tmp_path: Path, label: str, message: str) -> None:
    job = make_job(tmp_path / "job", server=server_with(label))
    line = line_of(job / SERVER_FILE, label)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [f"{SERVER_FILE}:{line}: $.workflows[0].args.label: {message}"]
    assert report.problems[0].code == "variable"


def test_unresolved_variable_in_a_nested_list(tmp_path: Path) -> None:
    doc = copy.deepcopy(SERVER)
    doc["components"][1]["args"] = {"exclude": ["bias", "{layer}"]}
    job = make_job(tmp_path / "job", server=doc)
    line = line_of(job / SERVER_FILE, "{layer}")
    assert report_lines(job) == [
        f"{SERVER_FILE}:{line}: $.components[1].args.exclude[1]: unresolved variable '{{layer}}' "
        '(define a top-level "layer" in the config or pass -o layer=VALUE)'
    ]


def test_variable_cycle(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with("{a}", a="x{b}", b="{c}", c="{a}"))
    line = line_of(job / SERVER_FILE, '"label"')
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [
        f"{SERVER_FILE}:{line}: $.workflows[0].args.label: variables refer to each other in a cycle: "
        "a -> b -> c -> a (give one of them a literal value)"
    ]
    assert report.problems[0].code == "variable-cycle"


def test_variable_that_refers_to_itself(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with(num_rounds="{num_rounds}"))
    top = line_of(job / SERVER_FILE, '"num_rounds": "{num_rounds}"')
    use = line_of(job / SERVER_FILE, '"num_rounds": "{num_rounds}"', nth=2)
    assert report_lines(job) == [
        f"{SERVER_FILE}:{top}: $.num_rounds: variables refer to each other in a cycle: "
        "num_rounds -> num_rounds (give one of them a literal value)",
        f"{SERVER_FILE}:{use}: $.workflows[0].args.num_rounds: argument 'num_rounds' of FedAvg expects int, "
        "got str '{num_rounds}'",
    ]


def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLRUNTIME_TEST_LABEL", "from-env")
    report = valid(make_job(tmp_path / "job", server=server_with("{$FLRUNTIME_TEST_LABEL}")))
    assert workflow_args(report)["label"] == "from-env"


def test_home_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    report = valid(make_job(tmp_path / "job", server=server_with("{$HOME}/models")))
    assert workflow_args(report)["label"] == f"{tmp_path}/models"


def test_missing_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLRUNTIME_TEST_UNSET", raising=False)
    job = make_job(tmp_path / "job", server=server_with("{$FLRUNTIME_TEST_UNSET}"))
    line = line_of(job / SERVER_FILE, "FLRUNTIME_TEST_UNSET")
    assert report_lines(job) == [
        f"{SERVER_FILE}:{line}: $.workflows[0].args.label: environment variable 'FLRUNTIME_TEST_UNSET' is not set "
        "(export FLRUNTIME_TEST_UNSET=... before running)"
    ]


def test_client_and_server_have_their_own_variables(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with(lr_label="x"), client=client_with(verbose="{lr_label}"))
    line = line_of(job / CLIENT_FILE, "{lr_label}")
    assert report_lines(job) == [
        f"{CLIENT_FILE}:{line}: $.executors[0].executor.args.verbose: unresolved variable '{{lr_label}}' "
        '(define a top-level "lr_label" in the config or pass -o lr_label=VALUE)',
        f"{CLIENT_FILE}:{line}: $.executors[0].executor.args.verbose: argument 'verbose' of Trainer expects bool, "
        "got str '{lr_label}'",
    ]


# --- parse_override ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("num_rounds=5", ("num_rounds", 5), id="int"),
        pytest.param("lr=0.5", ("lr", 0.5), id="float"),
        pytest.param("verbose=true", ("verbose", True), id="bool"),
        pytest.param("x=null", ("x", None), id="null"),
        pytest.param("uri=http://x", ("uri", "http://x"), id="url-is-text"),
        pytest.param("name=site-1", ("name", "site-1"), id="text"),
        pytest.param('name="5"', ("name", "5"), id="quoted-number-is-text"),
        pytest.param("ids=[1, 2]", ("ids", [1, 2]), id="list"),
        pytest.param("expr=a=b", ("expr", "a=b"), id="first-equals-splits"),
        pytest.param("empty=", ("empty", ""), id="empty-value"),
        pytest.param(" key =5", ("key", 5), id="key-is-stripped"),
    ],
)
def test_parse_override(text: str, expected: tuple[str, Any]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["num_rounds", "=5", "  =5", ""])
def test_parse_override_needs_key_and_equals(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_override(text)
    assert str(caught.value) == f"override '{text}' is not of the form key=value"
