"""Finding the parts of a job folder: its meta file, its apps and their config files.

Two layouts load: the job layout (``meta.json`` plus ``<app>/config/config_fed_*.json``) and NVFlare's flat
template layout (``meta.conf`` and ``config_fed_*.conf`` at the root, or in ``<app>/`` without ``config/``).
A legacy single app (``config/`` at the root, no meta file) is refused as NVFlare's submit path refuses it;
``flruntime job convert`` wraps it into a job (:func:`legacy_app`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.config.source import CONFIG_EXTENSIONS, Source, load_file
from flruntime.problems import Problem

SERVER = "server"
ALL = "@ALL"
CONFIG_NAMES = {"server": "config_fed_server", "client": "config_fed_client"}
#: The longest file name (bytes) and path (bytes, without the terminating NUL) Linux and macOS accept.
NAME_MAX = 255
PATH_MAX = 4095


def shorten(text: str, keep: int = 40) -> str:
    """Quote ``text`` for a problem line, cut to ``keep`` characters (``'aaaa…'``)."""
    return f"'{text[:keep]}…'" if len(text) > keep else f"'{text}'"


def name_too_long(name: str) -> str | None:
    """Say why ``name`` cannot be a file or folder name (a part over :data:`NAME_MAX` bytes), or None.

    ``"'aaaa…' is too long (300 characters; a file name may have at most 255)"``; a name with ``/`` is
    checked part by part.
    """
    for part in name.split("/"):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            count = f"{len(part)} characters" if size == len(part) else f"{size} bytes in UTF-8"
            return f"{shorten(name)} is too long ({count}; a file name may have at most {NAME_MAX})"
    return None


def path_too_long(path: Path, shown: str | None = None) -> str | None:
    """Say why ``path`` cannot be used, or None.

    A part over :data:`NAME_MAX` bytes (that part is quoted), or the whole, made absolute, over :data:`PATH_MAX`
    bytes (``shown`` is quoted, default: the path).
    """
    for part in path.parts:
        why = name_too_long(part)
        if why is not None:
            return why
    size = len(os.fsencode(os.path.abspath(path)))
    if size > PATH_MAX:
        label = str(path) if shown is None else shown
        return f"{shorten(label)} makes a path too long ({size} bytes; a path may have at most {PATH_MAX})"
    return None


def find_config(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem.<ext>`` for the first extension present (NVFlare's search order)."""
    for suffix in (*CONFIG_EXTENSIONS, *(e + ".default" for e in CONFIG_EXTENSIONS)):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class App:
    """One app of a job: a folder with config files and optional ``custom/`` code."""

    name: str
    root: Path
    config_dir: Path
    custom_dir: Path | None

    def config_file(self, side: str) -> Path | None:
        """Return the server or client config file of this app, if there is one."""
        return find_config(self.config_dir, CONFIG_NAMES[side])


