import configparser
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {
    "flruntime.components": "components",
    "flruntime.schemas": "schemas",
    "flruntime.job_templates": "job_templates",
}


def _declared_packages() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def _package_folders() -> set[str]:
    found = set()
    for init in ROOT.glob("flruntime/**/__init__.py"):
        if init.is_relative_to(ROOT / "flruntime" / "compat" / "shim"):
            continue  # the nvflare import shim is package data (a sys.path folder), not flruntime packages
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for name, folder in MAPPED.items():
        for init in (ROOT / folder).glob("**/__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            if folder == "job_templates" and rel:
                continue  # template folders are data, not packages
            found.add(".".join((name, *rel)))
    return found


def test_setup_cfg_lists_every_package():
    assert _declared_packages() == _package_folders()


def test_schemas_are_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    for path in (ROOT / "schemas").glob("*.schema.json"):
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        Draft202012Validator.check_schema(schema)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_install_installs_every_extra_the_readme_names():
    import re

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = set(cfg["options.extras_require"])
    (extras,) = re.findall(r"\(PIP\) install .*-e '\.\[([a-z,]+)\]'", (ROOT / "Makefile").read_text())
    assert set(extras.split(",")) == declared  # make test / CI install them all, tf included
    assert f"pip install -e '.[{extras}]'" in (ROOT / "README.md").read_text()


def test_tf_extra_is_the_cpu_build():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [r.strip() for r in cfg["options.extras_require"]["tf"].strip().splitlines()]
    assert reqs == [
        'tensorflow-cpu>=2.16,<3; platform_system == "Linux" and platform_machine == "x86_64"',
        'tensorflow>=2.16,<3; platform_system != "Linux" or platform_machine != "x86_64"',
    ]
