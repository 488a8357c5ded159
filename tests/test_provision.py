"""``flruntime provision``: project checks, kit layout, certificates, signatures, re-provisioning."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from flruntime.cli.main import main
from flruntime.provision import KitSignatureError, ProjectError, load_project, provision, verify_kit
from flruntime.provision.sample import SAMPLE_PROJECT

PROJECT = {
    "api_version": 3,
    "name": "proj",
    "participants": [
        {
            "name": "server1",
            "type": "server",
            "org": "acme",
            "host_names": ["fl.example.com"],
            "fed_learn_port": 9002,
            "admin_port": 9003,
        },
        {"name": "site-1", "type": "client", "org": "acme"},
        {"name": "site-2", "type": "client", "org": "clinic"},
        {"name": "admin@acme.org", "type": "admin", "org": "acme", "role": "project_admin"},
    ],
    "builders": [{"path": "nvflare.lighter.impl.cert.CertBuilder"}, {"path": "SignatureBuilder"}],
}


def _write(tmp_path: Path, data, name: str = "project.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _provision(tmp_path: Path, data=None, he: bool = False):
    data = json.loads(json.dumps(data or PROJECT))
    if he:
        data["builders"].append(
            {
                "path": "HEBuilder",
                "args": {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [40, 20, 40], "scale_bits": 20},
            }
        )
    return provision(load_project(_write(tmp_path, data)), tmp_path / "ws")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _files(kit: Path) -> set[str]:
    return {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def he_kits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("he")
    return tmp, _provision(tmp, he=True)


# --- kit layout -------------------------------------------------------------------------------------------------


def test_kit_layout_per_participant_type(tmp_path):
    result = _provision(tmp_path)
    assert result.prod_dir == tmp_path / "ws" / "proj" / "prod_00"
    assert set(result.kits) == {"server1", "site-1", "site-2", "admin@acme.org"}
    common = {"readme.txt", "startup/rootCA.pem", "startup/signature.json"}
    scripts = {"startup/start.sh", "startup/sub_start.sh", "startup/stop.sh"}
    assert _files(result.kits["server1"]) == common | scripts | {
        "startup/fed_server.json",
        "startup/server.crt",
        "startup/server.key",
    }
    assert _files(result.kits["site-1"]) == common | scripts | {
        "startup/fed_client.json",
        "startup/client.crt",
        "startup/client.key",
    }
    assert _files(result.kits["admin@acme.org"]) == common | {
        "startup/fed_admin.json",
        "startup/client.crt",
        "startup/client.key",
        "startup/fl_admin.sh",
    }
    for kit in result.kits.values():
        assert (kit / "local").is_dir() and (kit / "transfer").is_dir()
    # the CA stays in state/, never in a kit
    state = tmp_path / "ws" / "proj" / "state"
    assert (state / "rootCA.key").is_file()
    assert not any(p.name == "rootCA.key" for p in result.prod_dir.rglob("*"))


def test_connection_configs(tmp_path):
    kits = _provision(tmp_path).kits
    server = json.loads((kits["server1"] / "startup" / "fed_server.json").read_text())
    assert server["format_version"] == 2
    s = server["servers"][0]
    assert s["name"] == "server1" and s["service"] == {"target": "server1:9002", "scheme": "grpc"}
    assert s["admin_port"] == 9003 and s["ssl_cert"] == "server.crt" and s["connection_security"] == "mtls"
    client = json.loads((kits["site-2"] / "startup" / "fed_client.json").read_text())
    assert client["servers"] == [
        {"name": "server1", "service": {"target": "server1:9002", "scheme": "grpc"}, "identity": "server1"}
    ]
    assert client["client"]["name"] == "site-2" and client["client"]["ssl_private_key"] == "client.key"
    admin = json.loads((kits["admin@acme.org"] / "startup" / "fed_admin.json").read_text())["admin"]
    assert (admin["username"], admin["role"], admin["host"], admin["port"]) == (
        "admin@acme.org",
        "project_admin",
        "server1",
        9003,
    )


def test_scripts_are_executable_bash_and_run_the_site_verb(tmp_path):
    kit = _provision(tmp_path).kits["site-1"]
    for name in ("start.sh", "sub_start.sh", "stop.sh"):
        script = kit / "startup" / name
        assert script.stat().st_mode & stat.S_IXUSR
        subprocess.run(["bash", "-n", str(script)], check=True)
    sub = (kit / "startup" / "sub_start.sh").read_text()
    assert '"$PYTHON" -m flruntime site start --kit "$KIT"' in sub


def test_sub_start_stops_for_a_tampered_kit(tmp_path):
    kit = _provision(tmp_path).kits["site-1"]
    config = kit / "startup" / "fed_client.json"
    config.write_text(config.read_text().replace("site-1", "site-9"))
    out = subprocess.run(
        ["bash", str(kit / "startup" / "sub_start.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert f"flruntime: error: {config}: changed since provisioning" in out.stderr
    assert "site-1: stopped (last exit code 1)" in out.stdout
    assert not (kit / "pid.fl").exists()


# --- certificates -----------------------------------------------------------------------------------------------


def test_certificates_verify_against_the_root_ca_with_names(tmp_path):
    kits = _provision(tmp_path).kits
    root = _cert(tmp_path / "ws" / "proj" / "state" / "rootCA.pem")
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "proj"
    expected = {
        "server1": ("server", "acme"),
        "site-1": ("client", "acme"),
        "site-2": ("client", "clinic"),
        "admin@acme.org": ("client", "acme"),
    }
    for name, (stem, org) in expected.items():
        startup = kits[name] / "startup"
        assert (startup / "rootCA.pem").read_bytes() == (tmp_path / "ws" / "proj" / "state" / "rootCA.pem").read_bytes()
        cert = _cert(startup / f"{stem}.crt")
        cert.verify_directly_issued_by(root)
        root.public_key().verify(  # type: ignore[union-attr]
            cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
        )
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == org
        key_mode = stat.S_IMODE((startup / f"{stem}.key").stat().st_mode)
        assert key_mode == 0o600
    server = _cert(kits["server1"] / "startup" / "server.crt")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["server1", "fl.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    client = _cert(kits["site-1"] / "startup" / "client.crt")
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    admin = _cert(kits["admin@acme.org"] / "startup" / "client.crt")
    assert admin.subject.get_attributes_for_oid(NameOID.UNSTRUCTURED_NAME)[0].value == "project_admin"
    assert stat.S_IMODE((tmp_path / "ws" / "proj" / "state" / "rootCA.key").stat().st_mode) == 0o600


def test_server_kit_holds_no_client_secrets(tmp_path):
    result = _provision(tmp_path)
    server = b"".join(p.read_bytes() for p in result.kits["server1"].rglob("*") if p.is_file())
    state = tmp_path / "ws" / "proj" / "state"
    for secret in [state / "rootCA.key", *(state / "participants").glob("*.key")]:
        if secret.name != "server1.key":
            assert secret.read_bytes() not in server, secret.name


# --- HE ---------------------------------------------------------------------------------------------------------


def test_he_contexts_public_on_the_server_secret_on_clients(he_kits):
    import tenseal as ts  # the `he` extra; CI installs it

    _, result = he_kits
    server = result.kits["server1"] / "startup"
    assert not (server / "client_context.tenseal").exists()
    public = ts.context_from((server / "server_context.tenseal").read_bytes())
    assert public.is_public() and not public.is_private()
    contexts = []
    for site in ("site-1", "site-2"):
        startup = result.kits[site] / "startup"
        assert not (startup / "server_context.tenseal").exists()
        assert stat.S_IMODE((startup / "client_context.tenseal").stat().st_mode) == 0o600
        contexts.append((startup / "client_context.tenseal").read_bytes())
        assert ts.context_from(contexts[-1]).is_private()
    assert contexts[0] == contexts[1]  # one shared key
    assert not any("tenseal" in p.name for p in result.kits["admin@acme.org"].rglob("*"))
    assert json.loads((server / "fed_server.json").read_text())["servers"][0]["he_context"] == "server_context.tenseal"
    verify_kit(result.kits["server1"], result.kits["site-1"] / "startup" / "rootCA.pem")


def test_reprovisioning_keeps_the_he_key(he_kits):
    tmp, first = he_kits
    again = _provision(tmp, he=True)
    for name in ("server_context.tenseal", "client_context.tenseal"):
        site = "server1" if name.startswith("server") else "site-1"
        assert (again.kits[site] / "startup" / name).read_bytes() == (first.kits[site] / "startup" / name).read_bytes()


# --- signatures -------------------------------------------------------------------------------------------------


def test_verify_kit_passes_on_fresh_kits(tmp_path):
    result = _provision(tmp_path)
    root = tmp_path / "ws" / "proj" / "state" / "rootCA.pem"
    for kit in result.kits.values():
        verify_kit(kit, root)
    verify_kit(result.kits["site-1"], root.read_bytes())
    verify_kit(result.kits["site-1"], _cert(root))


def test_verify_kit_detects_a_changed_byte(tmp_path):
    kit = _provision(tmp_path).kits["site-1"]
    target = kit / "startup" / "fed_client.json"
    data = bytearray(target.read_bytes())
    data[10] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(KitSignatureError) as err:
        verify_kit(kit, kit / "startup" / "rootCA.pem")
    assert str(err.value) == f"{target}: changed since provisioning (its SHA-256 differs from the signed one)"


def test_verify_kit_detects_an_added_file(tmp_path):
    kit = _provision(tmp_path).kits["server1"]
    extra = kit / "startup" / "extra.sh"
    extra.write_text("echo hi\n")
    with pytest.raises(KitSignatureError) as err:
        verify_kit(kit, kit / "startup" / "rootCA.pem")
    assert str(err.value) == f"{extra}: added since provisioning (it is not signed in signature.json)"


def test_verify_kit_detects_a_deleted_file(tmp_path):
    kit = _provision(tmp_path).kits["site-2"]
    gone = kit / "startup" / "stop.sh"
    gone.unlink()
    with pytest.raises(KitSignatureError) as err:
        verify_kit(kit, kit / "startup" / "rootCA.pem")
    assert str(err.value) == f"{gone}: removed since provisioning (it is signed in signature.json)"


def test_verify_kit_detects_a_dropped_entry_and_a_foreign_ca(tmp_path):
    result = _provision(tmp_path / "a")
    kit = result.kits["site-1"]
    sig = kit / "startup" / "signature.json"
    doc = json.loads(sig.read_text())
    del doc["files"]["stop.sh"]
    (kit / "startup" / "stop.sh").unlink()
    sig.write_text(json.dumps(doc))
    with pytest.raises(KitSignatureError) as err:
        verify_kit(kit, kit / "startup" / "rootCA.pem")
    assert str(err.value) == f"{sig}: the file list is not signed by the root certificate's key"
    other = _provision(tmp_path / "b")
    with pytest.raises(KitSignatureError, match="not signed by the root certificate's key"):
        verify_kit(other.kits["site-2"], kit / "startup" / "rootCA.pem")
    sig.unlink()
    with pytest.raises(KitSignatureError) as err:
        verify_kit(kit, kit / "startup" / "rootCA.pem")
    assert str(err.value) == f"{sig}: missing: the kit is not signed"


# --- re-provisioning --------------------------------------------------------------------------------------------


def test_reprovisioning_keeps_existing_keys_and_adds_the_new_participant(tmp_path):
    first = _provision(tmp_path)
    data = json.loads(json.dumps(PROJECT))
    data["participants"].append({"name": "site-3", "type": "client", "org": "acme"})
    second = _provision(tmp_path, data)
    assert second.prod_dir.name == "prod_01" and not second.ca_created and first.ca_created
    assert second.new == ["site-3"] and second.reissued == []
    for name, stem in (("server1", "server"), ("site-1", "client"), ("admin@acme.org", "client")):
        for ext in ("crt", "key"):
            a = first.kits[name] / "startup" / f"{stem}.{ext}"
            b = second.kits[name] / "startup" / f"{stem}.{ext}"
            assert a.read_bytes() == b.read_bytes(), (name, ext)
    root = first.kits["site-1"] / "startup" / "rootCA.pem"
    assert (second.kits["site-3"] / "startup" / "rootCA.pem").read_bytes() == root.read_bytes()
    _cert(second.kits["site-3"] / "startup" / "client.crt").verify_directly_issued_by(_cert(root))
    verify_kit(second.kits["site-3"], root)
    # a changed org: same key, a new certificate
    data["participants"][1]["org"] = "other"
    third = _provision(tmp_path, data)
    assert third.reissued == ["site-1"] and third.new == []
    key = (third.kits["site-1"] / "startup" / "client.key").read_bytes()
    assert key == (first.kits["site-1"] / "startup" / "client.key").read_bytes()
    cert = _cert(third.kits["site-1"] / "startup" / "client.crt")
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "other"


# --- project file errors ----------------------------------------------------------------------------------------


def _bad(**change):
    data = json.loads(json.dumps(PROJECT))
    data.update(change)
    return data


def _participants(*edits):
    parts = json.loads(json.dumps(PROJECT["participants"]))
    for index, key, value in edits:
        if value is None:
            del parts[index][key]
        else:
            parts[index][key] = value
    return parts


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _bad(participants=_participants((3, "role", "boss"))),
            "project.yml: $.participants[3].role: must be one of project_admin, org_admin, lead, member",
        ),
        (
            _bad(participants=_participants((1, "type", "relay"))),
            "project.yml: $.participants[1].type: must be one of server, client, admin, got 'relay'",
        ),
        (
            _bad(participants=_participants((2, "name", "site-1"))),
            "project.yml: $.participants[2].name: duplicate name 'site-1' (also $.participants[1])",
        ),
        (
            _bad(participants=_participants((1, "type", "server"))),
            "project.yml: $.participants: exactly one participant of type server is needed, found 2",
        ),
        (
            _bad(participants=_participants((0, "type", "client"))),
            "project.yml: $.participants: exactly one participant of type server is needed, found 0",
        ),
        (
            _bad(participants=_participants((1, "org", None))),
            "project.yml: $.participants[1]: missing required key 'org'",
        ),
        (
            _bad(participants=_participants((0, "fed_learn_port", 70000))),
            "project.yml: $.participants[0].fed_learn_port: must be a port number 1 to 65535, got 70000",
        ),
        (
            _bad(participants=_participants((1, "name", "../evil"))),
            "project.yml: $.participants[1].name: must be a name of letters, digits and @ . _ - (starting with a "
            "letter or digit), got '../evil'",
        ),
        (_bad(participants=[]), "project.yml: $.participants: must be a non-empty list of participants"),
        (
            _bad(builders=[{"path": "nvflare.lighter.impl.helm_chart.HelmChartBuilder"}]),
            "project.yml: $.builders[0].path: unknown builder 'nvflare.lighter.impl.helm_chart.HelmChartBuilder' "
            "(known: WorkspaceBuilder, StaticFileBuilder, CertBuilder, SignatureBuilder, HEBuilder, DockerBuilder, "
            "K8sBuilder)",
        ),
        (
            _bad(builders=[{"path": "HEBuilder", "args": {"degree": 4096}}]),
            "project.yml: $.builders[0].args.degree: unknown argument (known: poly_modulus_degree, "
            "coeff_mod_bit_sizes, scale_bits, scheme)",
        ),
        (
            _bad(builders=[{"path": "HEBuilder", "args": {"poly_modulus_degree": 1000}}]),
            "project.yml: $.builders[0].args: poly_modulus_degree must be one of [1024, 2048, 4096, 8192, 16384, "
            "32768], got 1000",
        ),
        ([1, 2], "project.yml: $: must be a mapping with name and participants, got list"),
    ],
)
def test_bad_project_files_give_one_line_errors(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ProjectError) as err:
        load_project(path)
    assert err.value.problems == [message]


def test_every_problem_is_reported(tmp_path):
    data = _bad(name="", participants=_participants((3, "role", None), (2, "name", "site-1")))
    with pytest.raises(ProjectError) as err:
        load_project(_write(tmp_path, data))
    assert err.value.problems == [
        "project.yml: $.name: must be a name of letters, digits and @ . _ - (starting with a letter or digit), got ''",
        "project.yml: $.participants[2].name: duplicate name 'site-1' (also $.participants[1])",
        "project.yml: $.participants[3].role: must be one of project_admin, org_admin, lead, member",
    ]
    assert str(err.value).endswith(" (and 2 more)")


def test_yaml_syntax_error(tmp_path):
    with pytest.raises(ProjectError) as err:
        load_project(_write(tmp_path, "name: [x\n"))
    assert err.value.problems[0].startswith("project.yml: line 2: not valid YAML: ")


# --- CLI --------------------------------------------------------------------------------------------------------


def test_cli_init_then_provision(tmp_path, capsys):
    path = tmp_path / "project.yml"
    assert main(["provision", "--init", "-p", str(path)]) == 0
    assert path.read_text() == SAMPLE_PROJECT
    assert main(["provision", "--init", "-p", str(path)]) == 2
    assert f"{path} exists (use --force to replace it)" in capsys.readouterr().err
    project = load_project(path)
    assert [p.type for p in project.participants].count("server") == 1
    assert {p.role for p in project.of_type("admin")} == {"project_admin", "org_admin", "lead"}
    assert project.he is not None
    ws = tmp_path / "ws"
    assert main(["provision", "-p", str(path), "-w", str(ws)]) == 0
    captured = capsys.readouterr()
    assert f"site-1: {ws / 'example_project' / 'prod_00' / 'site-1'} (new key)" in captured.out
    assert f"example_project: 6 startup kit(s) in {ws / 'example_project' / 'prod_00'}; project CA created" in (
        captured.err
    )
    assert (ws / "example_project" / "prod_00" / "site-2" / "startup" / "client_context.tenseal").is_file()


def test_cli_invalid_project_exits_1(tmp_path, capsys):
    data = _bad(participants=_participants((3, "role", "boss")))
    path = _write(tmp_path, data)
    assert main(["provision", "-p", str(path), "-w", str(tmp_path / "ws")]) == 1
    assert capsys.readouterr().err == (
        "project.yml: $.participants[3].role: must be one of project_admin, org_admin, lead, member\n"
    )
    assert not (tmp_path / "ws").exists()
    assert main(["provision", "-p", str(tmp_path / "missing.yml"), "-w", str(tmp_path / "ws")]) == 1


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["provision", "--bogus"])
    assert err.value.code == 2
    assert main(["provision", "--force", "-p", str(_write(tmp_path, PROJECT))]) == 2
    assert "--force only goes with --init" in capsys.readouterr().err
