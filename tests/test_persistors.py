"""The PyTorch and numpy file persistors and their model locators, on real files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flruntime.components.locators.np_file import NPModelLocator
from flruntime.components.locators.pt_file import PTFileModelLocator
from flruntime.components.persistors.np_file import NPModelPersistor
from flruntime.components.persistors.pt_file import ENV_ALLOW_PICKLE, PTFileModelPersistor
from wfkit import write_job

from flruntime.events.bus import EventBus
from flruntime.events.types import EventType
from flruntime.roles import PersistorFilter
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType
from flruntime.validation import validate_job


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)
        self.bn = torch.nn.BatchNorm1d(1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0]]))
            self.fc.bias.fill_(3.0)


def make_ctx(tmp_path: Path, resume: bool = False, **components) -> RunContext:
    (tmp_path / "app").mkdir(exist_ok=True)
    return RunContext(
        "job", "server", tmp_path / "ws", tmp_path / "app", EventBus("server"), components=components, resume=resume
    )


def load_file(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


NAMES = ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]


def test_initial_model_is_the_state_dict_as_numpy(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net())
    p.setup(ctx)
    model = p.load(ctx)
    assert list(model.params) == NAMES and model.params_type == ParamsType.FULL
    assert model.params["fc.weight"].dtype == np.float32 and model.params["fc.weight"].tolist() == [[1.0, 2.0]]
    assert model.params["bn.num_batches_tracked"].dtype == np.int64
    assert all(isinstance(v, np.ndarray) for v in model.params.values())


def test_exclude_vars_are_not_sent_and_keep_their_values_in_the_file(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net(), exclude_vars=r"^bn\.")
    p.setup(ctx)
    model = p.load(ctx)
    assert list(model.params) == ["fc.weight", "fc.bias"]
    new = {"fc.weight": np.array([[5.0, 6.0]], np.float64), "fc.bias": np.array([7.0], np.float32)}
    p.save(ModelMessage(new, meta={"current_round": np.int64(2), "note": ("a", 1)}), ctx)
    saved = load_file(tmp_path / "ws" / "FL_global_model.pt")
    assert sorted(saved) == ["meta_props", "model", "train_conf"]
    assert list(saved["model"]) == NAMES
    assert saved["model"]["fc.weight"].dtype == torch.float32  # the checkpoint's dtype, whatever arrived
    assert saved["model"]["fc.weight"].tolist() == [[5.0, 6.0]] and saved["model"]["fc.bias"].tolist() == [7.0]
    assert saved["model"]["bn.running_var"].tolist() == [1.0]  # excluded: still the initial value
    assert saved["meta_props"] == {"current_round": 2, "note": ["a", 1]}
    assert saved["train_conf"] == {"train": {"model": "Net"}}
    assert [f.name for f in (tmp_path / "ws").iterdir()] == ["FL_global_model.pt"]  # no temp files left


def test_aggregated_int_buffers_go_back_to_their_dtype(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net())
    p.setup(ctx)
    params = dict(p.load(ctx).params)
    params["bn.num_batches_tracked"] = np.array(4.0)  # the mean of int buffers comes back as float64
    p.save(ModelMessage(params), ctx)
    saved = load_file(tmp_path / "ws" / "FL_global_model.pt")["model"]
    assert saved["bn.num_batches_tracked"].dtype == torch.int64 and saved["bn.num_batches_tracked"].item() == 4


def test_unknown_variables_and_shape_changes_are_refused(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net())
    p.setup(ctx)
    p.load(ctx)
    with pytest.raises(ValueError, match="the model has variable 'extra' that the checkpoint does not have"):
        p.save(ModelMessage({"extra": np.zeros(1)}), ctx)
    with pytest.raises(ValueError, match=r"variable 'fc.bias' has shape \(2,\) but the checkpoint has \(1,\)"):
        p.save(ModelMessage({"fc.bias": np.zeros(2)}), ctx)
    assert not (tmp_path / "ws" / "FL_global_model.pt").exists()


def test_resume_loads_the_saved_global_model(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net())
    p.setup(ctx)
    params = dict(p.load(ctx).params)
    params["fc.bias"] = np.array([42.0], np.float32)
    p.save(ModelMessage(params), ctx)
    again = PTFileModelPersistor(model=Net())
    assert again.load(make_ctx(tmp_path, resume=True)).params["fc.bias"].tolist() == [42.0]
    assert again.load(make_ctx(tmp_path, resume=False)).params["fc.bias"].tolist() == [3.0]


@pytest.mark.parametrize("wrapped", [False, True], ids=["raw-state-dict", "model-key"])
def test_source_checkpoint_relative_to_custom(tmp_path, wrapped):
    ctx = make_ctx(tmp_path)
    (tmp_path / "app" / "custom").mkdir()
    state = {"fc.weight": torch.tensor([[9.0, 8.0]]), "fc.bias": torch.tensor([7.0])}
    torch.save(
        {"model": state, "meta_props": {"from": "ckpt"}} if wrapped else state, tmp_path / "app" / "custom" / "init.pt"
    )
    for weights_only in (False, True):
        p = PTFileModelPersistor(model=Net(), source_ckpt_file_full_name="init.pt", load_weights_only=weights_only)
        model = p.load(ctx)
        assert list(model.params) == ["fc.weight", "fc.bias"]
        assert model.params["fc.weight"].tolist() == [[9.0, 8.0]]
        assert model.meta == ({"from": "ckpt"} if wrapped else {})


class Blob:
    """Something only a full unpickle can build (a job's checkpoint might hold any object)."""

    def __init__(self, value: int) -> None:
        self.value = value


def pickled_checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "app" / "custom").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "app" / "custom" / "init.pt"
    torch.save({"model": {"fc.bias": torch.tensor([7.0])}, "meta_props": {}, "extra": Blob(1)}, path)
    return path


