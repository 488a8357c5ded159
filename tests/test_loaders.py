"""Loading config files: syntax errors, repeated keys, node positions, and the layouts of job folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobkit import CLIENT, META, PARTS, SERVER, dump, line_of, make_job, report_lines, write, yaml_dump

from flruntime import validate_job
from flruntime.config.source import load_file
from flruntime.problems import JsonPath

# --- syntax errors: one problem, at the line and column of the mistake ------------------------------------------

SYNTAX_ERRORS = [
    pytest.param(
        "config_fed_server.json",
        '{\n  "format_version": 2,\n  "workflows": [\n    {"id": "a", "path": "parts.FedAvg",}\n  ]\n}\n',
        "4: $: invalid JSON: Expecting property name enclosed in double quotes (line 4, column 40) (fix the syntax)",
        id="json-trailing-comma",
    ),
    pytest.param(
        "config_fed_server.json",
        '{\n  "format_version": 2\n  "workflows": []\n}\n',
        "3: $: invalid JSON: Expecting ',' delimiter (line 3, column 3) (fix the syntax)",
        id="json-missing-comma",
    ),
    pytest.param(
        "config_fed_server.json",
        '{\n  "format_version": 2,\n  "workflows": [\n',
        "4: $: invalid JSON: Expecting value (line 4, column 1) (fix the syntax)",
        id="json-truncated",
    ),
    pytest.param(
        "config_fed_server.json",
        '{\n  // JSON has no comments\n  "format_version": 2\n}\n',
        "2: $: invalid JSON: Expecting property name enclosed in double quotes (line 2, column 3) (fix the syntax)",
        id="json-comment",
    ),
    pytest.param(
        "config_fed_server.json",
        '{"format_version": 2, "num_rounds": NaN}\n',
        "1: $: invalid JSON: NaN is not valid JSON (fix the syntax)",
        id="json-nan",
    ),
    pytest.param(
        "config_fed_server.json",
        "",
        "1: $: invalid JSON: Expecting value (line 1, column 1) (fix the syntax)",
        id="json-empty-file",
    ),
    pytest.param(
        "config_fed_server.yaml",
        "format_version: 2\nworkflows: [a, b\ncomponents: []\n",
        "3: $: invalid YAML: expected ',' or ']', but got ':' (line 3, column 11) (fix the syntax)",
        id="yaml-unclosed-flow-list",
    ),
    pytest.param(
        "config_fed_server.yaml",
        "format_version: 2\n  workflows: []\n",
        "2: $: invalid YAML: mapping values are not allowed here (line 2, column 12) (fix the syntax)",
        id="yaml-bad-indent",
    ),
    pytest.param(
        "config_fed_server.yml",
        "format_version: 2\nworkflows:\n\t- a\n",
        "3: $: invalid YAML: found character '\\t' that cannot start any token (line 3, column 1) (fix the syntax)",
        id="yaml-tab",
    ),
    pytest.param(
        "config_fed_server.yaml",
        'format_version: !!python/object/apply:os.system ["true"]\n',
        "1: $: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' (line 1, column 17) (fix the syntax)",
        id="yaml-python-tag-is-refused",
    ),
    pytest.param(
        "config_fed_server.yaml",
        "format_version: 2\nworkflows: &flows [*flows]\n",
        "2: $: invalid YAML: an alias refers to a node that contains it (recursive structures are not allowed) "
        "(line 2, column 12) (write the values out instead of aliasing)",
        id="yaml-recursive-alias",
    ),
    pytest.param(
        "config_fed_server.conf",
        'format_version = 2\nworkflows = [\n  {id = "a"}\n',
        "4: $: invalid HOCON: Expected ']', found end of text (line 4, column 1) (fix the syntax)",
        id="hocon-unclosed-list",
    ),
    pytest.param(
        "config_fed_server.conf",
        "format_version == 2\n",
        "1: $: invalid HOCON: Expected end of text, found '=' (line 1, column 17) (fix the syntax)",
        id="hocon-double-equals",
    ),
    pytest.param(
        "config_fed_server.conf",
        "format_version = 2\nworkflows = ${flows}\n",
        "2: $: invalid HOCON: Cannot resolve variable ${flows} (line 2, column 13) (fix the syntax)",
        id="hocon-unresolved-substitution",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), SYNTAX_ERRORS)
def test_syntax_error_is_located(tmp_path: Path, name: str, text: str, expected: str) -> None:
    job = make_job(tmp_path / "job", server=None)
    write(job / "app" / "config" / name, text)
    assert report_lines(job) == [f"app/config/{name}:{expected}"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param(
            "meta.json",
            '{\n  "name": "demo",\n}\n',
            "meta.json:3: $: invalid JSON: Expecting property name enclosed in double quotes (line 3, column 1) "
            "(fix the syntax)",
            id="json",
        ),
        pytest.param(
            "meta.yaml",
            "name: demo\ndeploy_map: {app: [@ALL]}\n",
            "meta.yaml:2: $: invalid YAML: found character '@' that cannot start any token (line 2, column 20) "
            "(fix the syntax)",
            id="yaml-unquoted-at-all",
        ),
        pytest.param(
            "meta.conf",
            '{\n  name = demo\n  deploy_map {\n    app = ["@ALL"]\n',
            "meta.conf:5: $: invalid HOCON: Expected '}', found end of text (line 5, column 1) (fix the syntax)",
            id="hocon",
        ),
    ],
)
def test_syntax_error_in_meta_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    job = make_job(tmp_path / "job", meta=None)
    write(job / name, text)
    assert report_lines(job) == [expected]


# --- repeated keys --------------------------------------------------------------------------------------------------


def _repeat_after(text: str, line_text: str, repeat: str) -> str:
    """Insert ``repeat`` on a new line after ``line_text``, with the same indentation."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == line_text)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    return "\n".join([*lines[: at + 1], indent + repeat, *lines[at + 1 :]]) + "\n"


