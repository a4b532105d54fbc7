"""AreaResampler.level computed by row blocks (as the detector's threads do) equals the whole level."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipelines.mtcnn import AreaResampler


@pytest.mark.parametrize(("out_height", "out_width"), [(37, 53), (60, 80), (91, 113), (13, 18)])
def test_row_blocks_equal_the_whole_level(out_height: int, out_width: int) -> None:
    image = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    resampler = AreaResampler(image)
    whole = resampler.level(out_height, out_width)
    assert whole.shape == (3, out_height, out_width) and whole.dtype == np.float32
    half = out_height // 2
    blocks = np.full((3, out_height, out_width), np.nan, dtype=np.float32)
    returned = resampler.level(out_height, out_width, slice(0, half), out=blocks[:, :half])
    assert np.shares_memory(returned, blocks)
    resampler.level(out_height, out_width, slice(half, out_height), out=blocks[:, half:])
    np.testing.assert_array_equal(blocks, whole)
    np.testing.assert_array_equal(resampler.level(out_height, out_width, slice(5, 9)), whole[:, 5:9])
    # A uniform image stays uniform at any size: the bins' sums are divided by their own sizes.
    flat = AreaResampler(np.full((60, 80, 3), 77, dtype=np.uint8)).level(out_height, out_width)
    np.testing.assert_array_equal(flat, np.float32(77))