@dataclass
class JobFolder:
    """A job folder as found on disk, before any config file is interpreted."""

    root: Path
    meta: Source | None
    apps: dict[str, App] = field(default_factory=dict)
    deploy_map: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The job's name: meta ``name``, else the folder's name."""
        if self.meta is not None and isinstance(self.meta.data, dict) and isinstance(self.meta.data.get("name"), str):
            return str(self.meta.data["name"])
        return self.root.name

    @property
    def meta_data(self) -> dict[str, Any]:
        """The meta document (empty when missing or not an object)."""
        return self.meta.data if self.meta is not None and isinstance(self.meta.data, dict) else {}

    def display(self, path: Path) -> str:
        """Name ``path`` relative to the job folder (as problems show it)."""
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def uses_all(self) -> bool:
        """True when the deploy map sends an app to ``@ALL``."""
        return any(s.upper() == ALL for sites in self.deploy_map.values() for s in sites)

    def client_sites(self) -> list[str]:
        """Client site names named explicitly in the deploy map, in order."""
        seen: list[str] = []
        for sites in self.deploy_map.values():
            for s in sites:
                if s != SERVER and s.upper() != ALL and s not in seen:
                    seen.append(s)
        return seen

    def app_for(self, site: str) -> str | None:
        """Return the app deployed to ``site`` (``server`` or a client name), if any."""
        for app, sites in self.deploy_map.items():
            if site in sites or any(s.upper() == ALL for s in sites):
                return app
        return None

    def sides_of(self, app: str) -> list[str]:
        """Return which sides (``server``, ``client``) the app is deployed to."""
        sites = self.deploy_map.get(app, [])
        if any(s.upper() == ALL for s in sites):
            return ["server", "client"]
        sides = ["server"] if SERVER in sites else []
        if any(s != SERVER for s in sites):
            sides.append("client")
        return sides


def _sites(entry: Any) -> list[str]:
    """Flatten one deploy_map value (a list of names or of ``{"sites": [...]}`` dicts)."""
    out: list[str] = []
    if isinstance(entry, dict):
        entry = entry.get("sites", entry.get("targets", []))
    if isinstance(entry, list):
        for item in entry:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                names = item.get("sites", item.get("targets"))
                if isinstance(names, list):
                    out.extend(s for s in names if isinstance(s, str))
    return out


def _find_meta(root: Path) -> Path | None:
    return find_config(root, "meta")


def _app_folder(root: Path, name: str, flat_root: bool) -> App | None:
    folder = root / name
    if (folder / "config").is_dir():
        custom = folder / "custom"
        return App(name, folder, folder / "config", custom if custom.is_dir() else None)
    if folder.is_dir() and any(find_config(folder, s) for s in CONFIG_NAMES.values()):
        custom = folder / "custom"
        return App(name, folder, folder, custom if custom.is_dir() else None)
    if flat_root:
        custom = root / "custom"
        return App(name, root, root, custom if custom.is_dir() else None)
    return None


def legacy_app(root: Path) -> bool:
    """True when ``root`` is in NVFlare's legacy job format: a single app (``config/`` at the top), no meta file."""
    return _find_meta(root) is None and (root / "config").is_dir()


def legacy_problem(name: str, folder: str | None = None) -> Problem:
    """NVFlare's refusal of a legacy single-app folder, with the command that upgrades it.

    Args:
        name: the job's name (the folder's name: a legacy app has no meta file).
        folder: the folder as its user names it, for the command in the hint (default: ``name``).
    """
    shown = folder or name
    return Problem(
        "meta.json",
        (),
        f"meta.[json|conf|yml] not existing for job {name}, possible in legacy job format "
        "(config/ at the top of the folder, no meta file)",
        f"upgrade the job structure: 'flruntime job convert {shown} -o {shown}_job' wraps it as app '{name}' of a job",
        code="legacy-job",
    )


