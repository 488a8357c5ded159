"""Static checks of a job's components: ids, arguments, types, references, cycles, roles, tasks and filter chains.

Every expectation is the exact ``Problem.format()`` line, located in a real job folder written to ``tmp_path``.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, CLIENT_FILE, PARTS, SERVER, SERVER_FILE, line_of, make_job

import flruntime
from flruntime import Severity

TYPED = textwrap.dedent(
    """
    from typing import Any, Literal, Optional, Union


    class Typed:
        def __init__(
            self,
            count: int = 0,
            ratio: float = 0.5,
            flag: bool = False,
            name: str = "",
            opt: Optional[int] = None,
            union: Union[int, str] = 0,
            pipe: int | None = None,
            mode: Literal["fast", "slow"] = "fast",
            names: list[str] | None = None,
            table: dict[str, int] | None = None,
            seq: tuple[int, ...] = (),
            anything: Any = None,
            untyped=None,
        ) -> None:
            self.count = count
    """
)


def job_with(
    root: Path,
    *,
    server: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> Path:
    return make_job(
        root,
        server=server or SERVER,
        client=client or CLIENT,
        custom={"parts.py": PARTS, "typed.py": TYPED},
    )


def server_with(*extra: dict[str, Any]) -> dict[str, Any]:
    server = copy.deepcopy(SERVER)
    server["components"].extend(copy.deepcopy(list(extra)))
    return server


def formatted(job: Path, **kw: Any) -> list[str]:
    return [p.format() for p in flruntime.validate_job(job, **kw).problems]


def at(job: Path, json_path: str, needle: str, text: str, *, nth: int = 1, file: str = SERVER_FILE) -> str:
    """The expected line of a problem in ``file`` at the line holding ``needle``."""
    return f"{file}:{line_of(job / file, needle, nth)}: {json_path}: {text}"


def start_of(job: Path, needle: str, *, nth: int = 1, file: str = SERVER_FILE) -> int:
    """The line of the ``{`` that opens the list item whose first key line holds ``needle``."""
    return line_of(job / file, needle, nth) - 1


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("extra", "first", "path"),
    [
        pytest.param(
            {"id": "persistor", "path": "parts.Net"}, '"id": "persistor"', "$.components[2].id", id="component"
        ),
        pytest.param({"id": "fedavg", "path": "parts.Net"}, '"id": "fedavg"', "$.components[2].id", id="workflow-id"),
    ],
)
def test_duplicate_ids(tmp_path: Path, extra: dict[str, Any], first: str, path: str) -> None:
    job = job_with(tmp_path / "job", server=server_with(extra))
    needle = f'"id": "{extra["id"]}"'
    assert formatted(job) == [
        at(
            job,
            path,
            needle,
            f"duplicate component id '{extra['id']}' "
            f"(first defined at line {start_of(job, first)}; ids must be unique)",
            nth=2,
        )
    ]


def test_duplicate_workflow_ids(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append(copy.deepcopy(server["workflows"][0]))
    job = job_with(tmp_path / "job", server=server)
    first = start_of(job, '"id": "fedavg"')
    assert formatted(job, site="server") == [
        at(
            job,
            "$.workflows[1].id",
            '"id": "fedavg"',
            f"duplicate component id 'fedavg' (first defined at line {first}; ids must be unique)",
            nth=2,
        )
    ]


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("path", "args", "problems"),
    [
        pytest.param(
            "parts.Trainer",
            {"lrr": 0.1},
            [("$.components[2].args.lrr", '"lrr"', "unknown argument 'lrr' for Trainer (did you mean 'lr'?)")],
            id="unknown-with-suggestion",
        ),
        pytest.param(
            "parts.Trainer",
            {"qqqq": 1},
            [
                (
                    "$.components[2].args.qqqq",
                    '"qqqq"',
                    "unknown argument 'qqqq' for Trainer (it takes lr, epochs, verbose)",
                )
            ],
            id="unknown-listing-arguments",
        ),
        pytest.param(
            "parts.Generator",
            {"size": 1},
            [
                (
                    "$.components[2].args.size",
                    '"size"',
                    "unknown argument 'size' for Generator (Generator takes no arguments)",
                )
            ],
            id="unknown-no-arguments",
        ),
        pytest.param(
            "parts.Labeler",
            {},
            [
                (
                    "$.components[2]",
                    '"id": "thing"',
                    "missing required argument 'label' for Labeler (add \"label\" to args)",
                )
            ],
            id="missing-required",
        ),
        pytest.param(
            "parts.Labeler",
            {"lable": "x"},
            [
                (
                    "$.components[2].args.lable",
                    '"lable"',
                    "unknown argument 'lable' for Labeler (did you mean 'label'?)",
                ),
                (
                    "$.components[2].args",
                    '"lable"',
                    "missing required argument 'label' for Labeler (add \"label\" to args)",
                ),
            ],
            id="misspelt-required",
        ),
    ],
)
def test_arguments(tmp_path: Path, path: str, args: dict[str, Any], problems: list[tuple[str, str, str]]) -> None:
    job = job_with(tmp_path / "job", server=server_with({"id": "thing", "path": path, "args": args}))
    expected = []
    for json_path, needle, text in problems:
        line = line_of(job / SERVER_FILE, needle)
        if json_path in ("$.components[2]", "$.components[2].args"):
            line -= 1  # the line of the "{" that opens the component or its args
        expected.append(f"{SERVER_FILE}:{line}: {json_path}: {text}")
    assert formatted(job) == expected


def test_wrong_type_num_rounds(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"][0]["args"]["num_rounds"] = "2"
    job = job_with(tmp_path / "job", server=server)
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.workflows[0].args.num_rounds",
            '"num_rounds": "2"',
            "argument 'num_rounds' of FedAvg expects int, got str '2' (write 2 without quotes)",
        )
    ]
    assert [p.code for p in report.problems] == ["arg-type"]


def test_placeholder_keeps_the_variable_type(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["num_rounds"] = "3"  # a string variable used whole keeps its type: str
    job = job_with(tmp_path / "job", server=server)
    assert formatted(job) == [
        at(
            job,
            "$.workflows[0].args.num_rounds",
            '"num_rounds": "{num_rounds}"',
            "argument 'num_rounds' of FedAvg expects int, got str '3' (write 3 without quotes)",
        )
    ]
    assert formatted(job, overrides={"num_rounds": 7}) == []


OK = None


@pytest.mark.parametrize(
    ("arg", "value", "text"),
    [
        pytest.param("count", 2, OK, id="int"),
        pytest.param("count", "2", "expects int, got str '2' (write 2 without quotes)", id="quoted-int"),
        pytest.param("count", " 2 ", "expects int, got str ' 2 ' (write 2 without quotes)", id="quoted-int-spaces"),
        pytest.param("count", True, "expects int, got bool true", id="bool-for-int"),
        pytest.param("count", 2.5, "expects int, got float 2.5", id="float-for-int"),
        pytest.param("count", "2.5", "expects int, got str '2.5'", id="quoted-float-for-int-no-hint"),
        pytest.param("count", "1_000", "expects int, got str '1_000'", id="python-literal-is-not-json"),
        pytest.param("count", None, "expects int, got null", id="null-for-int"),
        pytest.param("count", [1], "expects int, got a list", id="list-for-int"),
        pytest.param("count", {"a": 1}, "expects int, got an object", id="object-for-int"),
        pytest.param("ratio", 1, OK, id="int-for-float"),
        pytest.param("ratio", 0.25, OK, id="float"),
        pytest.param("ratio", "0.5", "expects float, got str '0.5' (write 0.5 without quotes)", id="quoted-float"),
        pytest.param(
            "ratio", "1e-3", "expects float, got str '1e-3' (write 1e-3 without quotes)", id="quoted-exponent"
        ),
        pytest.param("ratio", "nan", "expects float, got str 'nan'", id="nan-is-not-json"),
        pytest.param("ratio", False, "expects float, got bool false", id="bool-for-float"),
        pytest.param("flag", True, OK, id="bool"),
        pytest.param("flag", "true", "expects bool, got str 'true' (write true without quotes)", id="quoted-bool"),
        pytest.param("flag", "False", "expects bool, got str 'False' (write false without quotes)", id="quoted-Bool"),
        pytest.param("flag", 1, "expects bool, got int 1", id="int-for-bool"),
        pytest.param("name", 3, "expects str, got int 3", id="int-for-str"),
        pytest.param("opt", None, OK, id="optional-null"),
        pytest.param("opt", 3, OK, id="optional-value"),
        pytest.param("opt", "x", "expects int | None, got str 'x'", id="optional-wrong"),
        pytest.param("opt", "3", "expects int | None, got str '3' (write 3 without quotes)", id="optional-quoted"),
        pytest.param("pipe", None, OK, id="pipe-optional-null"),
        pytest.param("pipe", [], "expects int | None, got a list", id="pipe-optional-wrong"),
        pytest.param("union", "a", OK, id="union-str"),
        pytest.param("union", 1, OK, id="union-int"),
        pytest.param("union", 1.5, "expects int | str, got float 1.5", id="union-wrong"),
        pytest.param("mode", "slow", OK, id="literal"),
        pytest.param("mode", "medium", "expects 'fast' | 'slow', got str 'medium'", id="literal-wrong"),
        pytest.param("names", ["a", "b"], OK, id="list-of-str"),
        pytest.param("names", [], OK, id="empty-list"),
        pytest.param("names", ["a", 1], "expects list[str] | None, got a list", id="list-with-int"),
        pytest.param("names", "a", "expects list[str] | None, got str 'a'", id="str-for-list"),
        pytest.param("table", {"a": 1}, OK, id="dict"),
        pytest.param("table", {"a": "1"}, "expects dict[str, int] | None, got an object", id="dict-wrong-value"),
        pytest.param("table", [1], "expects dict[str, int] | None, got a list", id="list-for-dict"),
        pytest.param("seq", [1, 2], OK, id="variadic-tuple"),
        pytest.param("seq", ["1"], "expects tuple[int, ...], got a list", id="variadic-tuple-wrong"),
        pytest.param("anything", {"x": [1]}, OK, id="any"),
        pytest.param("untyped", "whatever", OK, id="unannotated"),
    ],
)
def test_types(tmp_path: Path, arg: str, value: Any, text: str | None) -> None:
    job = job_with(tmp_path / "job", server=server_with({"id": "typed", "path": "typed.Typed", "args": {arg: value}}))
    expected = (
        []
        if text is None
        else [at(job, f"$.components[2].args.{arg}", f'"{arg}"', f"argument '{arg}' of Typed {text}")]
    )
    assert formatted(job) == expected


# ---------------------------------------------------------------- references


def _fedavg(**args: Any) -> dict[str, Any]:
    server = copy.deepcopy(SERVER)
    server["workflows"][0]["args"].update(args)
    return server


def test_reference_to_missing_id(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(aggregator_id="agregator"))
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.workflows[0].args.aggregator_id",
            '"aggregator_id"',
            "aggregator_id: no component 'agregator' (did you mean 'aggregator'?)",
        )
    ]
    assert [p.code for p in report.problems] == ["reference"]


def test_reference_to_missing_id_without_suggestion(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(persistor_id="zzz"))
    assert formatted(job) == [
        at(
            job,
            "$.workflows[0].args.persistor_id",
            '"persistor_id"',
            "persistor_id: no component 'zzz' (add a component with that id)",
        )
    ]


def test_default_reference_missing(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    del server["workflows"][0]["args"]["aggregator_id"]
    server["components"][1]["id"] = "agg"
    job = job_with(tmp_path / "job", server=server)
    line = start_of(job, '"id": "fedavg"')
    assert formatted(job) == [
        f"{SERVER_FILE}:{line}: $.workflows[0]: "
        "aggregator_id (default): no component 'aggregator' (add a component with that id)"
    ]


def test_empty_reference_means_none(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(persistor_id=""))
    assert formatted(job) == []


def test_reference_of_the_wrong_role(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(aggregator_id="persistor"))
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.workflows[0].args.aggregator_id",
            '"aggregator_id"',
            "aggregator_id: component 'persistor' is a Persistor, not an aggregator "
            "(point aggregator_id at an aggregator)",
        )
    ]
    assert [p.code for p in report.problems] == ["reference-role"]


def test_reference_to_a_workflow_of_the_wrong_role(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append({"id": "evaluate", "path": "parts.Evaluate", "args": {"model_ids": ["fedavg"]}})
    job = job_with(tmp_path / "job", server=server)
    line = line_of(job / SERVER_FILE, '"model_ids"') + 1
    assert formatted(job, site="server") == [
        f"{SERVER_FILE}:{line}: $.workflows[1].args.model_ids[0]: "
        "model_ids: component 'fedavg' is a FedAvg, not a model persistor (point model_ids at a model persistor)"
    ]


def test_self_reference_is_a_cycle(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(persistor_id="fedavg"))
    line = start_of(job, '"id": "fedavg"')
    assert formatted(job) == [
        at(
            job,
            "$.workflows[0].args.persistor_id",
            '"persistor_id"',
            "persistor_id: component 'fedavg' is a FedAvg, not a model persistor "
            "(point persistor_id at a model persistor)",
        ),
        f"{SERVER_FILE}:{line}: $.workflows[0]: "
        "components refer to each other in a cycle: fedavg -> fedavg (break one of the references)",
    ]


def test_list_of_ids(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append(
        {"id": "evaluate", "path": "parts.Evaluate", "args": {"model_ids": ["persistor", "persister", "aggregator"]}}
    )
    job = job_with(tmp_path / "job", server=server)
    lines = (job / SERVER_FILE).read_text().splitlines()
    first = line_of(job / SERVER_FILE, '"model_ids"')
    assert lines[first + 1].strip() == '"persister",'
    assert formatted(job, site="server") == [
        f"{SERVER_FILE}:{first + 2}: $.workflows[1].args.model_ids[1]: "
        "model_ids: no component 'persister' (did you mean 'persistor'?)",
        f"{SERVER_FILE}:{first + 3}: $.workflows[1].args.model_ids[2]: "
        "model_ids: component 'aggregator' is a WeightedAggregator, not a model persistor "
        "(point model_ids at a model persistor)",
    ]


def test_any_role_reference(tmp_path: Path) -> None:
    job = job_with(
        tmp_path / "job",
        server=server_with({"id": "link", "path": "parts.Chain", "args": {"next_id": "aggregator"}}),
    )
    assert formatted(job) == []


@pytest.mark.parametrize(
    ("links", "cycle", "where"),
    [
        pytest.param({"a": "a"}, "a -> a", "a", id="self"),
        pytest.param({"a": "b", "b": "a"}, "a -> b -> a", "a", id="two"),
        pytest.param({"a": "b", "b": "c", "c": "a"}, "a -> b -> c -> a", "a", id="three"),
        pytest.param({"a": "b", "b": "c", "c": "b"}, "b -> c -> b", "b", id="tail-into-loop"),
    ],
)
def test_reference_cycles(tmp_path: Path, links: dict[str, str], cycle: str, where: str) -> None:
    chain = [{"id": k, "path": "parts.Chain", "args": {"next_id": v}} for k, v in links.items()]
    job = job_with(tmp_path / "job", server=server_with(*chain))
    index = 2 + list(links).index(where)
    report = flruntime.validate_job(job)
    line = start_of(job, '"id": "' + where + '"')
    assert [p.format() for p in report.problems] == [
        f"{SERVER_FILE}:{line}: $.components[{index}]: "
        f"components refer to each other in a cycle: {cycle} (break one of the references)"
    ]
    assert [p.code for p in report.problems] == ["reference-cycle"]


# ---------------------------------------------------------------- roles


def test_workflow_that_is_not_a_workflow(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append({"id": "net", "path": "parts.Net"})
    job = job_with(tmp_path / "job", server=server)
    report = flruntime.validate_job(job, site="server")
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.workflows[1].path",
            '"path": "parts.Net"',
            "Net is not a workflow (a workflow must implement flruntime.roles.Workflow"
            " or subclass nvflare.apis.impl.controller.Controller)",
        )
    ]
    assert [p.code for p in report.problems] == ["role"]


def test_executor_that_is_not_an_executor(tmp_path: Path) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["executor"] = {"path": "parts.Net", "args": {}}
    job = job_with(tmp_path / "job", client=client)
    assert formatted(job, site="site-1") == [
        at(
            job,
            "$.executors[0].executor.path",
            '"path": "parts.Net"',
            "Net is not an executor (an executor must implement flruntime.roles.Executor"
            " or subclass nvflare.apis.executor.Executor)",
            file=CLIENT_FILE,
        )
    ]


@pytest.mark.parametrize("key", ["task_data_filters", "task_result_filters"])
def test_filter_that_is_not_a_filter(tmp_path: Path, key: str) -> None:
    client = copy.deepcopy(CLIENT)
    client[key] = [
        {"tasks": ["train"], "filters": [{"path": "parts.Labeler", "args": {"label": "x"}}, {"path": "parts.Net"}]}
    ]
    job = job_with(tmp_path / "job", client=client)
    assert formatted(job, site="site-1") == [
        at(
            job,
            f"$.{key}[0].filters[1].path",
            '"path": "parts.Net"',
            "Net is not a filter (a filter must implement flruntime.roles.Filter"
            " or subclass nvflare.apis.filter.Filter)",
            file=CLIENT_FILE,
        )
    ]


# ---------------------------------------------------------------- disabled and nested components


def test_disabled_components_are_skipped(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append({"id": "off", "path": "parts.Nope", "disabled": True})
    server["components"].append({"id": "broken", "path": "parts.Nope", "args": {"x": 1}, "disabled": True})
    server["components"].append({"id": "badargs", "path": "parts.Net", "args": {"width": "x"}, "disabled": True})
    server["components"].append({"id": "outside", "path": "os.PathLike", "disabled": True})
    client = copy.deepcopy(CLIENT)
    client["executors"].append({"tasks": ["other"], "executor": {"path": "parts.Nope", "disabled": True}})
    client["task_data_filters"] = [{"tasks": ["train"], "filters": [{"path": "parts.Net", "disabled": True}]}]
    job = job_with(tmp_path / "job", server=server, client=client)
    assert formatted(job) == []


def test_reference_to_a_disabled_component(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"][1]["disabled"] = True
    job = job_with(tmp_path / "job", server=server)
    assert formatted(job) == [
        at(
            job,
            "$.workflows[0].args.aggregator_id",
            '"aggregator_id"',
            "aggregator_id: no component 'aggregator' (add a component with that id)",
        )
    ]


def test_nested_components_are_located_and_checked(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"][0]["args"]["model"] = {"path": "parts.Nett", "args": {"width": 8}}
    server["components"].append(
        {
            "id": "ensemble",
            "path": "parts.Ensemble",
            "args": {
                "members": [
                    {"path": "parts.Net", "args": {"width": "8"}},
                    {"path": "parts.Net", "args": {"size": 1}},
                    {"path": "parts.Persistor", "args": {"model": {"path": "parts.Nat"}}},
                    "plain data",
                ],
                "by_name": {
                    "deep": {"inner": [{"path": "os.PathLike"}]},
                    "data": {"config_type": "dict", "path": "not.a.Class", "args": {"whatever": 1}},
                },
            },
        }
    )
    job = job_with(tmp_path / "job", server=server)
    assert formatted(job) == [
        at(
            job,
            "$.components[0].args.model.path",
            '"parts.Nett"',
            "module 'parts' has no class 'Nett' (did you mean 'Net'?)",
        ),
        at(
            job,
            "$.components[2].args.members[2].args.model.path",
            '"parts.Nat"',
            "module 'parts' has no class 'Nat' (did you mean 'Net'?)",
        ),
        at(
            job,
            "$.components[2].args.by_name.deep.inner[0].path",
            '"os.PathLike"',
            "class path 'os.PathLike' is outside the import allowlist (allow it with --allow os. "
            "(or FLRUNTIME_ALLOW=os.), or put the code in the app's custom/ folder)",
        ),
        at(
            job,
            "$.components[2].args.members[0].args.width",
            '"width": "8"',
            "argument 'width' of Net expects int, got str '8' (write 8 without quotes)",
        ),
        at(
            job,
            "$.components[2].args.members[1].args.size",
            '"size": 1',
            "unknown argument 'size' for Net (it takes width)",
        ),
    ]


def test_nested_component_without_dot_stays_data(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"][0]["args"]["model"] = {"path": "nodots", "args": {}}
    job = job_with(tmp_path / "job", server=server)
    assert formatted(job) == []


# ---------------------------------------------------------------- tasks


def test_server_task_no_client_handles(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(train_task_name="fit"))
    report = flruntime.validate_job(job)
    line = start_of(job, '"id": "fedavg"')
    assert [p.format() for p in report.problems] == [
        f"{SERVER_FILE}:{line}: $.workflows[0]: task 'fit' is sent to clients but no "
        f'executor in {CLIENT_FILE} handles it (add an executor with "tasks": ["fit"])',
        at(
            job,
            "$.executors[0].tasks[0]",
            '"train"',
            "warning: no workflow sends task 'train' (the server's workflows send: fit)",
            file=CLIENT_FILE,
        ),
    ]
    assert [p.severity for p in report.problems] == [Severity.ERROR, Severity.WARNING]
    assert not report.valid


def test_executor_task_no_workflow_sends_is_a_warning(tmp_path: Path) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["tasks"] = ["train", "validate"]
    job = job_with(tmp_path / "job", client=client)
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.executors[0].tasks[1]",
            '"validate"',
            "warning: no workflow sends task 'validate' (the server's workflows send: train)",
            file=CLIENT_FILE,
        )
    ]
    assert [(p.severity, p.code) for p in report.problems] == [(Severity.WARNING, "task-unused")]
    assert report.valid and report.errors == []


def test_tasks_of_several_workflows(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append({"id": "evaluate", "path": "parts.Evaluate", "args": {"model_ids": ["persistor"]}})
    job = job_with(tmp_path / "job", server=server)
    line = start_of(job, '"id": "evaluate"')
    assert formatted(job) == [
        f"{SERVER_FILE}:{line}: $.workflows[1]: task 'validate' is sent to clients but "
        f'no executor in {CLIENT_FILE} handles it (add an executor with "tasks": ["validate"])'
    ]
    client = copy.deepcopy(CLIENT)
    client["executors"].append({"tasks": ["validate"], "executor": {"path": "parts.Trainer"}})
    assert formatted(job_with(tmp_path / "job2", server=server, client=client)) == []


@pytest.mark.parametrize(
    ("tasks", "missing"),
    [
        pytest.param(["*"], False, id="star"),
        pytest.param(["tr*"], False, id="prefix-pattern"),
        pytest.param(["t?ain"], True, id="only-star-makes-a-pattern"),
        pytest.param(["val*"], True, id="pattern-that-does-not-match"),
    ],
)
def test_task_patterns(tmp_path: Path, tasks: list[str], missing: bool) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["tasks"] = tasks
    job = job_with(tmp_path / "job", client=client)
    problems = flruntime.validate_job(job).problems
    errors = [p.message for p in problems if p.severity is Severity.ERROR]
    assert errors == (
        [f"task 'train' is sent to clients but no executor in {CLIENT_FILE} handles it"] if missing else []
    )
    warnings = [p.message for p in problems if p.severity is Severity.WARNING]
    assert warnings == ([f"no workflow sends task '{tasks[0]}'"] if "*" not in tasks[0] else [])


def test_task_coverage_is_skipped_for_one_site(tmp_path: Path) -> None:
    job = job_with(tmp_path / "job", server=_fedavg(train_task_name="fit"))
    assert formatted(job, site="server") == []
    assert formatted(job, site="site-1") == []


# ---------------------------------------------------------------- filter chains


def _labeler(label: str) -> dict[str, Any]:
    return {"path": "parts.Labeler", "args": {"label": label}}


@pytest.mark.parametrize(
    ("side", "chains", "duplicate"),
    [
        pytest.param(
            "server",
            [{"tasks": ["train"], "filters": [_labeler("a")]}, {"tasks": ["train"], "filters": [_labeler("b")]}],
            "task 'train' (out) already has a filter chain",
            id="server-default-direction",
        ),
        pytest.param(
            "client",
            [{"tasks": ["train"], "filters": [_labeler("a")]}, {"tasks": ["train"], "filters": [_labeler("b")]}],
            "task 'train' (in) already has a filter chain",
            id="client-default-direction",
        ),
        pytest.param(
            "client",
            [
                {"tasks": ["train"], "filters": [_labeler("a")], "direction": "inout"},
                {"tasks": ["validate", "train"], "filters": [_labeler("b")], "direction": "out"},
            ],
            "task 'train' (out) already has a filter chain",
            id="inout-then-out",
        ),
        pytest.param(
            "client",
            [
                {"tasks": ["train"], "filters": [_labeler("a")], "direction": "in"},
                {"tasks": ["train"], "filters": [_labeler("b")], "direction": "out"},
            ],
            None,
            id="different-directions",
        ),
        pytest.param(
            "client",
            [
                {"tasks": ["train"], "filters": [_labeler("a")]},
                {"tasks": ["validate"], "filters": [_labeler("b")]},
            ],
            None,
            id="different-tasks",
        ),
    ],
)
def test_duplicate_filter_chains(
    tmp_path: Path, side: str, chains: list[dict[str, Any]], duplicate: str | None
) -> None:
    config = copy.deepcopy(SERVER if side == "server" else CLIENT)
    config["task_data_filters"] = chains
    config["task_result_filters"] = [chains[0]]  # result chains are a separate table
    job = job_with(tmp_path / "job", **{side: config})
    file = SERVER_FILE if side == "server" else CLIENT_FILE
    report = flruntime.validate_job(job, site="server" if side == "server" else "site-1")
    expected = []
    if duplicate is not None:
        line = line_of(job / file, '"tasks": [', 2 if side == "server" else 3)  # client: after the executor's
        expected = [f"{file}:{line}: $.task_data_filters[1].tasks: {duplicate} (merge the filters into one chain)"]
    assert [p.format() for p in report.problems] == expected


# ---------------------------------------------------------------- every mistake at once


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    server = {
        "format_version": 2,
        "num_rounds": 3,
        "workflows": [
            {
                "id": "fedavg",
                "path": "parts.FedAvg",
                "args": {"num_rounds": "2", "aggregator_id": "agregator", "persistor_id": "persistor"},
            },
            {"id": "evaluate", "path": "parts.Net"},
        ],
        "components": [
            {"id": "persistor", "path": "parts.Persistor", "args": {"model": {"path": "parts.Nett"}}},
            {"id": "aggregator", "path": "parts.WeightedAggregator", "args": {"weigh_by": 1, "excluded": []}},
            {"id": "persistor", "path": "parts.Generator"},
            {"id": "os", "path": "os.PathLike"},
            {"id": "loop", "path": "parts.Chain", "args": {"next_id": "loop"}},
        ],
        "task_data_filters": [
            {"tasks": ["train"], "filters": [{"path": "parts.Labeler"}]},
            {"tasks": ["train"], "filters": [{"path": "parts.Labeler", "args": {"label": "b"}}]},
        ],
    }
    client = {
        "format_version": 2,
        "executors": [
            {"tasks": ["training"], "executor": {"path": "parts.Trainer", "args": {"lr": "0.1", "epochs": True}}},
            {"tasks": ["other"], "executor": {"path": "parts.Aggregatr"}},
        ],
    }
    job = job_with(tmp_path / "job", server=server, client=client)
    s = job / SERVER_FILE
    c = job / CLIENT_FILE
    at_s = {
        "duplicate": line_of(s, '"id": "persistor"', 2),
        "first persistor": line_of(s, '"id": "persistor"') - 1,
        "not a workflow": line_of(s, '"parts.Net"'),
        "nested class": line_of(s, '"parts.Nett"'),
        "allowlist": line_of(s, '"os.PathLike"'),
        "num_rounds": line_of(s, '"num_rounds": "2"'),
        "excluded": line_of(s, '"excluded"'),
        "weigh_by": line_of(s, '"weigh_by"'),
        "labeler": line_of(s, '"path": "parts.Labeler"') - 1,
        "aggregator_id": line_of(s, '"aggregator_id"'),
        "loop": line_of(s, '"id": "loop"') - 1,
        "second chain": line_of(s, '"tasks": [', 2),
        "fedavg": line_of(s, '"id": "fedavg"') - 1,
    }
    at_c = {
        "class": line_of(c, '"parts.Aggregatr"'),
        "lr": line_of(c, '"lr"'),
        "epochs": line_of(c, '"epochs"'),
    }
    allow = "(allow it with --allow os. (or FLRUNTIME_ALLOW=os.), or put the code in the app's custom/ folder)"
    expected = [
        f"{SERVER_FILE}:{at_s['duplicate']}: $.components[2].id: duplicate component id 'persistor' "
        f"(first defined at line {at_s['first persistor']}; ids must be unique)",
        f"{SERVER_FILE}:{at_s['not a workflow']}: $.workflows[1].path: "
        "Net is not a workflow (a workflow must implement flruntime.roles.Workflow"
        " or subclass nvflare.apis.impl.controller.Controller)",
        f"{SERVER_FILE}:{at_s['nested class']}: $.components[0].args.model.path: "
        "module 'parts' has no class 'Nett' (did you mean 'Net'?)",
        f"{SERVER_FILE}:{at_s['allowlist']}: $.components[3].path: "
        f"class path 'os.PathLike' is outside the import allowlist {allow}",
        f"{SERVER_FILE}:{at_s['num_rounds']}: $.workflows[0].args.num_rounds: "
        "argument 'num_rounds' of FedAvg expects int, got str '2' (write 2 without quotes)",
        f"{SERVER_FILE}:{at_s['excluded']}: $.components[1].args.excluded: "
        "unknown argument 'excluded' for WeightedAggregator (did you mean 'exclude'?)",
        f"{SERVER_FILE}:{at_s['weigh_by']}: $.components[1].args.weigh_by: "
        "argument 'weigh_by' of WeightedAggregator expects str, got int 1",
        f"{SERVER_FILE}:{at_s['labeler']}: $.task_data_filters[0].filters[0]: "
        "missing required argument 'label' for Labeler (add \"label\" to args)",
        f"{SERVER_FILE}:{at_s['aggregator_id']}: $.workflows[0].args.aggregator_id: "
        "aggregator_id: no component 'agregator' (did you mean 'aggregator'?)",
        f"{SERVER_FILE}:{at_s['loop']}: $.components[4]: "
        "components refer to each other in a cycle: loop -> loop (break one of the references)",
        f"{SERVER_FILE}:{at_s['second chain']}: $.task_data_filters[1].tasks: "
        "task 'train' (out) already has a filter chain (merge the filters into one chain)",
        f"{CLIENT_FILE}:{at_c['class']}: $.executors[1].executor.path: "
        "module 'parts' has no class 'Aggregatr' (did you mean 'Aggregator'?)",
        f"{CLIENT_FILE}:{at_c['lr']}: $.executors[0].executor.args.lr: "
        "argument 'lr' of Trainer expects float, got str '0.1' (write 0.1 without quotes)",
        f"{CLIENT_FILE}:{at_c['epochs']}: $.executors[0].executor.args.epochs: "
        "argument 'epochs' of Trainer expects int, got bool true",
        f"{SERVER_FILE}:{at_s['fedavg']}: $.workflows[0]: task 'train' is sent to clients but "
        f'no executor in {CLIENT_FILE} handles it (add an executor with "tasks": ["train"])',
    ]
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == expected
    assert len(report.errors) == len(expected)


def test_a_disabled_executor_handles_no_task(tmp_path: Path) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["executor"]["disabled"] = True
    client["executors"].append({"tasks": ["validate"], "executor": {"path": "parts.Trainer"}})
    job = job_with(tmp_path / "job", client=client)
    line = start_of(job, '"id": "fedavg"')
    assert formatted(job) == [
        f"{SERVER_FILE}:{line}: $.workflows[0]: task 'train' is sent to clients but no executor in "
        f'{CLIENT_FILE} handles it (add an executor with "tasks": ["train"])',
        at(
            job,
            "$.executors[1].tasks[0]",
            '"validate"',
            "warning: no workflow sends task 'validate' (the server's workflows send: train)",
            file=CLIENT_FILE,
        ),
    ]


def test_a_task_claimed_by_two_executors_and_two_unnamed_workflows(tmp_path):
    import json

    from jobkit import make_job

    import flruntime

    job = make_job(tmp_path / "job")
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    client["executors"].append({"tasks": ["validate", "train"], "executor": {"path": "parts.Trainer"}})
    (job / "app/config/config_fed_client.json").write_text(json.dumps(client, indent=1))
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    wf = server["workflows"][0]
    server["workflows"] = [{k: v for k, v in wf.items() if k != "id"}, {k: v for k, v in wf.items() if k != "id"}]
    (job / "app/config/config_fed_server.json").write_text(json.dumps(server, indent=1))
    messages = [p.message for p in flruntime.validate_job(job).errors]
    assert "task 'train' is already handled by executors[0]" in messages
    assert "this workflow would get the id 'FedAvg', which another entry already has" in messages


def test_a_component_declares_value_rules_with_validate_args(tmp_path):
    import json

    from jobkit import make_job

    import flruntime

    job = make_job(tmp_path / "job")
    (job / "app/custom/ranged.py").write_text(
        "class Ranged:\n"
        "    def __init__(self, level: int = 1) -> None:\n"
        "        self.level = level\n\n"
        "    @classmethod\n"
        "    def validate_args(cls, args):\n"
        "        if not 1 <= args.get('level', 1) <= 3:\n"
        "            yield 'level', f\"level must be 1, 2 or 3, got {args['level']}\"\n\n\n"
        "class Broken:\n"
        "    @classmethod\n"
        "    def validate_args(cls, args):\n"
        "        raise KeyError('oops')\n"
    )
    path = job / "app/config/config_fed_server.json"
    server = json.loads(path.read_text())
    server["components"] += [
        {"id": "ranged", "path": "ranged.Ranged", "args": {"level": 7}},
        {"id": "fine", "path": "ranged.Ranged", "args": {"level": 2}},
        {"id": "broken", "path": "ranged.Broken"},
    ]
    path.write_text(json.dumps(server))
    errors = [(p.path, p.message, p.code) for p in flruntime.validate_job(job).errors]
    assert errors == [
        (("components", 2, "args", "level"), "level must be 1, 2 or 3, got 7", "arg-value"),
        (("components", 4), "Broken.validate_args failed: KeyError: 'oops'", "arg-value"),
    ]
