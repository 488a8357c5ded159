"""Provisioning: a project file in, one signed startup kit per participant out.

:mod:`~flruntime.provision.project` reads and checks ``project.yml``; :mod:`~flruntime.provision.certs` makes
the project CA and the participants' certificates; :mod:`~flruntime.provision.kit` writes one kit;
:mod:`~flruntime.provision.signature` signs a kit's ``startup/`` folder and verifies it;
:mod:`~flruntime.provision.provisioner` ties them together and keeps the project's state (CA, keys) between
runs; :mod:`~flruntime.provision.docker` and :mod:`~flruntime.provision.k8s` write the image's Dockerfile and the
Kubernetes manifests (``DockerBuilder``, ``K8sBuilder``); :mod:`~flruntime.provision.poc` is POC mode (a whole
project on one machine); :mod:`~flruntime.provision.sample` is the commented ``project.yml`` that
``flruntime provision --init`` writes.
"""

from __future__ import annotations

from flruntime.provision.project import Participant, Project, ProjectError, load_project
from flruntime.provision.provisioner import ProvisionResult, provision
from flruntime.provision.signature import KitSignatureError, sign_kit, verify_kit

__all__ = [
    "KitSignatureError",
    "Participant",
    "Project",
    "ProjectError",
    "ProvisionResult",
    "load_project",
    "provision",
    "sign_kit",
    "verify_kit",
]
