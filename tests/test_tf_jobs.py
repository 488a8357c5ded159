"""TensorFlow jobs in NVFlare 2.5's shape: FedAvg, TFModelPersistor, TFInProcessClientAPIExecutor, a Keras script."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from flruntime.components.executors.tf import flat_layer_weights_dict, unflat_layer_weights_dict

from flruntime.runtime.simulator import simulate

NET = textwrap.dedent(
    """
    import tensorflow as tf


    class Net(tf.keras.Sequential):
        def __init__(self):
            super().__init__(
                [
                    tf.keras.layers.Flatten(name="flat"),
                    tf.keras.layers.Dense(8, activation="relu", name="hidden"),
                    tf.keras.layers.Dense(3, name="out"),
                ]
            )
            self._input_shape = (None, 4, 4)  # built by the persistor (NVFlare's delayed build)
    """
)

SCRIPT = textwrap.dedent(
    """
    import json

    import numpy as np
    import tensorflow as tf

    import nvflare.client as flare
    from tf_net import Net

    flare.init()
    site = flare.get_site_name()
    rng = np.random.default_rng(int(site[-1]))
    x, y = rng.random((32, 4, 4)).astype("float32"), rng.integers(0, 3, 32)
    model = Net()
    model.build(input_shape=(None, 4, 4))
    model.compile(optimizer="sgd", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    while flare.is_running():
        received = flare.receive()
        if received is None:
            break
        seen.append({name: [list(w.shape) for w in weights] for name, weights in received.params.items()})
        for name, weights in received.params.items():
            model.get_layer(name).set_weights(weights)
        model.fit(x, y, epochs=1, verbose=0)
        params = {layer.name: layer.get_weights() for layer in model.layers}
        flare.send(flare.FLModel(params=params, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
        with open(f"seen-{site}.json", "w") as f:
            json.dump(seen, f)
    """
)


def _job(root: Path, rounds: int = 2) -> Path:
    (root / "app" / "config").mkdir(parents=True)
    (root / "app" / "custom").mkdir(parents=True)
    (root / "app" / "custom" / "tf_net.py").write_text(NET)
    (root / "app" / "custom" / "train.py").write_text(SCRIPT)
    (root / "meta.json").write_text(json.dumps({"name": root.name, "min_clients": 2, "deploy_map": {"app": ["@ALL"]}}))
    server = {
        "format_version": 2,
        "workflows": [
            {
                "id": "fedavg",
                "path": "nvflare.app_common.workflows.fedavg.FedAvg",
                "args": {"num_clients": 2, "num_rounds": rounds},
            }
        ],
        "components": [
            {
                "id": "persistor",
                "path": "nvflare.app_opt.tf.model_persistor.TFModelPersistor",
                "args": {"model": {"path": "tf_net.Net", "args": {}}, "save_name": "tf_model.weights.h5"},
            }
        ],
    }
    client = {
        "format_version": 2,
        "executors": [
            {
                "tasks": ["*"],
                "executor": {
                    "path": "nvflare.app_opt.tf.in_process_client_api_executor.TFInProcessClientAPIExecutor",
                    "args": {"task_script_path": "train.py"},
                },
            }
        ],
    }
    (root / "app" / "config" / "config_fed_server.json").write_text(json.dumps(server))
    (root / "app" / "config" / "config_fed_client.json").write_text(json.dumps(client))
    return root


def test_keras_weights_flatten_and_unflatten_as_nvflare_names_them():
    layers = {"dense": [np.ones((2, 3)), np.zeros(3)], "flatten": [], "out": [np.arange(3.0)]}
    flat = flat_layer_weights_dict(layers)
    assert list(flat) == ["dense_nvf_0", "dense_nvf_1", "out_nvf_0"]
    back = unflat_layer_weights_dict(flat)
    assert list(back) == ["dense", "out"]
    assert all(np.array_equal(a, b) for a, b in zip(back["dense"], layers["dense"], strict=True))
    with pytest.raises(ValueError, match=r"^'w' is not a flat Keras weight name \(<layer>_nvf_<index>\)$"):
        unflat_layer_weights_dict({"w": np.ones(1)})


def test_a_keras_fedavg_job_trains_with_tf_persistor_and_in_process_executor(tmp_path: Path, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)  # the script writes what it received next to where it runs
    result = simulate(_job(tmp_path / "tfjob"), n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert (result.status, result.rounds_completed, result.error) == ("FINISHED:COMPLETED", 2, "")
    seen = json.loads((tmp_path / "seen-site-1.json").read_text())
    # the script got each layer's weights as a list, as layer.get_weights() gives them
    assert seen[0] == {"hidden": [[16, 8], [8]], "out": [[8, 3], [3]]}
    assert len(seen) == 2
    import sys

    sys.path.insert(0, str(tmp_path / "tfjob" / "app" / "custom"))
    try:
        from tf_net import Net
    finally:
        sys.path.pop(0)
    net = Net()
    net.build(input_shape=(None, 4, 4))
    net.load_weights(str(tmp_path / "ws" / "server" / "tf_model.weights.h5"))  # HDF5 written by save_weights
    kernel = net.get_layer("hidden").get_weights()[0]
    assert kernel.shape == (16, 8) and np.isfinite(kernel).all()
    assert isinstance(net, tf.keras.Model)
