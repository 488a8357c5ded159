"""The K8sBuilder's manifests and the DockerBuilder's image: schema-valid, complete, consistent with the kits."""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from flruntime import __version__
from flruntime.cli.main import main
from flruntime.provision import KitSignatureError, ProjectError, load_project, provision, verify_kit
from flruntime.provision import k8s as k8s_module
from flruntime.provision.docker import TORCH_CPU_INDEX, TORCH_VERSION
from flruntime.provision.project import ProvisionError

ROOT = Path(__file__).resolve().parents[1]
#: the Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas)
K8S_VERSION = "1.33"
WHEEL = f"flruntime-{__version__}-py3-none-any.whl"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

PROJECT = {
    "api_version": 3,
    "name": "Proj_One",
    "participants": [
        {
            "name": "server1",
            "type": "server",
            "org": "acme",
            "host_names": ["fl.example.com"],
            "default_host": "fl.example.com",
            "fed_learn_port": 9002,
            "admin_port": 9003,
        },
        {"name": "site-1", "type": "client", "org": "acme"},
        {"name": "Site_2", "type": "client", "org": "clinic"},
        {"name": "admin@acme.org", "type": "admin", "org": "acme", "role": "project_admin"},
    ],
    "builders": [
        {"path": "CertBuilder"},
        {"path": "nvflare.lighter.impl.k8s.K8sBuilder"},
        {"path": "SignatureBuilder"},
    ],
}


def _data(builders=None, **change):
    data = json.loads(json.dumps(PROJECT))
    if builders is not None:
        data["builders"] = builders
    data.update(change)
    return data


def _provision(tmp_path: Path, data=None):
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(data or PROJECT))
    return provision(load_project(path), tmp_path / "ws")


def _manifests(k8s_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(k8s_dir.glob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) == 1, path.name
        out[path.name] = docs[0]
    return out


@pytest.fixture(scope="module")
def he_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k8s_he")
    builders = [
        *PROJECT["builders"],
        {
            "path": "HEBuilder",
            "args": {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [40, 20, 40], "scale_bits": 20},
        },
    ]
    return _provision(tmp, _data(builders))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return _provision(tmp_path_factory.mktemp("k8s"))


# --- manifests --------------------------------------------------------------------------------------------------


def test_every_manifest_passes_the_kubernetes_schemas_in_strict_mode(he_result):
    manifests = _manifests(he_result.k8s_dir)
    assert [m["kind"] for m in manifests.values()] == [
        "Namespace",
        "PersistentVolumeClaim",
        "Secret",
        "Secret",
        "Secret",
        "Service",
        "Deployment",
        "Deployment",
        "Deployment",
    ]
    for name, manifest in manifests.items():
        assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION, name


def test_strict_validation_catches_a_wrong_field(result):
    deployment = _manifests(result.k8s_dir)["30-server1-deployment.yaml"]
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="'volumeMount' was unexpected"):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_file_names_apply_in_order_and_names_are_dns_labels(result):
    assert result.k8s_dir == result.prod_dir / "k8s"
    assert sorted(p.name for p in result.k8s_dir.iterdir()) == [
        "00-namespace.yaml",
        "01-workspaces-pvc.yaml",
        "10-server1-kit-secret.yaml",
        "10-site-1-kit-secret.yaml",
        "10-site-2-kit-secret.yaml",
        "20-server1-service.yaml",
        "30-server1-deployment.yaml",
        "30-site-1-deployment.yaml",
        "30-site-2-deployment.yaml",
        "README.md",
    ]
    for name, manifest in _manifests(result.k8s_dir).items():
        meta = manifest["metadata"]
        assert DNS_1035.match(meta["name"]), (name, meta["name"])
        if manifest["kind"] != "Namespace":
            assert meta["namespace"] == "proj-one", name
    readme = (result.k8s_dir / "README.md").read_text()
    assert f"kubectl apply -f {result.prod_dir.name}/k8s/" in readme
    assert "../docker/build.sh /path/to/flruntime" in readme


