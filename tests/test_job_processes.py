"""Every job in its own process, on a real federation (server and two sites as processes on 127.0.0.1).

A job's code that crashes, is killed, runs out of memory, hangs or sleeps through an abort ends only its job
process: the site stays registered, other jobs go on, and the job's record says exactly why it failed.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from flruntime.federation import AdminSession, load_kit
from flruntime.federation.archive import zip_folder
from flruntime.transport.grpc_link import Stub, secure_channel
from flruntime.transport.streaming import iter_bytes, read_control
from tests.clientkit import NVF_INPROC, client_job
from tests.fedkit import Federation, np_job

pytestmark = pytest.mark.slow

SITES = ["site-1", "site-2"]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("jobproc")
    others = [{"name": "lead@clinic.org", "type": "admin", "org": "clinic", "role": "lead"}]
    federation = Federation(root, SITES, others=others, env={"FLRUNTIME_MAX_JOBS": "2"})
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in SITES:
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org \w+\) registered")
    yield federation
    federation.stop_all()


def session(fed: Federation, name: str = "admin@acme.org") -> AdminSession:
    return AdminSession(fed.kit(name))


def script_job(root: Path, script: str, *, args: str = "", meta: dict | None = None, **kwargs) -> Path:
    """A FedAvg job whose clients run ``script`` in process (as the fedavg_pt template does)."""
    executor = {
        "path": NVF_INPROC,
        "args": {"task_script_path": "train.py", "task_script_args": args, "params_transfer_type": "DIFF"},
    }
    job = client_job(root, executor, scripts={"train.py": script}, **kwargs)
    if meta:
        path = job / "meta.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
    return job


#: A script that trains (adds its site number) and, on site-1 in round ``--round``, does ``--then``.
SCRIPT = textwrap.dedent(
    """
    import argparse, os, signal, time
    import numpy as np
    import flruntime.client as flare

    parser = argparse.ArgumentParser()
    parser.add_argument("--round", type=int, default=-1)
    parser.add_argument("--then", default="")
    args = parser.parse_args()
    flare.init()
    site = flare.get_site_name()
    k = int(site.rsplit("-", 1)[1])
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if site == "site-1" and model.current_round == args.round:
            if args.then == "exit":
                os._exit(1)
            if args.then == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if args.then == "allocate":
                hog = []
                while True:
                    hog.append(bytearray(64 * 2**20))
                    for i in range(0, len(hog[-1]), 4096):
                        hog[-1][i] = 1
            if args.then == "sleep":
                time.sleep(100000)
        params = {n: np.asarray(v) + k for n, v in model.params.items()}
        flare.send(flare.FLModel(params=params, meta={"NUM_STEPS_CURRENT_ROUND": k}))
    """
)


def site_alive(fed: Federation, site: str) -> bool:
    return fed.procs[site].poll() is None


def job_processes(pid: int) -> list[psutil.Process]:
    """The job processes (and what they started) below a site's process."""
    return psutil.Process(pid).children(recursive=True)


def test_a_script_calling_os_exit_fails_only_its_job_with_the_cause(fed: Federation, tmp_path: Path):
    with session(fed) as s:
        job_id = s.submit(script_job(tmp_path / "exit", SCRIPT, args="--round 1 --then exit", num_rounds=3))
        rec = s.wait(job_id, timeout=180)
        assert rec["status"] == "FINISHED:EXECUTION_EXCEPTION"
        assert "job process on site-1 exited with code 1 during task 'train' (round 1)" in rec["error"]
        assert rec["error"].startswith("RuntimeError: round 1: only 1 of min_clients=2 results could be aggregated")
        assert site_alive(fed, "site-1") and site_alive(fed, "site-2")
        fed.wait_log("server", rf"job {job_id}: job process on site-1 exited with code 1 during task 'train'")
        text, _ = s.logs(job_id, "site-1")
        assert "job process on site-1 exited with code 1 during task 'train' (round 1)" in text
        after = s.submit(np_job(tmp_path / "next", SITES, rounds=2))  # the site runs the next job
        assert s.wait(after, timeout=180)["status"] == "FINISHED:COMPLETED"
        assert set(SITES) <= {r["name"] for r in s.list_sites()}


def test_a_sigkilled_job_process_is_reported_as_killed(fed: Federation, tmp_path: Path):
    with session(fed) as s:
        job_id = s.submit(script_job(tmp_path / "kill", SCRIPT, args="--round 0 --then kill"))
        rec = s.wait(job_id, timeout=180)
        assert rec["status"] == "FINISHED:EXECUTION_EXCEPTION"
        assert "job process on site-1 was killed by signal 9 (SIGKILL) during task 'train' (round 0)" in rec["error"]
        assert site_alive(fed, "site-1")


