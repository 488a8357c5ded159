"""The ``tf`` extra beside the rest: TensorFlow, torch and TenSEAL in one process, in either order.

Each check runs in a fresh interpreter (import order is the point, and TensorFlow costs ~5 s and ~700 MB to
import), and only looks for TensorFlow without importing it here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="the tf extra is not installed"),
]


def _run(code: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("first", ["torch", "tensorflow"])
def test_keras_and_torch_train_in_one_process(first: str) -> None:
    second = "tensorflow" if first == "torch" else "torch"
    out = _run(
        f"""
        import {first}, {second}
        import numpy as np
        import tensorflow as tf
        import torch

        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = x.sum(axis=1, keepdims=True)
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(x, y, epochs=3, verbose=0).history["loss"]
        net = torch.nn.Linear(4, 1)
        net.load_state_dict({{"weight": torch.from_numpy(model.get_weights()[0].T.copy()),
                              "bias": torch.from_numpy(model.get_weights()[1])}})
        same = np.allclose(net(torch.from_numpy(x)).detach().numpy(), model.predict(x, verbose=0), atol=1e-5)
        print(history[-1] < history[0], same)
        """
    )
    assert out == "True True"


def test_he_contexts_work_after_tensorflow_was_imported() -> None:
    # TensorFlow's libraries are global: a TenSEAL loaded after them without RTLD_DEEPBIND fails "failed to save
    # proto" (or crashes) when it serializes a context
    pytest.importorskip("tenseal")
    out = _run(
        """
        import tensorflow
        from flruntime.he import require_tenseal
        from flruntime.he.keys import make_contexts

        public, secret = make_contexts()
        ts = require_tenseal()
        context = ts.context_from(secret)
        vector = ts.ckks_vector(context, [1.0, 2.0])
        print([round(v, 3) for v in (vector + vector).decrypt()], ts.context_from(public).is_private())
        """
    )
    assert out == "[2.0, 4.0] False"
