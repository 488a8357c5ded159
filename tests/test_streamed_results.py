"""Results folded into the aggregate as they stream in: the same sums as whole results, bounded memory,
broken uploads completed when sent again, and averaged by what arrived when they are not."""

from __future__ import annotations

import itertools
import json
import logging
import re
import struct
import threading
import tracemalloc

import numpy as np
import pytest
from flruntime.components.aggregators.intime import InTimeAccumulateWeightedAggregator
from flruntime.components.aggregators.weighted import WeightedSum

from flruntime.runtime.communicator import Communicator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType, Task, TaskResult
from flruntime.transport.codec import CodecError, decode_head, encode, encode_parts, prefix_size
from flruntime.transport.streaming import ArrayReader, iter_message, read_control, receive


def _result(site: str, params: dict, steps: float = 1.0, task_id: str = "t1", rnd: int = 0) -> TaskResult:
    msg = ModelMessage(params, ParamsType.DIFF, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: steps}, current_round=rnd)
    return TaskResult(task_id, "train", site, data=msg, headers={"contribution_round": rnd})


def _mixed() -> dict:
    return {
        "f32": np.arange(1001, dtype=np.float32).reshape(7, 143) / 7,
        "f64": np.linspace(-1, 1, 33),
        "i64": np.arange(-5, 6, dtype=np.int64),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "flags": np.array([True, False, True]),
        "u8": np.arange(250, dtype=np.uint8),
    }


def _body(result: TaskResult) -> tuple[bytes, list]:
    wire = bytes(encode(result))
    need = prefix_size(wire)
    assert need is not None
    _, specs = decode_head(wire[:need], len(wire) - need)
    return wire[need:], specs


@pytest.mark.parametrize("chunk", [1, 3, 5, 7, 4096, 1 << 20])
def test_the_reader_gives_every_array_whole_from_any_chunking(chunk):
    params = _mixed()
    body, specs = _body(_result("site-1", {**params, "blob": b"\x00\x01ciphertext"}))
    reader = ArrayReader(specs)
    got: dict[str, list] = {}
    for at in range(0, len(body), chunk):
        for spec, start, values in reader.feed(body[at : at + chunk]):
            pieces = got.setdefault(spec.name, [])
            if spec.dtype is not None:
                assert start == sum(len(p) for p in pieces)  # pieces come in order, whole elements only
            pieces.append(values)
    assert reader.complete
    for name, arr in params.items():
        flat = np.concatenate(got.get(name, [np.zeros(0, arr.dtype)]))
        np.testing.assert_array_equal(flat.reshape(arr.shape), arr, err_msg=name)
    assert got["blob"] == [b"\x00\x01ciphertext"]
    with pytest.raises(CodecError, match="more than the"):
        list(reader.feed(b"x"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h["arrays"][1].update(offset=0), "array 'b' starts at byte 0, not at 16 where the last ended"),
        (lambda h: h["arrays"][0].update(nbytes=12), "is not its shape"),
        (lambda h: h["arrays"][0].update(shape=[2**62 + 1, 4]), "is not its shape"),  # no int64 wrap-around
        (lambda h: h["arrays"][0].update(dtype="|O"), "forbidden dtype"),
        (lambda h: h["arrays"].pop(), "the arrays fill"),
        (lambda h: h["arrays"][1].update(name="a"), "array 'a' appears twice in the message"),
        (
            lambda h: (h["arrays"][1].update(name="a"), h["model"].update(params=["a", "a"])),
            "array 'a' appears twice in the message",
        ),
        (lambda h: h["model"].update(params=["b", "a"]), r"the message's arrays \['a', 'b'\] are not the parameters"),
    ],
    ids=["overlap", "short", "overflow", "object", "missing", "twice", "twice-listed", "order"],
)
def test_a_header_whose_arrays_do_not_tile_the_message_is_refused(change, message):
    from flruntime.transport.codec import decode

    wire = bytes(encode(_result("site-1", {"a": np.ones(4, np.float32), "b": np.ones(3, np.float32)})))
    need = prefix_size(wire)
    header = json.loads(wire[8:need])
    change(header)
    head = json.dumps(header).encode()
    with pytest.raises(CodecError, match=message):
        decode_head(b"FLR1" + struct.pack(">I", len(head)) + head, len(wire) - need)
    if "twice" in message:  # the whole path refuses it too
        with pytest.raises(CodecError, match=message):
            decode(b"FLR1" + struct.pack(">I", len(head)) + head + wire[need:])


