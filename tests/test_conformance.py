"""NVFlare conformance: every corpus job loads, and only not-yet-supported classes keep it from validating.

The corpus lives beside the checkout, in ``../shared/conformance/nvflare/`` (one job folder each, in NVFlare's job or
flat template layout). The jobs name model and executor classes that NVFlare examples ship in their own ``custom/``
folder; the test supplies small stand-ins for them. ``UNSUPPORTED`` records, per job, the NVFlare classes flruntime
does not support yet: it shrinks as components land — update it from the assertion message.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from flruntime import validate_job
from flruntime.config.job import discover
from flruntime.config.source import CONFIG_EXTENSIONS, load_file

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "nvflare"
MISSING = "<conformance corpus missing>"
JOBS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else [MISSING]

#: Stand-ins for the classes NVFlare's examples keep in ``custom/``, by module name and the text naming them.
STAND_INS = {
    "net": (
        "net.Net",
        '''
        """Stand-in for the CIFAR-10 network of NVFlare's PyTorch examples."""


        class Net:
            def __init__(self) -> None:
                self.layers: list[str] = []
        ''',
    ),
    "executor": (
        "executor.CIFAR10Executor",
        '''
        """Stand-in for the CIFAR-10 executor of NVFlare's sag_pt_executor example."""

        from typing import Any

        from flruntime.roles import Executor


        class CIFAR10Executor(Executor):
            def __init__(self, epochs: int = 1, lr: float = 0.01) -> None:
                self.epochs = epochs
                self.lr = lr

            def execute(self, task: str, data: Any, ctx: Any) -> Any:
                return data
        ''',
    ),
}

_UNSUPPORTED = re.compile(r"^NVFlare class '([^']+)' is not supported yet$")

#: NVFlare classes each corpus job uses that flruntime does not support yet (sorted, each once).
UNSUPPORTED: dict[str, list[str]] = {
    "sag_cross_np": [],
    "sag_cse_pt": [],
    "sag_np": [],
    "sag_np_cell_pipe": [],
    "sag_np_metrics": [],
    "sag_pt": [],
    "sag_pt_deploy_map": [],
    "sag_pt_executor": [],
    "sag_pt_he": [],
    "sag_pt_in_proc": [],
    "sag_pt_mlflow": [],
    "spleen_ct_segmentation_he": [],
    "spleen_ct_segmentation_local": [],
    "spleen_ct_segmentation_sim": [],
}


def _require_corpus() -> None:
    assert CORPUS.is_dir(), (
        f"the NVFlare conformance corpus is missing: expected job folders in {CORPUS} "
        "(a sibling 'shared/' of the checkout; see the README's test section)"
    )


def _writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for folder, _dirs, files in os.walk(dst):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return dst


def _config_files(job: Path) -> list[Path]:
    return sorted(p for p in job.rglob("*") if p.is_file() and p.suffix in CONFIG_EXTENSIONS)


def _add_stand_ins(job: Path) -> None:
    """Write stand-ins into the ``custom/`` folder of each app whose configs name them."""
    folder, _ = discover(job)
    for app in folder.apps.values():
        text = "".join(p.read_text(encoding="utf-8") for p in _config_files(app.config_dir))
        for module, (class_path, source) in STAND_INS.items():
            if class_path in text:
                custom = app.root / "custom"
                custom.mkdir(exist_ok=True)
                (custom / f"{module}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")


@pytest.fixture(params=JOBS)
def corpus_job(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A writable copy of one corpus job, with stand-ins for the classes its custom/ folder would hold."""
    _require_corpus()
    name = str(request.param)
    job = _writable_copy(CORPUS / name, tmp_path / name)
    _add_stand_ins(job)
    return name, job


def test_corpus_is_present_and_listed() -> None:
    _require_corpus()
    assert JOBS, f"no job folders in {CORPUS}"
    assert sorted(UNSUPPORTED) == JOBS, "UNSUPPORTED must have one entry per corpus job; corpus jobs: " + ", ".join(
        JOBS
    )


@pytest.mark.parametrize("name", JOBS)
def test_every_corpus_file_loads_cleanly(name: str) -> None:
    _require_corpus()
    files = _config_files(CORPUS / name)
    assert files, f"no config files in {CORPUS / name}"
    for path in files:
        source, problems = load_file(path, str(path.relative_to(CORPUS)))
        assert [p.format() for p in problems] == []
        assert source is not None and isinstance(source.data, dict), path


def test_corpus_job_validates_but_for_unsupported_classes(corpus_job: tuple[str, Path]) -> None:
    name, job = corpus_job
    report = validate_job(job)
    assert report.apps, f"{name}: no app config was checked"
    assert [p.format() for p in report.problems if p.code in ("syntax", "duplicate-key")] == []
    unexpected = [p.format() for p in report.problems if p.code != "unsupported"]
    assert unexpected == [], f"{name}: problems other than unsupported NVFlare classes"
    unsupported = sorted(
        {m.group(1) for p in report.problems if p.code == "unsupported" and (m := _UNSUPPORTED.match(p.message))}
    )
    assert len(unsupported) == len({p.message for p in report.problems if p.code == "unsupported"})
    assert unsupported == UNSUPPORTED.get(name), (
        f"the unsupported NVFlare classes of {name!r} changed; update UNSUPPORTED[{name!r}] to:\n"
        + "    "
        + repr(unsupported)
    )
