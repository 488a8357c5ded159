"""A real federation: server and clients as separate processes over gRPC with mutual TLS on 127.0.0.1.

One provisioned project (server, site-1..3, an admin) serves the tests of this module in order: fedavg_pt to
completion with the simulator's final model, refused intruders while jobs keep running, a client killed
mid-round that rejoins, and a server restart that clients survive.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from cryptography import x509

from flruntime.federation import AdminSession, FederationClient, load_kit
from flruntime.provision import certs
from flruntime.provision.project import Participant
from flruntime.runtime.simulator import simulate
from flruntime.transport.grpc_link import Stub
from flruntime.transport.streaming import control
from tests.fedkit import Federation, fedavg_job, np_job, provision_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("federation")
    federation = Federation(root, ["site-1", "site-2", "site-3"])
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    federation.start("site-1")
    federation.start("site-2")
    federation.wait_log("server", r"client 'site-1' \(org acme\) registered")
    federation.wait_log("server", r"client 'site-2' \(org acme\) registered")
    yield federation
    federation.stop_all()


def admin(fed: Federation) -> AdminSession:
    return AdminSession(fed.kit("admin@acme.org"))


def test_fedavg_pt_over_grpc_gives_the_simulators_model(fed: Federation, tmp_path: Path):
    job = fedavg_job(tmp_path / "fedavg", rounds=2)
    with admin(fed) as s:
        job_id = s.submit(job)
        rec = s.wait(job_id, timeout=600)
        assert rec["status"] == "FINISHED:COMPLETED", rec
        assert rec["rounds"] == 2 and rec["sites"] == ["site-1", "site-2"]
        got = s.download(job_id, tmp_path / "download")
    assert {p.name for p in got.iterdir()} >= {"FL_global_model.pt", "cross_site_val", "log.txt", "mlflow.db"}
    matrix = json.loads((got / "cross_site_val" / "cross_val_results.json").read_text())
    assert set(matrix) == {"site-1", "site-2"}
    for site in ("site-1", "site-2"):  # each client ran the job in its own workspace, with its own log
        assert (fed.kit(site) / job_id / "log.txt").read_text().count("val_acc_global_model") == 2

    sim = simulate(job, clients=["site-1", "site-2"], workspace=tmp_path / "sim", progress=None)
    assert sim.ok
    ours = torch.load(got / "FL_global_model.pt", weights_only=True)["model"]
    theirs = torch.load(Path(sim.workspace) / "server" / "FL_global_model.pt", weights_only=True)["model"]
    assert ours.keys() == theirs.keys()
    for name in ours:  # the same model up to the order in which the two results were summed
        np.testing.assert_allclose(ours[name].numpy(), theirs[name].numpy(), rtol=0, atol=1e-6, err_msg=name)


def _server_intact(fed: Federation, tmp_path: Path) -> None:
    """The federation still runs jobs after an intruder was refused."""
    with admin(fed) as s:
        job_id = s.submit(np_job(tmp_path / f"np_{time.monotonic_ns()}", ["site-1", "site-2"], rounds=1))
        assert s.wait(job_id, timeout=120)["status"] == "FINISHED:COMPLETED"


def _run_client(kit, seconds: float = 3.0) -> tuple[int | None, FederationClient]:
    client = FederationClient(kit, reconnect_max=0.5)
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(client.run()))
    thread.start()
    thread.join(timeout=seconds)
    client.stop()
    thread.join(timeout=30)
    client.close()
    return (out[0] if out else None), client


def test_a_client_certificate_from_another_ca_is_refused(fed: Federation, tmp_path: Path, caplog):
    other = provision_project(tmp_path / "other", "proj", fed.port, ["site-1"])
    mine = load_kit(fed.kit("site-1"))
    foreign = load_kit(other / "site-1")
    # it trusts our server (our root certificate) but presents a certificate signed by another CA
    intruder = dataclasses.replace(mine, cert=foreign.cert, key=foreign.key)
    with caplog.at_level(logging.WARNING, logger="flruntime.federation.client"):
        rc, client = _run_client(intruder)
    assert rc == 0 and not client.refusal  # still trying: nothing reached the application
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith(f"register: the server at 127.0.0.1:{fed.port} closed the connection during the TLS handshake")
        for line in lines
    ), lines
    # gRPC's own line in the server's log says why
    fed.wait_log("server", r"Handshake failed.*CERTIFICATE_VERIFY_FAILED")
    _server_intact(fed, tmp_path)


def test_a_server_from_another_ca_is_not_trusted(fed: Federation, tmp_path: Path, caplog):
    other = provision_project(tmp_path / "other", "proj", fed.port, ["site-1"])
    with caplog.at_level(logging.WARNING, logger="flruntime.federation.client"):
        rc, client = _run_client(load_kit(other / "site-1"))
    assert rc == 0 and not client.refusal
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


def test_an_unknown_name_signed_by_the_project_ca_is_refused(fed: Federation, tmp_path: Path):
    state = fed.prod.parent / "state"
    ca_key = certs.load_key((state / "rootCA.key").read_bytes())
    ca_cert = x509.load_pem_x509_certificate((state / "rootCA.pem").read_bytes())
    key = certs.new_key()
    cert = certs.issue(Participant("intruder", "client", "acme"), key, ca_key, ca_cert)
    kit = dataclasses.replace(
        load_kit(fed.kit("site-1")), name="intruder", cert=certs.cert_pem(cert), key=certs.key_pem(key)
    )
    rc, client = _run_client(kit, seconds=30)
    assert rc == 1
    assert client.refusal == "refused by server 'server': 'intruder' is not a participant of project 'proj'"
    assert fed.wait_log("server", r"refused Register from \S+: 'intruder' is not a participant of project 'proj'")
    _server_intact(fed, tmp_path)


def test_a_plaintext_connection_is_refused(fed: Federation, tmp_path: Path):
    channel = grpc.insecure_channel(f"127.0.0.1:{fed.port}")
    with pytest.raises(grpc.RpcError) as err:
        Stub(channel).unary("Register", control(site="site-1"), timeout=10)
    channel.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "WRONG_VERSION_NUMBER" in fed.wait_log("server", r"Handshake failed.*WRONG_VERSION_NUMBER").group(0)
    _server_intact(fed, tmp_path)


def test_a_client_cannot_use_admin_commands(fed: Federation):
    kit = load_kit(fed.kit("site-1"))
    from flruntime.transport.grpc_link import secure_channel

    channel = secure_channel(kit.target, kit.cert, kit.key, kit.root_cert)
    with pytest.raises(grpc.RpcError) as err:
        Stub(channel).unary("Command", control(command="list_jobs"), timeout=10)
    channel.close()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "refused by server 'server': 'site-1' is a client; Command is for admins"


def test_a_tampered_kit_does_not_start(fed: Federation, tmp_path: Path):
    kit = tmp_path / "site-2"
    shutil.copytree(fed.kit("site-2"), kit)
    config = kit / "startup" / "fed_client.json"
    config.write_text(config.read_text().replace('"site-2"', '"site-1"'))
    out = subprocess.run(
        [sys.executable, "-m", "flruntime", "site", "start", "--kit", str(kit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr == (
        f"flruntime: error: {config}: changed since provisioning (its SHA-256 differs from the signed one)\n"
    )


def test_an_admin_kit_is_not_started_as_a_site(fed: Federation):
    out = subprocess.run(
        [sys.executable, "-m", "flruntime", "site", "start", "--kit", str(fed.kit("admin@acme.org"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().endswith("is an admin kit: open the admin console with its startup/fl_admin.sh")


def _rounds(log: str, job_id: str) -> list[list[str]]:
    import re

    return [m.group(2).split(", ") for m in re.finditer(rf"job {job_id}: round (\d+) done with ([^\n]+)", log)]


def test_a_killed_client_is_dropped_from_the_round_and_rejoins(fed: Federation, tmp_path: Path):
    fed.start("site-3")
    fed.wait_log("server", r"client 'site-3' \(org acme\) registered")
    sites = ["site-1", "site-2", "site-3"]
    with admin(fed) as s:
        job_id = s.submit(np_job(tmp_path / "np", sites, rounds=8, sleep=1.5, min_clients=2, wait_after_min=60))
        fed.wait_log("server", rf"job {job_id}: round 1 done with site-1, site-2, site-3")
        fed.kill("site-3")  # mid-round 2: it had its task and never answers
        fed.wait_log("server", r"client 'site-3': no heartbeat for 3 s; considered gone")
        fed.start("site-3")
        fed.wait_log("server", rf"job {job_id}: 'site-3' joined", count=2)
        rec = s.wait(job_id, timeout=300)
    assert rec["status"] == "FINISHED:COMPLETED", rec
    rounds = _rounds(fed.log("server"), job_id)
    assert len(rounds) == 8
    assert rounds[0] == rounds[1] == sites
    assert rounds[2] == ["site-1", "site-2"]  # the round it was killed in finished with the others
    assert rounds[-1] == sites  # back for the last rounds
    model = np.load(fed.kit("server") / job_id / "models" / "server.npy")
    np.testing.assert_array_equal(model, np.arange(1, 10, dtype=np.float32).reshape(3, 3) + 8)


def test_clients_reconnect_after_a_server_restart(fed: Federation, tmp_path: Path):
    with admin(fed) as s:
        running = s.submit(np_job(tmp_path / "long", ["site-1", "site-2"], rounds=50, sleep=1.0))
    fed.wait_log("server", rf"job {running}: round 0 done")
    fed.kill("server")
    for site in ("site-1", "site-2"):
        fed.wait_log(site, r"'site-\d' lost the server")
    fed.start("server")
    for site in ("site-1", "site-2"):
        fed.wait_log(site, r"registered with server 'server'", count=2)
        fed.wait_log(site, rf"job {running}: '{site}' done")  # the new server does not run it: the site stops it
    with admin(fed) as s:
        rec = s.job(running)
        assert rec["status"] == "FINISHED:ABORTED"
        assert rec["error"] == "the server stopped while the job ran"
        job_id = s.submit(np_job(tmp_path / "after", ["site-1", "site-2"], rounds=2))
        assert s.wait(job_id, timeout=120)["status"] == "FINISHED:COMPLETED"