def test_a_header_longer_than_the_announced_message_is_refused_at_once():
    consumed = []

    def chunks():
        yield json.dumps({"size": 100}).encode()
        for i in itertools.count():
            consumed.append(i)
            yield b"FLR1" + struct.pack(">I", 200_000_000) + b"x" * 92 if i == 0 else b"x" * 1_000_000

    with pytest.raises(CodecError, match="the message's header claims 200000008 bytes, more than the 100 announced"):
        receive(chunks(), lambda head, msg, arrays: Recorder())
    assert consumed == [0]


class Recorder:
    def __init__(self):
        self.pieces: list[tuple[str, int, np.ndarray]] = []
        self.closed = self.failed = None

    def write(self, name, start, values):
        self.pieces.append((name, start, np.array(values)))

    def close(self):
        self.closed = True
        return True

    def fail(self, reason):
        self.failed = reason


def test_receive_hands_the_arrays_to_a_sink_and_reports_broken_and_short_streams():
    result = _result("site-1", {"w": np.arange(100_000, dtype=np.float32)})
    sink = Recorder()
    got = receive(iter_message(result, chunk=4096, job_id="j"), lambda head, msg, arrays: sink)
    assert got.accepted is True and sink.closed and sink.failed is None
    assert got.head["job_id"] == "j" and isinstance(got.message, TaskResult) and got.message.data.params == {}
    np.testing.assert_array_equal(np.concatenate([p[2] for p in sink.pieces]), result.data.params["w"])

    whole = receive(iter_message(result, chunk=4096))  # no sink offered: the message comes whole
    assert whole.accepted is None
    np.testing.assert_array_equal(whole.message.data.params["w"], result.data.params["w"])

    def broken():
        yield from itertools.islice(iter_message(result, chunk=4096), 20)
        raise ConnectionResetError("peer went away")

    sink = Recorder()
    with pytest.raises(ConnectionResetError):
        receive(broken(), lambda head, msg, arrays: sink)
    assert sink.failed == "peer went away" and sink.closed is None

    size = read_control(next(iter_message(result)))["size"]
    sink = Recorder()
    with pytest.raises(CodecError, match=rf"the stream ended after \d+ of {size} bytes"):
        receive(itertools.islice(iter_message(result, chunk=4096), 20), lambda head, msg, arrays: sink)
    assert sink.failed.startswith("the stream ended after")


def _fold(acc: WeightedSum, params: dict, weight: float, stop: int | None = None):
    """Stream ``params`` into ``acc`` in 1000-byte pieces; stop after ``stop`` bytes (a broken stream)."""
    body, specs = _body(_result("s", params))
    fold = acc.begin([(s.name, s.dtype, s.shape) for s in specs], weight)
    reader = ArrayReader(specs)
    for at in range(0, len(body) if stop is None else stop, 1000):
        for spec, start, values in reader.feed(body[at : at + 1000]):
            fold.write(spec.name, start, values)
    return fold


def test_streamed_contributions_sum_exactly_as_whole_ones():
    rng = np.random.default_rng(0)
    contributions = [
        ({"a": rng.normal(size=(50, 40)).astype(np.float32), "n": np.arange(9)}, w) for w in (3.0, 1.0, 0.25)
    ]
    whole, streamed = WeightedSum(), WeightedSum()
    for params, weight in contributions:
        whole.add(params, weight)
        fold = _fold(streamed, params, weight)
        assert fold.complete
        fold.commit()
    assert streamed.count == whole.count == 3
    for name, value in whole.mean().items():
        np.testing.assert_array_equal(streamed.mean()[name], value, err_msg=name)


def test_a_broken_contribution_counts_for_the_values_it_reached():
    a, b = np.ones(1000, np.float32), np.full(1000, 2.0, np.float32)
    acc = WeightedSum()
    first = _fold(acc, {"x": a, "y": a}, 1.0)
    first.commit()
    # the second stream breaks 6000 bytes into the body: all of x (4000 bytes) and the first 500 values of y
    broken = _fold(acc, {"x": b, "y": b, "z": b}, 3.0, stop=6000)
    assert broken.done == {"x": 1000, "y": 500, "z": 0} and not broken.complete
    mean = acc.mean(partial=[broken])
    np.testing.assert_allclose(mean["x"], np.full(1000, (1 + 3 * 2) / 4))
    np.testing.assert_allclose(mean["y"][:500], np.full(500, (1 + 3 * 2) / 4))
    np.testing.assert_array_equal(mean["y"][500:], np.ones(500))  # only the first result reached these
    assert "z" not in mean  # no result reached it at all


