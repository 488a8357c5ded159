"""NVFlare's Python job API (2.5 / 2.6) and ``flruntime run``: scripts written for NVFlare run unchanged.

NVFlare 2.5.2's hello-pt (``fedavg_script_runner_pt.py`` and its ``src/``) runs under ``flruntime run`` with only
its data loading changed (tests/nvcodekit.py); its export matches tests/data/hello-pt_cifar10_fedavg, the job
folder NVFlare 2.5.2 writes for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flruntime.components.aggregators.intime import InTimeAccumulateWeightedAggregator
from flruntime.components.executors.np_trainer import NPTrainer
from flruntime.components.shareables.full_model import FullModelShareableGenerator
from flruntime.components.tracking.convert_to_fed_event import ConvertToFedEvent
from flruntime.components.widgets.model_selector import IntimeModelSelector
from flruntime.components.workflows.scatter_and_gather import ScatterAndGather
from nvcodekit import HELLO_PT_252_JOB, hello_pt_252_example

import flruntime
from flruntime import roles
from flruntime.compat.jobapi.export import remember_init_args
from flruntime.compat.jobapi.fed_job import FedJob, FilterType
from flruntime.compat.jobapi.script_runner import ScriptRunner
from flruntime.errors import JobApiError

remember_init_args(
    NPTrainer,
    ConvertToFedEvent,
    IntimeModelSelector,
    ScatterAndGather,
    InTimeAccumulateWeightedAggregator,
    FullModelShareableGenerator,
)

HELLO_PT_WORKSPACE = Path("/tmp/nvflare/jobs/workdir")
HINT = " (flruntime --traceback run ... shows the traceback)"


def flr_run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """``python -m flruntime run ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "flruntime", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def hello_pt_workspace() -> Iterator[Path]:
    """The workspace hello-pt names (``/tmp/nvflare/jobs/workdir``), removed afterwards with what the test made."""
    made = [p for p in (HELLO_PT_WORKSPACE.parents[1], HELLO_PT_WORKSPACE.parent) if not p.exists()]
    if HELLO_PT_WORKSPACE.exists():
        pytest.skip(f"{HELLO_PT_WORKSPACE} exists and is not this test's")
    try:
        yield HELLO_PT_WORKSPACE
    finally:
        shutil.rmtree(HELLO_PT_WORKSPACE, ignore_errors=True)
        for folder in reversed(made):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()


def test_nvflare_252_hello_pt_runs_unchanged(tmp_path: Path, hello_pt_workspace: Path) -> None:
    import torch

    example = hello_pt_252_example(tmp_path / "hello-pt", train=16)
    out = flr_run("run", "fedavg_script_runner_pt.py", cwd=example)
    assert out.returncode == 0, out.stderr
    assert "hello-pt_cifar10_fedavg: FINISHED:COMPLETED after 2 round(s)" in out.stderr
    results = json.loads((hello_pt_workspace / "results.json").read_text())
    assert (results["status"], results["rounds_completed"], results["clients"]) == (
        "FINISHED:COMPLETED",
        2,
        ["site-1", "site-2"],
    )
    model = torch.load(hello_pt_workspace / "server" / "FL_global_model.pt", weights_only=True)["model"]
    assert sorted(model) == sorted(
        f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias")
    )
    assert sorted(p.name for p in (hello_pt_workspace / "server" / "tb_events").iterdir()) == ["site-1", "site-2"]
    assert out.stdout.count("Finished Training") == 4  # 2 sites x 2 rounds, the script's own prints


def test_hello_pt_export_is_nvflare_252s(tmp_path: Path) -> None:
    example = hello_pt_252_example(tmp_path / "hello-pt", train=16)
    script = example / "fedavg_script_runner_pt.py"
    text = script.read_text()
    line = '    job.simulator_run("/tmp/nvflare/jobs/workdir", gpu="0")\n'
    assert text.count(line) == 1
    script.write_text(text.replace(line, f'    job.export_job("{tmp_path / "jobs"}")\n'))
    out = flr_run("run", script.name, cwd=example)
    assert out.returncode == 0, out.stderr
    job = tmp_path / "jobs" / "hello-pt_cifar10_fedavg"
    configs = sorted(p.relative_to(job).as_posix() for p in job.rglob("*.json"))
    assert configs == sorted(p.relative_to(HELLO_PT_252_JOB).as_posix() for p in HELLO_PT_252_JOB.rglob("*.json"))
    for name in configs:  # byte for byte: NVFlare's json.dumps(indent=4), its ids, args and order
        assert (job / name).read_text() == (HELLO_PT_252_JOB / name).read_text(), name
    custom = sorted(p.relative_to(job).as_posix() for p in job.rglob("*.py"))
    assert custom == [  # NVFlare's rule: a module goes where its import name says
        "app_server/custom/src/simple_network.py",
        "app_site-1/custom/simple_network.py",
        "app_site-1/custom/src/hello-pt_cifar10_fl.py",
        "app_site-2/custom/simple_network.py",
        "app_site-2/custom/src/hello-pt_cifar10_fl.py",
    ]
    assert (job / "app_site-1/custom/simple_network.py").read_text() == (example / "src/simple_network.py").read_text()
    assert flruntime.validate_job(job).valid


