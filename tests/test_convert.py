"""``flruntime job convert``: NVFlare class paths become flruntime's, comments stay, validation does not change."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from test_conformance import CORPUS, JOBS, _add_stand_ins, _require_corpus, _writable_copy

from flruntime.cli.main import main
from flruntime.config.source import load_file
from flruntime.convert import config_files, convert_job, plan
from flruntime.errors import UsageError
from flruntime.graph.aliases import NVFLARE_ALIASES, NVFLARE_REEXPORTS
from flruntime.validation import validate_job

_NOT_SUPPORTED = re.compile(r"NVFlare class '([^']+)' is not supported yet")


def _comments(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip().startswith(("#", "//"))]


@pytest.mark.parametrize("name", JOBS)
def test_corpus_job_converts_and_validates_the_same(name: str, tmp_path: Path) -> None:
    _require_corpus()
    job = _writable_copy(CORPUS / name, tmp_path / name)
    _add_stand_ins(job)
    expected = plan(job)
    report = convert_job(job, tmp_path / "out")
    assert report.same_validation, [p.format() for p in report.converted.problems] if report.converted else None
    assert report.original is not None
    left = sorted({m.group(1) for p in report.unsupported if (m := _NOT_SUPPORTED.match(p.message))})
    assert left == sorted({m.group(1) for p in report.original.problems if (m := _NOT_SUPPORTED.match(p.message))})
    assert len(report.rewrites) == sum(len(r) for r in expected.values())
    for original in config_files(job):
        converted = tmp_path / "out" / original.relative_to(job)
        assert _comments(converted) == _comments(original)
        source, _ = load_file(converted)
        assert source is not None
        text = converted.read_text()
        assert not [p for p in NVFLARE_ALIASES if f'"{p}"' in text], "an aliased NVFlare class path was left"
        old, _ = load_file(original)
        assert old is not None
        want = json.loads(json.dumps(old.data), object_hook=lambda d: d)
        for rewrite in expected.get(original, []):
            node = want
            for part in rewrite.path[:-1]:
                node = node[part]
            node[rewrite.path[-1]] = rewrite.new
        assert source.data == want  # nothing but the class paths changed
    for rewrite in report.rewrites:
        assert NVFLARE_ALIASES[NVFLARE_REEXPORTS.get(rewrite.old, rewrite.old)] == rewrite.new


def test_a_re_exported_nvflare_path_is_rewritten_too(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "app" / "config").mkdir(parents=True)
    (job / "meta.json").write_text(json.dumps({"name": "job", "deploy_map": {"app": ["@ALL"]}}))
    path = "nvflare.app_opt.pt.client_api_launcher_executor.ClientAPILauncherExecutor"
    client = {"format_version": 2, "executors": [{"tasks": ["train"], "executor": {"path": path, "args": {}}}]}
    (job / "app" / "config" / "config_fed_client.json").write_text(json.dumps(client, indent=2))
    [rewrite] = plan(job)[job / "app" / "config" / "config_fed_client.json"]
    assert (rewrite.old, rewrite.new) == (path, "flruntime.components.executors.launcher.ClientAPILauncherExecutor")


def test_sag_pt_rewrites_are_listed_with_file_and_line(tmp_path: Path) -> None:
    _require_corpus()
    report = convert_job(CORPUS / "sag_pt", tmp_path / "out")
    lines = [r.format() for r in report.rewrites]
    assert (
        "config_fed_client.conf:75: $.components[1].path: nvflare.fuel.utils.pipe.cell_pipe.CellPipe -> "
        "flruntime.pipes.cell.CellPipe"
    ) in lines
    assert (tmp_path / "out" / "info.md").is_file()  # everything else is copied as it is
    assert (tmp_path / "out" / "config_fed_client.conf").stat().st_mode & 0o200  # writable from a read-only corpus


YAML_CLIENT = textwrap.dedent(
    """\
    # a client config in YAML
    format_version: 2
    executors:
      - tasks: [train, submit_model]
        executor:
          path: nvflare.app_common.np.np_trainer.NPTrainer   # NVFlare's numpy trainer
          args: {delta: 2}
      - tasks: [validate]
        executor: {name: NPValidator}
    components:
      - id: unknown
        path: nvflare.app_common.widgets.streaming.AnalyticsReceiver
    """
)


def test_yaml_job_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job"
    (job / "app" / "config").mkdir(parents=True)
    (job / "meta.json").write_text(json.dumps({"name": "y", "min_clients": 1, "deploy_map": {"app": ["@ALL"]}}))
    server = {
        "format_version": 2,
        "workflows": [{"id": "sag", "name": "ScatterAndGather", "args": {"persistor_id": "persistor"}}],
        "components": [
            {"id": "persistor", "path": "nvflare.app_common.np.np_model_persistor.NPModelPersistor"},
            {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
            {"id": "aggregator", "name": "InTimeAccumulateWeightedAggregator"},
        ],
    }
    (job / "app" / "config" / "config_fed_server.json").write_text(json.dumps(server, indent=2))
    (job / "app" / "config" / "config_fed_client.yml").write_text(YAML_CLIENT)
    out = tmp_path / "out"
    assert main(["job", "convert", str(job), "-o", str(out)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"rewrote 2 NVFlare class path(s) in 2 file(s) of {out}"
    assert printed[1:3] == [
        "  app/config/config_fed_server.json:15: $.components[0].path: "
        "nvflare.app_common.np.np_model_persistor.NPModelPersistor -> "
        "flruntime.components.persistors.np_file.NPModelPersistor",
        "  app/config/config_fed_client.yml:6: $.executors[0].executor.path: "
        "nvflare.app_common.np.np_trainer.NPTrainer -> flruntime.components.executors.np_trainer.NPTrainer",
    ]
    assert printed[3] == "not supported yet, left as they are (1):"
    assert "NVFlare class 'nvflare.app_common.widgets.streaming.AnalyticsReceiver' is not supported yet" in printed[4]
    assert printed[-1] == f"{out}: not valid; it has the same problems as {job}"
    text = (out / "app" / "config" / "config_fed_client.yml").read_text()
    assert text == YAML_CLIENT.replace(
        "nvflare.app_common.np.np_trainer.NPTrainer", '"flruntime.components.executors.np_trainer.NPTrainer"'
    )
    assert main(["job", "convert", str(job), "-o", str(out)]) == 2
    assert "already exists (use --force to replace it)" in capsys.readouterr().err
    (job / "app" / "config" / "config_fed_client.yml").write_text(YAML_CLIENT.split("components:")[0])
    assert main(["job", "convert", str(job), "-o", str(out), "--force"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{out}: valid; it has the same problems as {job}"
    assert validate_job(out).errors == []


def test_output_inside_the_job_is_refused(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    with pytest.raises(UsageError, match="must not be inside the job folder"):
        convert_job(tmp_path / "job", tmp_path / "job" / "out")
    with pytest.raises(UsageError, match="is not a job folder"):
        convert_job(tmp_path / "nope", tmp_path / "out")


NP_SERVER = {
    "format_version": 2,
    "workflows": [
        {
            "id": "sag",
            "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
            "args": {"min_clients": 1, "num_rounds": 1, "persistor_id": "persistor"},
        }
    ],
    "components": [
        {"id": "persistor", "path": "nvflare.app_common.np.np_model_persistor.NPModelPersistor"},
        {"id": "shareable_generator", "name": "FullModelShareableGenerator"},
        {"id": "aggregator", "name": "InTimeAccumulateWeightedAggregator", "args": {"expected_data_kind": "WEIGHTS"}},
    ],
}
NP_CLIENT = {
    "format_version": 2,
    "executors": [{"tasks": ["train"], "executor": {"path": "nvflare.app_common.np.np_trainer.NPTrainer"}}],
}


def test_a_legacy_app_is_wrapped_into_a_job_as_nvflare_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "np_app"  # NVFlare's legacy job format: config/ at the top, no meta file
    (app / "config").mkdir(parents=True)
    (app / "config" / "config_fed_server.json").write_text(json.dumps(NP_SERVER, indent=2))
    (app / "config" / "config_fed_client.json").write_text(json.dumps(NP_CLIENT, indent=2))
    assert [p.code for p in validate_job(app).problems] == ["legacy-job"]
    out = tmp_path / "np_job"
    assert main(["job", "convert", str(app), "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrapped the legacy app {app} as app 'np_app' of the job {out} (meta.json: deploy_map {{np_app: [@ALL]}}, "
        "min_clients 1)",
        f"rewrote 3 NVFlare class path(s) in 2 file(s) of {out}",
        "  np_app/config/config_fed_server.json:6: $.workflows[0].path: "
        "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather -> "
        "flruntime.components.workflows.scatter_and_gather.ScatterAndGather",
        "  np_app/config/config_fed_server.json:17: $.components[0].path: "
        "nvflare.app_common.np.np_model_persistor.NPModelPersistor -> "
        "flruntime.components.persistors.np_file.NPModelPersistor",
        "  np_app/config/config_fed_client.json:9: $.executors[0].executor.path: "
        "nvflare.app_common.np.np_trainer.NPTrainer -> flruntime.components.executors.np_trainer.NPTrainer",
        f"{out}: valid; it has the same problems as {app}",
    ]
    assert json.loads((out / "meta.json").read_text()) == {
        "name": "np_app",
        "resource_spec": {},
        "deploy_map": {"np_app": ["@ALL"]},
        "min_clients": 1,
    }
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "meta.json",
        "np_app/config/config_fed_client.json",
        "np_app/config/config_fed_server.json",
    ]
    assert (app / "config" / "config_fed_server.json").read_text() == json.dumps(NP_SERVER, indent=2)  # unchanged
    assert main(["simulate", str(out), "-n", "1", "-w", str(tmp_path / "ws"), "-q"]) == 0
    assert capsys.readouterr().out == f"np_app: FINISHED:COMPLETED; results in {tmp_path / 'ws'}/results.json\n"