def discover(root: Path) -> tuple[JobFolder, list[Problem]]:
    """Find the meta file and apps of the job folder ``root`` and check its deploy map.

    Returns:
        The job folder and the problems found (missing files, deploy-map mistakes).
    """
    problems: list[Problem] = []
    meta_path = _find_meta(root)
    flat_root = any(find_config(root, s) for s in CONFIG_NAMES.values())
    if meta_path is None:
        if legacy_app(root):
            shown = root if root.name else root.resolve()  # "." names no folder
            return JobFolder(root, None), [legacy_problem(shown.name, str(shown))]
        return JobFolder(root, None), [
            Problem(
                "meta.json",
                (),
                "no meta.json (or meta.conf / meta.yml) in the job folder",
                'add meta.json with {"name": ..., "deploy_map": {"app": ["@ALL"]}, "min_clients": 1}',
                code="missing-file",
            )
        ]
    meta, load_problems = load_file(meta_path, meta_path.name)
    problems += load_problems
    job = JobFolder(root, meta)
    if meta is None or not isinstance(meta.data, dict):
        return job, problems
    raw_map = meta.data.get("deploy_map")
    if not isinstance(raw_map, dict):
        return job, problems  # the schema reports it
    job.deploy_map = {str(app): _sites(v) for app, v in raw_map.items()}
    problems += _check_deploy_map(job, meta)
    for app_name in job.deploy_map:
        probe = root / app_name / "config" / "config_fed_client.json.default"  # the longest path looked at
        too_long = name_too_long(app_name) or path_too_long(probe, app_name)
        if too_long is not None:
            problems.append(meta.problem(("deploy_map",), f"app name {too_long}", code="deploy-map"))
            continue
        for s in job.deploy_map[app_name]:
            too_long = name_too_long(s)  # a site's name becomes a folder of its workspace
            if too_long is not None:
                problems.append(meta.problem(("deploy_map", app_name), f"site name {too_long}", code="deploy-map"))
        try:
            app = _app_folder(root, app_name, flat_root)
        except OSError as exc:  # unreadable (EACCES), a loop of links, ...: a problem, never a crash
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            problems.append(
                meta.problem(
                    ("deploy_map", app_name),
                    f"app '{app_name}': cannot look at its folder ({reason})",
                    code="deploy-map",
                )
            )
            continue
        if app is None:
            existing = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            hint = f"existing folders: {', '.join(existing)}" if existing else "create the app folder with config/"
            problems.append(
                meta.problem(
                    ("deploy_map", app_name),
                    f"app '{app_name}' does not exist (no folder {app_name}/config/)",
                    hint,
                    code="deploy-map",
                )
            )
            continue
        job.apps[app_name] = app
        for side in job.sides_of(app_name):
            if app.config_file(side) is None:
                problems.append(
                    meta.problem(
                        ("deploy_map", app_name),
                        f"app '{app_name}' is deployed to {'the server' if side == 'server' else 'clients'} "
                        f"but has no {CONFIG_NAMES[side]}.json",
                        f"add {job.display(app.config_dir / (CONFIG_NAMES[side] + '.json'))}",
                        code="missing-file",
                    )
                )
    return job, problems


def _check_deploy_map(job: JobFolder, meta: Source) -> list[Problem]:
    out: list[Problem] = []
    data = meta.data
    pool = [(app, s) for app, sites in job.deploy_map.items() for s in sites]
    if not pool:
        out.append(
            meta.problem(
                ("deploy_map",),
                "no site is named in deploy_map",
                'deploy an app to ["@ALL"] or to "server" and client names',
                code="deploy-map",
            )
        )
        return out
    alls = [(app, s) for app, s in pool if s.upper() == ALL]
    if alls and len(pool) > 1:
        app = alls[0][0]
        out.append(
            meta.problem(
                ("deploy_map", app),
                "no other site may be listed when @ALL is used",
                "use @ALL alone, or list server and clients explicitly",
                code="deploy-map",
            )
        )
    if not alls:
        if SERVER not in (s for _, s in pool):
            out.append(
                meta.problem(
                    ("deploy_map",),
                    "no app is deployed to the server",
                    'add "server" to one app\'s site list',
                    code="deploy-map",
                )
            )
        seen: dict[str, str] = {}
        for app, s in pool:
            if s in seen:
                out.append(
                    meta.problem(
                        ("deploy_map", app),
                        f"site '{s}' gets two apps ('{seen[s]}' and '{app}')",
                        "each site runs exactly one app",
                        code="deploy-map",
                    )
                )
            seen.setdefault(s, app)
        clients = job.client_sites()
        min_clients = data.get("min_clients", 1)
        if isinstance(min_clients, int) and not isinstance(min_clients, bool) and len(clients) < min_clients:
            out.append(
                meta.problem(
                    ("min_clients",),
                    f"min_clients is {min_clients} but deploy_map names only {len(clients)} client(s)",
                    "lower min_clients or deploy to more sites",
                    code="deploy-map",
                )
            )
        mandatory = data.get("mandatory_clients") or []
        if isinstance(mandatory, list):
            for i, name in enumerate(mandatory):
                if isinstance(name, str) and name not in clients:
                    out.append(
                        meta.problem(
                            ("mandatory_clients", i),
                            f"mandatory client '{name}' is not in deploy_map",
                            "deploy an app to it or remove it",
                            code="deploy-map",
                        )
                    )
    return out
