"""HE components (TenSEAL CKKS): packing, weighted aggregation of ciphertexts, keys kept where they belong."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from flruntime.components.he.aggregator import HEInTimeAccumulateWeightedAggregator
from flruntime.components.he.decryptor import HEModelDecryptor
from flruntime.components.he.encryptor import HEModelEncryptor
from flruntime.components.he.serialize_filter import HEModelSerializeFilter
from flruntime.components.he.shareable_generator import HEModelShareableGenerator
from hekit import SMALL, diff, make_keys, receive, relative_error, site_ctx, task, workspace

from flruntime.he import packing
from flruntime.he.contexts import client_context, server_context
from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT, HEParams
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType
from flruntime.transport.codec import decode, encode

pytest.importorskip("tenseal")

SHAPES = {"conv.weight": (16, 3, 3, 3), "conv.bias": (16,), "bn.num_batches_tracked": (), "fc.weight": (10, 500)}
SITES = ["site-1", "site-2", "site-3"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def default_keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("default_keys"), HEParams())


@pytest.fixture(scope="module")
def nvflare_keys(tmp_path_factory):
    """NVFlare's HEBuilder parameters (what a project.yml may still ask for): two primes per ciphertext."""
    return make_keys(tmp_path_factory.mktemp("nvflare_keys"), HEParams(8192, (60, 40, 40), 40))


@pytest.fixture
def sites(keys, tmp_path):
    return workspace(keys, tmp_path / "ws", SITES)


def updates(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in SITES:
        params = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in SHAPES.items()}
        params["bn.num_batches_tracked"] = np.array(7, dtype=np.int64)
        out.append(params)
    return out


def zeros() -> dict[str, np.ndarray]:
    return {k: np.zeros(s, dtype=np.int64 if k.endswith("tracked") else np.float32) for k, s in SHAPES.items()}


def encrypted(sites, params, steps, site, received=None, **kwargs) -> ModelMessage:
    """``site``'s encrypted difference ``params``, after it received ``received`` (default: a zero model)."""
    receive(sites[site], received if received is not None else ModelMessage(zeros()))
    enc = HEModelEncryptor(**kwargs)
    enc.setup(sites[site])
    return enc.process(diff(params, steps), task(sites[site]))


def test_the_encryptor_packs_every_variable_into_as_few_ciphertexts_as_possible(sites):
    params = updates()[0]
    out = encrypted(sites, params, 4, "site-1")
    layout = packing.Packing.from_meta(out.meta)
    total = sum(math.prod(s) for s in SHAPES.values())
    assert layout.slots == SMALL.slots == 4096 and layout.n_chunks == math.ceil(total / SMALL.slots) == 2
    assert [v.name for v in layout.vars] == list(SHAPES)
    assert all(isinstance(v, bytes) for v in out.params.values())
    # the weight travels in the clear; the values are divided by the power of two just above it
    assert (layout.weight, layout.shift, layout.divisor) == (4.0, 3, 0.5)
    # seeded ciphertexts modulo one 50-bit prime: at most 8 bytes per value (SEAL compresses the unused bits)
    assert all(4096 * 6 < n < 4096 * 8 + 512 for row in layout.chunk_bytes for n in row)
    # a chunk belongs to the variable in which it starts: conv.weight starts chunk 0, fc.weight chunk 1
    assert [len(b) for b in layout.chunk_bytes] == [1, 0, 0, 1]
    assert out.params["conv.bias"] == b"" and out.params["bn.num_batches_tracked"] == b""
    assert out.meta[MetaKey.PROCESSED_ALGORITHM] == "CKKS"
    assert out.meta[MetaKey.PROCESSED_KEYS] == dict.fromkeys(SHAPES, True)
    assert out.meta["NUM_STEPS_CURRENT_ROUND"] == 4


def test_decrypting_divides_by_the_weight_and_restores_shapes_and_dtypes(sites):
    params = updates()[0]
    out = HEModelDecryptor()
    out.setup(sites["site-2"])
    full = encrypted(sites, params, 3, "site-1", aggregation_weights={"site-1": 2.0})
    assert packing.Packing.from_meta(full.meta).weight == 6.0
    full.params_type = ParamsType.FULL
    got = out.process(full, task(sites["site-2"], "validate"))
    assert MetaKey.PROCESSED_KEYS not in got.meta and "he_packing" not in got.meta
    for name, value in params.items():
        assert got.params[name].shape == value.shape and got.params[name].dtype == value.dtype
    assert int(got.params["bn.num_batches_tracked"]) == 7
    want = {k: v.astype(np.float64) for k, v in params.items() if k != "bn.num_batches_tracked"}
    assert relative_error(got.params, want) < 1e-5


