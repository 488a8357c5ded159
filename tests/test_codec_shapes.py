"""The wire codec keeps every array's shape, 0-d ones (BatchNorm's ``num_batches_tracked``) included."""

import numpy as np
import pytest

from flruntime.runtime.messages import ModelMessage
from flruntime.transport.codec import decode, encode


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.asarray(7, dtype=np.int64), id="0-d"),
        pytest.param(np.zeros((2, 0), dtype=np.float32), id="empty"),
        pytest.param(np.arange(6, dtype=np.float64).reshape(2, 3).T, id="transposed"),
        pytest.param(np.arange(4, dtype=">f4"), id="big-endian"),
    ],
)
def test_arrays_keep_shape_dtype_and_values(array):
    back = decode(encode(ModelMessage({"x": array}))).params["x"]
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("<")
    np.testing.assert_array_equal(back, array)