def _server(job: FedJob, **sag: int) -> None:
    """A complete FedAvg server: ScatterAndGather, its aggregator and shareable generator."""
    job.to_server(ScatterAndGather(**sag))
    job.to_server(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"), id="aggregator")
    job.to_server(FullModelShareableGenerator(), id="shareable_generator")


def _export(job: FedJob, tmp_path: Path) -> tuple[dict, dict[str, dict]]:
    root = job.export_job(tmp_path / "jobs")
    meta = json.loads((root / "meta.json").read_text())
    configs = {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.glob("*/config/*.json")}
    return meta, configs


def test_server_and_all_clients_make_one_app(tmp_path: Path) -> None:
    job = FedJob(name="one", min_clients=2)
    job.to_server(ScatterAndGather(min_clients=2, num_rounds=1))
    job.to_server(IntimeModelSelector(key_metric="acc"), id="model_selector")
    job.to_server(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"), id="aggregator")
    job.to_server(FullModelShareableGenerator(), id="shareable_generator")
    job.to_clients(NPTrainer(delta=2))
    job.to_clients({"default_task_fetch_interval": 0.1})
    meta, configs = _export(job, tmp_path)
    assert meta == {"name": "one", "resource_spec": {}, "min_clients": 2, "deploy_map": {"app": ["@ALL"]}}
    server, client = configs["app/config/config_fed_server.json"], configs["app/config/config_fed_client.json"]
    assert server["workflows"] == [
        {
            "id": "controller",
            "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
            "args": {"min_clients": 2, "num_rounds": 1},
        }
    ]
    assert [(c["id"], c["path"].rsplit(".", 1)[1], c["args"]) for c in server["components"]] == [
        ("model_selector", "IntimeModelSelector", {"aggregation_weights": {}, "key_metric": "acc"}),
        ("aggregator", "InTimeAccumulateWeightedAggregator", {"expected_data_kind": "WEIGHTS"}),
        ("shareable_generator", "FullModelShareableGenerator", {}),
    ]
    assert client["executors"] == [
        {"tasks": ["*"], "executor": {"path": "nvflare.app_common.np.np_trainer.NPTrainer", "args": {"delta": 2}}}
    ]
    assert client["default_task_fetch_interval"] == 0.1
    assert flruntime.validate_job(tmp_path / "jobs" / "one").valid


def test_named_sites_get_their_own_apps_with_what_all_clients_get(tmp_path: Path) -> None:
    job = FedJob(name="sites")
    job.to_server(ScatterAndGather(min_clients=2, num_rounds=1))
    job.to_clients(NPTrainer())
    forward = ConvertToFedEvent(events_to_convert=["analytix_log_stats"])
    job.to_clients(forward, id="event_to_fed")
    job.to(forward, "site-1", id="event_to_fed")  # the same object again: one component
    job.to(IntimeModelSelector(), "site-2", id="selector")
    meta, configs = _export(job, tmp_path)
    assert meta["deploy_map"] == {"app_server": ["server"], "app_site-1": ["site-1"], "app_site-2": ["site-2"]}
    assert [c["id"] for c in configs["app_site-1/config/config_fed_client.json"]["components"]] == ["event_to_fed"]
    site2 = configs["app_site-2/config/config_fed_client.json"]
    assert [c["id"] for c in site2["components"]] == ["event_to_fed", "selector"]
    assert site2["executors"][0]["executor"]["path"] == "nvflare.app_common.np.np_trainer.NPTrainer"


def test_as_id_places_the_object_where_it_is_referenced(tmp_path: Path) -> None:
    job = FedJob(name="refs")
    aggregator = job.as_id(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"))
    job.to_server(ScatterAndGather(min_clients=1, num_rounds=1, aggregator_id=aggregator))
    job.to_clients(NPTrainer())
    _, configs = _export(job, tmp_path)
    server = configs["app/config/config_fed_server.json"]
    assert server["workflows"][0]["args"]["aggregator_id"] == aggregator
    assert [(c["id"], c["args"]) for c in server["components"]] == [(aggregator, {"expected_data_kind": "WEIGHTS"})]


def test_script_runner_in_an_external_process_writes_nvflares_components(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    job = FedJob(name="ext")
    _server(job, min_clients=1, num_rounds=1)
    job.to("train.py", "server")  # a resource for custom/ (relative to the working folder)
    ids = job.to(ScriptRunner("train.py", "--lr 0.1", launch_external_process=True), "site-1")
    assert ids == {
        "pipe_id": "pipe",
        "launcher_id": "launcher",
        "metric_pipe_id": "metrics_pipe",
        "metric_relay_id": "metric_relay",
        "config_preparer_id": "config_preparer",
    }
    _, configs = _export(job, tmp_path)
    client = configs["app_site-1/config/config_fed_client.json"]
    assert client["executors"][0]["executor"] == {
        "path": "nvflare.app_opt.pt.client_api_launcher_executor.PTClientAPILauncherExecutor",
        "args": {"pipe_id": "pipe", "launcher_id": "launcher"},
    }
    comps = {c["id"]: c for c in client["components"]}
    assert comps["launcher"]["args"] == {"script": "python3 -u custom/train.py --lr 0.1"}
    assert comps["pipe"]["path"] == "nvflare.fuel.utils.pipe.cell_pipe.CellPipe"
    assert comps["pipe"]["args"]["root_url"] == "{CP_URL}"
    assert comps["metric_relay"]["args"] == {
        "pipe_id": "metrics_pipe",
        "heartbeat_timeout": 0,
        "event_type": "fed.analytix_log_stats",
    }
    assert comps["config_preparer"]["args"] == {"component_ids": ["metric_relay"]}
    assert (tmp_path / "jobs/ext/app_site-1/custom/train.py").is_file()
    assert (tmp_path / "jobs/ext/app_server/custom/train.py").is_file()
    assert flruntime.validate_job(tmp_path / "jobs" / "ext").valid


class Clip(roles.Filter):
    def process(self, data, ctx):
        return data


class Tagger:
    def __init__(self, tags=None) -> None:
        self._tags = tags


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda job: job.to_server(NPTrainer()),
            "Use `job.to(executor, <client_name>)` or `job.to_clients(executor)` for Executors.",
        ),
        (
            lambda job: job.to_clients(ScatterAndGather()),
            'Use `job.to(controller, "server")` or `job.to_server(controller)` for Controllers.',
        ),
        (lambda job: job.to(NPTrainer(), "site/1"), "target site/1 name contains invalid character"),
        (lambda job: job.to(None, "site-1"), "cannot add empty object to job"),
        (
            lambda job: job.to("no_such_file.py", "site-1"),
            "cannot add resource no_such_file.py: no such file or folder",
        ),
        (
            lambda job: job.to(NPTrainer(), "site-1", id="t", task="train"),
            "Received unexpected arg 'task'. Supported args: {'tasks': 'optional'}",
        ),
        (
            lambda job: job.export_job("/nonexistent"),
            'Missing server components! Deploy using `to(obj, "server") or `to_server(obj)`',
        ),
    ],
    ids=["executor-on-server", "controller-on-clients", "bad-target", "empty", "no-resource", "bad-kwarg", "no-server"],
)
def test_job_api_mistakes_are_one_line_value_errors(build, message: str) -> None:
    job = FedJob(name="bad")
    with pytest.raises(ValueError) as info:
        build(job)
    assert isinstance(info.value, JobApiError)
    assert str(info.value) == message


def test_a_filter_needs_its_type_and_an_argument_must_be_json(tmp_path: Path) -> None:
    job = FedJob(name="bad")
    with pytest.raises(JobApiError) as info:
        job.to(Clip(), "site-1")
    assert str(info.value) == (
        "Missing required arg 'filter_type'. Supported args: {'filter_type': 'required', 'tasks': 'optional'}"
    )
    job.to(NPTrainer(), "site-1")
    job.to_server(ScatterAndGather())
    job.to_server(Tagger(tags={"a", "b"}), id="tagger")
    with pytest.raises(JobApiError) as info:
        job.export_job(tmp_path)
    assert str(info.value) == (
        "cannot write argument component 'tagger' (Tagger).tags to the job config: a set is not JSON "
        "(pass numbers, strings, lists, dicts or components)"
    )
    assert FilterType.TASK_DATA == "TASK_DATA"


def test_simulator_run_checks_its_clients(tmp_path: Path) -> None:
    job = FedJob(name="c")
    job.to_server(ScatterAndGather())
    job.to(NPTrainer(), "site-1")
    with pytest.raises(JobApiError) as info:
        job.simulator_run(tmp_path / "ws", n_clients=3)
    assert str(info.value) == (
        "You already specified clients using `to()` (site-1). Don't use `n_clients` in simulator_run."
    )
    everyone = FedJob(name="c")
    everyone.to_server(ScatterAndGather())
    everyone.to_clients(NPTrainer())
    with pytest.raises(JobApiError) as info:
        everyone.simulator_run(tmp_path / "ws")
    assert str(info.value) == "Clients were not specified using to(). Please provide the number of clients to simulate."


# -- flruntime run ---------------------------------------------------------------------------------------------


def test_run_executes_the_script_as_python_does(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "helper.py").write_text("VALUE = 42\n")
    (tmp_path / "code" / "show.py").write_text(
        textwrap.dedent(
            """
            import json, sys
            import helper
            import nvflare
            print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "helper": helper.VALUE,
                              "shim": getattr(nvflare, "FLRUNTIME_SHIM", False)}))
            sys.exit(3)
            """
        )
    )
    out = flr_run("run", "code/show.py", "--lr", "0.1", "-x", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert json.loads(out.stdout) == {
        "argv": ["code/show.py", "--lr", "0.1", "-x"],
        "path0": str((tmp_path / "code").resolve()),
        "name": "__main__",
        "helper": 42,
        "shim": True,
    }
    assert out.stderr == ""


def test_run_reports_an_exception_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("def f():\n    raise ValueError('bad value\\nsecond line')\n\nf()\n")
    out = flr_run("run", "boom.py", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "flruntime: error: boom.py:2: ValueError: bad value" + HINT + "\n"
    out = flr_run("--traceback", "run", "boom.py", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("Traceback (most recent call last):\n")
    assert out.stderr.endswith("\nflruntime: error: boom.py:2: ValueError: bad value\n")


def test_run_exit_codes_of_sys_exit_and_a_missing_script(tmp_path: Path) -> None:
    (tmp_path / "quit.py").write_text("import sys\nsys.exit('no data here')\n")
    out = flr_run("run", "quit.py", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (1, "no data here\n")
    (tmp_path / "ok.py").write_text("import sys\nsys.exit(0)\n")
    assert flr_run("run", "ok.py", cwd=tmp_path).returncode == 0
    out = flr_run("run", "nope.py", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (2, "flruntime: error: nope.py: no such script\n")


def test_run_leaves_an_installed_nvflare_in_charge(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "nvflare").mkdir(parents=True)
    (site / "nvflare" / "__init__.py").write_text("REAL = True\n")
    (tmp_path / "s.py").write_text("import nvflare\nprint(nvflare.REAL)\n")
    out = flr_run("run", "s.py", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "True\n"
    assert out.stderr == f"flruntime: NVFlare is installed ({site / 'nvflare'}): NVFlare runs s.py, not flruntime\n"


def test_a_job_that_fails_in_simulator_run_ends_the_script_with_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import nvflare.client as flare\nflare.init()\nraise RuntimeError('no data')\n")
    (tmp_path / "job.py").write_text(
        textwrap.dedent(
            """
            from nvflare.app_common.aggregators import InTimeAccumulateWeightedAggregator
            from nvflare.app_common.shareablegenerators import FullModelShareableGenerator
            from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather
            from nvflare.job_config.api import FedJob
            from nvflare.job_config.script_runner import FrameworkType, ScriptRunner

            job = FedJob(name="failing")
            job.to_server(ScatterAndGather(min_clients=1, num_rounds=1, allow_empty_global_weights=True))
            job.to_server(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"), id="aggregator")
            job.to_server(FullModelShareableGenerator(), id="shareable_generator")
            job.to_clients(ScriptRunner("train.py", framework=FrameworkType.NUMPY))
            job.simulator_run("ws", n_clients=1)
            print("not reached")
            """
        )
    )
    out = flr_run("run", "job.py", cwd=tmp_path)
    assert out.returncode == 1
    assert "not reached" not in out.stdout
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "flruntime: error: job.py:13: JobFailedError: job failing ended FINISHED:EXECUTION_EXCEPTION: "
    )
    assert "the training script " in last and "train.py failed: RuntimeError: no data" in last
    assert last.endswith(HINT)
