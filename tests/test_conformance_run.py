"""The NVFlare conformance corpus, run: each job folder validates and runs in the simulator, unchanged.

Every corpus job whose components flruntime supports runs with 2 clients for 2 rounds. The folders stay as NVFlare
ships them: only ``num_rounds`` is set to 2 where a job asks for more (the configs hold it as a literal, not a
variable, so the value is edited in place and nothing else changes), and ``sag_pt_mlflow``'s hard-coded tracking URI
(``http://0.0.0.0:5000``) is pointed at a real ``mlflow server`` the test starts on a free port. The test supplies
what an NVFlare user keeps in ``custom/``: training scripts written against ``import nvflare.client as flare`` (they
import through flruntime's ``nvflare`` shim), a tiny PyTorch ``net.Net`` and the ``CIFAR10Executor`` of
``sag_pt_executor``. Each run must produce a global model and, where the job configures them, the cross-site
results, TensorBoard event files and MLflow runs.

Adding a job is one line in :data:`RUNS` (or in :data:`NOT_RUN`, with the reason).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flruntime.components.persistors.np_file import initial_array
from test_conformance import CORPUS, JOBS, _require_corpus, _writable_copy

from flruntime.config.edit import set_scalars
from flruntime.config.job import discover
from flruntime.config.source import load_file
from flruntime.convert import config_files
from flruntime.runtime.simulator import simulate
from flruntime.validation import validate_job

pytestmark = pytest.mark.slow

NP, PT, EXECUTOR = "numpy", "pytorch", "executor"
ROUNDS = 2
PT_MODELS = ("SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt")


@dataclass(frozen=True)
class Expect:
    """How a corpus job runs and what it must leave behind.

    Attributes:
        custom: the stand-ins its ``custom/`` folders get: ``numpy`` / ``pytorch`` Client API scripts (named as the
            config's ``app_script``, plus ``net.py``), ``executor`` (``net.py`` + ``executor.py``), or "" for none.
        model: the global model's file in the server's workspace.
        cse: the server models expected in ``cross_val_results.json`` (besides the sites' own), when it runs CSE.
        tensorboard: the server writes TensorBoard event files for each site.
        mlflow: ``file``: the job's own MLflow file store; ``server``: a real ``mlflow server`` started by the test.
        he: the job needs CKKS keys (none are given: the simulator makes them for the run and says so).
    """

    custom: str
    model: str
    cse: tuple[str, ...] | None = None
    tensorboard: bool = False
    mlflow: str = ""
    he: bool = False


#: One line per corpus job that runs.
RUNS: dict[str, Expect] = {
    "sag_cross_np": Expect("", "models/server.npy", cse=("SRV_server",)),
    "sag_cse_pt": Expect(PT, "FL_global_model.pt", cse=PT_MODELS),
    "sag_np": Expect(NP, "models/server.npy"),
    "sag_np_cell_pipe": Expect(NP, "models/server.npy"),
    "sag_np_metrics": Expect(NP, "models/server.npy", tensorboard=True),
    "sag_pt": Expect(PT, "FL_global_model.pt", tensorboard=True),
    "sag_pt_deploy_map": Expect(PT, "FL_global_model.pt"),
    "sag_pt_executor": Expect(EXECUTOR, "FL_global_model.pt", cse=PT_MODELS),
    "sag_pt_in_proc": Expect(PT, "FL_global_model.pt", tensorboard=True, mlflow="file"),
    "sag_pt_mlflow": Expect(PT, "FL_global_model.pt", mlflow="server"),
    "sag_pt_he": Expect(PT, "FL_global_model.pt", tensorboard=True, he=True),
}

#: Corpus jobs not run here, and why.
NOT_RUN: dict[str, str] = {
    "spleen_ct_segmentation_he": "MONAI bundle with HE: runs in tests/test_monai_spleen_corpus.py",
    "spleen_ct_segmentation_local": "MONAI bundle: runs in tests/test_monai_spleen_corpus.py",
    "spleen_ct_segmentation_sim": "MONAI bundle: runs in tests/test_monai_spleen_corpus.py",
}

NET = '''
    """Stand-in for the CIFAR-10 network of NVFlare's PyTorch examples: a tiny classifier of 8 features."""

    import torch


    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(8, 16)
            self.fc2 = torch.nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))


    def site_data(site: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A small synthetic data set per site (seeded by the site's number)."""
        k = int(site.rsplit("-", 1)[1])
        x = torch.randn(64, 8, generator=torch.Generator().manual_seed(k))
        return x, (x[:, 0] + x[:, 1] > 0).long()


    def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((net(x).argmax(1) == y).float().mean())


    def train(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> float:
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        return float(loss.detach())
'''

PT_SCRIPT = '''
    """Stand-in for NVFlare's CIFAR-10 training script, written for NVFlare's Client API (runs via the shim)."""

    import nvflare.client as flare
    from nvflare.client.tracking import SummaryWriter

    from net import Net, accuracy, site_data, train

    flare.init()
    x, y = site_data(flare.get_site_name())
    net, writer, local = Net(), SummaryWriter(), None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():
            flare.send(flare.FLModel(params=local if local is not None else net.state_dict()))
            continue
        net.load_state_dict(model.params)
        acc = accuracy(net, x, y)
        if flare.is_evaluate():
            flare.send(flare.FLModel(metrics={"accuracy": acc}))
            continue
        loss = train(net, x, y, steps=5, lr=0.1)
        writer.add_scalar("train_loss", loss, model.current_round)
        writer.add_scalar("accuracy", acc, model.current_round)
        local = {k: v.clone() for k, v in net.state_dict().items()}
        meta = {"NUM_STEPS_CURRENT_ROUND": 5}
        flare.send(flare.FLModel(params=net.state_dict(), metrics={"accuracy": acc}, meta=meta))
'''

NP_SCRIPT = '''
    """Stand-in for NVFlare's numpy example script, written for NVFlare's Client API (runs via the shim).

    Training adds 1 to every weight; the metric is computed from the weights.
    """

    import numpy as np

    import nvflare.client as flare
    from nvflare.client.tracking import SummaryWriter

    flare.init()
    writer, local = SummaryWriter(), None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():
            flare.send(flare.FLModel(params=local))
            continue
        params = {k: np.asarray(v) for k, v in model.params.items()}
        acc = float(sum(float(np.sum(v / np.max(v))) for v in params.values()))
        if flare.is_evaluate():
            flare.send(flare.FLModel(metrics={"accuracy": acc}))
            continue
        local = {k: v + 1 for k, v in params.items()}
        writer.add_scalar("accuracy", acc, model.current_round)
        flare.send(flare.FLModel(params=local, metrics={"accuracy": acc}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
'''

EXECUTOR_CODE = '''
    """Stand-in for the CIFAR-10 executor of NVFlare's sag_pt_executor example (an flruntime Executor)."""

    import torch

    from flruntime.roles import Executor
    from flruntime.runtime.messages import ModelMessage

    from net import Net, accuracy, site_data, train


    def numpy_weights(net):
        return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


    class CIFAR10Executor(Executor):
        def __init__(self, epochs: int = 1, lr: float = 0.01) -> None:
            self.epochs = epochs
            self.lr = lr
            self.local = None

        def execute(self, task, data, ctx):
            net = Net()
            x, y = site_data(ctx.site)
            if task == "get_weights":
                return ModelMessage(numpy_weights(net))
            if task == "submit_model":
                return ModelMessage(self.local)
            net.load_state_dict({k: torch.as_tensor(v) for k, v in data.params.items()})
            acc = accuracy(net, x, y)
            if task == "validate":
                return ModelMessage(metrics={"accuracy": acc})
            train(net, x, y, steps=self.epochs, lr=self.lr)
            self.local = numpy_weights(net)
            return ModelMessage(self.local, meta={"NUM_STEPS_CURRENT_ROUND": self.epochs, "initial_metrics": acc})
'''


def _write(folder: Path, name: str, source: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")


def _add_custom(job: Path, kind: str) -> None:
    """Put the stand-ins into every app's custom/ folder (scripts under the name the client config gives)."""
    folder, _ = discover(job)
    for app in folder.apps.values():
        custom = app.root / "custom"
        if kind in (PT, EXECUTOR):
            _write(custom, "net.py", NET)
        if kind == EXECUTOR:
            _write(custom, "executor.py", EXECUTOR_CODE)
        client = app.config_file("client")
        if kind in (PT, NP) and client is not None:
            source, _ = load_file(client)
            assert source is not None
            _write(custom, str(source.data["app_script"]), PT_SCRIPT if kind == PT else NP_SCRIPT)


def _set_rounds(job: Path) -> list[str]:
    """Set every workflow's ``num_rounds`` to :data:`ROUNDS` (in place: comments and everything else stay)."""
    changed = []
    for path in config_files(job):
        source, _ = load_file(path)
        assert source is not None
        changes = {
            ("workflows", i, "args", "num_rounds"): ROUNDS
            for i, wf in enumerate(source.data.get("workflows", []))
            if wf.get("args", {}).get("num_rounds", ROUNDS) != ROUNDS
        }
        set_scalars(path, changes)
        changed += [f"{path.name}: {'.'.join(map(str, p))} = {ROUNDS}" for p in changes]
    return changed


def _point_mlflow_at(job: Path, uri: str) -> None:
    """Change only the MLflow receiver's ``tracking_uri`` (sag_pt_mlflow hard-codes http://0.0.0.0:5000)."""
    for path in config_files(job):
        source, _ = load_file(path)
        assert source is not None
        for i, comp in enumerate(source.data.get("components", [])):
            if str(comp.get("path", "")).endswith("MLflowReceiver") and "tracking_uri" in comp.get("args", {}):
                set_scalars(path, {("components", i, "args", "tracking_uri"): uri})


def test_every_corpus_job_is_run_or_says_why() -> None:
    _require_corpus()
    assert not set(RUNS) & set(NOT_RUN)
    assert sorted([*RUNS, *NOT_RUN]) == JOBS, "add each corpus job to RUNS (or to NOT_RUN, with the reason)"


def _mlflow_runs(uri: str) -> dict[str, list[int]]:
    """Site → the steps of its ``train_loss`` metric, in the sag_pt experiment of the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("nvflare-sag-pt-experiment")
    assert experiment is not None, f"no experiment in {uri}"
    out = {}
    for run in client.search_runs([experiment.experiment_id]):
        site = run.data.tags.get("site", run.info.run_name)
        if site != "server":  # flruntime's run for the server's own artifacts
            out[site] = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
    return out


@pytest.mark.parametrize("name", sorted(RUNS))
def test_corpus_job_runs(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _require_corpus()
    expect = RUNS[name]
    job = _writable_copy(CORPUS / name, tmp_path / name)
    _add_custom(job, expect.custom)
    changed = _set_rounds(job)
    if expect.mlflow == "server":
        uri = request.getfixturevalue("mlflow_server")
        _point_mlflow_at(job, uri)
    if expect.mlflow == "file":  # MLflow >= 3 refuses file stores unless told (its own opt-out, not a job change)
        request.getfixturevalue("monkeypatch").setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    report = validate_job(job)
    assert [p.format() for p in report.errors] == [], f"{name} does not validate (changed: {changed})"

    ws = tmp_path / "ws"
    if expect.he:
        request.getfixturevalue("monkeypatch").delenv("FLRUNTIME_HE_DIR", raising=False)
    result = simulate(job, n_clients=2, workspace=ws, progress=None)
    assert result.ok, f"{name}: {result.error}\n{(ws / 'server' / 'log.txt').read_text()[-3000:]}"
    made = f"HE: no --he-context-dir given: made a CKKS context for this run in {ws / 'he_context'}"
    assert (made in (ws / "server" / "log.txt").read_text()) == expect.he
    assert result.rounds_completed == ROUNDS and result.clients == ["site-1", "site-2"]

    model = ws / "server" / expect.model
    assert model.is_file(), f"{name}: no global model at {model}"
    if model.suffix == ".npy":
        np.testing.assert_allclose(np.load(model), initial_array() + ROUNDS)  # every site adds 1 per round
    else:
        import torch

        saved = torch.load(model, weights_only=True)
        assert sorted(saved["model"]) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
        if expect.he:  # the server stored the encrypted global model: ciphertext bytes, never float weights
            assert all(t.dtype == torch.uint8 for t in saved["model"].values())
        assert (ws / "server" / "best_FL_global_model.pt").is_file()  # IntimeModelSelector saw the accuracy
    if expect.cse is not None:
        matrix = json.loads((ws / "server" / "cross_site_val" / "cross_val_results.json").read_text())
        assert sorted(matrix) == ["site-1", "site-2"]
        for row in matrix.values():
            assert sorted(row) == sorted(["site-1", "site-2", *expect.cse])
            assert all(isinstance(m["accuracy"], float) for m in row.values())
    if expect.tensorboard:
        for site in ("site-1", "site-2"):
            assert list((ws / "server" / "tb_events" / site).glob("events.out.tfevents.*")), f"{name}: no TB for {site}"
    if expect.mlflow == "file":
        uri = (ws / "server" / "simulate_job" / "mlruns").as_uri()
        assert _mlflow_runs(uri) == {"site-1": [0, 1], "site-2": [0, 1]}
    if expect.mlflow == "server":
        assert _mlflow_runs(uri) == {"site-1": [0, 1], "site-2": [0, 1]}


def test_numpy_job_keeps_its_comments_when_the_rounds_change(tmp_path: Path) -> None:
    _require_corpus()
    job = _writable_copy(CORPUS / "sag_np", tmp_path / "sag_np")
    assert _set_rounds(job) == ["config_fed_server.conf: workflows.0.args.num_rounds = 2"]
    before = (CORPUS / "sag_np" / "config_fed_server.conf").read_text().splitlines()
    after = (job / "config_fed_server.conf").read_text().splitlines()
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        ("            num_rounds = 5", "            num_rounds = 2")
    ]
