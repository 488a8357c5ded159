"""The ``DockerBuilder``: ``prod_NN/docker/``, the build context of an image that runs the startup kits.

Files::

    docker/Dockerfile        FROM the base image; installs flruntime from its wheel (with the chosen extras;
                             ``pt`` is torch's CPU build) and the jobs' requirements; runs as uid 10001;
                             ENTRYPOINT ``python -m flruntime``
    docker/requirements.txt  the ``requirements_file`` given to the builder (else only a comment)
    docker/constraints.txt   ``torch==<pin>+cpu`` with the ``pt`` extra (else only a comment)
    docker/build.sh          builds the wheel from a flruntime checkout or sdist when it is not there yet, then
                             ``docker build -t IMAGE docker/``

The image holds no kit: the kits come at run time (Kubernetes mounts each one's ``startup/`` from a Secret).
"""

from __future__ import annotations

import os
from pathlib import Path

from flruntime import __version__
from flruntime.provision.project import DockerParams, Project

#: torch's version in the ``pt`` extra (setup.cfg; a test keeps them equal) and where its CPU build comes from.
TORCH_VERSION = "2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: the user the containers run as (the Kubernetes manifests set the same ids).
UID = 10001
WHEEL = f"flruntime-{__version__}-py3-none-any.whl"
STAGE = "/tmp/flruntime-install"


def install_line(docker: DockerParams) -> str:
    """Return the Dockerfile's ``RUN pip install`` instruction."""
    extras = f"[{','.join(sorted(docker.extras))}]" if docker.extras else ""
    index = f"        --extra-index-url {TORCH_CPU_INDEX} \\\n" if "pt" in docker.extras else ""
    return (
        "RUN python -m pip install --no-cache-dir \\\n"
        f"{index}"
        f"        -c {STAGE}/constraints.txt -r {STAGE}/requirements.txt \\\n"
        f'        "{STAGE}/{WHEEL}{extras}" \\\n'
        f"    && rm -rf {STAGE}"
    )


def dockerfile(project: Project, docker: DockerParams) -> str:
    """Return the Dockerfile's text."""
    return f"""# syntax=docker/dockerfile:1
# The image that runs the startup kits of project {project.name}; written by `flruntime provision`.
# Build it with ./build.sh /path/to/flruntime (a checkout or an sdist), or by hand in this folder:
#   python3 -m pip wheel --no-deps --wheel-dir . /path/to/flruntime    # writes {WHEEL}
#   docker build -t {docker.image} .
# Containers run `python -m flruntime site start --kit /kits/<name> --workspace /workspace/<name>`.
FROM {docker.base_image}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY {WHEEL} requirements.txt constraints.txt {STAGE}/
{install_line(docker)}
RUN useradd --uid {UID} --user-group --create-home flruntime \\
    && mkdir -p /kits /workspace && chown {UID}:{UID} /workspace
USER {UID}:{UID}
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "flruntime"]
CMD ["--help"]
"""


def _build_script(docker: DockerParams) -> str:
    return f"""#!/usr/bin/env bash
# Builds the image {docker.image} from this folder; written by `flruntime provision` (DockerBuilder).
# Usage: ./build.sh [FLRUNTIME_SOURCE]
#   FLRUNTIME_SOURCE (a flruntime {__version__} checkout or sdist) is built into {WHEEL} here when that
#   wheel is not here yet. $PYTHON (python3) builds the wheel, $DOCKER (docker) builds the image.
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
WHEEL="{WHEEL}"
if [ ! -f "$HERE/$WHEEL" ]; then
  if [ $# -lt 1 ]; then
    echo "build.sh: $HERE/$WHEEL is missing: pass a flruntime checkout or sdist, or copy the wheel here" >&2
    exit 2
  fi
  "${{PYTHON:-python3}}" -m pip wheel --no-deps --wheel-dir "$HERE" "$1"
  if [ ! -f "$HERE/$WHEEL" ]; then
    echo "build.sh: $1 did not give $WHEEL: the kits were provisioned by flruntime {__version__}, use that version" >&2
    exit 2
  fi
fi
exec "${{DOCKER:-docker}}" build -t "{docker.image}" "$HERE"
"""


def write_docker(prod_dir: Path, project: Project) -> Path:
    """Write ``prod_dir/docker/`` for the project's ``DockerParams``.

    Args:
        prod_dir: the run's ``prod_NN`` folder.
        project: the project (its ``docker`` is set).

    Returns:
        The ``docker`` folder.
    """
    assert project.docker is not None
    docker = project.docker
    out = prod_dir / "docker"
    out.mkdir(parents=True, exist_ok=True)
    (out / "Dockerfile").write_text(dockerfile(project, docker), encoding="utf-8")
    requirements = "# the jobs' own pip requirements (the DockerBuilder's requirements_file)\n"
    if docker.requirements_file is not None:
        requirements += docker.requirements_file.read_text(encoding="utf-8")
    (out / "requirements.txt").write_text(requirements, encoding="utf-8")
    constraints = "# version pins of the Dockerfile's pip install (torch's CPU build with the pt extra)\n"
    if "pt" in docker.extras:
        constraints += f"torch=={TORCH_VERSION}+cpu\n"
    (out / "constraints.txt").write_text(constraints, encoding="utf-8")
    script = out / "build.sh"
    script.write_text(_build_script(docker), encoding="utf-8")
    os.chmod(script, 0o755)
    return out
