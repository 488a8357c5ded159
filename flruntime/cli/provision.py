"""``flruntime provision``: a sample project file, or one signed startup kit per participant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flruntime.errors import UsageError
from flruntime.exit_codes import ExitCode


def register(verbs: Any) -> None:
    """Add the ``provision`` verb."""
    p = verbs.add_parser(
        "provision",
        help="write startup kits (certificates, configs, scripts) from a project.yml",
        description="With --init, write a commented sample project file. Otherwise check the project file and "
        "write one signed startup kit per participant into WORKSPACE/<project>/prod_NN/<participant>/, "
        "keeping the project CA and the participants' keys in WORKSPACE/<project>/state/. "
        "Exit 0 when done, 1 for an invalid project file, 2 for usage errors.",
    )
    p.add_argument("-p", "--project", default="project.yml", metavar="FILE", help="project file (project.yml)")
    p.add_argument("-w", "--workspace", default="workspace", metavar="DIR", help="workspace folder (workspace)")
    p.add_argument("--init", action="store_true", help="write a commented sample project file and stop")
    p.add_argument("--force", action="store_true", help="with --init: replace an existing project file")
    p.set_defaults(func=run)


def _init(path: Path, force: bool) -> int:
    from flruntime.provision.sample import SAMPLE_PROJECT

    if path.exists() and not force:
        raise UsageError(f"{path} exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SAMPLE_PROJECT, encoding="utf-8")
    print(f"wrote {path}; edit it, then run: flruntime provision -p {path}")
    return int(ExitCode.OK)


def run(args: argparse.Namespace) -> int:
    """Write the sample, or check the project and provision it."""
    from flruntime.provision import ProjectError, load_project, provision

    path = Path(args.project)
    if args.init:
        return _init(path, args.force)
    if args.force:
        raise UsageError("--force only goes with --init")
    try:
        project = load_project(path)
    except ProjectError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return int(ExitCode.INVALID_JOB)
    result = provision(project, args.workspace)
    for name, kit in result.kits.items():
        tag = " (new key)" if name in result.new else " (certificate reissued)" if name in result.reissued else ""
        print(f"{name}: {kit}{tag}")
    if result.docker_dir is not None and project.docker is not None:
        print(f"image {project.docker.image}: build it with {result.docker_dir / 'build.sh'} /path/to/flruntime")
    if result.k8s_dir is not None:
        print(f"Kubernetes manifests: {result.k8s_dir} (kubectl apply -f {result.k8s_dir}; see its README.md)")
    ca = "created" if result.ca_created else "reused"
    print(
        f"{project.name}: {len(result.kits)} startup kit(s) in {result.prod_dir}; project CA {ca} "
        f"({Path(args.workspace) / project.name / 'state'})",
        file=sys.stderr,
    )
    return int(ExitCode.OK)
