"""Job folders as zip archives for the wire: written without caches, extracted without escaping the target."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from flruntime.errors import UsageError

#: Folders and suffixes never packed.
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}
SKIP_SUFFIXES = {".pyc", ".pyo"}

#: The most bytes an archive may expand to.
MAX_EXTRACTED = 8 * 1024**3


def zip_folder(folder: str | Path) -> bytes:
    """Pack a folder (files only, relative paths, no caches) into zip bytes."""
    return zip_folders({"": Path(folder)})


def zip_folders(folders: dict[str, Path]) -> bytes:
    """Pack folders as :func:`zip_folder` does, each under its key (``""``: at the top of the archive)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for prefix, root in folders.items():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
                    continue
                if path.is_file() and not path.is_symlink():
                    zf.write(path, (PurePosixPath(prefix) / rel.as_posix()).as_posix() if prefix else rel.as_posix())
    return out.getvalue()


def unzip_to(data: bytes, dest: str | Path, label: str = "archive", limit: int = MAX_EXTRACTED) -> Path:
    """Extract zip bytes into ``dest`` (replaced), refusing entries that would land outside it.

    Raises:
        UsageError: not a zip file, an absolute or ``..`` path, a link, or more than ``limit`` bytes unpacked;
            nothing is left in ``dest`` then.
    """
    target = Path(dest)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UsageError(f"{label}: not a zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename or ":" in info.filename:
                raise UsageError(f"{label}: entry '{info.filename}' points outside the job folder; refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UsageError(f"{label}: entry '{info.filename}' is a symbolic link; refused")
            total += info.file_size
            if total > limit:
                raise UsageError(f"{label}: unpacks to more than {limit} bytes; refused")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        try:
            for info in infos:
                zf.extract(info, target)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target