DUPLICATE_TOP = {
    "json": _repeat_after(dump(SERVER), '"num_rounds": 3,', '"num_rounds": 4,'),
    "yaml": _repeat_after(yaml_dump(SERVER), "num_rounds: 3", "num_rounds: 4"),
}


@pytest.mark.parametrize(("fmt", "line", "column"), [("json", 4, 3), ("yaml", 3, 1)])
def test_repeated_top_level_key_is_reported_at_the_repeat(tmp_path: Path, fmt: str, line: int, column: int) -> None:
    job = make_job(tmp_path / "job", server=None)
    write(job / f"app/config/config_fed_server.{fmt}", DUPLICATE_TOP[fmt])
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [
        f"app/config/config_fed_server.{fmt}:{line}: $.num_rounds: duplicate key 'num_rounds' "
        "(only the last value would be used) (remove or rename one of them)"
    ]
    (problem,) = report.problems
    assert (problem.line, problem.column, problem.code) == (line, column, "duplicate-key")
    server = next(a for a in report.apps if a.config.side == "server")
    assert server.config.data["num_rounds"] == 4  # the last value is the one loaded


DUPLICATE_NESTED = {
    "json": _repeat_after(dump(SERVER), '"width": 8', '"width": 9').replace('"width": 8', '"width": 8,'),
    "yaml": _repeat_after(yaml_dump(SERVER), "width: 8", "width: 9"),
}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_repeated_nested_key_is_reported_with_its_path(tmp_path: Path, fmt: str) -> None:
    job = make_job(tmp_path / "job", server=None)
    path = write(job / f"app/config/config_fed_server.{fmt}", DUPLICATE_NESTED[fmt])
    line = line_of(path, "width", nth=2)
    assert report_lines(job) == [
        f"app/config/config_fed_server.{fmt}:{line}: $.components[0].args.model.args.width: duplicate key 'width' "
        "(only the last value would be used) (remove or rename one of them)"
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("a.json", '[{"id": "a", "k": 1}, {"id": "b", "k": 2}]', id="json-sibling-objects"),
        pytest.param("a.json", '{"x": {"k": 1}, "y": {"k": 2}, "k": 3}', id="json-nested-objects"),
        pytest.param("a.yaml", "- id: a\n  k: 1\n- id: b\n  k: 2\n", id="yaml-sibling-objects"),
        pytest.param("a.json", '{"s": "\\"k\\": 1, \\"k\\": 2"}', id="json-keys-inside-a-string"),
    ],
)
def test_the_same_key_in_different_objects_is_not_a_repeat(tmp_path: Path, name: str, text: str) -> None:
    source, problems = load_file(write(tmp_path / name, text), name)
    assert source is not None
    assert problems == []


def test_hocon_merges_repeated_keys_as_specified(tmp_path: Path) -> None:
    path = write(tmp_path / "a.conf", "num_rounds = 3\nargs { a = 1 }\nnum_rounds = 4\nargs { b = 2 }\n")
    source, problems = load_file(path, "a.conf")
    assert problems == []
    assert source is not None
    assert source.data == {"num_rounds": 4, "args": {"a": 1, "b": 2}}


