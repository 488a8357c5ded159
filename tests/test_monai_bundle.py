"""MONAI pieces one by one: the template's data generator, MonaiBundlePersistor, ClientAlgoExecutor (on a stub algo)."""

import json
import threading
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from flruntime.components.monai.bundle_persistor import MonaiBundlePersistor
from flruntime.components.monai.client_algo_executor import ClientAlgoExecutor
from flruntime.components.monai.stats_handler import NVFlareStatsHandler
from monai.bundle import ConfigParser
from monai.fl.client import ClientAlgo
from monai.fl.utils.constants import ExtraItems, ModelType, WeightType
from monai.fl.utils.exchange_object import ExchangeObject
from monaikit import BUNDLE, BUNDLE_DIR, copy_bundle, synthetic_data

from flruntime.events.bus import EventBus
from flruntime.graph.locate import ImportPolicy, locate
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

# --- the template's synthetic data ------------------------------------------------------------------------------


def volumes(folder):
    datalist = json.loads((folder / "dataset.json").read_text())
    items = datalist["training"] + datalist["validation"]
    return datalist, [np.asarray(nib.load(folder / item[key]).dataobj) for item in items for key in ("image", "label")]


def test_generated_data_is_deterministic_and_sized(tmp_path):
    gen = synthetic_data()
    gen.write_dataset(tmp_path / "a", num_train=3, num_val=2, size=16, seed=7)
    gen.write_dataset(tmp_path / "b", num_train=3, num_val=2, size=16, seed=7)
    datalist, arrays = volumes(tmp_path / "a")
    assert [len(datalist["training"]), len(datalist["validation"])] == [3, 2]
    assert datalist["synthetic"] == {"num_train": 3, "num_val": 2, "size": 16, "seed": 7}
    assert all(a.shape == (16, 16, 16) for a in arrays)
    labels = arrays[1::2]
    assert all(set(np.unique(label)) == {0, 1} for label in labels)
    assert all(np.array_equal(x, y) for x, y in zip(arrays, volumes(tmp_path / "b")[1], strict=True))
    assert gen.site_seed(0, "site-1") == gen.site_seed(0, "site-1") != gen.site_seed(0, "site-2")


def test_generation_is_skipped_redone_or_refused(tmp_path):
    gen = synthetic_data()
    folder = tmp_path / "site-1"
    gen.write_dataset(folder, num_train=2, num_val=1, size=16)
    stamp = (folder / "imagesTr" / "case_000.nii.gz").stat().st_mtime_ns
    gen.write_dataset(folder, num_train=2, num_val=1, size=16)  # same arguments: nothing written
    assert (folder / "imagesTr" / "case_000.nii.gz").stat().st_mtime_ns == stamp
    gen.write_dataset(folder, num_train=2, num_val=1, size=20)  # other arguments: generated again
    assert nib.load(folder / "imagesTr" / "case_000.nii.gz").shape == (20, 20, 20)
    real = tmp_path / "real"
    real.mkdir()
    (real / "dataset.json").write_text('{"training": []}')  # not generated here: never touched
    gen.write_dataset(real, num_train=2, num_val=1, size=16)
    assert sorted(p.name for p in real.iterdir()) == ["dataset.json"]
    with pytest.raises(ValueError, match="need size >= 16"):
        gen.write_dataset(tmp_path / "x", size=8)


# --- MonaiBundlePersistor -----------------------------------------------------------------------------------------


def server_ctx(tmp_path, components=None):
    app = tmp_path / "app"
    ws = tmp_path / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    return RunContext("job", "server", ws, app, EventBus("server"), components=dict(components or {}))


def bundle_network(bundle_dir=BUNDLE_DIR):
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "train.json"))
    return parser.get_parsed_content("network_def")


def test_persistor_loads_the_bundles_network(tmp_path):
    ctx = server_ctx(tmp_path)
    copy_bundle(ctx.app_dir)
    persistor = MonaiBundlePersistor(bundle_root=f"config/{BUNDLE}", exclude_vars="num_batches_tracked")
    persistor.setup(ctx)
    model = persistor.load(ctx)
    expected = bundle_network().state_dict()
    assert model.params_type == ParamsType.FULL
    assert sorted(model.params) == sorted(k for k in expected if not k.endswith("num_batches_tracked"))
    assert all(model.params[k].shape == tuple(expected[k].shape) for k in model.params)
    persistor.save(model, ctx)
    saved = torch.load(ctx.workspace / "FL_global_model.pt", weights_only=True)["model"]
    assert sorted(saved) == sorted(expected)  # excluded variables keep their initial values in the file
    persistor.teardown(ctx)