@pytest.mark.parametrize(
    ("weights_only", "site", "hint"),
    [
        (False, None, f", or start the site with {ENV_ALLOW_PICKLE}=1 to allow full loads"),
        (True, None, " (load_weights_only is true: a full load is never tried)"),
        (True, "1", " (load_weights_only is true: a full load is never tried)"),
        (False, "0", f", or start the site with {ENV_ALLOW_PICKLE}=1 to allow full loads"),
    ],
    ids=["job-default", "job-weights-only", "job-weights-only-site-allows", "site-says-0"],
)
def test_a_pickled_checkpoint_is_refused_unless_the_site_allows_it(tmp_path, monkeypatch, weights_only, site, hint):
    path = pickled_checkpoint(tmp_path)
    if site is None:
        monkeypatch.delenv(ENV_ALLOW_PICKLE, raising=False)
    else:
        monkeypatch.setenv(ENV_ALLOW_PICKLE, site)
    p = PTFileModelPersistor(source_ckpt_file_full_name="init.pt", load_weights_only=weights_only)
    with pytest.raises(ValueError) as info:
        p.load(make_ctx(tmp_path))
    assert str(info.value) == (
        f"{path}: not loaded: the checkpoint holds a pickled {Blob.__module__}.Blob, and job checkpoints load with "
        f"torch.load(weights_only=True) (unpickling can run code); save it as a plain state_dict{hint}"
    )
    assert "\n" not in str(info.value) and info.value.__cause__ is None


def test_the_site_can_allow_a_pickled_checkpoint(tmp_path, monkeypatch):
    pickled_checkpoint(tmp_path)
    monkeypatch.setenv(ENV_ALLOW_PICKLE, "1")
    p = PTFileModelPersistor(source_ckpt_file_full_name="init.pt")  # load_weights_only=False: NVFlare's default
    assert p.load(make_ctx(tmp_path)).params["fc.bias"].tolist() == [7.0]


def test_a_plain_state_dict_loads_without_the_sites_permission(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ALLOW_PICKLE, raising=False)
    (tmp_path / "app" / "custom").mkdir(parents=True)
    torch.save({"fc.weight": torch.tensor([[9.0, 8.0]]), "fc.bias": torch.tensor([7.0])}, tmp_path / "app/custom/a.pt")
    p = PTFileModelPersistor(model=Net(), source_ckpt_file_full_name="a.pt")
    assert p.load(make_ctx(tmp_path)).params["fc.weight"].tolist() == [[9.0, 8.0]]


