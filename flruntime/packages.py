"""Packages: training code and configuration in one versioned, checksummed zip (FedML's ``fedml build`` shape).

``flruntime build`` writes ``DEST/<name>-<type>-<version>.zip``::

    MANIFEST.json   {"format": "flruntime-package", "format_version": 1, "name", "type", "version", "entry",
                     "flruntime_version", "created", "files": {"code/train.py": "<SHA-256>", ...}}
    code/...        SOURCE_DIR (the entry script is code/<entry>)
    config/...      CONFIG_DIR: config_fed_server / config_fed_client, meta.json, anything else the app ships

and ``DEST/<zip>.sha256`` (``sha256sum`` format: ``sha256sum -c`` checks it). :func:`verify_package` refuses a
package whose files do not match its manifest (a changed byte, a file added or removed, no manifest, an entry
that would land outside the folder it is extracted to), and one whose zip does not match the ``.sha256`` file
next to it. The checksums catch corruption and edits; they are not a signature (whoever can rewrite the zip can
rewrite its manifest too).

A package and a job folder map onto each other (:func:`package_to_job`, :func:`job_to_package`)::

    package                         job folder
    config/meta.json           <->  meta.json     (generated when absent: name, deploy_map {"app": ["@ALL"]})
    config/<everything else>   <->  app/config/
    code/                      <->  app/custom/

A server package and a client package export together into one ``app/``: their configs and code side by side
(a file both hold must be identical). A job folder exports to one package only when it has one app.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from flruntime.errors import FLRuntimeError, UsageError
from flruntime.exit_codes import ExitCode

FORMAT = "flruntime-package"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
CODE = "code"
CONFIG = "config"
TYPES = ("client", "server")
DEFAULT_VERSION = "1.0.0"
#: Meta file names looked for in a package's config/ (the first found is the job's meta file).
META_NAMES = ("meta.json", "meta.yml", "meta.yaml", "meta.conf")
#: Folders and suffixes never packed (caches).
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
#: The most bytes a package may unpack to.
MAX_UNPACKED = 8 * 1024**3

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class PackageError(FLRuntimeError):
    """A package is damaged, tampered with, or not a package: refused."""

    exit_code = ExitCode.INVALID_JOB


@dataclass(frozen=True)
class Manifest:
    """A package's ``MANIFEST.json``."""

    name: str
    type: str
    version: str
    entry: str | None
    flruntime_version: str
    created: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        """The package's file name: ``<name>-<type>-<version>.zip``."""
        return f"{self.name}-{self.type}-{self.version}.zip"

    def to_json(self) -> str:
        """The manifest document."""
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "type": self.type,
            "version": self.version,
            "entry": self.entry,
            "flruntime_version": self.flruntime_version,
            "created": self.created,
            "files": dict(sorted(self.files.items())),
        }
        return json.dumps(doc, indent=2) + "\n"


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def _check_name(what: str, value: str) -> str:
    if not _NAME.match(value):
        raise UsageError(f"{what} '{value}': use letters, digits and . _ + - (it names the package file)")
    return value


def _files(folder: Path, skip: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """The regular files under ``folder`` as (relative posix path, path), caches and ``skip`` folders left out.

    Raises:
        UsageError: a symbolic link (a package holds regular files only).
    """
    out = []
    skipped = [s.resolve() for s in skip]
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        if path.is_symlink():
            raise UsageError(f"{path}: a symbolic link; a package holds regular files only")
        if path.is_file():
            out.append((rel.as_posix(), path))
    return out


def _write_package(manifest_args: dict[str, Any], members: list[tuple[str, bytes]], dest: Path) -> Path:
    """Write the zip (manifest first, then the members) and its ``.sha256``; return the zip's path."""
    from flruntime import __version__

    files = {arc: sha256(data) for arc, data in members}
    manifest = Manifest(
        flruntime_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        files=files,
        **manifest_args,
    )
    dest.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest.to_json())
        for arc, data in members:
            zf.writestr(arc, data)
    path = dest / manifest.file_name
    data = buf.getvalue()
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{sha256(data)}  {path.name}\n", encoding="utf-8")
    return path