def test_a_variable_only_a_broken_contribution_reached_in_part_is_left_out(caplog):
    acc = WeightedSum()
    broken = _fold(acc, {"x": np.ones(1000, np.float32)}, 1.0, stop=2000)
    with caplog.at_level(logging.WARNING):
        assert acc.mean(partial=[broken]) == {}
    assert "leaving 'x' out of the aggregate: only a broken-off result reached part of it" in caplog.text


class Clients:
    """Plays clients of one broadcast: each streams its result through receive(), as the federation does."""

    def __init__(self, comm: Communicator):
        self.comm = comm

    def open_sink(self, head, msg, arrays):
        return self.comm.open_stream(msg, arrays)

    def send(self, result: TaskResult, stop_after: int | None = None) -> bool | None:
        chunks = iter_message(result, chunk=64 * 1024)
        if stop_after is not None:

            def broken():
                yield from itertools.islice(chunks, stop_after)
                raise ConnectionResetError("the client went away")

            with pytest.raises(ConnectionResetError):
                receive(broken(), self.open_sink)
            return None
        return receive(chunks, self.open_sink).accepted


def _round(comm: Communicator, agg: InTimeAccumulateWeightedAggregator, ctx: RunContext, **kwargs):
    out: dict = {}

    def on_stream(result, arrays):
        return agg.open_contribution(result.site, result.data, arrays, ctx)

    def run():
        out["results"] = comm.broadcast_and_wait(
            "train",
            ModelMessage({}),
            on_result=lambda r: agg.accept(r.site, r.data, ctx),
            on_stream=on_stream,
            **kwargs,
        )

    thread = threading.Thread(target=run)
    thread.start()
    tasks = {}
    for site in comm.clients():
        task = comm.pull(site, timeout=10)
        assert isinstance(task, Task)
        tasks[site] = task.task_id
    return thread, tasks, out


def _ctx(tmp_path) -> RunContext:
    from flruntime.events.bus import EventBus

    ctx = RunContext("job", "server", tmp_path, tmp_path, EventBus("server"))
    ctx.current_round = 0
    return ctx


def test_a_result_sent_again_after_its_upload_broke_completes_it_exactly(tmp_path):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    rng = np.random.default_rng(1)
    params = {n: {"w": rng.normal(size=200_000).astype(np.float32)} for n in ("site-1", "site-2")}
    thread, tasks, out = _round(comm, agg, ctx)
    clients = Clients(comm)
    r1 = _result("site-1", params["site-1"], steps=2, task_id=tasks["site-1"])
    r2 = _result("site-2", params["site-2"], steps=5, task_id=tasks["site-2"])
    assert clients.send(r1, stop_after=5) is None  # broke off after 4 of 13 chunks of data
    assert clients.send(r2) is True
    assert clients.send(r1) is True  # sent again: completed from where it broke off
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1", "site-2"}
    expected = (2 * params["site-1"]["w"] + 5 * params["site-2"]["w"]) / 7
    np.testing.assert_allclose(agg.aggregate(ctx).params["w"], expected, rtol=1e-6, atol=1e-7)
    assert clients.send(r1) is False  # a third time: the task is closed


def test_the_wait_does_not_end_while_a_result_streams_in(tmp_path):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx, min_responses=1, wait_time_after_min_received=0)
    r2 = _result("site-2", {"w": np.full(10, 4.0, np.float32)}, task_id=tasks["site-2"])
    sink = comm.open_stream(r2, _body(r2)[1])  # site-2's upload has begun
    Clients(comm).send(_result("site-1", {"w": np.ones(10, np.float32)}, task_id=tasks["site-1"]))
    thread.join(timeout=0.5)
    assert thread.is_alive()  # min_responses reached, but a result is still arriving
    sink.write("w", 0, np.full(10, 4.0, np.float32))
    assert sink.close() is True
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1", "site-2"}
    np.testing.assert_array_equal(agg.aggregate(ctx).params["w"], np.full(10, 2.5, np.float32))


