"""Scripts written for NVFlare (``import nvflare.client as flare``) run without NVFlare, in process and launched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import (
    NUMPY_SCRIPT,
    NVF_FILE_PIPE,
    NVF_INPROC,
    NVF_LAUNCHER_EXEC,
    NVF_SUBPROCESS,
    assert_model,
    client_job,
    expected_model,
    final_model,
)
from flruntime.components.launchers.subprocess import SubprocessLauncher

from flruntime import compat
from flruntime.compat import SHIM_DIR, install_shim, needs_shim, nvflare_installed, pythonpath_with_shim
from flruntime.runtime.simulator import simulate

#: The Client API test script, written against NVFlare's module names (plus a tracking writer).
NVFLARE_SCRIPT = NUMPY_SCRIPT.replace(
    "import flruntime.client as flare\n",
    "import nvflare.client as flare\nfrom nvflare.client.tracking import MLflowWriter, SummaryWriter\n",
).replace(
    "        flare.send(",
    "        SummaryWriter().add_scalar('k', float(k), rnd)\n"
    "        MLflowWriter().log_metric('k', float(k), rnd)\n"
    "        flare.send(",
)


def _forget_nvflare() -> None:
    for name in [n for n in sys.modules if n == "nvflare" or n.startswith("nvflare.")]:
        del sys.modules[name]


@pytest.fixture
def clean_path() -> Iterator[None]:
    """Leave ``sys.path`` and ``sys.modules`` as they were (the shim stays out of other tests)."""
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p != str(SHIM_DIR)]  # earlier tests' in-process scripts may have added it
    _forget_nvflare()
    yield
    sys.path[:] = saved
    _forget_nvflare()


@pytest.fixture
def fake_nvflare(tmp_path: Path, clean_path: None) -> Path:
    """A folder holding a stand-in for a real NVFlare installation, first on ``sys.path``."""
    root = tmp_path / "site-packages"
    (root / "nvflare" / "client").mkdir(parents=True)
    (root / "nvflare" / "__init__.py").write_text("REAL = True\n")
    (root / "nvflare" / "client" / "__init__.py").write_text("REAL_CLIENT = True\n")
    sys.path.insert(0, str(root))
    return root


def test_nvflare_is_not_installed_here() -> None:
    assert not nvflare_installed(), "these tests assume NVFlare is not installed in the test environment"
    assert needs_shim()


def test_the_shim_is_appended_once_and_re_exports_the_client_api(clean_path: None) -> None:
    assert install_shim() and install_shim()
    assert sys.path.count(str(SHIM_DIR)) == 1 and sys.path[-1] == str(SHIM_DIR)
    import nvflare.client as flare
    from nvflare.client.tracking import MLflowWriter, SummaryWriter, WandBWriter

    import flruntime.client
    import flruntime.client.tracking

    assert flare.__all__ == flruntime.client.__all__
    assert all(getattr(flare, name) is getattr(flruntime.client, name) for name in flare.__all__)
    assert (SummaryWriter, MLflowWriter, WandBWriter) == (
        flruntime.client.tracking.SummaryWriter,
        flruntime.client.tracking.MLflowWriter,
        flruntime.client.tracking.WandBWriter,
    )
    assert not nvflare_installed()  # the shim is not taken for NVFlare


def test_a_real_nvflare_wins(fake_nvflare: Path) -> None:
    assert nvflare_installed() and not needs_shim()
    assert not install_shim()
    assert str(SHIM_DIR) not in sys.path
    assert pythonpath_with_shim("a:b") == "a:b"
    import nvflare.client

    assert getattr(nvflare.client, "REAL_CLIENT", False)


def test_launcher_environment_appends_the_shim_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "custom").mkdir()
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    env = SubprocessLauncher("python3 train.py").environment(tmp_path, None)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "custom"), "/opt/site", str(SHIM_DIR)]
    monkeypatch.setattr(compat, "needs_shim", lambda: False)
    env = SubprocessLauncher("python3 train.py").environment(tmp_path, None)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "custom"), "/opt/site"]


def test_an_installed_nvflare_earlier_on_the_child_path_wins(tmp_path: Path) -> None:
    """The shim is only a fallback for the child too: a real NVFlare earlier on PYTHONPATH is the one imported."""
    real = tmp_path / "real"
    (real / "nvflare" / "client").mkdir(parents=True)
    (real / "nvflare" / "__init__.py").write_text("")
    (real / "nvflare" / "client" / "__init__.py").write_text("WHO = 'real'\n")
    code = "import nvflare.client as c; print(getattr(c, 'WHO', 'shim'))"
    for path, who in ((f"{real}{os.pathsep}{SHIM_DIR}", "real"), (str(SHIM_DIR), "shim")):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
        )
        assert out.stdout.strip() == who, out.stderr


def test_in_process_script_written_for_nvflare(tmp_path: Path, clean_path: None) -> None:
    executor = {"path": NVF_INPROC, "args": {"task_script_path": "train.py", "params_transfer_type": "DIFF"}}
    job = client_job(tmp_path / "job", executor, scripts={"train.py": NVFLARE_SCRIPT})
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))
    assert str(SHIM_DIR) in sys.path


@pytest.mark.slow
def test_launched_script_written_for_nvflare(tmp_path: Path) -> None:
    pipe = {"id": "pipe", "path": NVF_FILE_PIPE, "args": {"mode": "PASSIVE", "root_path": "{WORKSPACE}/pipe"}}
    launcher = {"id": "launcher", "path": NVF_SUBPROCESS, "args": {"script": "python3 -u custom/train.py"}}
    executor = {
        "path": NVF_LAUNCHER_EXEC,
        "args": {"pipe_id": "pipe", "launcher_id": "launcher", "params_transfer_type": "DIFF"},
    }
    job = client_job(tmp_path / "job", executor, components=[pipe, launcher], scripts={"train.py": NVFLARE_SCRIPT})
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert result.ok, result.error
    assert_model(final_model(tmp_path / "ws"), expected_model([[1, 2], [1, 2]]))


def test_shim_is_shipped_with_the_package() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    data = cfg["options.package_data"]["flruntime.compat"].strip()
    assert data == "shim/**/*.py"
    shipped = sorted(p.relative_to(SHIM_DIR).as_posix() for p in SHIM_DIR.glob("**/*.py"))
    wanted = {
        "nvflare/__init__.py",
        "nvflare/client/__init__.py",
        "nvflare/client/tracking.py",
        "nvflare/apis/executor.py",
        "nvflare/apis/dxo.py",
        "nvflare/app_common/abstract/model_persistor.py",
        "nvflare/fuel/utils/fobs/__init__.py",
    }
    assert wanted <= set(shipped), wanted - set(shipped)
    assert all(p.startswith("nvflare/") for p in shipped)
    assert textwrap.dedent(cfg["options"]["packages"]).count("flruntime.compat\n") == 1