def test_a_difference_is_encrypted_as_the_received_global_model_plus_the_difference(sites):
    rng = np.random.default_rng(5)
    global_model = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in SHAPES.items()}
    global_model["bn.num_batches_tracked"] = np.array(40, dtype=np.int64)
    params = updates()[0]
    out = encrypted(sites, params, 2, "site-1", received=ModelMessage(global_model))
    got = HEModelDecryptor().process(out, task(sites["site-1"], "validate")).params
    want = {k: global_model[k].astype(np.float64) + params[k] for k in SHAPES}
    assert relative_error(got, want) < 1e-5 and int(got["bn.num_batches_tracked"]) == 47


def test_encrypt_layers_leave_the_others_weighted_in_the_clear(sites):
    params = updates()[0]
    out = encrypted(sites, params, 2, "site-1", encrypt_layers="weight$")
    assert out.meta[MetaKey.PROCESSED_KEYS] == {
        "conv.weight": True,
        "conv.bias": False,
        "bn.num_batches_tracked": False,
        "fc.weight": True,
    }
    np.testing.assert_array_equal(out.params["conv.bias"], params["conv.bias"] * 2)
    out = encrypted(sites, params, 2, "site-1", encrypt_layers=["fc.weight"])
    assert [v.name for v in packing.Packing.from_meta(out.meta).vars] == ["fc.weight"]


@pytest.mark.parametrize(
    ("kwargs", "meta", "text"),
    [
        (
            {"encrypt_layers": "^nothing"},
            {"NUM_STEPS_CURRENT_ROUND": 1},
            "No matching layers found with regex '^nothing'",
        ),
        ({}, {}, "the result has no NUM_STEPS_CURRENT_ROUND to weigh by"),
        (
            {},
            {"NUM_STEPS_CURRENT_ROUND": 1},
            "a WEIGHT_DIFF result is encrypted as the received global model plus the difference, but no global "
            "model was received with task 'train': make HEModelDecryptor a task data filter of this task",
        ),
    ],
    ids=["regex-matches-nothing", "no-steps", "no-global-model-received"],
)
def test_encryptor_errors(sites, kwargs, meta, text):
    enc = HEModelEncryptor(**kwargs)
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace("^", r"\^")):
        enc.process(ModelMessage({"w": np.ones(3)}, ParamsType.DIFF, meta=meta), task(sites["site-1"]))


def test_results_without_parameters_or_of_other_kinds_pass_unchanged(sites):
    enc = HEModelEncryptor(data_kinds=["WEIGHT_DIFF"])
    metrics = ModelMessage(metrics={"val_acc": 0.5})
    assert enc.process(metrics, task(sites["site-1"])) is metrics
    full = ModelMessage({"w": np.ones(3)}, ParamsType.FULL)
    assert enc.process(full, task(sites["site-1"])) is full
    plain = ModelMessage({"w": np.ones(3)})
    assert HEModelDecryptor().process(plain, task(sites["site-1"])) is plain


def fedavg_round(sites, global_model, results, steps, agg=None, gen=None):
    """One round: the global model goes to every client, which returns its (encrypted) difference; the server
    accepts every result, aggregates and updates the global model."""
    agg = agg or HEInTimeAccumulateWeightedAggregator()
    gen = gen or HEModelShareableGenerator()
    sites["server"].components["aggregator"] = agg
    agg.setup(sites["server"])
    gen.setup(sites["server"])
    task_data = gen.to_task_data(global_model, sites["server"])
    for site, params, n in zip(SITES, results, steps, strict=True):
        wire = encode(encrypted(sites, params, n, site, received=task_data))  # what crosses the transport
        assert agg.accept(site, decode(wire), sites["server"])
    aggregate = agg.aggregate(sites["server"])
    agg.reset(sites["server"])
    return aggregate, gen.update(global_model, aggregate, sites["server"])