def test_a_client_that_goes_away_mid_upload_is_not_waited_for(tmp_path):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx, min_responses=1, wait_time_after_min_received=0)
    r2 = _result("site-2", {"w": np.full(10, 4.0, np.float32)}, task_id=tasks["site-2"])
    sink = comm.open_stream(r2, _body(r2)[1])  # site-2's upload begins, then hangs
    sink.write("w", 0, np.full(4, 4.0, np.float32))
    Clients(comm).send(_result("site-1", {"w": np.ones(10, np.float32)}, task_id=tasks["site-1"]))
    thread.join(timeout=0.5)
    assert thread.is_alive()
    comm.remove("site-2")  # its heartbeats stopped
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1"}
    sink.write("w", 4, np.full(6, 4.0, np.float32))  # the rest came after all, too late: dropped
    assert sink.close() is False
    np.testing.assert_array_equal(agg.aggregate(ctx).params["w"], [2.5] * 4 + [1.0] * 6)


def test_a_result_the_workflow_fails_to_open_is_delivered_not_lost(tmp_path, caplog):
    comm, agg, ctx = Communicator(["site-1"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx)
    bad = _result("site-1", {"w": np.ones(3, np.float32)}, task_id=tasks["site-1"])
    bad.data.meta[MetaKey.NUM_STEPS_CURRENT_ROUND] = "abc"
    with caplog.at_level(logging.ERROR):
        assert Clients(comm).send(bad) is False
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1"}  # the round did not wait for it
    assert "processing the result of 'train' from site-1 failed" in caplog.text


def test_an_upload_that_stalls_does_not_hold_the_round(tmp_path):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    comm.stalled_upload = 0.2
    thread, tasks, out = _round(comm, agg, ctx, min_responses=1, wait_time_after_min_received=0)
    r2 = _result("site-2", {"w": np.full(10, 4.0, np.float32)}, task_id=tasks["site-2"])
    sink = comm.open_stream(r2, _body(r2)[1])
    sink.write("w", 0, np.full(4, 4.0, np.float32))  # then nothing more
    Clients(comm).send(_result("site-1", {"w": np.ones(10, np.float32)}, task_id=tasks["site-1"]))
    thread.join(timeout=30)
    assert not thread.is_alive() and set(out["results"]) == {"site-1"}
    np.testing.assert_array_equal(agg.aggregate(ctx).params["w"], [2.5] * 4 + [1.0] * 6)


def test_a_result_that_never_completes_is_averaged_by_what_arrived(tmp_path, caplog):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx, min_responses=1, wait_time_after_min_received=0)
    clients = Clients(comm)
    n = 100_000  # 400 kB: 7 chunks of 64 kB
    with caplog.at_level(logging.WARNING):
        clients.send(_result("site-2", {"w": np.full(n, 4.0, np.float32)}, task_id=tasks["site-2"]), stop_after=3)
        assert clients.send(_result("site-1", {"w": np.ones(n, np.float32)}, task_id=tasks["site-1"])) is True
        thread.join(timeout=30)
        assert set(out["results"]) == {"site-1"}
        mean = agg.aggregate(ctx).params["w"]
    reached = int(np.sum(mean == 2.5))  # the values site-2's broken upload reached: (1 + 4) / 2
    assert 0 < reached < n and np.all(mean[:reached] == 2.5) and np.all(mean[reached:] == 1.0)
    assert re.search(
        r"the result of site-2 broke off after \d+\.\d% of its values \(the client went away\)", caplog.text
    )
    assert re.search(r"the result of site-2 is incomplete \(its upload broke off\); the \d+\.\d% of its", caplog.text)


def test_a_streamed_result_that_does_not_fit_is_rejected_and_the_sum_kept(tmp_path, caplog):
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx)
    clients = Clients(comm)
    assert clients.send(_result("site-1", {"w": np.ones(10, np.float32)}, task_id=tasks["site-1"])) is True
    with caplog.at_level(logging.WARNING):
        assert clients.send(_result("site-2", {"w": np.ones(11, np.float32)}, task_id=tasks["site-2"])) is False
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1", "site-2"}  # delivered, and rejected by the aggregator
    assert "rejecting result from site-2: 'w' has shape [11], the others sent [10]" in caplog.text
    np.testing.assert_array_equal(agg.aggregate(ctx).params["w"], np.ones(10, np.float32))


