"""Building one site's component graph with ``flruntime.build_job_site``: order, nesting, independence, errors.

The job's own ``custom/`` modules record what their constructors did in a module-level ``ORDER`` list; the
module leaves ``sys.modules`` after a build, so tests reach it through the built objects' classes.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, CLIENT_FILE, META, PARTS, SERVER, SERVER_FILE, line_of, make_job

import flruntime
from flruntime import ConfigError, ImportPolicy, InstantiationError, UsageError
from flruntime.graph.builder import build_site
from flruntime.roles import Aggregator, ModelPersistor

WIRING = textwrap.dedent(
    """
    from typing import Annotated, Any

    from flruntime import Ref

    ORDER: list[str] = []


    class Node:
        def __init__(
            self,
            name: str,
            after: Annotated[list[str], Ref()] | None = None,
            child: Any = None,
            children: list[Any] | None = None,
            table: dict[str, Any] | None = None,
        ) -> None:
            ORDER.append(name)
            self.name = name
            self.after = after
            self.child = child
            self.children = children
            self.table = table


    class Mutator:
        def __init__(self, items: list[Any], options: dict[str, Any]) -> None:
            ORDER.append("Mutator")
            items.append("added by the constructor")
            options.clear()
            self.items = items
            self.options = options
    """
)


def order_of(obj: Any) -> list[str]:
    """The ``ORDER`` list of the custom module that defined ``obj``'s class."""
    return type(obj).__init__.__globals__["ORDER"]


def node(name: str, **args: Any) -> dict[str, Any]:
    return {"path": "wiring.Node", "args": {"name": name, **args}}


def job_with(
    root: Path, *, server: Any = None, client: Any = None, meta: Any = None, extra: list[dict[str, Any]] | None = None
) -> Path:
    server = copy.deepcopy(server or SERVER)
    server["components"].extend(copy.deepcopy(extra or []))
    return make_job(
        root,
        meta=meta or META,
        server=server,
        client=client or CLIENT,
        custom={"parts.py": PARTS, "wiring.py": WIRING},
    )


# ---------------------------------------------------------------- order


def test_default_job_builds_in_dependency_order(job: Path) -> None:
    graph = flruntime.build_job_site(job, "server")
    assert order_of(graph.components["fedavg"]) == ["Net", "Persistor", "WeightedAggregator", "FedAvg"]
    assert list(graph.components) == ["persistor", "aggregator", "fedavg"]
    assert [wid for wid, _ in graph.workflows] == ["fedavg"]
    assert graph.workflows[0][1] is graph.components["fedavg"]
    assert graph.get("aggregator", Aggregator) is graph.components["aggregator"]
    assert graph.get("persistor", ModelPersistor) is graph.components["persistor"]
    assert (graph.app, graph.side, graph.site, graph.app_dir) == ("app", "server", "server", job / "app")
    assert graph.custom_dir == job / "app" / "custom"


def test_get_refuses_another_role(job: Path) -> None:
    graph = flruntime.build_job_site(job, "server")
    with pytest.raises(KeyError, match="no Aggregator with id 'persistor'"):
        graph.get("persistor", Aggregator)
    with pytest.raises(KeyError, match="no Aggregator with id 'nothing'"):
        graph.get("nothing", Aggregator)


def test_referenced_components_are_built_first(tmp_path: Path) -> None:
    extra = [
        {"id": "a", **node("a", after=["b"])},
        {"id": "d", **node("d", after=["a", "c"])},
        {"id": "b", **node("b", after=["c"])},
        {"id": "c", **node("c")},
        {"id": "e", **node("e")},
    ]
    graph = flruntime.build_job_site(job_with(tmp_path / "job", extra=extra), "server")
    assert order_of(graph.components["a"]) == ["c", "b", "a", "d", "e"]
    assert list(graph.components) == ["persistor", "aggregator", "c", "b", "a", "d", "e", "fedavg"]
    assert graph.components["d"].after == ["a", "c"]  # references stay ids


