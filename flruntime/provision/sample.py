"""The commented sample ``project.yml`` that ``flruntime provision --init`` writes."""

from __future__ import annotations

SAMPLE_PROJECT = """\
# A flruntime project: who takes part, and what their startup kits hold.
# Provision it with:  flruntime provision -p project.yml -w workspace
# Each run writes workspace/<name>/prod_NN/<participant>/ (NN counts up); workspace/<name>/state/ keeps the
# project CA and every participant's key, so a later run (say, with one more client) re-keys nobody.
api_version: 3
# the project's name: the root CA's common name and the workspace folder (letters, digits, @ . _ -)
name: example_project
description: a federated-learning project with one server, two sites and three admins

participants:
  # exactly one server. Its name is its main DNS name; host_names are more names its certificate is valid
  # for (127.0.0.1 is always added); default_host is what clients and admins connect to.
  - name: server
    type: server
    org: example_org
    host_names: [localhost]
    default_host: localhost
    fed_learn_port: 8002   # clients connect here
    admin_port: 8003       # admin consoles connect here
  # clients (sites): a certificate with CN = name and O = org
  - name: site-1
    type: client
    org: example_org
  - name: site-2
    type: client
    org: hospital_b
  # admins: role is one of project_admin, org_admin, lead, member
  - name: admin@example.org
    type: admin
    org: example_org
    role: project_admin
  - name: org-admin@hospital-b.org
    type: admin
    org: hospital_b
    role: org_admin
  - name: lead@example.org
    type: admin
    org: example_org
    role: lead

# Builders run in order. Certificates, connection configs, start/stop scripts and signatures are always
# made; the entries below say so explicitly (NVFlare's paths, e.g. nvflare.lighter.impl.cert.CertBuilder,
# are read the same way: only the last part counts).
builders:
  - path: WorkspaceBuilder
  - path: StaticFileBuilder
  - path: CertBuilder
  # homomorphic encryption (needs pip install 'flruntime[he]'): the server kit gets server_context.tenseal
  # (no secret key), each client kit client_context.tenseal (the shared secret key). Remove it when no job
  # uses HE.
  # The defaults (8192, [60, 40], 36) suit flruntime's add-only aggregation; NVFlare's [60, 40, 40] at 40 works too.
  - path: HEBuilder
    args:
      poly_modulus_degree: 8192
      coeff_mod_bit_sizes: [60, 40]
      scale_bits: 36
  # Kubernetes: prod_NN/k8s/ holds a Namespace, a PersistentVolumeClaim for the workspaces, a Secret per kit,
  # the server's Deployment and Service and a Deployment per client (kubectl apply -f prod_NN/k8s/), and
  # prod_NN/docker/ the image they run (Dockerfile, build.sh). With it on, every kit connects to the server's
  # Service and the server's certificate names the Service. Uncomment to use:
  # - path: K8sBuilder
  #   args:
  #     namespace: example-project   # default: the project's name made a DNS label
  #     image: flruntime:0.1.0       # default: flruntime:<version>
  #     storage_size: 10Gi
  #     storage_class: standard      # default: the cluster's default storage class
  #     access_mode: ReadWriteOnce   # ReadWriteMany (with a class that offers it) when pods run on several nodes
  # The image alone (the K8sBuilder brings it with these defaults):
  # - path: DockerBuilder
  #   args:
  #     base_image: python:3.11-slim
  #     extras: [pt, he]             # flruntime's extras; default: pt (torch's CPU build), he with the HEBuilder
  #     requirements_file: requirements.txt   # the jobs' own pip packages (relative to this file)
  - path: SignatureBuilder
"""
