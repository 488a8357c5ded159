"""Large messages as chunked streams: any chunk size, bounded chunks, exact sizes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from flruntime.runtime.messages import ModelMessage, Task, TaskResult
from flruntime.transport.codec import CodecError, encode, encode_parts
from flruntime.transport.streaming import Assembler, assemble, control, iter_bytes, iter_chunks, iter_message


def _task(n: int) -> Task:
    params = {"big": np.arange(n, dtype=np.float32), "small": np.ones((2, 3)), "count": np.int64(7)}
    return Task("t1", "train", ModelMessage(params, meta={"k": "v"}, current_round=2), {"h": 1})


@pytest.mark.parametrize("n", [0, 1, 1000, 300_000])
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 21])
def test_a_streamed_message_decodes_to_the_same_message(n, chunk):
    task = _task(n)
    stream = list(iter_message(task, chunk=chunk, kind="task"))
    assert all(0 < len(c) <= chunk for c in stream[1:])
    assert b"".join(stream[1:]) == bytes(encode(task))  # the chunks are exactly the encoding, in order
    head, buf = assemble(iter(stream))
    assert head == {"kind": "task", "size": len(encode(task))}
    out = buf.message()
    assert isinstance(out, Task) and out.headers == {"h": 1} and out.data.current_round == 2
    np.testing.assert_array_equal(out.data.params["big"], task.data.params["big"])
    assert out.data.params["count"] == 7


def test_encode_parts_are_views_of_the_arrays():
    arr = np.arange(10, dtype=np.float32)
    prefix, parts = encode_parts(TaskResult("t", "train", "site-1", data=ModelMessage({"w": arr})))
    assert prefix.startswith(b"FLR1")
    arr[0] = 42  # a view, not a copy: the stream reads the array itself
    assert np.frombuffer(parts[0], dtype=np.float32)[0] == 42


def test_iter_chunks_joins_small_parts():
    parts = [memoryview(b"ab"), memoryview(b"c"), memoryview(b"defgh")]
    assert list(iter_chunks(b"xy", parts, chunk=3)) == [b"xya", b"bcd", b"efg", b"h"]


def test_bytes_stream_and_control_messages():
    data = bytes(range(256)) * 10
    head, buf = assemble(iter(list(iter_bytes(data, chunk=100, name="job"))))
    assert head == {"name": "job", "size": len(data)} and buf.data() == data
    head, buf = assemble(iter([control(kind="none")]))
    assert head == {"kind": "none"} and buf is None


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ([], "empty stream"),
        ([b"[1]"], "bad control message: not a JSON object"),
        ([b"{"], "bad control message: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ([control(size=3), b"abcd"], "the stream sent more than the 3 bytes it announced"),
        ([control(size=-1)], "bad message size -1"),
        ([control(size=11)], "message of 11 bytes is over the limit of 10 bytes"),
    ],
)
def test_bad_streams_are_refused(stream, message):
    with pytest.raises(CodecError) as err:
        assemble(iter(stream), limit=10)
    assert str(err.value) == message


def test_a_short_stream_is_refused():
    buf = Assembler(5)
    buf.add(b"abc")
    with pytest.raises(CodecError, match=r"^the stream ended after 3 of 5 bytes$"):
        buf.message()
