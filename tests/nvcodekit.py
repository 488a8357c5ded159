"""Copies of NVFlare's example jobs (../shared/conformance/nvflare-code) with only their data loading changed.

Nothing may be downloaded here, so each copy replaces the line that loads a dataset with generated arrays of
the dataset's shapes and dtypes; every other line is NVFlare's. ``hello-pt`` also needs torchvision, which has
no CPU build for torch 2.13 on this project's package index (its 0.28.0 wheel is a CUDA build that cannot load
beside torch's CPU build): its copy drops the two ``torchvision`` imports and builds no transform, since the
generated tensors need none.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CODE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "nvflare-code"
HELLO_PT = CODE / "2.4.2" / "hello-pt" / "jobs" / "hello-pt"
HELLO_TF2 = CODE / "2.4.2" / "hello-tf2" / "jobs" / "hello-tf2"
HELLO_PT_252 = CODE / "2.5.2" / "hello-pt"
#: 2.5.2's hello-pt job folder as ``FedAvgJob(n_clients=2, num_rounds=2)`` with a ScriptRunner per site exports it
#: (configs and meta.json; see tests/test_nvflare_workflows.py)
HELLO_PT_252_JOB = Path(__file__).resolve().parent / "data" / "hello-pt_cifar10_fedavg"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: {old!r} is not there exactly once (did the example change?)"
    path.write_text(text.replace(old, new), encoding="utf-8")


def hello_pt(dest: Path, train: int = 64, test: int = 32) -> Path:
    """NVFlare 2.4.2's hello-pt job, CIFAR-10 replaced with ``train`` / ``test`` random 3x32x32 images."""
    shutil.copytree(HELLO_PT, dest)
    custom = dest / "app" / "custom"
    for name, old, n in (
        ("cifar10trainer.py", "CIFAR10(root=data_path, transform=transforms, download=True, train=True)", train),
        ("cifar10validator.py", "CIFAR10(root=data_path, train=False, transform=transforms)", test),
    ):
        path = custom / name
        generated = f"torch.utils.data.TensorDataset(torch.randn({n}, 3, 32, 32), torch.randint(0, 10, ({n},)))"
        _replace(path, old, generated)
        _replace(path, "from torchvision.datasets import CIFAR10\n", "")
        _replace(path, "from torchvision.transforms import Compose, Normalize, ToTensor\n", "")
        text = path.read_text(encoding="utf-8")
        text, count = re.subn(r"transforms = Compose\(\s*\[[^\]]*\]\s*\)", "transforms = None", text)
        assert count == 1, f"{path}: the transforms are not where they were"
        path.write_text(text, encoding="utf-8")
    return dest


def _generate_cifar10(script: Path, train: int) -> None:
    """Edit 2.5.2's ``hello-pt_cifar10_fl.py``: generated tensors instead of CIFAR-10, no torchvision."""
    text = script.read_text(encoding="utf-8")
    text, count = re.subn(
        r"CIFAR10\(\s*root=os\.path\.join\(DATASET_PATH, client_name\), transform=transforms, download=True, "
        r"train=True\s*\)",
        f"torch.utils.data.TensorDataset(torch.randn({train}, 3, 32, 32), torch.randint(0, 10, ({train},)))",
        text,
    )
    assert count == 1, f"{script}: the CIFAR10 call is not where it was"
    text, count = re.subn(r"transforms = Compose\(\s*\[[^\]]*\]\s*\)", "transforms = None", text)
    assert count == 1, f"{script}: the transforms are not where they were"
    script.write_text(text, encoding="utf-8")
    _replace(script, "from torchvision.datasets import CIFAR10\n", "")
    _replace(script, "from torchvision.transforms import Compose, Normalize, ToTensor\n", "")


def hello_pt_252(dest: Path, train: int = 64) -> Path:
    """2.5.2's exported hello-pt FedAvg job with the example's own ``src/`` in every app (CIFAR-10 generated)."""
    shutil.copytree(HELLO_PT_252_JOB, dest)
    for app in sorted(dest.glob("app_*")):
        src = app / "custom" / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(HELLO_PT_252 / "src", src)
        _generate_cifar10(src / "hello-pt_cifar10_fl.py", train)
    return dest


def hello_pt_252_example(dest: Path, train: int = 64) -> Path:
    """2.5.2's hello-pt example folder (``fedavg_script_runner_pt.py``, ``src/``), CIFAR-10 generated."""
    shutil.copytree(HELLO_PT_252, dest)
    _generate_cifar10(dest / "src" / "hello-pt_cifar10_fl.py", train)
    return dest


def hello_tf2(dest: Path, train: int = 600, test: int = 100) -> Path:
    """NVFlare 2.4.2's hello-tf2 job, ``mnist.load_data()`` replaced with generated arrays of MNIST's shapes."""
    shutil.copytree(HELLO_TF2, dest)
    data = (
        f"((np.random.default_rng(0).integers(0, 256, ({train}, 28, 28), dtype=np.uint8), "
        f"np.random.default_rng(1).integers(0, 10, ({train},), dtype=np.uint8)), "
        f"(np.random.default_rng(2).integers(0, 256, ({test}, 28, 28), dtype=np.uint8), "
        f"np.random.default_rng(3).integers(0, 10, ({test},), dtype=np.uint8)))"
    )
    _replace(dest / "app" / "custom" / "trainer.py", "tf.keras.datasets.mnist.load_data()", data)
    return dest
