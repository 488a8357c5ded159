"""The in-time weighted aggregator against hand-computed means (NVFlare's maths)."""

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from flruntime.components.aggregators.intime import InTimeAccumulateWeightedAggregator
from flruntime.components.aggregators.weighted import WeightedSum, weighted_mean

from flruntime.events.bus import EventBus
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType


def ctx(tmp_path: Path, rnd: int | None = 0) -> RunContext:
    return RunContext("job", "server", tmp_path, tmp_path, EventBus("server"), current_round=rnd)


def msg(params, steps=None, kind=ParamsType.DIFF, rnd=None) -> ModelMessage:
    meta = {} if steps is None else {"NUM_STEPS_CURRENT_ROUND": steps}
    return ModelMessage(
        {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}, kind, meta=meta, current_round=rnd
    )


def aggregate(agg, tmp_path, contributions):
    c = ctx(tmp_path)
    for site, m in contributions:
        assert agg.accept(site, m, c) is True
    return agg.aggregate(c)


def test_diffs_are_weighted_by_local_steps(tmp_path):
    agg = InTimeAccumulateWeightedAggregator()
    out = aggregate(agg, tmp_path, [("a", msg({"w": [1, 2]}, steps=1)), ("b", msg({"w": [5, 6]}, steps=3))])
    # (1·[1, 2] + 3·[5, 6]) / 4
    np.testing.assert_array_equal(out.params["w"], np.array([4.0, 5.0], dtype=np.float32))
    assert out.params["w"].dtype == np.float32
    assert out.params_type == ParamsType.DIFF and out.meta == {"num_contributions": 2} and out.current_round == 0


def test_full_weights_with_unequal_steps(tmp_path):
    agg = InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS")
    out = aggregate(
        agg,
        tmp_path,
        [
            ("a", msg({"w": [0, 10]}, steps=2, kind=ParamsType.FULL)),
            ("b", msg({"w": [3, 4]}, steps=1, kind=ParamsType.FULL)),
            ("c", msg({"w": [6, 1]}, steps=3, kind=ParamsType.FULL)),
        ],
    )
    # ([0, 20] + [3, 4] + [18, 3]) / 6
    np.testing.assert_array_equal(out.params["w"], np.array([3.5, 4.5], dtype=np.float32))
    assert out.params_type == ParamsType.FULL


def test_missing_steps_weigh_one(tmp_path):
    agg = InTimeAccumulateWeightedAggregator()
    out = aggregate(agg, tmp_path, [("a", msg({"w": [1]})), ("b", msg({"w": [4]}, steps=2))])
    np.testing.assert_array_equal(out.params["w"], [3.0])  # (1 + 8) / 3


def test_exclude_vars_regex_leaves_variables_out(tmp_path):
    agg = InTimeAccumulateWeightedAggregator(exclude_vars=r"bn\.|running_")
    out = aggregate(
        agg,
        tmp_path,
        [
            ("a", msg({"conv.w": [2], "bn.w": [9], "x.running_mean": [9]}, steps=1)),
            ("b", msg({"conv.w": [4], "bn.w": [9], "x.running_mean": [9]}, steps=1)),
        ],
    )
    assert sorted(out.params) == ["conv.w"]
    np.testing.assert_array_equal(out.params["conv.w"], [3.0])


def test_aggregation_weights_multiply_local_steps(tmp_path):
    agg = InTimeAccumulateWeightedAggregator(aggregation_weights={"a": 2.0, "b": 0.5})
    out = aggregate(
        agg, tmp_path, [("a", msg({"w": [1]}, steps=1)), ("b", msg({"w": [10]}, steps=4)), ("c", msg({"w": [4]}))]
    )
    # weights: a 2·1 = 2, b 0.5·4 = 2, c (not listed) 1·1 = 1 → (2 + 20 + 4) / 5
    np.testing.assert_array_equal(out.params["w"], np.array([5.2], dtype=np.float32))


def test_without_weigh_by_local_iter_values_are_summed_and_divided_by_the_weights(tmp_path):
    # NVFlare: Σv / Σw (the clients already weighted their contributions, e.g. under HE)
    agg = InTimeAccumulateWeightedAggregator(weigh_by_local_iter=False, aggregation_weights={"a": 3.0})
    out = aggregate(agg, tmp_path, [("a", msg({"w": [6, 3]}, steps=1)), ("b", msg({"w": [10, 3]}, steps=2))])
    np.testing.assert_array_equal(out.params["w"], np.array([16 / 5, 6 / 5], dtype=np.float32))


