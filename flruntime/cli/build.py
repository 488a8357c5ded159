"""``flruntime build`` (a package from training code and configuration) and ``flruntime job export``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flruntime.exit_codes import ExitCode


def register(verbs: Any) -> None:
    """Add the ``build`` verb."""
    from flruntime.packages import DEFAULT_VERSION, TYPES

    p = verbs.add_parser(
        "build",
        help="pack training code and configuration into a versioned, checksummed package",
        description="Pack SOURCE_DIR (as code/) and CONFIG_DIR (as config/) into DEST/<name>-<type>-<version>.zip "
        "with a MANIFEST.json (the SHA-256 of every file) and a detached DEST/<zip>.sha256.",
    )
    p.add_argument("-t", "--type", required=True, choices=TYPES, help="the package's type")
    p.add_argument("-sf", "--source-folder", required=True, metavar="SOURCE_DIR", help="the training code")
    p.add_argument("-ep", "--entry-point", required=True, metavar="ENTRY", help="the entry script in SOURCE_DIR")
    p.add_argument("-cf", "--config-folder", required=True, metavar="CONFIG_DIR", help="the configuration")
    p.add_argument("-df", "--dest-folder", required=True, metavar="DEST", help="where to write the package")
    p.add_argument("-v", "--version", default=DEFAULT_VERSION, help=f"(default {DEFAULT_VERSION})")
    p.add_argument("-n", "--name", help="the package's name (default: CONFIG_DIR's meta.json name, else SOURCE_DIR's)")
    p.set_defaults(func=_build)


def register_export(sub: Any) -> None:
    """Add ``job export`` to the ``job`` verb group."""
    from flruntime.packages import DEFAULT_VERSION, TYPES

    e = sub.add_parser(
        "export",
        help="turn a package (or a server + a client package) into a job folder, or a job folder into a package",
        description="PACKAGE [PACKAGE]: verify the package(s) and write the job folder OUT (config/meta.json -> "
        "meta.json, config/ -> app/config/, code/ -> app/custom/). JOB_DIR: write its package into the folder OUT.",
    )
    e.add_argument("sources", nargs="+", metavar="PACKAGE_OR_JOB")
    e.add_argument("-o", "--output", required=True, metavar="OUT", help="the job folder, or the package's folder")
    e.add_argument("--force", action="store_true", help="replace the job folder OUT if it exists")
    e.add_argument("-t", "--type", choices=TYPES, default="server", help="JOB_DIR only: the package's type")
    e.add_argument("-v", "--version", default=DEFAULT_VERSION, help="JOB_DIR only: the package's version")
    e.add_argument("-n", "--name", help="JOB_DIR only: the package's name (default: the job's)")
    e.add_argument("-ep", "--entry-point", help="JOB_DIR only: the entry script in custom/ (default: guessed)")
    e.set_defaults(func=_export)


def _build(args: argparse.Namespace) -> int:
    from flruntime.packages import build_package, verify_package

    path = build_package(
        args.type, args.source_folder, args.entry_point, args.config_folder, args.dest_folder, args.version, args.name
    )
    manifest = verify_package(path)
    print(f"built {path} ({len(manifest.files)} files, entry {manifest.entry}); checksum in {path.name}.sha256")
    return int(ExitCode.OK)


def _export(args: argparse.Namespace) -> int:
    from flruntime.errors import UsageError
    from flruntime.packages import is_package, job_to_package, package_to_job, verify_package
    from flruntime.validation import validate_job

    sources = [Path(s) for s in args.sources]
    if not all(is_package(s) for s in sources):
        if len(sources) != 1 or not sources[0].is_dir():
            raise UsageError("export one job folder, or one or two package files (a server and a client package)")
        path = job_to_package(sources[0], args.output, args.type, args.version, args.name, args.entry_point)
        manifest = verify_package(path)
        print(f"exported {sources[0]} to {path} ({len(manifest.files)} files, entry {manifest.entry})")
        return int(ExitCode.OK)
    job = package_to_job(sources, args.output, force=args.force)
    report = validate_job(job)
    for problem in report.problems:
        print(problem.format())
    print(f"exported {', '.join(str(s) for s in sources)} to job folder {job}" + ("" if report.valid else " (invalid)"))
    return int(ExitCode.OK if report.valid else ExitCode.INVALID_JOB)