def build_package(
    type: str,
    source_dir: str | Path,
    entry: str,
    config_dir: str | Path,
    dest: str | Path,
    version: str = DEFAULT_VERSION,
    name: str | None = None,
) -> Path:
    """Pack training code and configuration into ``dest/<name>-<type>-<version>.zip`` (and its ``.sha256``).

    Args:
        type: ``client`` or ``server``.
        source_dir: the training code (becomes ``code/``).
        entry: the entry script, relative to ``source_dir``; it must exist.
        config_dir: the configuration (becomes ``config/``).
        dest: the folder to write to (created; an existing package of the same name is replaced).
        version: the package's version.
        name: the package's name (default: ``name`` of CONFIG_DIR's meta.json, else SOURCE_DIR's folder name).

    Returns:
        The package's path.

    Raises:
        UsageError: a missing folder or entry, an unknown type, a name or version unfit for a file name.
    """
    if type not in TYPES:
        raise UsageError(f"package type '{type}': use client or server")
    source, config, target = Path(source_dir), Path(config_dir), Path(dest)
    for what, folder in (("SOURCE_DIR", source), ("CONFIG_DIR", config)):
        if not folder.is_dir():
            raise UsageError(f"{what} {folder}: no such folder")
    entry_path = Path(entry)
    if entry_path.is_absolute():
        if not entry_path.resolve().is_relative_to(source.resolve()):
            raise UsageError(f"entry {entry}: not inside SOURCE_DIR {source}")
        entry_path = entry_path.resolve().relative_to(source.resolve())
    if ".." in entry_path.parts or not (source / entry_path).is_file():
        raise UsageError(f"entry {entry}: no such file in SOURCE_DIR {source}")
    if name is None:
        meta = _meta_doc(config)
        name = str(meta.get("name") or "") if isinstance(meta.get("name"), str) else ""
        name = re.sub(r"[^A-Za-z0-9._+-]+", "-", name or source.resolve().name).strip("-.") or "package"
    _check_name("name", name)
    _check_name("version", version)
    members = [(f"{CODE}/{rel}", p.read_bytes()) for rel, p in _files(source, skip=[target])]
    members += [(f"{CONFIG}/{rel}", p.read_bytes()) for rel, p in _files(config, skip=[target])]
    args = {"name": name, "type": type, "version": version, "entry": entry_path.as_posix()}
    return _write_package(args, members, target)


def _meta_doc(config: Path) -> dict[str, Any]:
    """The meta document in a config folder (empty when absent or unreadable)."""
    from flruntime.config.source import load_file

    for meta_name in META_NAMES:
        if (config / meta_name).is_file():
            source, _problems = load_file(config / meta_name)  # an unreadable one is the validator's to report
            data = source.data if source is not None else None
            return dict(data) if isinstance(data, dict) else {}
    return {}


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name