@pytest.mark.parametrize("wrapped", [False, True], ids=["state-dict", "model-key"])
def test_persistor_starts_from_the_bundles_checkpoint(tmp_path, wrapped):
    ctx = server_ctx(tmp_path)
    bundle = copy_bundle(ctx.app_dir)
    torch.manual_seed(3)
    state = bundle_network().state_dict()
    (bundle / "models").mkdir()
    torch.save({"model": state} if wrapped else state, bundle / "models" / "model.pt")
    persistor = MonaiBundlePersistor(bundle_root=f"config/{BUNDLE}", source_ckpt_filename="models/model.pt")
    persistor.setup(ctx)
    model = persistor.load(ctx)
    assert all(np.array_equal(model.params[k], v.numpy()) for k, v in state.items())


def test_persistor_merges_a_list_of_configs(tmp_path):
    ctx = server_ctx(tmp_path)
    bundle = copy_bundle(ctx.app_dir)
    (bundle / "configs" / "wide.json").write_text(json.dumps({"network_def#channels": [4, 8, 16]}))
    persistor = MonaiBundlePersistor(
        bundle_root=f"config/{BUNDLE}", config_train_filename=["configs/train.json", "configs/wide.json"]
    )
    persistor.setup(ctx)
    assert persistor.load(ctx).params["model.0.conv.unit0.conv.weight"].shape == (4, 1, 3, 3, 3)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        pytest.param({"bundle_root": "config/nothing"}, FileNotFoundError, "bundle config not found: ", id="no-bundle"),
        pytest.param(
            {"bundle_root": f"config/{BUNDLE}", "network_def_key": "learning_rate"},
            TypeError,
            "'learning_rate' of .* is a float, not a network",
            id="not-a-network",
        ),
    ],
)
def test_persistor_setup_errors(tmp_path, args, error, message):
    ctx = server_ctx(tmp_path)
    copy_bundle(ctx.app_dir)
    with pytest.raises(error, match=message):
        MonaiBundlePersistor(**args).setup(ctx)


def test_persistor_argument_errors():
    with pytest.raises(ValueError, match="bundle_root must name the bundle's folder"):
        MonaiBundlePersistor(bundle_root="")
    with pytest.raises(ValueError, match="config_train_filename must name one or more config files"):
        MonaiBundlePersistor(bundle_root="b", config_train_filename=[])


# --- ClientAlgoExecutor on a stub ClientAlgo ----------------------------------------------------------------------


class StubAlgo(ClientAlgo):
    """Records its calls; trains by adding 1 to every weight in 7 iterations; validates as the mean weight."""

    def __init__(self, block=False):
        self.calls = []
        self.extra = None
        self.block = block
        self.aborted = threading.Event()
        self.best = {"w": torch.full((2,), 5.0)}

    def initialize(self, extra=None):
        self.extra = extra

    def evaluate(self, data, extra=None):
        mean = float(torch.cat([v.flatten().float() for v in data.weights.values()]).mean())
        self.calls.append(("evaluate", round(mean, 6)))
        return ExchangeObject(metrics={"val_mean_dice": torch.tensor(mean), "per_case": torch.ones(3), "n": 2})

    def train(self, data, extra=None):
        self.calls.append(("train", sorted(data.weights)))
        if self.block:
            assert self.aborted.wait(10)

    def get_weights(self, extra=None):
        extra = extra or {}
        if ExtraItems.MODEL_TYPE in extra:
            self.calls.append(("get_weights", str(extra[ExtraItems.MODEL_TYPE])))
            return ExchangeObject(weights=self.best if extra[ExtraItems.MODEL_TYPE] == ModelType.BEST_MODEL else {})
        diff = {"w": torch.ones(2)}
        return ExchangeObject(
            weights=diff, weight_type=WeightType.WEIGHT_DIFF, statistics={"num_executed_iterations": 7}
        )

    def abort(self, extra=None):
        self.aborted.set()

    def finalize(self, extra=None):
        self.calls.append(("finalize",))


def client(tmp_path, algo, **args):
    app = tmp_path / "job" / "app"
    (app / "config" / "bundle").mkdir(parents=True)
    (app / "config" / "bundle" / "train.json").write_text("{}")
    ws = tmp_path / "ws" / "site-1"
    ws.mkdir(parents=True)
    components = {"client_algo": algo, "log_writer": NVFlareStatsHandler()}
    ctx = RunContext("job", "site-1", ws, app, EventBus("site-1"), components=components)
    executor = ClientAlgoExecutor("client_algo", key_metric="val_mean_dice", **args)
    executor.setup(ctx)
    return executor, ctx