def test_defaults_namespace_image_and_claim(result):
    project = load_project(result.prod_dir.parent.parent.parent / "project.yml")
    assert project.k8s is not None and project.docker is not None
    assert (project.k8s.namespace, project.k8s.image, project.k8s.service) == ("proj-one", "flruntime:0.1.0", "server1")
    pvc = _manifests(result.k8s_dir)["01-workspaces-pvc.yaml"]
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    assert _manifests(result.k8s_dir)["00-namespace.yaml"]["metadata"]["name"] == "proj-one"


def test_builder_args(tmp_path):
    args = {
        "namespace": "fl-prod",
        "image": "registry.example.com/fl/flruntime:0.1.0",
        "storage_size": "50Gi",
        "storage_class": "fast-rwx",
        "access_mode": "ReadWriteMany",
    }
    res = _provision(tmp_path, _data([{"path": "K8sBuilder", "args": args}]))
    manifests = _manifests(res.k8s_dir)
    assert manifests["01-workspaces-pvc.yaml"]["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "fast-rwx",
    }
    for name, manifest in manifests.items():
        assert manifest["metadata"].get("namespace", manifest["metadata"]["name"]) == "fl-prod", name
        if manifest["kind"] == "Deployment":
            assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == args["image"]
    assert "FROM python:3.11-slim" in (res.docker_dir / "Dockerfile").read_text()
    assert f'build -t "{args["image"]}"' in (res.docker_dir / "build.sh").read_text()


def test_secrets_hold_each_kits_startup_files(he_result):
    manifests = _manifests(he_result.k8s_dir)
    for participant, label in (("server1", "server1"), ("site-1", "site-1"), ("Site_2", "site-2")):
        path = he_result.k8s_dir / f"10-{label}-kit-secret.yaml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private keys inside
        secret = manifests[path.name]
        assert secret["type"] == "Opaque" and secret["metadata"]["name"] == f"{label}-kit"
        startup = he_result.kits[participant] / "startup"
        files = {p.name: p.read_bytes() for p in startup.iterdir()}
        assert {k: base64.b64decode(v, validate=True) for k, v in secret["data"].items()} == files
        assert all(SECRET_KEY.match(key) for key in secret["data"])
    assert "server_context.tenseal" in manifests["10-server1-kit-secret.yaml"]["data"]
    assert "client_context.tenseal" in manifests["10-site-1-kit-secret.yaml"]["data"]
    assert "client_context.tenseal" not in manifests["10-server1-kit-secret.yaml"]["data"]
    assert not any("admin" in name for name in manifests)  # admin consoles run where the admins are


def _pod(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]


def test_deployments_run_site_start_with_the_kit_and_a_workspace(result):
    manifests = _manifests(result.k8s_dir)
    for participant, label in (("server1", "server1"), ("site-1", "site-1"), ("Site_2", "site-2")):
        deployment = manifests[f"30-{label}-deployment.yaml"]
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        pod = _pod(deployment)
        (container,) = pod["containers"]
        assert container["command"] == [
            "python",
            "-m",
            "flruntime",
            "site",
            "start",
            "--kit",
            f"/kits/{participant}",
            "--workspace",
            f"/workspace/{participant}",
        ]
        assert container["volumeMounts"] == [
            {"name": "kit", "mountPath": f"/kits/{participant}/startup", "readOnly": True},
            {"name": "workspace", "mountPath": f"/workspace/{participant}", "subPath": participant},
        ]
        assert pod["volumes"] == [
            {"name": "kit", "secret": {"secretName": f"{label}-kit", "defaultMode": 0o440}},
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "workspaces"}},
        ]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
        }
        assert ("ports" in container) == (participant == "server1")
    server = _pod(manifests["30-server1-deployment.yaml"])["containers"][0]
    assert server["ports"] == [
        {"name": "fed-learn", "containerPort": 9002, "protocol": "TCP"},
        {"name": "admin", "containerPort": 9003, "protocol": "TCP"},
        *({"name": f"job-{i}", "containerPort": 9004 + i, "protocol": "TCP"} for i in range(4)),
    ]
    assert server["env"] == [{"name": "FLRUNTIME_JOB_PORTS", "value": "9004-9007"}]  # one port per running job


