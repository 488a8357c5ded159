"""Editing scalar values in config text: only the value changes, comments and layout stay."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flruntime.config.edit import EditError, set_scalars
from flruntime.config.source import load_file

HOCON = textwrap.dedent(
    """\
    {
      # the number of rounds
      num_rounds = 5   # trailing comment
      app_script = cifar10.py
      components = [
        {
          id = "persistor"
          path = "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"
          args.model.path = "{model_class_path}"
        }
        {
          "id": "receiver",
          "path": "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver",
          "args": {"tracking_uri": "http://0.0.0.0:5000", "events": ["fed.analytix_log_stats", "x"]}
        }
      ]
    }
    """
)

JSON = textwrap.dedent(
    """\
    {
      "format_version": 2,
      "num_rounds": 5,
      "components": [{"id": "a", "path": "x.Y", "args": {"flag": true, "names": ["p", "q"]}}]
    }
    """
)

YAML = textwrap.dedent(
    """\
    # a YAML config
    format_version: 2
    num_rounds: 5  # rounds
    components:
      - id: a
        path: nvflare.app_common.np.np_model_persistor.NPModelPersistor   # unquoted
        args: {model_dir: 'models', names: [p, q]}
    """
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _data(path: Path) -> object:
    source, problems = load_file(path)
    assert problems == [] and source is not None
    return source.data


def test_hocon_values_change_and_everything_else_stays(tmp_path: Path) -> None:
    path = _write(tmp_path, "config_fed_server.conf", HOCON)
    set_scalars(
        path,
        {
            ("num_rounds",): 2,
            ("app_script",): "train.py",
            ("components", 0, "path"): "flruntime.components.persistors.pt_file.PTFileModelPersistor",
            ("components", 0, "args", "model", "path"): "net.Net",
            ("components", 1, "args", "tracking_uri"): "http://127.0.0.1:5001",
            ("components", 1, "args", "events", 1): "y",
        },
    )
    expected = (
        HOCON.replace("num_rounds = 5", "num_rounds = 2")
        .replace("app_script = cifar10.py", 'app_script = "train.py"')
        .replace(
            '"nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor"',
            '"flruntime.components.persistors.pt_file.PTFileModelPersistor"',
        )
        .replace('"{model_class_path}"', '"net.Net"')
        .replace("http://0.0.0.0:5000", "http://127.0.0.1:5001")
        .replace('"x"]', '"y"]')
    )
    assert path.read_text() == expected


def test_json_and_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "config_fed_server.json", JSON)
    set_scalars(path, {("num_rounds",): 3, ("components", 0, "args", "flag"): False, ("components", 0, "path"): "a.B"})
    assert path.read_text() == JSON.replace('"num_rounds": 5', '"num_rounds": 3').replace("true", "false").replace(
        "x.Y", "a.B"
    )
    path = _write(tmp_path, "config_fed_server.yaml", YAML)
    set_scalars(
        path,
        {
            ("num_rounds",): 2,
            ("components", 0, "path"): "flruntime.components.persistors.np_file.NPModelPersistor",
            ("components", 0, "args", "model_dir"): "m",
            ("components", 0, "args", "names", 1): "r",
        },
    )
    assert path.read_text() == (
        YAML.replace("num_rounds: 5", "num_rounds: 2")
        .replace(
            "nvflare.app_common.np.np_model_persistor.NPModelPersistor",
            '"flruntime.components.persistors.np_file.NPModelPersistor"',
        )
        .replace("'models'", '"m"')
        .replace("[p, q]", '[p, "r"]')
    )
    assert _data(path) == {
        "format_version": 2,
        "num_rounds": 2,
        "components": [
            {
                "id": "a",
                "path": "flruntime.components.persistors.np_file.NPModelPersistor",
                "args": {"model_dir": "m", "names": ["p", "r"]},
            }
        ],
    }


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({("nope",): 1}, "$.nope: no such value", id="missing"),
        pytest.param({("components",): 1}, "$.components: not a scalar", id="not-scalar"),
        pytest.param({("components", 7, "id"): 1}, "$.components[7].id: no such value", id="bad-index"),
    ],
)
def test_errors_leave_the_file_unchanged(tmp_path: Path, change: dict, error: str) -> None:
    path = _write(tmp_path, "config_fed_server.json", JSON)
    with pytest.raises(EditError) as info:
        set_scalars(path, change, "app/config/config_fed_server.json")
    assert str(info.value) == f"app/config/config_fed_server.json: {error}"
    assert path.read_text() == JSON


def test_a_file_that_does_not_load_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "config_fed_server.json", '{"a": ')
    with pytest.raises(EditError, match="cannot edit a file that does not load"):
        set_scalars(path, {("a",): 1})