def _read_members(path: Path) -> tuple[Manifest, dict[str, bytes]]:
    """Verify a package (see :func:`verify_package`) and return its manifest and files."""
    if not path.is_file():
        raise UsageError(f"{path}: no such package")
    data = path.read_bytes()
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        expected = (side.read_text(encoding="utf-8", errors="replace").split() or [""])[0].lower()
        if sha256(data) != expected:
            raise PackageError(
                f"{path}: its SHA-256 does not match {side.name}; the package was changed after it was built"
            )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{path}: not a zip archive ({exc})") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        seen: set[str] = set()
        total = 0
        for info in zf.infolist():
            if _unsafe(info.filename):
                raise PackageError(f"{path}: {info.filename}: points outside the package folder; refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise PackageError(f"{path}: {info.filename}: a symbolic link; refused")
            if info.filename in seen:
                raise PackageError(f"{path}: {info.filename}: appears twice in the zip; refused")
            seen.add(info.filename)
            total += info.file_size
            if total > MAX_UNPACKED:
                raise PackageError(f"{path}: unpacks to more than {MAX_UNPACKED} bytes; refused")
        if MANIFEST not in seen:
            raise PackageError(f"{path}: no {MANIFEST} at its root; not a flruntime package (see `flruntime build`)")
        files: dict[str, bytes] = {}
        for info in infos:
            try:
                files[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:  # damaged bytes
                raise PackageError(f"{path}: {info.filename}: damaged ({exc}); refused") from exc
    manifest = _parse_manifest(path, files.pop(MANIFEST))
    for arc in sorted(manifest.files):
        if arc not in files:
            raise PackageError(f"{path}: {arc}: listed in {MANIFEST} but missing from the package; refused")
    for arc in sorted(files):
        if arc not in manifest.files:
            raise PackageError(f"{path}: {arc}: not listed in {MANIFEST} (added after the build); refused")
        if sha256(files[arc]) != manifest.files[arc]:
            raise PackageError(f"{path}: {arc}: SHA-256 differs from {MANIFEST}; the file was changed after the build")
    return manifest, files


def _parse_manifest(path: Path, raw: bytes) -> Manifest:
    where = f"{path}: {MANIFEST}"
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise PackageError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PackageError(f'{where}: not a flruntime package manifest (no "format": "{FORMAT}")')
    if doc.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"{where}: format_version {doc.get('format_version')!r}; this flruntime reads 1")
    for key in ("name", "type", "version", "flruntime_version", "created"):
        if not isinstance(doc.get(key), str):
            raise PackageError(f"{where}: '{key}' missing or not a string")
    if doc["type"] not in TYPES:
        raise PackageError(f"{where}: type '{doc['type']}': not client or server")
    files = doc.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise PackageError(f"{where}: 'files' must map each file to its SHA-256")
    for arc in files:
        if _unsafe(arc) or PurePosixPath(arc).parts[0] not in (CODE, CONFIG):
            raise PackageError(f"{where}: file '{arc}' is outside code/ and config/; refused")
    entry = doc.get("entry")
    if entry is not None and (not isinstance(entry, str) or f"{CODE}/{entry}" not in files):
        raise PackageError(f"{where}: entry {entry!r} is not a file of the package's code/")
    _check_manifest_name(where, "name", doc["name"])
    _check_manifest_name(where, "version", doc["version"])
    return Manifest(
        doc["name"], doc["type"], doc["version"], entry, doc["flruntime_version"], doc["created"], dict(files)
    )


def _check_manifest_name(where: str, key: str, value: str) -> None:
    if not _NAME.match(value):
        raise PackageError(f"{where}: {key} '{value}' is not a plain name")


def verify_package(path: str | Path) -> Manifest:
    """Check a package against its manifest (and its ``.sha256`` file when there is one); return the manifest.

    Raises:
        UsageError: no such file.
        PackageError: not a zip, no manifest, an entry outside the package, a file added, removed or changed
            (the message names it), or the zip differs from its ``.sha256``.
    """
    return _read_members(Path(path))[0]


def _place(out: dict[str, tuple[bytes, str]], rel: str, data: bytes, origin: str) -> None:
    """Put ``data`` at ``rel`` of the job folder; the same path from two packages must hold the same bytes."""
    if rel in out and out[rel][0] != data:
        raise UsageError(f"{rel}: {out[rel][1]} and {origin} both hold it, with different content")
    out[rel] = (data, origin)


def package_to_job(packages: Sequence[str | Path], out: str | Path, force: bool = False) -> Path:
    """Export one package, or a server package and a client package, into the job folder ``out``.

    Returns:
        The job folder.

    Raises:
        UsageError: ``out`` exists (without ``force``), more than two packages or two of one type, a file the two
            packages both hold with different content, a meta file deploying several apps.
        PackageError: a package fails :func:`verify_package`.
    """
    if not 1 <= len(packages) <= 2:
        raise UsageError("export one package, or a server package and a client package")
    loaded = [(Path(p), *_read_members(Path(p))) for p in packages]
    if len(loaded) == 2 and {m.type for _, m, _ in loaded} != set(TYPES):
        pair = f"{loaded[0][0]} and {loaded[1][0]}"
        raise UsageError(f"{pair}: two packages export together only as a server package and a client package")
    loaded.sort(key=lambda item: item[1].type != "server")  # the server package's meta file wins
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not force:
            raise UsageError(f"{target}: exists and is not empty (pass --force to replace it)")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    meta: tuple[str, bytes] | None = None
    placed: dict[str, tuple[bytes, str]] = {}
    app_files: list[tuple[str, str, bytes, str]] = []  # (config|custom, rel, data, origin)
    for path, _manifest, files in loaded:
        for arc, data in sorted(files.items()):
            top, rel = arc.split("/", 1)
            if top == CONFIG and rel in META_NAMES:
                meta = meta or (rel, data)
                continue
            app_files.append(("config" if top == CONFIG else "custom", rel, data, path.name))
    app = "app"
    if meta is None:
        first = loaded[0][1]
        meta = (
            "meta.json",
            (json.dumps({"name": first.name, "deploy_map": {app: ["@ALL"]}}, indent=2) + "\n").encode(),
        )
    else:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / meta[0]).write_bytes(meta[1])
            deploy = _meta_doc(Path(tmp)).get("deploy_map")
        if isinstance(deploy, dict) and len(deploy) > 1:
            raise UsageError(f"{meta[0]} deploys {len(deploy)} apps ({', '.join(deploy)}); a package holds one app")
        if isinstance(deploy, dict) and deploy and _NAME.match(str(next(iter(deploy)))):
            app = str(next(iter(deploy)))
    for kind, rel, data, origin in app_files:
        _place(placed, f"{app}/{kind}/{rel}", data, origin)
    _place(placed, meta[0], meta[1], "meta")
    target.mkdir(parents=True, exist_ok=True)
    for rel, (data, _origin) in placed.items():
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (target / app / "config").mkdir(parents=True, exist_ok=True)
    return target