@pytest.mark.parametrize(
    ("key_set", "bound"),
    [("keys", 1e-4), ("default_keys", 1e-6), ("nvflare_keys", 1e-6)],
    ids=["small-keys", "defaults", "nvflare-parameters"],
)
def test_the_encrypted_weighted_mean_matches_the_plaintext_one(request, tmp_path, key_set, bound):
    sites = workspace(request.getfixturevalue(key_set), tmp_path / "ws", SITES)
    rng = np.random.default_rng(1)
    initial = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in SHAPES.items() if k != "bn.num_batches_tracked"}
    initial["bn.num_batches_tracked"] = np.array(0, dtype=np.int64)
    steps = [3, 5, 8]
    gen = HEModelShareableGenerator()
    model = ModelMessage(initial)
    want = {k: v.astype(np.float64) for k, v in initial.items()}
    for rnd in range(3):
        results = updates(rnd)
        aggregate, model = fedavg_round(sites, model, results, steps, gen=gen)
        assert aggregate.params_type == ParamsType.DIFF and aggregate.meta["num_contributions"] == 3
        for k in want:
            want[k] = want[k] + sum(r[k].astype(np.float64) * n for r, n in zip(results, steps, strict=True)) / 16
        assert packing.is_encrypted(model.meta) and all(isinstance(v, bytes) for v in model.params.values())
    dec = HEModelDecryptor()
    dec.setup(sites["site-1"])
    got = dec.process(decode(encode(model)), task(sites["site-1"], rnd=3)).params
    floats = {k: v for k, v in want.items() if k != "bn.num_batches_tracked"}
    assert relative_error(got, floats) < 1e-3  # the stated tolerance
    assert relative_error(got, floats) < bound  # what the keys give: 2**30 (small) or 2**40 (default) scale
    assert int(got["bn.num_batches_tracked"]) == 7 * 3  # (7·3 + 7·5 + 7·8) / 16 = 7 per round


def test_exclude_vars_keep_the_global_values_of_encrypted_variables(sites):
    initial = {k: np.full(s, 0.5, dtype=np.float32) for k, s in SHAPES.items()}
    agg = HEInTimeAccumulateWeightedAggregator(exclude_vars="^conv")
    _, model = fedavg_round(sites, ModelMessage(initial), updates(), [1, 1, 1], agg=agg)
    dec = HEModelDecryptor()
    dec.setup(sites["site-1"])
    got = dec.process(model, task(sites["site-1"])).params
    np.testing.assert_allclose(got["conv.weight"], 0.5, atol=1e-5)
    np.testing.assert_allclose(got["conv.bias"], 0.5, atol=1e-5)
    assert np.abs(got["fc.weight"] - 0.5).max() > 1e-3


def test_ciphertexts_not_plaintext_cross_the_transport(sites):
    params = updates()[0]
    wire = bytes(encode(encrypted(sites, params, 1, "site-1")))
    result = decode(wire)
    assert isinstance(result, ModelMessage)
    assert all(isinstance(v, bytes) for v in result.params.values())
    for name, value in params.items():
        if value.size < 16:
            continue  # a few bytes may occur by chance in kilobytes of ciphertext
        for dtype in (np.float32, np.float64):
            assert value.astype(dtype).tobytes()[:64] not in wire, f"{name} travels in the clear"


def test_the_server_holds_only_the_public_context_and_cannot_decrypt(keys, sites):
    import tenseal as ts

    server = server_context(SERVER_CONTEXT, sites["server"])
    assert not server.private and server.context.is_public()
    assert not ts.context_from((keys / SERVER_CONTEXT).read_bytes()).is_private()
    assert sorted(p.name for p in (sites["server"].workspace / "startup").iterdir()) == [SERVER_CONTEXT]
    assert not server.engine.private
    agg = HEInTimeAccumulateWeightedAggregator()
    agg.setup(sites["server"])
    assert agg.accept("site-1", encrypted(sites, updates()[0], 1, "site-1"), sites["server"])
    aggregate = agg.aggregate(sites["server"])
    layout = packing.Packing.from_meta(aggregate.meta)
    with pytest.raises(ValueError, match="this context has no secret key: only a client's context can decrypt"):
        packing.decrypt(packing.blobs_of(aggregate.params, layout), layout, server)
    with pytest.raises(ValueError, match="only a client's context can encrypt"):
        server.engine.encrypt(np.ones(3))
    assert client_context(CLIENT_CONTEXT, sites["site-1"]).private


def test_the_server_refuses_a_secret_context(keys, tmp_path):
    ctx = site_ctx(tmp_path, "server")
    (ctx.workspace / "startup").mkdir()
    (ctx.workspace / "startup" / SERVER_CONTEXT).write_bytes((keys / CLIENT_CONTEXT).read_bytes())
    for component in (HEInTimeAccumulateWeightedAggregator(), HEModelShareableGenerator(), HEModelSerializeFilter()):
        with pytest.raises(ValueError) as info:
            component.preflight(ctx)
        assert str(info.value).startswith(
            "server_context.tenseal holds a secret key; the server must only get the public context"
        )