def test_the_aggregator_checks_a_streamed_result_as_a_whole_one(tmp_path, caplog):
    agg, ctx = InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    arrays = _body(_result("site-1", {"w": np.ones(3, np.float32)}))[1]
    with caplog.at_level(logging.WARNING):
        late = _result("site-1", {}, rnd=3).data
        assert agg.open_contribution("site-1", late, arrays, ctx).close() is False
        full = ModelMessage({}, ParamsType.FULL, current_round=0)
        assert agg.open_contribution("site-1", full, arrays, ctx).close() is False
    assert "rejecting result from site-1: it is for round 3, not 0" in caplog.text
    assert "rejecting result from site-1: expected WEIGHT_DIFF but got FULL" in caplog.text
    ciphertexts = _body(_result("site-1", {"w": b"ciphertext"}))[1]
    assert agg.open_contribution("site-1", _result("site-1", {}).data, ciphertexts, ctx) is None  # comes whole

    class Checked(InTimeAccumulateWeightedAggregator):  # a subclass with its own accept gets whole results
        def accept(self, site, result, ctx):
            return super().accept(site, result, ctx)

    assert Checked().open_contribution("site-1", _result("site-1", {}).data, arrays, ctx) is None
    from flruntime.components.he.aggregator import HEInTimeAccumulateWeightedAggregator

    he = HEInTimeAccumulateWeightedAggregator()  # its context loads at setup, not here
    assert he.open_contribution("site-1", _result("site-1", {}).data, arrays, ctx) is None


def _model_bytes(n: int) -> dict:
    return {"a": np.full(n // 2, 1.0, np.float32), "b": np.full(n - n // 2, 2.0, np.float32)}


@pytest.mark.parametrize("streamed", [True, False])
def test_a_streamed_result_is_never_held_whole(tmp_path, streamed):
    n = 8_000_000  # 32 MB
    comm, agg, ctx = Communicator(["site-1", "site-2"]), InTimeAccumulateWeightedAggregator(), _ctx(tmp_path)
    thread, tasks, out = _round(comm, agg, ctx)
    Clients(comm).send(_result("site-1", _model_bytes(n), task_id=tasks["site-1"]))  # the sum exists now
    second = _result("site-2", _model_bytes(n), task_id=tasks["site-2"])
    chunks = list(iter_message(second))  # the client's side, made before measuring
    tracemalloc.start()
    try:
        got = receive(iter(chunks), Clients(comm).open_sink if streamed else None)
        if not streamed:
            assert comm.submit(got.message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    thread.join(timeout=30)
    assert set(out["results"]) == {"site-1", "site-2"}
    if streamed:
        assert peak < 4 * 2**20  # a chunk or two, never the 32 MB result
    else:
        assert peak > 4 * n  # the whole result: what streaming saves
    np.testing.assert_array_equal(agg.aggregate(ctx).params["b"][:3], np.full(3, 2.0, np.float32))


def test_the_simulators_connection_streams_results_like_the_federation():
    from flruntime.transport.inprocess import InProcessConnection

    comm = Communicator(["site-1"])
    offered: list[list[str]] = []

    def on_stream(result, arrays):
        offered.append([a.name for a in arrays])
        return None  # take it whole after all

    seen: list[TaskResult] = []
    thread = threading.Thread(
        target=lambda: comm.broadcast_and_wait("train", ModelMessage({}), on_result=seen.append, on_stream=on_stream)
    )
    thread.start()
    task = comm.pull("site-1", timeout=10)
    assert InProcessConnection(comm).submit(
        _result("site-1", {"w": np.ones(3), "v": np.zeros(2)}, task_id=task.task_id)
    )
    thread.join(timeout=30)
    assert offered == [["w", "v"]]
    np.testing.assert_array_equal(seen[0].data.params["w"], np.ones(3))


def test_encode_parts_and_the_reader_agree_on_a_task_too():
    task = Task("t", "train", ModelMessage(_mixed()))
    prefix, parts = encode_parts(task)
    body = b"".join(bytes(p) for p in parts)
    _, specs = decode_head(prefix, len(body))
    pieces = list(ArrayReader(specs).feed(body))
    assert [p[0].name for p in pieces] == [n for n, v in _mixed().items() if v.size]