def test_a_script_past_its_memory_limit_is_stopped_and_named(fed: Federation, tmp_path: Path):
    meta = {"resource_spec": {"site-1": {"memory_limit": "600MiB"}}}
    with session(fed) as s:
        job_id = s.submit(script_job(tmp_path / "mem", SCRIPT, args="--round 0 --then allocate", meta=meta))
        rec = s.wait(job_id, timeout=180)
        assert rec["status"] == "FINISHED:EXECUTION_EXCEPTION"
        assert "job process on site-1 " in rec["error"] and "memory limit 600 MiB reached" in rec["error"]
        assert "during task 'train' (round 0)" in rec["error"]
        assert site_alive(fed, "site-1")


def test_a_killed_server_job_process_fails_its_job_and_the_server_goes_on(fed: Federation, tmp_path: Path):
    server_pid = fed.procs["server"].pid
    with session(fed) as s:
        job_id = s.submit(np_job(tmp_path / "long", SITES, rounds=500, sleep=0.2))
        fed.wait_log("server", rf"job {job_id}: round 1 done")
        (child,) = [p for p in psutil.Process(server_pid).children() if "flruntime.jobproc" in " ".join(p.cmdline())]
        child.send_signal(signal.SIGKILL)
        rec = s.wait(job_id, timeout=120)
        assert rec["status"] == "FINISHED:EXECUTION_EXCEPTION"
        assert rec["error"] == "server job process was killed by signal 9 (SIGKILL)"
        assert fed.procs["server"].poll() is None
        after = s.submit(np_job(tmp_path / "after", SITES, rounds=1))
        assert s.wait(after, timeout=180)["status"] == "FINISHED:COMPLETED"