def _guess_entry(custom: Path | None, config_dir: Path) -> str | None:
    """The entry script of a job's code: a ``.py`` file its client config names, else train.py / main.py."""
    if custom is None or not custom.is_dir():
        return None
    for config in sorted(config_dir.glob("config_fed_client.*")):
        for match in re.finditer(r"[\w./-]+\.py\b", config.read_text(encoding="utf-8", errors="replace")):
            candidate = match.group(0).removeprefix("custom/")
            if (custom / candidate).is_file():
                return candidate
    for candidate in ("train.py", "main.py"):
        if (custom / candidate).is_file():
            return candidate
    scripts = sorted(p.relative_to(custom).as_posix() for p in custom.rglob("*.py"))
    return scripts[0] if scripts else None


def job_to_package(
    job_dir: str | Path,
    dest: str | Path,
    type: str = "server",
    version: str = DEFAULT_VERSION,
    name: str | None = None,
    entry: str | None = None,
) -> Path:
    """Pack a one-app job folder into a package: its meta file and ``app/config/`` as config/, ``app/custom/`` as code/.

    Args:
        job_dir: the job folder.
        dest: the folder to write the package to.
        type: ``server`` (default: a package holding a whole job is what an admin submits) or ``client``.
        version: the package's version.
        name: the package's name (default: the job's name).
        entry: the entry script in ``custom/`` (default: a ``.py`` file the client config names, else train.py or
            main.py, else the first script; none when the job ships no code).

    Raises:
        UsageError: not a job folder, several apps, an entry that is not a file of the app's custom/.
    """
    from flruntime.config.job import discover

    root = Path(job_dir)
    if not root.is_dir():
        raise UsageError(f"{root}: no such job folder")
    if type not in TYPES:
        raise UsageError(f"package type '{type}': use client or server")
    job, _problems = discover(root)
    if job.meta is None or len(job.apps) != 1:
        what = "no meta file" if job.meta is None else f"{len(job.apps)} apps ({', '.join(job.apps) or 'none'})"
        raise UsageError(f"{root}: {what}; a package holds a job folder with a meta file and one app")
    app = next(iter(job.apps.values()))
    custom = app.custom_dir
    meta_path = job.meta.path
    if entry is None:
        entry = _guess_entry(custom, app.config_dir)
    elif custom is None or ".." in Path(entry).parts or not (custom / entry).is_file():
        raise UsageError(f"entry {entry}: no such file in {custom or app.root / 'custom'}")
    name = _check_name("name", name or re.sub(r"[^A-Za-z0-9._+-]+", "-", job.name).strip("-.") or "job")
    _check_name("version", version)
    skip = [p for p in (custom, root / "custom") if p is not None]
    members = [(f"{CONFIG}/{meta_path.name}", meta_path.read_bytes())]
    members += [
        (f"{CONFIG}/{rel}", p.read_bytes())
        for rel, p in _files(app.config_dir, skip=skip)
        if p.resolve() != meta_path.resolve()
    ]
    if custom is not None:
        members += [(f"{CODE}/{rel}", p.read_bytes()) for rel, p in _files(custom)]
    args = {"name": name, "type": type, "version": version, "entry": entry}
    return _write_package(args, members, Path(dest))


def is_package(path: str | Path) -> bool:
    """True when ``path`` is a file (a package to verify), not a job folder."""
    return Path(path).is_file()


@contextlib.contextmanager
def as_job_folder(path: str | Path) -> Iterator[Path]:
    """A job folder as it is, or a package verified and exported to a temporary job folder (removed afterwards).

    Raises:
        UsageError, PackageError: see :func:`package_to_job`.
    """
    if not is_package(path):
        yield Path(path)
        return
    manifest = verify_package(path)
    with tempfile.TemporaryDirectory(prefix="flruntime-package-") as tmp:
        yield package_to_job([path], Path(tmp) / manifest.name)
