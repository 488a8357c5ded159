"""Property tests: whatever a job folder holds, ``validate_job`` returns a report and never raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobkit import CLIENT, META, SERVER, dump, make_job, yaml_dump

from flruntime import Problem, Report, validate_job

FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

HOCON_SERVER = """\
format_version = 2
num_rounds = 3
workflows = [
  {
    id = "fedavg"
    path = "parts.FedAvg"
    args { num_rounds = "{num_rounds}", aggregator_id = aggregator }
  }
]
components = [
  { id = "persistor", path = "parts.Persistor", args.model { path = "parts.Net", args.width = 8 } }
  { id = "aggregator", path = "parts.WeightedAggregator" }
]
"""

#: Valid files to truncate and mutate, by the file name they are written as.
SAMPLES: dict[str, str] = {
    "meta.json": dump(META),
    "meta.yaml": yaml_dump(META),
    "meta.conf": 'name = "demo"\nmin_clients = 1\ndeploy_map { app = ["@ALL"] }\n',
    "app/config/config_fed_server.json": dump(SERVER),
    "app/config/config_fed_server.yaml": yaml_dump(SERVER),
    "app/config/config_fed_server.conf": HOCON_SERVER,
    "app/config/config_fed_client.yml": yaml_dump(CLIENT),
    "app/config/config_fed_client.conf": json.dumps(CLIENT),
}

SYNTAX_CHARS = list("{}[]:,=\"'#\n\t -.$@&*!|>?%\\/ab1") + ["${", "}}", "{x}", "${?X}", "include ", "\ufeff", "\u00e9"]


def _truncated(sample: tuple[str, float]) -> tuple[str, str]:
    name, fraction = sample
    text = SAMPLES[name]
    return name, text[: int(len(text) * fraction)]


def _mutated(sample: tuple[str, int, str]) -> tuple[str, str]:
    name, at, insert = sample
    text = SAMPLES[name]
    at %= len(text) + 1
    return name, text[:at] + insert + text[at + 1 :]


file_names = st.sampled_from(sorted(SAMPLES))
texts = st.one_of(
    st.tuples(file_names, st.text(max_size=200)),
    st.tuples(file_names, st.lists(st.sampled_from(SYNTAX_CHARS), max_size=60).map("".join)),
    st.tuples(file_names, st.floats(0, 1)).map(_truncated),
    st.tuples(file_names, st.integers(0, 5000), st.lists(st.sampled_from(SYNTAX_CHARS), max_size=3).map("".join)).map(
        _mutated
    ),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(
        [
            "{num_rounds}",
            "{missing}",
            "{$HOME}",
            "{$FLRUNTIME_FUZZ_UNSET}",
            "{JOB_ID}",
            "{a}{b}",
            '{"a": 1}',
            "parts.FedAvg",
            "parts.Net",
            "parts.Trainer",
            "parts.Labeler",
            "parts.Exploding",
            "parts.ORDER",
            "parts",
            "os.system",
            "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
            "ScatterAndGather",
            "aggregator",
            "persistor",
            "train",
            "*",
            "@ALL",
            "server",
            "site-1",
            "in",
            "inout",
            "dict",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "format_version",
            "workflows",
            "components",
            "executors",
            "task_data_filters",
            "task_result_filters",
            "id",
            "path",
            "name",
            "class_path",
            "args",
            "tasks",
            "executor",
            "filters",
            "direction",
            "disabled",
            "config_type",
            "deploy_map",
            "min_clients",
            "mandatory_clients",
            "sites",
            "app",
            "num_rounds",
            "aggregator_id",
            "model",
            "a",
            "b",
        ]
    ),
)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=20
)
components = st.fixed_dictionaries(
    {"path": scalars}, optional={"id": scalars, "name": scalars, "args": documents, "disabled": scalars}
)
servers = st.fixed_dictionaries(
    {"format_version": st.sampled_from([2, 2, 1, "2", None])},
    optional={
        "workflows": st.one_of(st.lists(components, max_size=3), documents),
        "components": st.one_of(st.lists(components, max_size=3), documents),
        "task_data_filters": st.lists(st.dictionaries(keys, documents, max_size=3), max_size=2),
        "num_rounds": documents,
        "a": documents,
    },
)
clients = st.fixed_dictionaries(
    {"format_version": st.just(2)},
    optional={
        "executors": st.one_of(
            st.lists(
                st.fixed_dictionaries({"tasks": documents, "executor": st.one_of(components, documents)}), max_size=2
            ),
            documents,
        ),
        "components": st.lists(components, max_size=2),
        "task_result_filters": st.lists(
            st.fixed_dictionaries({"tasks": documents, "filters": st.lists(components, max_size=2)}), max_size=2
        ),
    },
)
metas = st.one_of(
    documents,
    st.fixed_dictionaries(
        {"deploy_map": st.one_of(documents, st.dictionaries(st.sampled_from(["app", "other"]), documents, max_size=2))},
        optional={"min_clients": documents, "mandatory_clients": documents, "name": documents},
    ),
    st.just(META),
)
formats = st.sampled_from(["json", "yaml", "conf"])


def _render(doc: Any, fmt: str) -> str:
    return yaml.safe_dump(doc) if fmt == "yaml" else json.dumps(doc, indent=1)


def _check(report: Report) -> None:
    assert isinstance(report, Report)
    for problem in report.problems:
        assert isinstance(problem, Problem)
        assert problem.message
        assert problem.format().startswith(problem.file)


@FUZZ
@given(sample=texts)
def test_any_text_in_any_config_file(tmp_path_factory: pytest.TempPathFactory, sample: tuple[str, str]) -> None:
    name, text = sample
    root = tmp_path_factory.mktemp("text")
    job = make_job(
        root / "job",
        meta=None if name.startswith("meta") else META,
        server=None if "server" in name else SERVER,
        client=None if "client" in name else CLIENT,
    )
    (job / name).parent.mkdir(parents=True, exist_ok=True)
    (job / name).write_text(text, encoding="utf-8")
    _check(validate_job(job))


@FUZZ
@given(meta=metas, server=documents, client=documents, fmt=formats)
def test_any_document_as_meta_and_configs(
    tmp_path_factory: pytest.TempPathFactory, meta: Any, server: Any, client: Any, fmt: str
) -> None:
    job = make_job(tmp_path_factory.mktemp("docs") / "job", meta=None, server=None, client=None)
    (job / f"meta.{fmt}").write_text(_render(meta, fmt), encoding="utf-8")
    (job / "app" / "config").mkdir(parents=True)
    (job / f"app/config/config_fed_server.{fmt}").write_text(_render(server, fmt), encoding="utf-8")
    (job / f"app/config/config_fed_client.{fmt}").write_text(_render(client, fmt), encoding="utf-8")
    _check(validate_job(job))


@FUZZ
@given(server=servers, client=clients, fmt=formats)
def test_config_shaped_junk(tmp_path_factory: pytest.TempPathFactory, server: Any, client: Any, fmt: str) -> None:
    job = make_job(tmp_path_factory.mktemp("shaped") / "job", server=None, client=None)
    (job / "app" / "config").mkdir(parents=True)
    (job / f"app/config/config_fed_server.{fmt}").write_text(_render(server, fmt), encoding="utf-8")
    (job / f"app/config/config_fed_client.{fmt}").write_text(_render(client, fmt), encoding="utf-8")
    _check(validate_job(job))