def test_service_selects_the_server_pod_on_both_ports(result):
    manifests = _manifests(result.k8s_dir)
    service = manifests["20-server1-service.yaml"]
    assert service["metadata"]["name"] == "server1" and service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("fed-learn", 9002, 9002),
        ("admin", 9003, 9003),
        *((f"job-{i}", 9004 + i, 9004 + i) for i in range(4)),
    ]
    for name, manifest in manifests.items():
        if manifest["kind"] == "Deployment":
            labels = manifest["spec"]["template"]["metadata"]["labels"]
            selected = service["spec"]["selector"].items() <= labels.items()
            assert selected == name.startswith("30-server1"), name


# --- the server's certificate and the kits' target --------------------------------------------------------------


def test_server_certificate_names_the_service_and_every_kit_targets_it(result):
    cert = x509.load_pem_x509_certificate((result.kits["server1"] / "startup" / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "server1",
        "fl.example.com",
        "server1.proj-one",
        "server1.proj-one.svc",
        "server1.proj-one.svc.cluster.local",
    ]
    client = json.loads((result.kits["Site_2"] / "startup" / "fed_client.json").read_text())
    assert client["servers"][0]["service"]["target"] == "server1:9002"
    admin = json.loads((result.kits["admin@acme.org"] / "startup" / "fed_admin.json").read_text())["admin"]
    assert (admin["host"], admin["port"]) == ("server1", 9003)
    server = json.loads((result.kits["server1"] / "startup" / "fed_server.json").read_text())["servers"][0]
    assert "server1.proj-one.svc" in server["host_names"]


def test_a_server_name_that_is_no_dns_label_gets_a_service_name_the_certificate_holds(tmp_path):
    data = _data()
    data["participants"][0]["name"] = "FL.Server"
    res = _provision(tmp_path, data)
    manifests = _manifests(res.k8s_dir)
    assert manifests["20-fl-server-service.yaml"]["metadata"]["name"] == "fl-server"
    cert = x509.load_pem_x509_certificate((res.kits["FL.Server"] / "startup" / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"FL.Server", "fl-server", "fl-server.proj-one.svc"} <= set(names)
    target = json.loads((res.kits["site-1"] / "startup" / "fed_client.json").read_text())["servers"][0]["service"]
    assert target["target"] == "fl-server:9002"


def test_turning_the_k8s_builder_on_reissues_the_server_certificate_for_the_same_key(tmp_path):
    first = _provision(tmp_path, _data([{"path": "CertBuilder"}]))
    assert first.k8s_dir is None and first.docker_dir is None
    assert not (first.prod_dir / "k8s").exists()
    second = _provision(tmp_path, _data())
    assert second.reissued == ["server1"] and second.new == []
    for prod in (first, second):
        assert (prod.kits["server1"] / "startup" / "server.key").exists()
    key = (second.kits["server1"] / "startup" / "server.key").read_bytes()
    assert key == (first.kits["server1"] / "startup" / "server.key").read_bytes()
    # and unchanged afterwards: no new certificate when nothing changed
    third = _provision(tmp_path, _data())
    assert third.reissued == []


# --- a Secret mounted in a pod still verifies ---------------------------------------------------------------------


def _mount_like_kubelet(kit: Path, target: Path) -> Path:
    """Lay ``kit/startup`` out as a Secret volume: ``..<ts>/`` with the files, ``..data`` -> it, a link per file."""
    startup = target / "startup"
    stamp = startup / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for path in (kit / "startup").iterdir():
        (stamp / path.name).write_bytes(path.read_bytes())
        os.chmod(stamp / path.name, 0o440)
    (startup / "..data").symlink_to(stamp.name)
    for path in (kit / "startup").iterdir():
        (startup / path.name).symlink_to(f"..data/{path.name}")
    return target


def test_a_kit_mounted_from_a_secret_verifies_and_tampering_is_still_found(result, tmp_path):
    root = result.kits["site-1"] / "startup" / "rootCA.pem"
    mounted = _mount_like_kubelet(result.kits["site-1"], tmp_path / "kits" / "site-1")
    verify_kit(mounted, root)
    data = mounted / "startup" / "..data"
    config = data / "fed_client.json"
    os.chmod(config, 0o640)
    config.write_text(config.read_text().replace("server1:9002", "evil:9002"))
    with pytest.raises(KitSignatureError, match="fed_client.json: changed since provisioning"):
        verify_kit(mounted, root)


# --- project file checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builders", "message"),
    [
        (
            [{"path": "K8sBuilder", "args": {"namespace": "Bad_NS"}}],
            "$.builders[0].args.namespace: must be a Kubernetes namespace (a-z, 0-9, -; 63 at most), got 'Bad_NS'",
        ),
        (
            [{"path": "K8sBuilder", "args": {"storage_size": "ten"}}],
            "$.builders[0].args.storage_size: must be a Kubernetes quantity such as 10Gi, got 'ten'",
        ),
        (
            [{"path": "K8sBuilder", "args": {"access_mode": "ReadOnlyMany"}}],
            "$.builders[0].args.access_mode: must be one of ReadWriteOnce, ReadWriteMany, got 'ReadOnlyMany'",
        ),
        (
            [{"path": "K8sBuilder", "args": {"replicas": 2}}],
            "$.builders[0].args.replicas: unknown argument (known: namespace, image, storage_size, storage_class, "
            "access_mode, job_ports)",
        ),
        (
            [{"path": "K8sBuilder", "args": {"job_ports": 0}}],
            "$.builders[0].args.job_ports: must be a number of ports from 1 to 100, got 0",
        ),
        (
            [{"path": "DockerBuilder", "args": {"image": "a:1"}}, {"path": "K8sBuilder", "args": {"image": "b:2"}}],
            "$.builders[1].args.image: 'b:2' differs from the DockerBuilder's image 'a:1': give it once",
        ),
        (
            [{"path": "DockerBuilder", "args": {"extras": ["pt", "gpu"]}}],
            "$.builders[0].args.extras: must be a list of flruntime extras (pt, he, tracking, monai), got "
            "['pt', 'gpu']",
        ),
        (
            [{"path": "DockerBuilder", "args": {"requirements_file": "missing.txt"}}],
            "$.builders[0].args.requirements_file: no such file 'missing.txt' (relative to the project file's folder)",
        ),
    ],
)
def test_bad_builder_args_give_one_line_errors(tmp_path, builders, message):
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(_data(builders)))
    with pytest.raises(ProjectError) as err:
        load_project(path)
    assert err.value.problems == [f"project.yml: {message}"]