# --- positions of nested nodes --------------------------------------------------------------------------------------

POSITION_DOCS = {
    "json": """{
  "format_version": 2,
  "workflows": [
    {
      "id": "fedavg",
      "path": "parts.FedAvg",
      "args": {"num_rounds": 3}
    }
  ],
  "components": [
    {"id": "persistor", "path": "parts.Persistor", "args": {"model": {"path": "parts.Net", "args": {"width": 8}}}},
    {
      "id": "aggregator",
      "path": "parts.WeightedAggregator",
      "args": {
        "x": 1,
        "exclude": [
          "a",
          "b"
        ]
      }
    }
  ]
}
""",
    "yaml": """format_version: 2
workflows:
  - id: fedavg
    path: parts.FedAvg
    args: {num_rounds: 3}
components:
  - {id: persistor, path: parts.Persistor, args: {model: {path: parts.Net, args: {width: 8}}}}
  - id: aggregator
    path: parts.WeightedAggregator
    args:
      x: 1
      exclude:
        - a
        - b
""",
    # dotted keys, lists without commas, unquoted strings, comments
    "conf": """format_version = 2
workflows = [
  {
    id = fedavg
    path = "parts.FedAvg"
    args.num_rounds = 3
  }
]
# the persistor
components = [
  { id = persistor, path = "parts.Persistor", args.model { path = "parts.Net", args.width = 8 } }
  {
    id = "aggregator"
    path = "parts.WeightedAggregator"
    args {
      x = 1
      exclude = [
        "a"
        "b"
      ]
    }
  }
]
""",
}

POSITIONS: dict[str, dict[JsonPath, tuple[int, int]]] = {
    "json": {
        ("workflows",): (3, 3),
        ("workflows", 0): (4, 5),
        ("workflows", 0, "path"): (6, 7),
        ("workflows", 0, "args", "num_rounds"): (7, 16),
        ("components", 0): (11, 5),
        ("components", 0, "args", "model", "path"): (11, 71),
        ("components", 0, "args", "model", "args", "width"): (11, 101),
        ("components", 1): (12, 5),
        ("components", 1, "id"): (13, 7),
        ("components", 1, "args", "x"): (16, 9),
        ("components", 1, "args", "exclude", 1): (19, 11),
    },
    "yaml": {
        ("workflows",): (2, 1),
        ("workflows", 0): (3, 5),
        ("workflows", 0, "path"): (4, 5),
        ("workflows", 0, "args", "num_rounds"): (5, 12),
        ("components", 0): (7, 5),
        ("components", 0, "args", "model", "path"): (7, 59),
        ("components", 0, "args", "model", "args", "width"): (7, 83),
        ("components", 1): (8, 5),
        ("components", 1, "id"): (8, 5),
        ("components", 1, "args", "x"): (11, 7),
        ("components", 1, "args", "exclude", 1): (14, 11),
    },
    "conf": {
        ("workflows",): (2, 1),
        ("workflows", 0): (3, 3),
        ("workflows", 0, "path"): (5, 5),
        ("workflows", 0, "args", "num_rounds"): (6, 5),
        ("components", 0): (11, 3),
        ("components", 0, "args", "model", "path"): (11, 60),
        ("components", 0, "args", "model", "args", "width"): (11, 80),
        ("components", 1): (12, 3),
        ("components", 1, "id"): (13, 5),
        ("components", 1, "args", "x"): (16, 7),
        ("components", 1, "args", "exclude", 1): (19, 9),
    },
}


@pytest.mark.parametrize("fmt", ["json", "yaml", "conf"])
def test_positions_of_nested_nodes(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / f"config_fed_server.{fmt}", POSITION_DOCS[fmt])
    source, problems = load_file(path, path.name)
    assert problems == []
    assert source is not None
    assert source.data["components"][1]["args"] == {"x": 1, "exclude": ["a", "b"]}
    assert source.data["components"][0]["args"]["model"] == {"path": "parts.Net", "args": {"width": 8}}
    assert {p: source.where(p) for p in POSITIONS[fmt]} == POSITIONS[fmt]