def test_missing_source_checkpoint(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(source_ckpt_file_full_name="nope.pt")
    app = tmp_path / "app"
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {app}/custom/nope.pt or {app}/nope.pt"):
        p.load(ctx)


def test_model_by_component_id(tmp_path):
    ctx = make_ctx(tmp_path, net=Net(), other=object())
    p = PTFileModelPersistor(model="net")
    p.setup(ctx)
    assert p.load(ctx).params["fc.bias"].tolist() == [3.0]
    with pytest.raises(TypeError, match=r"model: component 'other' is not an nn.Module \(object\)"):
        PTFileModelPersistor(model="other").setup(ctx)
    with pytest.raises(TypeError, match="model must be an nn.Module or the id of one, got dict"):
        PTFileModelPersistor(model={"path": "x"})  # type: ignore[arg-type]


def test_no_model_loads_empty_and_saves_what_it_gets(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(global_model_file_name="sub/global.pt")
    assert p.load(ctx).params == {}
    p.save(ModelMessage({"w": np.arange(3, dtype=np.float32)}), ctx)
    saved = load_file(tmp_path / "ws" / "sub" / "global.pt")
    assert sorted(saved) == ["meta_props", "model"] and saved["meta_props"] == {}
    assert saved["model"]["w"].dtype == torch.float32 and saved["model"]["w"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("name", ["", "/abs.pt", "../up.pt"])
def test_file_names_must_stay_in_the_workspace(name):
    with pytest.raises(ValueError, match="global_model_file_name must be"):
        PTFileModelPersistor(global_model_file_name=name)


def test_best_model_is_the_global_model_of_the_round_that_was_validated(tmp_path):
    ctx = make_ctx(tmp_path)
    p = PTFileModelPersistor(model=Net(), exclude_vars="bn")
    p.setup(ctx)
    first = p.load(ctx)
    round1 = ModelMessage({"fc.weight": np.array([[0.5, 0.5]], np.float32), "fc.bias": np.array([1.0], np.float32)})
    ctx.bus.fire(EventType.ROUND_STARTED, round=0, model=first)
    ctx.bus.fire(EventType.ROUND_STARTED, round=1, model=round1)
    p.save(ModelMessage({"fc.weight": np.zeros((1, 2), np.float32), "fc.bias": np.zeros(1, np.float32)}), ctx)
    ctx.bus.fire(EventType.GLOBAL_BEST_MODEL_AVAILABLE, metric=0.9, round=1)
    best = load_file(tmp_path / "ws" / "best_FL_global_model.pt")["model"]
    assert best["fc.weight"].tolist() == [[0.5, 0.5]] and best["fc.bias"].tolist() == [1.0]
    assert best["bn.running_var"].tolist() == [1.0]
    # a model in the event wins over the one the persistor followed
    given = ModelMessage({"fc.bias": np.array([-1.0], np.float32)})
    ctx.bus.fire(EventType.GLOBAL_BEST_MODEL_AVAILABLE, metric=1.0, round=2, model=given)
    assert load_file(tmp_path / "ws" / "best_FL_global_model.pt")["model"]["fc.bias"].tolist() == [-1.0]
    p.teardown(ctx)
    ctx.bus.fire(EventType.GLOBAL_BEST_MODEL_AVAILABLE, metric=2.0, round=3, model=round1)
    assert load_file(tmp_path / "ws" / "best_FL_global_model.pt")["model"]["fc.bias"].tolist() == [-1.0]


class Doubler(PersistorFilter):
    def process_post_load(self, model, ctx):
        return ModelMessage({k: v * 2 for k, v in model.params.items()}, meta={**model.meta, "loaded": True})

    def process_pre_save(self, model, ctx):
        return ModelMessage({k: v / 2 for k, v in model.params.items()}, meta=model.meta)


def test_persistor_filter_hooks(tmp_path):
    ctx = make_ctx(tmp_path, doubler=Doubler())
    p = PTFileModelPersistor(model=Net(), exclude_vars="bn", filter_id="doubler")
    p.setup(ctx)
    model = p.load(ctx)
    assert model.params["fc.bias"].tolist() == [6.0] and model.meta == {"loaded": True}
    p.save(model, ctx)
    assert load_file(tmp_path / "ws" / "FL_global_model.pt")["model"]["fc.bias"].tolist() == [3.0]
    located = p.get_model("FL_global_model.pt", ctx)
    assert located is not None and located.params["fc.bias"].tolist() == [6.0]


def test_pt_locator_offers_the_files_that_exist(tmp_path):
    p = PTFileModelPersistor(model=Net())
    ctx = make_ctx(tmp_path, persistor=p)
    p.setup(ctx)
    locator = PTFileModelLocator(pt_persistor_id="persistor")
    assert locator.model_names(ctx) == []
    p.save(p.load(ctx), ctx)
    assert locator.model_names(ctx) == ["FL_global_model.pt"]
    ctx.bus.fire(EventType.GLOBAL_BEST_MODEL_AVAILABLE, metric=1.0, round=0, model=ModelMessage({}))
    assert locator.model_names(ctx) == ["FL_global_model.pt", "best_FL_global_model.pt"]
    found = locator.locate("best_FL_global_model.pt", ctx)
    assert found is not None and list(found.params) == NAMES and found.params_type == ParamsType.FULL
    assert locator.locate("other.pt", ctx) is None


def test_np_persistor_default_shipped_and_saved_models(tmp_path):
    ctx = make_ctx(tmp_path)
    p = NPModelPersistor()
    first = p.load(ctx)
    assert list(first.params) == ["numpy_key"] and first.params["numpy_key"].dtype == np.float32
    assert first.params["numpy_key"].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    (tmp_path / "app" / "models").mkdir()
    np.save(tmp_path / "app" / "models" / "server.npy", np.array([5.0]))
    assert p.load(ctx).params["numpy_key"].tolist() == [5.0]  # shipped with the app
    p.save(ModelMessage({"numpy_key": np.array([6.0, 7.0])}), ctx)
    assert np.load(tmp_path / "ws" / "models" / "server.npy").tolist() == [6.0, 7.0]
    assert p.load(ctx).params["numpy_key"].tolist() == [6.0, 7.0]  # the workspace wins
    assert sorted(f.name for f in (tmp_path / "ws" / "models").iterdir()) == ["server.npy"]
    with pytest.raises(KeyError, match=r"the model has no 'numpy_key' variable \(it has \['w'\]\)"):
        p.save(ModelMessage({"w": np.zeros(1)}), ctx)


def test_np_locator(tmp_path):
    ctx = make_ctx(tmp_path)
    locator = NPModelLocator()
    assert locator.model_names(ctx) == ["server"]
    assert locator.locate("server", ctx) is None  # nothing saved yet (logged)
    NPModelPersistor(model_dir="models").save(ModelMessage({"numpy_key": np.array([1.5])}), ctx)
    found = locator.locate("server", ctx)
    assert found is not None and found.params["numpy_key"].tolist() == [1.5]
    np.save(tmp_path / "abs.npy", np.array([2.5]))
    several = NPModelLocator(model_name={"server": "server.npy", "pre": str(tmp_path / "abs.npy")})
    assert several.model_names(ctx) == ["server", "pre"]
    pre = several.locate("pre", ctx)
    assert pre is not None and pre.params["numpy_key"].tolist() == [2.5]
    assert several.locate("nope", ctx) is None


def test_config_checks_the_locator_points_at_a_pt_persistor(tmp_path):
    server = {
        "workflows": [{"id": "cse", "name": "CrossSiteModelEval", "args": {"model_locator_id": "locator"}}],
        "components": [
            {"id": "persistor", "name": "NPModelPersistor"},
            {"id": "net", "path": "torch.nn.Linear", "args": {"in_features": 2, "out_features": 1}},
            {
                "id": "pt",
                "path": "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
                "args": {"model": "persistor"},
            },
            {
                "id": "locator",
                "path": "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator",
                "args": {"pt_persistor_id": "persistor"},
            },
        ],
    }
    client = {"executors": [{"tasks": ["submit_model", "validate"], "executor": {"path": "wf_parts.CSEExecutor"}}]}
    job = write_job(tmp_path / "job", server, client)
    messages = sorted(p.message for p in validate_job(job).errors)
    assert messages == [
        "model: component 'persistor' is a NPModelPersistor, not a Module",
        "pt_persistor_id: component 'persistor' is a NPModelPersistor, not a PTFileModelPersistor",
    ]
    cfg = job / "app" / "config" / "config_fed_server.json"
    fixed = json.loads(cfg.read_text())
    fixed["components"][2]["args"]["model"] = "net"
    fixed["components"][3]["args"]["pt_persistor_id"] = "pt"
    cfg.write_text(json.dumps(fixed))
    assert validate_job(job).errors == []
