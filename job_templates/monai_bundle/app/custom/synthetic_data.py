"""Synthetic 3D segmentation data for the monai_bundle template: NIfTI volumes, masks and a datalist per site.

Each site gets its own volumes in its own folder (``<data_root>/<site>/``), drawn with
``monai.data.synthetic.create_test_image_3d`` from a seed derived from the job's ``seed`` and the site's
name, so every run generates the same data. The folder holds ``imagesTr/``, ``labelsTr/`` and
``dataset.json`` (MONAI's Decathlon datalist format, with ``training`` and ``validation`` lists), which is
what the bundle's ``datalist`` reads. A folder whose ``dataset.json`` was not written here (real data) is
never touched.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data.synthetic import create_test_image_3d

log = logging.getLogger(__name__)

DATALIST = "dataset.json"
#: The datalist key that records how the data was generated.
MARK = "synthetic"


def site_seed(seed: int, site: str) -> int:
    """Return a seed for ``site`` that is the same in every process (unlike ``hash``)."""
    return (int(seed) + zlib.crc32(site.encode("utf-8"))) % 2**32


def _save(array: np.ndarray, path: Path, dtype: type) -> None:
    nib.save(nib.Nifti1Image(array.astype(dtype), np.eye(4)), str(path))


def write_dataset(
    dataset_dir: str | Path, *, num_train: int = 8, num_val: int = 4, size: int = 32, seed: int = 0
) -> Path:
    """Write ``num_train + num_val`` volumes and masks of ``size``³ voxels and their datalist.

    Nothing is written when the folder already holds data generated with the same arguments; data
    generated with other arguments is replaced; a ``dataset.json`` written by anything else is left alone.

    Args:
        dataset_dir: the folder to fill.
        num_train: volumes in the datalist's ``training`` list.
        num_val: volumes in its ``validation`` list.
        size: the edge length of each volume (at least 16; a multiple of 4 suits the bundle's UNet).
        seed: the random seed.

    Returns:
        The path of the datalist.

    Raises:
        ValueError: on a size below 16 or no training volume.
    """
    if size < 16 or num_train < 1 or num_val < 0:
        raise ValueError(f"need size >= 16, num_train >= 1, num_val >= 0; got {size}, {num_train}, {num_val}")
    root = Path(dataset_dir)
    datalist = root / DATALIST
    params = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed}
    if datalist.is_file():
        existing = json.loads(datalist.read_text(encoding="utf-8"))
        if MARK not in existing:
            log.info("%s holds data not generated here; using it as it is", root)
            return datalist
        if existing[MARK] == params:
            return datalist
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(seed)
    items: list[dict[str, str]] = []
    for i in range(num_train + num_val):
        image, label = create_test_image_3d(
            size, size, size, num_objs=5, rad_max=size // 5, rad_min=2, noise_max=0.6, num_seg_classes=1,
            random_state=rs,
        )  # fmt: skip
        name = f"case_{i:03d}.nii.gz"
        _save(image, root / "imagesTr" / name, np.float32)
        _save(label, root / "labelsTr" / name, np.uint8)
        items.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
    content: dict[str, Any] = {
        "name": "synthetic",
        "training": items[:num_train],
        "validation": items[num_train:],
        MARK: params,
    }
    tmp = datalist.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, datalist)
    log.info("wrote %d synthetic volumes of %d³ voxels to %s", len(items), size, root)
    return datalist


class SyntheticSegmentationData:
    """A client component that generates the site's data at the start of the run (before the bundle loads it).

    Args:
        dataset_dir: the site's data folder (``{data_root}/{SITE_NAME}`` in the template).
        num_train: training volumes per site.
        num_val: validation volumes per site.
        size: the edge length of each volume.
        seed: the job's seed; each site draws from ``seed`` combined with its name.
    """

    def __init__(self, dataset_dir: str, num_train: int = 8, num_val: int = 4, size: int = 32, seed: int = 0) -> None:
        self.dataset_dir = dataset_dir
        self.num_train = num_train
        self.num_val = num_val
        self.size = size
        self.seed = seed

    def setup(self, ctx: Any) -> None:
        """Write the site's data unless it is there already."""
        write_dataset(
            self.dataset_dir,
            num_train=self.num_train,
            num_val=self.num_val,
            size=self.size,
            seed=site_seed(self.seed, ctx.site),
        )