@pytest.mark.parametrize("fmt", ["json", "yaml", "conf"])
def test_a_problem_in_a_nested_node_names_its_line(tmp_path: Path, fmt: str) -> None:
    job = make_job(tmp_path / "job", server=None)
    path = write(job / f"app/config/config_fed_server.{fmt}", POSITION_DOCS[fmt])
    line = line_of(path, {"json": '"x": 1', "yaml": "x: 1", "conf": "x = 1"}[fmt])
    assert report_lines(job) == [
        f"app/config/config_fed_server.{fmt}:{line}: $.components[1].args.x: "
        "unknown argument 'x' for WeightedAggregator (it takes weigh_by, exclude)"
    ]


def test_a_missing_node_is_located_at_its_nearest_ancestor(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", dump({"components": [{"id": "a", "args": {}}]}))
    source, _ = load_file(path, "a.json")
    assert source is not None
    assert source.where(("components", 0, "args", "missing", 3)) == source.where(("components", 0, "args"))
    assert (
        source.problem(("components", 0, "args", "missing"), "gone").format()
        == "a.json:5: $.components[0].args.missing: gone"
    )


def test_hocon_dotted_key_is_a_nested_path(tmp_path: Path) -> None:
    text = 'components = [\n  {\n    id = "selector"\n    path = "parts.Selector"\n    args.key_metric = "x"\n  }\n]\n'
    source, problems = load_file(write(tmp_path / "a.conf", text), "a.conf")
    assert problems == []
    assert source is not None
    assert source.data == {"components": [{"id": "selector", "path": "parts.Selector", "args": {"key_metric": "x"}}]}
    assert source.where(("components", 0, "args", "key_metric")) == (5, 5)
    assert source.problem(("components", 0, "args", "key_metric"), "bad").format() == (
        "a.conf:5: $.components[0].args.key_metric: bad"
    )


def test_hocon_quoted_keys_keep_their_dots(tmp_path: Path) -> None:
    text = 'tags {\n  "mlflow.note.content" = "hello"\n  run.name = "r"\n}\n'
    source, problems = load_file(write(tmp_path / "a.conf", text), "a.conf")
    assert problems == []
    assert source is not None
    assert source.data == {"tags": {"mlflow.note.content": "hello", "run": {"name": "r"}}}
    assert source.where(("tags", "mlflow.note.content")) == (2, 3)
    assert source.where(("tags", "run", "name")) == (3, 3)


# --- files that are not config text ---------------------------------------------------------------------------------


def test_non_utf8_file(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", meta=None)
    (job / "meta.json").write_bytes(b'{\n  "name": "caf\xe9",\n  "deploy_map": {"app": ["@ALL"]}\n}\n')
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [
        "meta.json:2: $: not UTF-8 text (invalid continuation byte at byte 16) (save the file as UTF-8)"
    ]
    assert (report.problems[0].column, report.problems[0].code) == (15, "syntax")


@pytest.mark.parametrize("name", ["config_fed_server.txt", "config_fed_server.toml", "config_fed_server"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    suffix = Path(name).suffix
    source, problems = load_file(write(tmp_path / name, "x = 1\n"), name)
    assert source is None
    assert [p.format() for p in problems] == [
        f"{name}: $: unsupported config file type '{suffix}' (use one of .json, .conf, .yml, .yaml)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("format_version: 2\n1: one\n", "2: $: key '1' is not a string (quote the key)", id="int"),
        pytest.param("format_version: 2\ntrue: 1\n", "2: $: key 'true' is not a string (quote the key)", id="bool"),
        pytest.param(
            "format_version: 2\nargs:\n  null: x\n", "3: $.args: key 'null' is not a string (quote the key)", id="null"
        ),
    ],
)
def test_yaml_non_string_key(tmp_path: Path, text: str, expected: str) -> None:
    job = make_job(tmp_path / "job", server=None)
    write(job / "app/config/config_fed_server.yaml", text)
    assert report_lines(job) == [f"app/config/config_fed_server.yaml:{expected}"]


def test_yaml_quoted_number_key_and_dates_stay_strings(tmp_path: Path) -> None:
    source, problems = load_file(write(tmp_path / "a.yaml", '"1": one\nday: 2024-01-31\n'), "a.yaml")
    assert problems == []
    assert source is not None
    assert source.data == {"1": "one", "day": "2024-01-31"}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("a.json", "[" * 101 + "]" * 101, id="json"),
        pytest.param("a.yaml", "[" * 101 + "]" * 101, id="yaml"),
    ],
)
def test_absurd_nesting_is_refused(tmp_path: Path, name: str, text: str) -> None:
    source, problems = load_file(write(tmp_path / name, text), name)
    assert source is None
    assert [p.format() for p in problems] == [
        f"{name}:1: $: objects and lists are nested more than 100 levels deep (flatten the structure)"
    ]


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    source, problems = load_file(write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n"), "bomb.yaml")
    assert source is None
    assert [p.message for p in problems] == [
        "invalid YAML: the document expands to more than 200000 nodes through aliases (line 1, column 34)"
    ]


# --- job-folder layouts ---------------------------------------------------------------------------------------------

HOCON_SERVER = """{
  format_version = 2
  num_rounds = 2
  workflows = [
    {
      id = "fedavg"
      path = "parts.FedAvg"
      args { num_rounds = "{num_rounds}" }
    }
  ]
  components = [
    { id = "persistor", path = "parts.Persistor", args.model { path = "parts.Net", args.width = 8 } }
    { id = "aggregator", path = "parts.WeightedAggregator" }
  ]
}
"""

HOCON_CLIENT = """{
  format_version = 2
  executors = [
    {
      tasks = ["train"]
      executor { path = "parts.Trainer", args { lr = 0.1 } }
    }
  ]
}
"""

HOCON_META = """{
  name = "flat"
  resource_spec = {}
  deploy_map {
    # the configs are at the root: the app is the job folder itself
    app = ["@ALL"]
  }
  min_clients = 2
  mandatory_clients = []
}
"""


def test_flat_nvflare_template_folder(tmp_path: Path) -> None:
    job = tmp_path / "flat"
    write(job / "meta.conf", HOCON_META)
    write(job / "config_fed_server.conf", HOCON_SERVER)
    write(job / "config_fed_client.conf", HOCON_CLIENT)
    write(job / "info.md", "# a template\n")
    write(job / "custom" / "parts.py", PARTS)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == []
    assert report.job.name == "flat"
    (app,) = report.job.apps.values()
    assert (app.name, app.root, app.config_dir, app.custom_dir) == ("app", job, job, job / "custom")
    assert sorted(a.config.source.display for a in report.apps) == ["config_fed_client.conf", "config_fed_server.conf"]


def test_flat_template_problems_name_root_files(tmp_path: Path) -> None:
    job = tmp_path / "flat"
    write(job / "meta.conf", HOCON_META)
    write(job / "config_fed_server.conf", HOCON_SERVER.replace('"parts.Net"', '"parts.Nett"'))
    write(job / "config_fed_client.conf", HOCON_CLIENT)
    write(job / "custom" / "parts.py", PARTS)
    assert report_lines(job) == [
        "config_fed_server.conf:12: $.components[0].args.model.path: module 'parts' has no class 'Nett' "
        "(did you mean 'Net'?)"
    ]


def test_flat_app_folders_without_config_subfolder(tmp_path: Path) -> None:
    job = tmp_path / "job"
    meta = {
        "name": "apps",
        "min_clients": 2,
        "deploy_map": {"app_server": ["server"], "app_1": ["site-1"], "app_2": ["site-2"]},
    }
    write(job / "meta.conf", dump(meta))
    write(job / "app_server" / "config_fed_server.conf", HOCON_SERVER)
    write(job / "app_server" / "custom" / "parts.py", PARTS)
    for app in ("app_1", "app_2"):
        write(job / app / "config_fed_client.conf", HOCON_CLIENT)
        write(job / app / "custom" / "parts.py", PARTS)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == []
    assert {name: a.config_dir for name, a in report.job.apps.items()} == {
        "app_server": job / "app_server",
        "app_1": job / "app_1",
        "app_2": job / "app_2",
    }
    assert sorted(a.config.source.display for a in report.apps) == [
        "app_1/config_fed_client.conf",
        "app_2/config_fed_client.conf",
        "app_server/config_fed_server.conf",
    ]


@pytest.mark.parametrize(
    ("server_name", "client_name"),
    [
        pytest.param("config_fed_server.json", "config_fed_client.json", id="json"),
        pytest.param("config_fed_server.yaml", "config_fed_client.yml", id="yaml-and-yml"),
        pytest.param("config_fed_server.conf", "config_fed_client.yaml", id="hocon-and-yaml"),
        pytest.param("config_fed_server.json.default", "config_fed_client.yml.default", id="nvflare-default-suffix"),
    ],
)
def test_app_config_layout_in_any_format(tmp_path: Path, server_name: str, client_name: str) -> None:
    job = make_job(tmp_path / "job", server=None, client=None)
    for name, doc in ((server_name, SERVER), (client_name, CLIENT)):
        fmt = name.removesuffix(".default").rsplit(".", 1)[1]
        write(job / "app" / "config" / name, yaml_dump(doc) if fmt in ("yaml", "yml") else dump(doc))
    report = validate_job(job)
    assert [p.format() for p in report.problems] == []
    assert sorted(a.config.source.display for a in report.apps) == sorted(
        [f"app/config/{client_name}", f"app/config/{server_name}"]
    )
    server = next(a for a in report.apps if a.config.side == "server")
    assert server.config.data["workflows"][0]["args"]["num_rounds"] == 3


def test_json_wins_over_other_formats_like_nvflare(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job")
    write(job / "app/config/config_fed_server.yaml", "this is not: [valid\n")
    report = validate_job(job)
    assert report.valid
    assert sorted(a.config.source.display for a in report.apps) == [
        "app/config/config_fed_client.json",
        "app/config/config_fed_server.json",
    ]


@pytest.mark.parametrize("meta_name", ["meta.json", "meta.yaml", "meta.yml", "meta.conf"])
def test_meta_file_in_any_format(tmp_path: Path, meta_name: str) -> None:
    job = make_job(tmp_path / "job", meta=None)
    write(job / meta_name, yaml_dump(META) if meta_name.endswith(("yaml", "yml")) else dump(META))
    report = validate_job(job)
    assert [p.format() for p in report.problems] == []
    assert report.job.meta is not None
    assert report.job.meta.display == meta_name


def legacy_line(name: str, folder: str) -> str:
    """What a legacy single-app folder ``name`` (given as ``folder``) is refused with."""
    return (
        f"meta.json: $: meta.[json|conf|yml] not existing for job {name}, possible in legacy job format "
        f"(config/ at the top of the folder, no meta file) (upgrade the job structure: "
        f"'flruntime job convert {folder} -o {folder}_job' wraps it as app '{name}' of a job)"
    )


def test_legacy_single_app_folder_is_refused_as_nvflare_refuses_it(tmp_path: Path) -> None:
    job = tmp_path / "my_app"
    write(job / "config" / "config_fed_server.json", dump({**SERVER, "format_version": 1}))
    write(job / "config" / "config_fed_client.json", dump(CLIENT))
    write(job / "custom" / "parts.py", PARTS)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [legacy_line("my_app", str(job))]  # its files are not read
    assert report.problems[0].code == "legacy-job"
    assert (report.job.deploy_map, report.job.apps, report.valid) == ({}, {}, False)


def test_legacy_single_app_folder_given_as_dot_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "my_app"
    write(job / "config" / "config_fed_server.json", dump(SERVER))
    monkeypatch.chdir(job)
    assert report_lines(Path(".")) == [legacy_line("my_app", str(job))]


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param({"app/config/config_fed_server.json": dump(SERVER)}, id="app-folder-only"),
        pytest.param({}, id="empty-folder"),
        pytest.param({"info.md": "# nothing\n"}, id="unrelated-file"),
    ],
)
def test_missing_meta(tmp_path: Path, contents: dict[str, str]) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for rel, text in contents.items():
        write(job / rel, text)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == [
        "meta.json: $: no meta.json (or meta.conf / meta.yml) in the job folder "
        '(add meta.json with {"name": ..., "deploy_map": {"app": ["@ALL"]}, "min_clients": 1})'
    ]
    assert not report.valid


@pytest.mark.parametrize("text", ["", "null\n", "# only a comment\n"])
def test_empty_meta_file_is_invalid(tmp_path: Path, text: str) -> None:
    job = make_job(tmp_path / "job", meta=None)
    write(job / "meta.yaml", text)
    report = validate_job(job)
    assert [p.format() for p in report.problems] == ["meta.yaml:1: $: expected an object, got null"]
    assert not report.valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[]\n", "1: $: the config must be an object of keys", id="list"),
        pytest.param("", "1: $: the config must be an object of keys", id="empty"),
        pytest.param("just text\n", "1: $: the config must be an object of keys", id="scalar"),
    ],
)
def test_config_that_is_not_an_object(tmp_path: Path, text: str, expected: str) -> None:
    job = make_job(tmp_path / "job", server=None)
    write(job / "app/config/config_fed_server.yaml", text)
    assert report_lines(job) == [f"app/config/config_fed_server.yaml:{expected}"]