def test_an_aborted_job_leaves_no_process_thread_or_port_behind(fed: Federation, tmp_path: Path):
    pids = {name: fed.procs[name].pid for name in ("server", *SITES)}
    before = {name: psutil.Process(pid).num_threads() for name, pid in pids.items()}
    ports = {name: len(psutil.Process(pid).net_connections(kind="inet")) for name, pid in pids.items()}
    with session(fed) as s:
        job_id = s.submit(script_job(tmp_path / "sleep", SCRIPT, args="--round 0 --then sleep"))
        fed.wait_log("site-1", rf"job {job_id}: 'site-1' runs it in job process")
        deadline = time.monotonic() + 60
        while not (tmp_path / "never").exists() and time.monotonic() < deadline:  # until site-1's script sleeps
            text, _ = s.logs(job_id, "site-2")
            if "train" in text and job_processes(pids["site-1"]):
                break
            time.sleep(0.5)
        time.sleep(2)
        s.abort(job_id)
        assert s.wait(job_id, timeout=60)["status"] == "FINISHED:ABORTED"
    for name, pid in pids.items():
        deadline = time.monotonic() + 30
        while job_processes(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job_processes(pid) == [], name
        deadline = time.monotonic() + 30
        while psutil.Process(pid).num_threads() > before[name] + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert psutil.Process(pid).num_threads() <= before[name] + 2, name
        assert len(psutil.Process(pid).net_connections(kind="inet")) <= ports[name], name
    assert not [p for p in psutil.process_iter(["cmdline"]) if "train.py" in " ".join(p.info["cmdline"] or [])]


def test_a_script_that_makes_no_progress_fails_its_task(fed: Federation, tmp_path: Path):
    meta = {"progress_timeout": 4}
    with session(fed) as s:
        job_id = s.submit(script_job(tmp_path / "hang", SCRIPT, args="--round 1 --then sleep", meta=meta))
        rec = s.wait(job_id, timeout=180)
        assert rec["status"] == "FINISHED:EXECUTION_EXCEPTION"
        assert "site-1: the training script made no progress for 4 s" in rec["error"]
        assert "round 1: only 1 of min_clients=2" in rec["error"]
        assert job_processes(fed.procs["site-1"].pid) == []


CLASHING_SERVER = "import numpy as np\nVALUE = {value}\n"


def test_two_jobs_with_the_same_custom_module_names_run_at_the_same_time(fed: Federation, tmp_path: Path):
    jobs = []
    for name in ("one", "two"):
        job = np_job(tmp_path / name, SITES, rounds=8, sleep=0.3)
        (job / "app" / "custom").mkdir()
        (job / "app" / "custom" / "parts.py").write_text(CLASHING_SERVER.format(value=len(name)))
        jobs.append(job)
    with session(fed) as s:
        ids = [s.submit(job) for job in jobs]
        for job_id in ids:
            fed.wait_log("server", rf"job {job_id} \(np_fedavg\): running with")
        running = [r for r in s.list_jobs() if r["status"] == "RUNNING"]
        assert {r["job_id"] for r in running} == set(ids)  # both at once
        for job_id in ids:
            assert s.wait(job_id, timeout=180)["status"] == "FINISHED:COMPLETED"
    assert "same module" not in fed.log("server")


HOSTILE = {
    "exit": "import os\nos._exit(3)\n",
    "raise": "raise SystemExit(4)\n",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_submission_cannot_stop_the_server(fed: Federation, tmp_path: Path, kind: str):
    """A lead of another org uploads a job whose custom code ends the process at import (no client-side check)."""
    server_pid = fed.procs["server"].pid
    job = np_job(tmp_path / kind, SITES, rounds=1)
    (job / "app" / "custom").mkdir()
    (job / "app" / "custom" / "fedavg_net.py").write_text(HOSTILE[kind])
    config = job / "app" / "config" / "config_fed_server.json"
    doc = json.loads(config.read_text())
    doc["components"].append({"id": "net", "path": "fedavg_net.Net"})
    config.write_text(json.dumps(doc))
    code = {"exit": 3, "raise": 4}[kind]
    before = sorted(p.name for p in (fed.kit("server") / "jobs").iterdir())
    kit = load_kit(fed.kit("lead@clinic.org"))
    channel = secure_channel(kit.target, kit.cert, kit.key, kit.root_cert, kit.server_name)
    reply = read_control(Stub(channel).stream_in("SubmitJob", iter_bytes(zip_folder(job), name=kind), 120))
    channel.close()
    assert reply == {
        "ok": False,
        "errors": [
            f"app/config/config_fed_server.json:1: $.components[3].path: custom/fedavg_net.py: importing it exited "
            f"the process with code {code} (move that code under if __name__ == '__main__')"
        ],
    }
    assert fed.procs["server"].poll() is None and fed.procs["server"].pid == server_pid
    assert sorted(p.name for p in (fed.kit("server") / "jobs").iterdir()) == before  # no orphan folder
    with session(fed) as s:
        job_id = s.submit(np_job(tmp_path / f"{kind}-after", SITES, rounds=1))
        assert s.wait(job_id, timeout=180)["status"] == "FINISHED:COMPLETED"


def test_the_site_process_never_imports_a_jobs_code(fed: Federation, tmp_path: Path):
    job = np_job(tmp_path / "marker", SITES, rounds=1)
    (job / "app" / "custom").mkdir()
    marker = tmp_path / "imported-by.txt"
    (job / "app" / "custom" / "probe.py").write_text(
        f"import os\nwith open({str(marker)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
        "class Probe:\n    pass\n"
    )
    config = job / "app" / "config" / "config_fed_client.json"
    doc = json.loads(config.read_text())
    doc["components"] = [{"id": "probe", "path": "probe.Probe"}]
    config.write_text(json.dumps(doc))
    with session(fed) as s:
        job_id = s.submit(job)
        assert s.wait(job_id, timeout=180)["status"] == "FINISHED:COMPLETED"
    importers = {int(p) for p in marker.read_text().split()}
    assert importers and not importers & {fed.procs[n].pid for n in ("server", *SITES)}


def test_threads_of_a_finished_job_do_not_pile_up(fed: Federation, tmp_path: Path):
    pid = fed.procs["site-1"].pid
    with session(fed) as s:
        first = s.submit(np_job(tmp_path / "a", SITES, rounds=1))
        assert s.wait(first, timeout=180)["status"] == "FINISHED:COMPLETED"
        time.sleep(1)
        threads = psutil.Process(pid).num_threads()
        for i in range(3):
            job_id = s.submit(np_job(tmp_path / f"b{i}", SITES, rounds=1))
            assert s.wait(job_id, timeout=180)["status"] == "FINISHED:COMPLETED"
    time.sleep(1)
    assert psutil.Process(pid).num_threads() <= threads + 1
    assert threading.active_count() >= 1 and os.getpid() != pid


def test_simulate_processes_reports_a_script_that_exits_as_that_clients_failure(tmp_path: Path):
    import subprocess
    import sys

    job = script_job(tmp_path / "job", SCRIPT, args="--round 1 --then exit", num_rounds=3)
    ws = tmp_path / "ws"
    done = subprocess.run(
        [sys.executable, "-m", "flruntime", "simulate", str(job), "-n", "2", "-w", str(ws), "--processes", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    results = json.loads((ws / "results.json").read_text())
    assert results["status"] == "FINISHED:EXECUTION_EXCEPTION" and results["rounds_completed"] == 1
    assert "site-1: job process on site-1 exited with code 1 during task 'train' (round 1)" in results["error"]
    assert results["bytes_to_clients"] > 0 and results["bytes_to_server"] > 0  # counted by the job processes
    assert "flruntime: the job did not complete" in done.stderr


def test_simulate_processes_gives_the_thread_simulators_model(tmp_path: Path):
    from flruntime.jobproc.simulate import ProcessClients
    from flruntime.runtime.simulator import simulate
    from tests.clientkit import assert_model, expected_model, final_model

    job = script_job(tmp_path / "job", SCRIPT)
    threads = simulate(job, n_clients=2, workspace=tmp_path / "threads", progress=None)
    procs = simulate(job, n_clients=2, workspace=tmp_path / "procs", progress=None, client_runner=ProcessClients())
    assert threads.ok and procs.ok, procs.error
    assert_model(final_model(tmp_path / "procs"), final_model(tmp_path / "threads"))
    assert_model(final_model(tmp_path / "procs"), expected_model([[1, 2], [1, 2]]))