def test_participants_whose_kubernetes_names_collide_are_refused(tmp_path):
    data = _data()
    data["participants"].append({"name": "site.1", "type": "client", "org": "acme"})
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProjectError) as err:
        load_project(path)
    assert err.value.problems == [
        "project.yml: $.participants: 'site-1' and 'site.1' both become the Kubernetes name 'site-1' (K8sBuilder): "
        "rename one"
    ]


def test_a_kit_too_large_for_a_secret_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(k8s_module, "SECRET_LIMIT", 1000)
    with pytest.raises(
        ProvisionError, match=r"server1/startup: \d+ bytes, more than the 1000 bytes a Kubernetes Secret"
    ):
        _provision(tmp_path)


# --- the Dockerfile ---------------------------------------------------------------------------------------------


def _pt_pin() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    (pin,) = [line.strip() for line in cfg["options.extras_require"]["pt"].splitlines() if line.startswith("torch")]
    return pin


def test_dockerfile_installs_the_wheel_with_cpu_torch_and_runs_flruntime(he_result):
    docker = he_result.docker_dir
    assert docker == he_result.prod_dir / "docker"
    assert sorted(p.name for p in docker.iterdir()) == ["Dockerfile", "build.sh", "constraints.txt", "requirements.txt"]
    text = (docker / "Dockerfile").read_text()
    lines = text.splitlines()
    assert "FROM python:3.11-slim" in lines
    assert f"COPY {WHEEL} requirements.txt constraints.txt /tmp/flruntime-install/" in lines
    install = text[text.index("RUN python -m pip install") :].split("\n\n")[0]
    install = install[: install.index("rm -rf")]
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in install
    assert "-c /tmp/flruntime-install/constraints.txt -r /tmp/flruntime-install/requirements.txt" in install
    assert f'"/tmp/flruntime-install/{WHEEL}[he,pt]"' in install  # HE builder on: the he extra too
    assert (docker / "constraints.txt").read_text().splitlines()[1:] == [f"torch=={TORCH_VERSION}+cpu"]
    assert _pt_pin() == f"torch=={TORCH_VERSION}"  # the same pin as setup.cfg's pt extra
    assert lines[-4:] == [
        "USER 10001:10001",
        "WORKDIR /workspace",
        'ENTRYPOINT ["python", "-m", "flruntime"]',
        'CMD ["--help"]',
    ]
    assert "docker build -t flruntime:0.1.0 ." in text
    assert WHEEL == "flruntime-0.1.0-py3-none-any.whl"  # setup.cfg's name and version: what pip wheel writes
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == __version__