def test_referenced_by_the_workflow_first(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"].reverse()  # aggregator first, persistor second: both before the workflow
    graph = flruntime.build_job_site(job_with(tmp_path / "job", server=server), "server")
    assert order_of(graph.components["fedavg"]) == ["WeightedAggregator", "Net", "Persistor", "FedAvg"]


def test_objects_in_build_order(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"].append({"path": "parts.Evaluate", "args": {"model_ids": ["persistor"]}})
    server["task_data_filters"] = [{"tasks": ["train"], "filters": [{"path": "parts.Labeler", "args": {"label": "s"}}]}]
    graph = flruntime.build_job_site(job_with(tmp_path / "job", server=server), "server")
    objects = graph.objects()
    assert [type(o).__name__ for o in objects] == ["Persistor", "WeightedAggregator", "FedAvg", "Evaluate", "Labeler"]
    assert [wid for wid, _ in graph.workflows] == ["fedavg", "Evaluate"]  # no id: the class name
    assert objects[3] is graph.workflows[1][1]
    client = flruntime.build_job_site(job_with(tmp_path / "job"), "site-1")
    assert client.objects() == [client.executors[0][1]]


def test_objects_include_every_workflow(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"] = [
        {"path": "parts.Evaluate", "args": {"model_ids": ["persistor"]}},
        {"id": "second_eval", "path": "parts.Evaluate", "args": {"model_ids": []}},
    ]
    graph = flruntime.build_job_site(job_with(tmp_path / "job", server=server), "server")
    first, second = (wf for _, wf in graph.workflows)
    assert first is not second
    assert [type(o).__name__ for o in graph.objects()] == ["Persistor", "WeightedAggregator", "Evaluate", "Evaluate"]
    assert graph.objects()[2:] == [first, second]


# ---------------------------------------------------------------- nested components


def test_nested_components_are_built_and_passed_in(tmp_path: Path) -> None:
    data = {"config_type": "dict", "path": "not.a.Class", "args": {"x": 1}}
    extra = [
        {
            "id": "root",
            **node(
                "root",
                child=node("child", child=node("grandchild")),
                children=[node("first"), "plain", node("second"), [node("in-a-list-of-lists")]],
                table={"one": node("in-a-dict"), "deep": {"er": [node("deepest")]}, "data": data, "n": 1},
            ),
        }
    ]
    graph = flruntime.build_job_site(job_with(tmp_path / "job", extra=extra), "server")
    root = graph.components["root"]
    Node = type(root)
    nested_first = ["grandchild", "child", "first", "second", "in-a-list-of-lists", "in-a-dict", "deepest"]
    assert order_of(root)[-8:] == [*nested_first, "root"]
    assert isinstance(root.child, Node) and root.child.name == "child"
    assert isinstance(root.child.child, Node) and root.child.child.name == "grandchild"
    first, plain, second, inner = root.children
    assert (first.name, plain, second.name) == ("first", "plain", "second")
    assert isinstance(inner, list) and isinstance(inner[0], Node) and inner[0].name == "in-a-list-of-lists"
    assert root.table["one"].name == "in-a-dict"
    assert root.table["deep"]["er"][0].name == "deepest"
    assert root.table["data"] == data  # "config_type": "dict" keeps it as data
    assert root.table["n"] == 1


def test_nested_components_come_before_their_parent(tmp_path: Path) -> None:
    extra = [{"id": "root", **node("root", child=node("child"), children=[node("a"), node("b")])}]
    graph = flruntime.build_job_site(job_with(tmp_path / "job", extra=extra), "server")
    order = order_of(graph.components["root"])
    assert order[order.index("child") :][:4] == ["child", "a", "b", "root"]
    persistor = graph.components["persistor"]
    assert type(persistor.model).__name__ == "Net" and persistor.model.width == 8


# ---------------------------------------------------------------- independence and immutability


def test_building_twice_gives_independent_objects(tmp_path: Path) -> None:
    extra = [{"id": "n", **node("n", table={"list": [1, 2], "map": {"k": "v"}}, children=[node("kid")])}]
    job = job_with(tmp_path / "job", extra=extra)
    one = flruntime.build_job_site(job, "server")
    two = flruntime.build_job_site(job, "server")
    for key in one.components:
        assert one.components[key] is not two.components[key]
    assert type(one.components["n"]) is not type(two.components["n"])  # each build imports the job's code anew
    a, b = one.components["n"], two.components["n"]
    assert a.table == b.table == {"list": [1, 2], "map": {"k": "v"}}
    assert a.table is not b.table and a.table["list"] is not b.table["list"] and a.table["map"] is not b.table["map"]
    assert a.children[0] is not b.children[0]
    a.table["list"].append(3)
    a.table["map"].clear()
    three = flruntime.build_job_site(job, "server")
    assert b.table == three.components["n"].table == {"list": [1, 2], "map": {"k": "v"}}
    assert one.components["persistor"].model is not two.components["persistor"].model


def test_the_config_is_never_mutated(tmp_path: Path) -> None:
    extra = [{"id": "mutator", "path": "wiring.Mutator", "args": {"items": [1, [2]], "options": {"a": {"b": 1}}}}]
    job = job_with(tmp_path / "job", extra=extra)
    report = flruntime.validate_job(job, site="server")
    assert report.problems == []
    checked = report.apps[0]
    source_before = copy.deepcopy(checked.config.source.data)
    data_before = copy.deepcopy(checked.config.data)
    specs_before = copy.deepcopy([s.args for s in checked.config.all_specs()])
    app = report.job.apps["app"]
    graphs = [
        build_site(checked, site="server", app_dir=app.root, custom_dir=app.custom_dir, policy=ImportPolicy())
        for _ in range(2)
    ]
    for graph in graphs:
        assert graph.components["mutator"].items == [1, [2], "added by the constructor"]
        assert graph.components["mutator"].options == {}
    assert checked.config.source.data == source_before
    assert checked.config.data == data_before
    assert [s.args for s in checked.config.all_specs()] == specs_before
    assert checked.config.data["components"][2]["args"] == {"items": [1, [2]], "options": {"a": {"b": 1}}}


def test_whole_string_placeholder_keeps_its_type(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"][0]["args"]["label"] = "round-{num_rounds}"
    job = job_with(tmp_path / "job", server=server)
    fedavg = flruntime.build_job_site(job, "server").components["fedavg"]
    assert (fedavg.num_rounds, fedavg.label) == (3, "round-3")
    assert type(fedavg.num_rounds) is int
    fedavg = flruntime.build_job_site(job, "server", overrides={"num_rounds": 5}).components["fedavg"]
    assert (fedavg.num_rounds, fedavg.label) == (5, "round-5")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("where", "json_path"),
    [
        pytest.param("component", "$.components[2]", id="component"),
        pytest.param("nested", "$.components[0].args.model", id="nested"),
        pytest.param("nested-in-list", "$.components[2].args.children[1]", id="nested-in-list"),
    ],
)
def test_constructor_that_raises(tmp_path: Path, where: str, json_path: str) -> None:
    server = copy.deepcopy(SERVER)
    exploding = {"path": "parts.Exploding", "args": {"size": 3}}
    if where == "component":
        server["components"].append({"id": "boom", **exploding})
    elif where == "nested":
        server["components"][0]["args"]["model"] = exploding
    else:
        server["components"].append({"id": "root", **node("root", children=[node("ok"), exploding])})
    job = job_with(tmp_path / "job", server=server)
    with pytest.raises(InstantiationError) as info:
        flruntime.build_job_site(job, "server")
    # the line of the "{" that opens the component: above its "id" for a component, else just above "path"
    line = line_of(job / SERVER_FILE, '"path": "parts.Exploding"') - (2 if where == "component" else 1)
    assert str(info.value) == (
        f"{SERVER_FILE}:{line}: {json_path}: Exploding(...) failed: ValueError: size 3 is too big "
        "(check the args of this component)"
    )
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.exit_code == flruntime.ExitCode.INVALID_JOB


def test_invalid_job_raises_every_problem(tmp_path: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["workflows"][0]["args"]["num_rounds"] = "2"
    server["workflows"][0]["args"]["aggregator_id"] = "agregator"
    server["components"][0]["args"]["model"]["path"] = "parts.Nett"
    job = job_with(tmp_path / "job", server=server)
    expected = [p.format() for p in flruntime.validate_job(job, site="server").problems]
    with pytest.raises(ConfigError) as info:
        flruntime.build_job_site(job, "server")
    assert [p.format() for p in info.value.problems] == expected
    assert len(expected) == 3
    assert str(info.value) == f"{expected[0]} (and 2 more)"
    assert info.value.exit_code == flruntime.ExitCode.INVALID_JOB


def test_only_the_sites_app_must_be_valid(tmp_path: Path) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["executor"]["path"] = "parts.Trainr"
    job = job_with(tmp_path / "job", client=client)
    assert [type(o).__name__ for o in flruntime.build_job_site(job, "server").objects()] == [
        "Persistor",
        "WeightedAggregator",
        "FedAvg",
    ]
    with pytest.raises(ConfigError) as info:
        flruntime.build_job_site(job, "site-1")
    line = line_of(job / CLIENT_FILE, "parts.Trainr")
    assert str(info.value) == (
        f"{CLIENT_FILE}:{line}: $.executors[0].executor.path: module 'parts' has no class 'Trainr' "
        "(did you mean 'Trainer'?)"
    )


@pytest.mark.parametrize(
    ("site", "message"),
    [
        pytest.param("site-3", "site 'site-3' runs no app of this job (did you mean 'site-2'?)", id="close"),
        pytest.param(
            "zzz", "site 'zzz' runs no app of this job (the deploy map names: server, site-1, site-2)", id="far"
        ),
    ],
)
def test_unknown_site(tmp_path: Path, site: str, message: str) -> None:
    meta = {**META, "deploy_map": {"app": ["server", "site-1", "site-2"]}}
    job = job_with(tmp_path / "job", meta=meta)
    with pytest.raises(UsageError) as info:
        flruntime.build_job_site(job, site)
    assert str(info.value) == message
    assert flruntime.build_job_site(job, "site-2").site == "site-2"


# ---------------------------------------------------------------- executors and filters


def _trainer(lr: float) -> dict[str, Any]:
    return {"path": "parts.Trainer", "args": {"lr": lr}}


def test_executor_for_exact_name_beats_pattern(tmp_path: Path) -> None:
    client = {
        "format_version": 2,
        "executors": [
            {"tasks": ["*"], "executor": _trainer(0.5)},
            {"tasks": ["tr*"], "executor": _trainer(0.3)},
            {"tasks": ["validate", "train"], "executor": _trainer(0.1)},
        ],
    }
    graph = flruntime.build_job_site(job_with(tmp_path / "job", client=client), "site-1")
    assert [(tasks, ex.lr) for tasks, ex in graph.executors] == [
        (("*",), 0.5),
        (("tr*",), 0.3),
        (("validate", "train"), 0.1),
    ]
    assert graph.executor_for("train").lr == 0.1
    assert graph.executor_for("validate").lr == 0.1
    assert graph.executor_for("trace").lr == 0.5  # the first matching pattern, in config order
    assert graph.executor_for("submit_model").lr == 0.5


def test_executor_for_no_match(tmp_path: Path) -> None:
    client = {"format_version": 2, "executors": [{"tasks": ["train", "val*"], "executor": _trainer(0.1)}]}
    graph = flruntime.build_job_site(job_with(tmp_path / "job", client=client), "site-1")
    assert graph.executor_for("validate") is graph.executor_for("train")
    assert graph.executor_for("submit_model") is None
    assert graph.executor_for("va") is None


def _labeler(label: str) -> dict[str, Any]:
    return {"path": "parts.Labeler", "args": {"label": label}}


@pytest.mark.parametrize(
    ("site", "data_default", "result_default"),
    [pytest.param("server", "out", "in", id="server"), pytest.param("site-1", "in", "out", id="client")],
)
def test_filters_for(tmp_path: Path, site: str, data_default: str, result_default: str) -> None:
    config = copy.deepcopy(SERVER if site == "server" else CLIENT)
    config["task_data_filters"] = [
        {"tasks": ["train"], "filters": [_labeler("d1"), _labeler("d2")]},
        {"tasks": ["tr*", "other"], "filters": [_labeler("d3")], "direction": "inout"},
        {"tasks": ["validate"], "filters": [_labeler("d4"), {**_labeler("off"), "disabled": True}]},
    ]
    config["task_result_filters"] = [
        {"tasks": ["*"], "filters": [_labeler("r1")]},
        {"tasks": ["train"], "filters": [_labeler("r2")], "direction": "in" if result_default == "out" else "out"},
    ]
    other_result = "in" if result_default == "out" else "out"
    job = job_with(tmp_path / "job", **{"server" if site == "server" else "client": config})
    graph = flruntime.build_job_site(job, site)
    data, results = graph.task_data_filters, graph.task_result_filters
    assert [(c.tasks, c.direction) for c in data] == [
        (("train",), data_default),
        (("tr*", "other"), "inout"),
        (("validate",), data_default),
    ]
    assert [(c.tasks, c.direction) for c in results] == [(("*",), result_default), (("train",), other_result)]

    def labels(chains: Any, task: str, direction: str) -> list[str]:
        return [f.label for f in graph.filters_for(chains, task, direction)]

    data_other = "in" if data_default == "out" else "out"
    assert labels(data, "train", data_default) == ["d1", "d2", "d3"]
    assert labels(data, "train", data_other) == ["d3"]
    assert labels(data, "trace", data_default) == ["d3"]
    assert labels(data, "validate", data_default) == ["d4"]  # the disabled filter is not built
    assert labels(data, "validate", data_other) == []
    assert labels(results, "train", result_default) == ["r1"]
    assert labels(results, "train", other_result) == ["r2"]
    assert labels(results, "anything", result_default) == ["r1"]
    built = [o.label for o in graph.objects() if type(o).__name__ == "Labeler"]
    assert built == ["d1", "d2", "d3", "d4", "r1", "r2"]