def test_a_missing_context_names_the_file_and_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FLRUNTIME_HE_DIR", raising=False)
    ctx = site_ctx(tmp_path, "site-1")
    with pytest.raises(FileNotFoundError) as info:
        HEModelEncryptor().preflight(ctx)
    assert str(info.value) == (
        f"client_context.tenseal not found (looked in {tmp_path}/site-1/startup, {tmp_path}/app/config): create keys "
        "with 'flruntime he keys -w DIR' and run 'flruntime simulate JOB --he-context-dir DIR' (or put the file in "
        "the site's startup/ folder)"
    )


def test_contexts_are_found_through_flruntime_he_dir(keys, tmp_path, monkeypatch):
    monkeypatch.setenv("FLRUNTIME_HE_DIR", str(keys))
    assert client_context(CLIENT_CONTEXT, site_ctx(tmp_path, "site-1")).path == keys / CLIENT_CONTEXT


def test_results_encrypted_with_another_key_are_rejected(keys, sites, tmp_path, caplog):
    other = workspace(make_keys(tmp_path / "other"), tmp_path / "ws2", SITES)
    agg = HEInTimeAccumulateWeightedAggregator()
    agg.setup(sites["server"])
    assert agg.accept("site-1", encrypted(sites, updates()[0], 1, "site-1"), sites["server"])
    with caplog.at_level(logging.ERROR):
        assert not agg.accept("site-2", encrypted(other, updates()[1], 1, "site-2"), sites["server"])
    assert "rejecting result: site-2 encrypted with a different context than site-1" in caplog.text
    dec = HEModelDecryptor()
    dec.setup(other["site-1"])
    with pytest.raises(ValueError, match="the model was encrypted with a different context"):
        dec.process(encrypted(sites, updates()[0], 1, "site-1"), task(other["site-1"]))


def test_the_serialize_filter_keeps_models_encrypted(sites):
    model = encrypted(sites, updates()[0], 1, "site-1")
    flt = HEModelSerializeFilter()
    assert flt.process_pre_save(model, sites["server"]) is model
    assert flt.process_post_load(model, sites["server"]) is model
    broken = model.copy()
    broken.params = dict(model.params, **{"conv.weight": b"x"})
    with pytest.raises(ValueError, match="encrypted variable 'conv.weight' has 1 bytes"):
        flt.process_pre_save(broken, sites["server"])


def test_large_values_and_weights_keep_their_precision(default_keys, tmp_path):
    """Sums of large weighted values stay below the prime: the weights are normalised by a power of two."""
    sites = workspace(default_keys, tmp_path / "ws", SITES)
    rng = np.random.default_rng(2)
    initial = {k: rng.normal(0, 50.0, s).astype(np.float32) for k, s in SHAPES.items()}
    initial["bn.num_batches_tracked"] = np.array(200_000, dtype=np.int64)
    steps = [1000, 3000, 250]
    model, want = ModelMessage(initial), {k: v.astype(np.float64) for k, v in initial.items()}
    for _ in range(2):
        results = [{k: rng.normal(0, 5.0, s).astype(np.float32) for k, s in SHAPES.items()} for _ in SITES]
        for r, n in zip(results, steps, strict=True):
            r["bn.num_batches_tracked"] = np.array(n, dtype=np.int64)
        _, model = fedavg_round(sites, model, results, steps)
        for k in want:
            want[k] = want[k] + sum(r[k].astype(np.float64) * n for r, n in zip(results, steps, strict=True)) / 4250
    got = receive(sites["site-1"], model, rnd=2)
    floats = {k: v for k, v in want.items() if k != "bn.num_batches_tracked"}
    assert relative_error(got, floats) < 1e-6
    assert int(got["bn.num_batches_tracked"]) == round(want["bn.num_batches_tracked"])