def task(ctx, name, headers=None):
    return TaskContext(ctx, name, "t1", dict(headers or {}))


def model(value=1.0):
    return ModelMessage({"w": np.full(2, value, dtype=np.float32)})


def test_setup_initialises_the_algorithm_in_the_sites_copy_of_the_app(tmp_path):
    algo = StubAlgo()
    executor, ctx = client(tmp_path, algo, stats_sender_id="log_writer")
    assert algo.extra == {
        ExtraItems.CLIENT_NAME: "site-1",
        ExtraItems.APP_ROOT: str(ctx.workspace / "app"),
        ExtraItems.STATS_SENDER: ctx.components["log_writer"],
        ExtraItems.LOGGING_FILE: False,
    }
    assert (ctx.workspace / "app" / "config" / "bundle" / "train.json").read_text() == "{}"
    executor.teardown(ctx)
    assert algo.calls == [("finalize",)]


def test_train_validates_the_global_model_first_and_returns_the_difference(tmp_path):
    algo = StubAlgo()
    executor, ctx = client(tmp_path, algo)
    assert algo.extra[ExtraItems.STATS_SENDER] is None
    result = executor.execute("train", model(0.5), task(ctx, "train"))
    assert algo.calls == [("evaluate", 0.5), ("train", ["w"])]
    assert result.params_type == ParamsType.DIFF
    assert result.params["w"].tolist() == [1.0, 1.0]
    assert result.meta == {MetaKey.NUM_STEPS_CURRENT_ROUND: 7, MetaKey.INITIAL_METRICS: 0.5}
    assert result.metrics == {"val_mean_dice": 0.5}


def test_validate_returns_the_scalar_metrics(tmp_path):
    executor, ctx = client(tmp_path, StubAlgo())
    result = executor.execute("validate", model(2.0), task(ctx, "validate"))
    assert (result.params, result.metrics) == (None, {"val_mean_dice": 2.0, "n": 2.0})


def test_submit_model_returns_the_best_model_or_nothing(tmp_path):
    algo = StubAlgo()
    executor, ctx = client(tmp_path, algo)
    best = executor.execute("submit_model", ModelMessage(meta={"submit_model_name": "best_model"}), task(ctx, "x"))
    assert (best.params_type, best.params["w"].tolist()) == (ParamsType.FULL, [5.0, 5.0])
    headers = {"submit_model_name": "final_model"}
    assert executor.execute("submit_model", ModelMessage(), task(ctx, "submit_model", headers)).params is None
    assert algo.calls == [("get_weights", "fl_best_model"), ("get_weights", "fl_final_model")]
    with pytest.raises(ValueError, match="unknown submit_model_name 'latest' \\(expected best_model or final_model\\)"):
        executor.execute("submit_model", ModelMessage(meta={"submit_model_name": "latest"}), task(ctx, "x"))


def test_unknown_task_and_bad_stats_sender(tmp_path):
    executor, ctx = client(tmp_path, StubAlgo())
    with pytest.raises(ValueError, match="ClientAlgoExecutor does not handle task 'infer'"):
        executor.execute("infer", model(), task(ctx, "infer"))
    ctx.components["log_writer"] = object()
    with pytest.raises(TypeError, match="stats_sender_id: 'log_writer' has no attach\\(engine\\) method"):
        ClientAlgoExecutor("client_algo", stats_sender_id="log_writer").setup(ctx)


def test_aborting_the_job_aborts_training(tmp_path):
    algo = StubAlgo(block=True)
    executor, ctx = client(tmp_path, algo)
    threading.Timer(0.3, ctx.abort.set).start()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="task 'train' aborted"):
        executor.execute("train", model(), task(ctx, "train"))
    assert algo.aborted.is_set() and time.monotonic() - start < 10


# --- names -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [("ClientAlgoExecutor", ClientAlgoExecutor), ("MonaiBundlePersistor", MonaiBundlePersistor),
     ("NVFlareStatsHandler", NVFlareStatsHandler)],
)  # fmt: skip
def test_short_names_and_nvflare_paths(name, cls):
    found = locate(name, ImportPolicy(), by_name=True)
    assert (found.cls, found.via) == (cls, "registry")
    module = {"ClientAlgoExecutor": "client_algo_executor", "MonaiBundlePersistor": "monai_bundle_persistor"}
    path = f"monai_nvflare.{module.get(name, 'nvflare_stats_handler')}.{name}"
    assert locate(path, ImportPolicy()).cls is cls
