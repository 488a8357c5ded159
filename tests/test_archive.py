"""Job folders as zip archives: caches left out, paths that escape the target refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from flruntime.errors import UsageError
from flruntime.federation.archive import unzip_to, zip_folder


def test_a_folder_round_trips_without_caches(tmp_path: Path):
    src = tmp_path / "job"
    (src / "app" / "custom" / "__pycache__").mkdir(parents=True)
    (src / "meta.json").write_text("{}")
    (src / "app" / "custom" / "train.py").write_text("print(1)")
    (src / "app" / "custom" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"x")
    out = unzip_to(zip_folder(src), tmp_path / "out")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "app/custom/train.py",
        "meta.json",
    ]


def _zip(name: str, data: bytes = b"x", link: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_zip("../evil.py"), "upload: entry '../evil.py' points outside the job folder; refused"),
        (_zip("/etc/evil"), "upload: entry '/etc/evil' points outside the job folder; refused"),
        (_zip("app/../../evil"), "upload: entry 'app/../../evil' points outside the job folder; refused"),
        (_zip("link", b"/etc/passwd", link=True), "upload: entry 'link' is a symbolic link; refused"),
        (_zip("big", b"x" * 100), "upload: unpacks to more than 50 bytes; refused"),
        (b"not a zip", "upload: not a zip archive (File is not a zip file)"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path: Path, data: bytes, message: str):
    with pytest.raises(UsageError) as err:
        unzip_to(data, tmp_path / "out", label="upload", limit=50)
    assert str(err.value) == message
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.py").exists()