def test_results_that_do_not_match_the_round_are_rejected(sites, caplog):
    agg = HEInTimeAccumulateWeightedAggregator(exclude_vars="^conv")
    agg.setup(sites["server"])
    with caplog.at_level(logging.ERROR):  # the task data did not tell the client what the server excludes
        assert not agg.accept("site-1", encrypted(sites, updates()[0], 1, "site-1"), sites["server"])
    assert "rejecting result from site-1: its encryptor excluded '', this aggregator excludes '^conv'" in caplog.text
    agg = HEInTimeAccumulateWeightedAggregator()
    agg.setup(sites["server"])
    first = ModelMessage(zeros(), meta={packing.MODEL_ID: "g1"})
    assert agg.accept("site-1", encrypted(sites, updates()[0], 1, "site-1", received=first), sites["server"])
    other = ModelMessage(zeros(), meta={packing.MODEL_ID: "g0"})
    with caplog.at_level(logging.ERROR):
        assert not agg.accept("site-2", encrypted(sites, updates()[1], 1, "site-2", received=other), sites["server"])
    assert "rejecting result from site-2: it updates another global model than site-1's" in caplog.text
    with pytest.raises(ValueError, match="the aggregated results were added to another global model"):
        HEModelShareableGenerator().update(other, agg.aggregate(sites["server"]), sites["server"])


def test_the_server_cannot_weigh_ciphertexts():
    with pytest.raises(ValueError, match="weigh_by_local_iter must be false for encrypted results"):
        HEInTimeAccumulateWeightedAggregator(weigh_by_local_iter=True)
    found = list(HEInTimeAccumulateWeightedAggregator.validate_args({"weigh_by_local_iter": True}))
    assert [name for name, _ in found] == ["weigh_by_local_iter"]


def test_a_global_model_saved_by_an_earlier_flruntime_still_decrypts(sites):
    """Layout version 1: one TenSEAL vector of N/2 values per ciphertext, the values already divided."""
    import tenseal as ts

    loaded = client_context(CLIENT_CONTEXT, sites["site-1"])
    params = updates()[0]
    variables = [packing.Var(k, v.shape, str(v.dtype)) for k, v in params.items()]
    flat = packing.flatten(params, variables)
    half = loaded.slots // 2
    blobs = [ts.ckks_vector(loaded.context, flat[i : i + half]).serialize() for i in range(0, flat.size, half)]
    layout = packing.Packing(variables, [], half, loaded.fingerprint, version=1)
    encrypted_params, layout = packing.to_params(blobs, layout)
    meta = packing.encrypted_meta({}, layout, [])
    meta[packing.HE_META] = {k: v for k, v in meta[packing.HE_META].items() if k in ("version", "slots", "vars")}
    got = HEModelDecryptor().process(ModelMessage(encrypted_params, meta=meta), task(sites["site-1"], "validate"))
    want = {k: v.astype(np.float64) for k, v in params.items() if k != "bn.num_batches_tracked"}
    assert relative_error(got.params, want) < 1e-5 and int(got.params["bn.num_batches_tracked"]) == 7


def test_a_tampered_result_is_rejected_and_leaves_the_sum_intact(sites, caplog):
    agg = HEInTimeAccumulateWeightedAggregator()
    agg.setup(sites["server"])
    results = updates()
    assert agg.accept("site-1", encrypted(sites, results[0], 1, "site-1"), sites["server"])
    bad = encrypted(sites, results[1], 1, "site-2")
    blob = bytearray(bad.params["fc.weight"])
    blob[-100:] = bytes(100)  # the end of the last ciphertext
    bad.params = dict(bad.params, **{"fc.weight": bytes(blob)})
    with caplog.at_level(logging.ERROR):
        assert not agg.accept("site-2", bad, sites["server"])
    assert "rejecting result from site-2: its ciphertexts do not fit the server's context" in caplog.text
    assert agg.accept("site-3", encrypted(sites, results[2], 1, "site-3"), sites["server"])
    got = HEModelDecryptor().process(agg.aggregate(sites["server"]), task(sites["site-1"], "validate")).params
    want = {k: (results[0][k].astype(np.float64) + results[2][k]) / 2 for k in SHAPES if not k.endswith("tracked")}
    assert relative_error(got, want) < 1e-5


def test_chunks_concatenate_weighted_parts_across_variable_boundaries():
    rng = np.random.default_rng(3)
    sizes = [0, 3, 5, 0, 2, 4]
    values = [rng.normal(size=n).astype(np.float32) for n in sizes]
    bases = [rng.normal(size=n) if k % 2 else None for k, n in enumerate(sizes)]
    parts = [packing.Part(None if k == 5 else v, b) for k, (v, b) in enumerate(zip(values, bases, strict=True))]
    want = np.concatenate(
        [(b if v is None else (v if b is None else b + v)) for v, b in ((p.values, p.base) for p in parts)]
    )
    got = np.concatenate([c.copy() for c in packing.chunks(parts, 4, 0.5)])
    np.testing.assert_allclose(got, np.concatenate([want * 0.5, np.zeros(4 - want.size % 4)]))