def test_docker_builder_alone_with_nvflare_args_and_requirements(tmp_path):
    (tmp_path / "reqs.txt").write_text("scikit-learn>=1.4\n")
    builders = [
        {
            "path": "nvflare.lighter.impl.docker.DockerBuilder",
            "args": {"base_image": "python:3.12-slim", "requirements_file": "reqs.txt", "extras": []},
        }
    ]
    res = _provision(tmp_path, _data(builders))
    assert res.k8s_dir is None and not (res.prod_dir / "k8s").exists()
    text = (res.docker_dir / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in text.splitlines()
    assert f'"/tmp/flruntime-install/{WHEEL}" \\' in text and "--extra-index-url" not in text
    assert (res.docker_dir / "requirements.txt").read_text().endswith("scikit-learn>=1.4\n")
    assert (res.docker_dir / "constraints.txt").read_text().splitlines()[1:] == []
    # without the K8sBuilder the kits keep the project's own target
    target = json.loads((res.kits["site-1"] / "startup" / "fed_client.json").read_text())["servers"][0]["service"]
    assert target["target"] == "fl.example.com:9002"


def _fake(path: Path, body: str) -> Path:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)
    return path


def test_build_script_builds_the_wheel_then_the_image(result, tmp_path):
    script = result.docker_dir / "build.sh"
    assert stat.S_IMODE(script.stat().st_mode) & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(script)], check=True)
    calls = tmp_path / "calls.txt"
    docker = _fake(tmp_path / "docker", f'echo "docker $*" >> {calls}')
    # `python -m pip wheel --no-deps --wheel-dir DIR SOURCE` writes the wheel into DIR
    python = _fake(tmp_path / "python", f'echo "python $*" >> {calls}; touch "$6/{WHEEL}"')
    env = {**os.environ, "DOCKER": str(docker), "PYTHON": str(python)}
    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2
    assert f"{WHEEL} is missing: pass a flruntime checkout or sdist" in missing.stderr
    out = subprocess.run(["bash", str(script), str(ROOT)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert calls.read_text().splitlines() == [
        f"python -m pip wheel --no-deps --wheel-dir {result.docker_dir} {ROOT}",
        f"docker build -t flruntime:0.1.0 {result.docker_dir}",
    ]


def test_cli_provision_names_the_image_and_the_manifests(tmp_path, capsys):
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(PROJECT))
    assert main(["provision", "-p", str(path), "-w", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    prod = tmp_path / "ws" / "Proj_One" / "prod_00"
    assert f"image flruntime:0.1.0: build it with {prod / 'docker' / 'build.sh'} /path/to/flruntime" in out
    assert f"Kubernetes manifests: {prod / 'k8s'} (kubectl apply -f {prod / 'k8s'}; see its README.md)" in out


def test_the_samples_commented_k8s_and_docker_builders_work_when_uncommented(tmp_path):
    from flruntime.provision.sample import SAMPLE_PROJECT

    text = re.sub(r"(?m)^  # (- path|  )", r"  \1", SAMPLE_PROJECT)
    assert "  - path: K8sBuilder" in text and "      storage_class: standard" in text
    (tmp_path / "requirements.txt").write_text("scikit-learn\n")
    (tmp_path / "project.yml").write_text(text)
    project = load_project(tmp_path / "project.yml")
    assert project.k8s is not None and project.docker is not None
    assert (project.k8s.namespace, project.k8s.storage_class, project.k8s.image) == (
        "example-project",
        "standard",
        "flruntime:0.1.0",
    )
    assert project.docker.extras == ("pt", "he")
    assert project.docker.requirements_file == tmp_path / "requirements.txt"
    assert project.server.default_host == "server"
