import json
import re
from pathlib import Path

import pytest

import flruntime
from flruntime.cli.main import main
from flruntime.errors import UsageError
from flruntime.templates import builtin_template_dir, create_job, job_variables, list_templates

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "nvflare"
BUILTIN = list_templates()


def test_there_are_builtin_templates():
    assert [t.name for t in BUILTIN] == sorted(t.name for t in BUILTIN)
    assert "custom_components" in [t.name for t in BUILTIN]


@pytest.mark.parametrize("template", BUILTIN, ids=lambda t: t.name)
def test_every_template_validates_as_shipped_and_as_created(template, tmp_path):
    if template.base is None:  # a variant folder holds only its card; it becomes a job when created
        report = flruntime.validate_job(template.path)
        assert [p.format() for p in report.problems] == []
    job = create_job(template.name, tmp_path / "job")
    assert [p.format() for p in flruntime.validate_job(job).problems] == []
    assert not (job / "template.json").exists() and not (job / "info.md").exists()


@pytest.mark.parametrize("template", BUILTIN, ids=lambda t: t.name)
def test_every_template_documents_its_variables(template, tmp_path):
    card = json.loads((template.path / "template.json").read_text())
    assert card["description"]
    rows = {r.name for r in job_variables(create_job(template.name, tmp_path / "job"))}
    assert set(card["variables"]) <= rows, "template.json names variables the job does not define"
    assert (template.path / "info.md").read_text().strip()


def test_create_applies_overrides_with_their_type(tmp_path):
    job = create_job("custom_components", tmp_path / "j", overrides={"num_rounds": 10, "lr": 0.5})
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    assert server["num_rounds"] == 10 and client["lr"] == 0.5
    graph = flruntime.build_job_site(job, "server")
    assert graph.workflows[0][1].num_rounds == 10


def test_create_sets_a_variable_in_every_file_that_defines_it(tmp_path):
    job = create_job("monai_bundle", tmp_path / "j", overrides={"bundle_root": "config/b", "min_clients": 3})
    configs = [job / "app/config/config_fed_server.json", job / "app/config/config_fed_client.json"]
    assert [json.loads(p.read_text())["bundle_root"] for p in configs] == ["config/b", "config/b"]
    assert (
        json.loads(configs[0].read_text())["min_clients"]
        == json.loads((job / "meta.json").read_text())["min_clients"]
        == 3
    )


def test_create_refuses_unknown_variable_and_leaves_nothing(tmp_path):
    with pytest.raises(
        UsageError, match=r"'num_round' is not a variable of this template \(did you mean 'num_rounds'\?\)"
    ):
        create_job("custom_components", tmp_path / "j", overrides={"num_round": 3})
    assert not (tmp_path / "j").exists()


def test_create_refuses_unknown_template_and_existing_folder(tmp_path):
    with pytest.raises(UsageError, match=r"no job template 'custom_component' \(did you mean 'custom_components'\?\)"):
        create_job("custom_component", tmp_path / "j")
    (tmp_path / "j").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        create_job("custom_components", tmp_path / "j")
    assert create_job("custom_components", tmp_path / "j", force=True).joinpath("meta.json").is_file()


def test_nvflare_flat_template_becomes_app_config(tmp_path):
    assert CORPUS.is_dir(), f"conformance corpus missing at {CORPUS}"
    names = [t.name for t in list_templates(CORPUS)]
    assert "sag_pt" in names and "spleen_ct_segmentation_local" not in names
    job = create_job("sag_pt", tmp_path / "sag", template_dir=CORPUS, overrides={"app_script": "train.py"})
    assert (job / "meta.conf").is_file()
    assert (job / "app/config/config_fed_server.conf").is_file()
    client = json.loads((job / "app/config/config_fed_client.json").read_text())  # rewritten by the override
    assert client["app_script"] == "train.py"
    assert not (job / "app/config/config_fed_client.conf").exists()
    report = flruntime.validate_job(job)
    assert {p.code for p in report.errors} <= {"unsupported", "not-allowed"}


def test_cli_job_commands(tmp_path, capsys):
    assert main(["job", "templates"]) == 0
    assert "custom_components" in capsys.readouterr().out
    assert main(["job", "create", "-t", "custom_components", "-w", str(tmp_path / "j"), "-o", "num_rounds=7"]) == 0
    out = capsys.readouterr().out
    assert "created job folder" in out
    line = next(x for x in out.splitlines() if x.startswith("num_rounds"))
    assert line.split()[:3] == ["num_rounds", "7", "app/config/config_fed_server.json"]
    assert "$.workflows[0].args.num_rounds" in line
    assert main(["job", "show-variables", str(tmp_path / "j")]) == 0
    assert main(["job", "create", "-t", "nope", "-w", str(tmp_path / "k")]) == 2
    assert "no job template 'nope'" in capsys.readouterr().err


def test_builtin_template_dir_is_package_data():
    assert builtin_template_dir().joinpath("custom_components", "template.json").is_file()


def test_validating_leaves_no_bytecode_in_the_job(tmp_path):
    job = create_job("custom_components", tmp_path / "j")
    flruntime.build_job_site(job, "server")
    assert not list(job.rglob("__pycache__"))


def test_custom_components_template_runs_to_the_clients_mean_target(tmp_path):
    import numpy as np

    from flruntime.runtime.simulator import simulate

    job = create_job("custom_components", tmp_path / "j", overrides={"num_rounds": 30, "lr": 0.5})
    result = simulate(job, n_clients=3, workspace=tmp_path / "ws", progress=None)
    assert result.ok
    np.testing.assert_allclose(np.load(tmp_path / "ws" / "server" / "model.npy"), 2.0, rtol=1e-5)


def test_create_names_the_job_after_its_folder_like_nvflare(tmp_path):
    assert CORPUS.is_dir(), f"conformance corpus missing at {CORPUS}"
    job = create_job("sag_cross_np", tmp_path / "my_np_job", template_dir=CORPUS)
    text = (job / "meta.conf").read_text()
    assert 'name = "my_np_job"' in text and "# change deploy map as needed." in text  # edited in place
    assert flruntime.validate_job(job).errors == []
    variant = create_job("fedavg_pt_tensorboard", tmp_path / "tb")
    assert json.loads((variant / "meta.json").read_text())["name"] == "tb"


def test_cli_templates_shows_nvflare_info_columns(capsys):
    assert main(["job", "templates", "-d", str(CORPUS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("  ")[0].strip() == "NAME" and lines[0].endswith("CONTROLLER TYPE  EXECUTION API TYPE")
    row = next(line for line in lines if line.startswith("sag_cross_np "))
    assert re.split(r"\s{2,}", row) == [
        "sag_cross_np",
        "FedAvg and cross-site validation using numpy",
        "server",
        "client executor",
    ]
    assert main(["job", "templates"]) == 0
    assert "CONTROLLER TYPE" not in capsys.readouterr().out  # flruntime's own templates have no such columns