def test_without_weigh_by_local_iter_and_unit_weights_is_the_plain_mean(tmp_path):
    agg = InTimeAccumulateWeightedAggregator(weigh_by_local_iter=False)
    out = aggregate(agg, tmp_path, [("a", msg({"w": [1, 3]})), ("b", msg({"w": [5, 7]}))])
    np.testing.assert_array_equal(out.params["w"], [3.0, 5.0])


def test_a_variable_only_some_sites_send_is_averaged_over_those(tmp_path):
    agg = InTimeAccumulateWeightedAggregator()
    out = aggregate(agg, tmp_path, [("a", msg({"x": [2], "y": [7]}, steps=1)), ("b", msg({"x": [4]}, steps=3))])
    np.testing.assert_array_equal(out.params["x"], [3.5])
    np.testing.assert_array_equal(out.params["y"], [7.0])


def test_wrong_params_type_is_rejected(tmp_path):
    agg = InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHT_DIFF")
    c = ctx(tmp_path)
    assert agg.accept("a", msg({"w": [1]}, kind=ParamsType.FULL), c) is False
    assert agg.accept("a", ModelMessage(None, ParamsType.DIFF), c) is False
    assert agg.accept("a", msg({"w": [5]}), c) is True  # a rejected result does not count as a contribution
    np.testing.assert_array_equal(agg.aggregate(c).params["w"], [5.0])


def test_second_contribution_and_other_rounds_are_rejected(tmp_path):
    agg = InTimeAccumulateWeightedAggregator()
    c = ctx(tmp_path, rnd=3)
    assert agg.accept("a", msg({"w": [1]}, rnd=3), c) is True
    assert agg.accept("a", msg({"w": [100]}, rnd=3), c) is False
    assert agg.accept("b", msg({"w": [100]}, rnd=2), c) is False
    assert agg.accept("c", msg({"w": [3]}), c) is True  # no round on the message: accepted
    np.testing.assert_array_equal(agg.aggregate(c).params["w"], [2.0])
    agg.reset(c)
    assert agg.accept("a", msg({"w": [7]}, rnd=3), c) is True  # a new round: the site may contribute again
    out = agg.aggregate(c)
    np.testing.assert_array_equal(out.params["w"], [7.0])
    assert out.meta == {"num_contributions": 1}


def test_bad_expected_data_kind():
    with pytest.raises(ValueError, match="expected_data_kind must be WEIGHTS or WEIGHT_DIFF, got 'METRICS'"):
        InTimeAccumulateWeightedAggregator(expected_data_kind="METRICS")  # type: ignore[arg-type]


def test_concurrent_contributions_are_all_counted(tmp_path):
    agg = InTimeAccumulateWeightedAggregator()
    c = ctx(tmp_path)
    threads = [
        threading.Thread(target=agg.accept, args=(f"s{i}", msg({"w": [float(i)]}, steps=1), c)) for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = agg.aggregate(c)
    np.testing.assert_array_equal(out.params["w"], [9.5])  # mean of 0..19
    assert out.meta == {"num_contributions": 20}


def test_weighted_sum_keeps_float_dtypes_and_averages_ints_as_floats():
    acc = WeightedSum()
    acc.add({"f16": np.array([1, 3], np.float16), "i": np.array([1, 2], np.int64)}, 1.0)
    acc.add({"f16": np.array([3, 5], np.float16), "i": np.array([2, 2], np.int64)}, 1.0)
    out = acc.mean()
    assert out["f16"].dtype == np.float16 and out["f16"].tolist() == [2.0, 4.0]
    assert out["i"].dtype == np.float64 and out["i"].tolist() == [1.5, 2.0]


def test_weighted_mean_helper():
    out = weighted_mean([({"a": np.array([0.0]), "skip": np.array([1.0])}, 1.0), ({"a": np.array([4.0])}, 3.0)], "ski")
    assert sorted(out) == ["a"] and out["a"].tolist() == [3.0]
    acc = WeightedSum()
    acc.add({"a": np.array([2.0])}, 4.0, re.compile("b"), scale=False)
    assert acc.mean()["a"].tolist() == [0.5]
