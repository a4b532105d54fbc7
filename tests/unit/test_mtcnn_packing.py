"""The packed P-Net canvas (app/pipelines/mtcnn.py pack_pyramid, pnet_jobs): golden layouts and the runs'
coverage of every map cell exactly once. Parity of the values with the per-level runs, on the real model, is in
tests/models/test_mtcnn_packing.py."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipelines.mtcnn import (
    PNET_EDGE,
    pack_pyramid,
    pnet_jobs,
    pnet_map_size,
    pyramid_scales,
    scaled_size,
)


def levels(height: int, width: int, min_face_size: int = 20, scale_factor: float = 0.709) -> list[tuple[int, int]]:
    return [scaled_size(height, width, s) for s in pyramid_scales(height, width, min_face_size, scale_factor)]


def test_layout_of_a_1080p_pyramid() -> None:
    sizes = levels(1080, 1920)
    assert sizes[:3] == [(649, 1153), (460, 817), (326, 580)]
    layout = pack_pyramid(sizes)
    assert (layout.height, layout.width) == (1553, 1153)
    assert layout.offsets == ((0, 0), (650, 0), (1110, 0), (1110, 580), (650, 818), (1436, 0), (1110, 992),
                              (1436, 208), (1436, 312), (1436, 386), (650, 1110), (1436, 440))


def test_layout_of_a_640x480_pyramid() -> None:
    layout = pack_pyramid(levels(480, 640))
    assert (layout.height, layout.width) == (694, 385)
    assert layout.offsets == ((0, 0), (290, 0), (496, 0), (496, 194), (290, 274), (642, 0), (496, 332),
                              (642, 70), (642, 106), (642, 132))


@pytest.mark.parametrize("size", [(1080, 1920), (480, 640), (1434, 2333), (2333, 1434), (37, 300), (301, 13)])
@pytest.mark.parametrize("scale_factor", [0.709, 0.95])
def test_levels_lie_inside_the_canvas_at_even_offsets_without_overlap(size: tuple[int, int],
                                                                       scale_factor: float) -> None:
    sizes = levels(*size, 12, scale_factor)
    layout = pack_pyramid(sizes)
    used = np.zeros((layout.height, layout.width), dtype=np.int64)
    for (y, x), (h, w) in zip(layout.offsets, sizes, strict=True):
        assert y % 2 == 0 and x % 2 == 0
        assert y + h <= layout.height and x + w <= layout.width
        used[y:y + h, x:x + w] += 1
    assert used.max() == 1


def test_edge_runs_for_a_small_mixed_parity_pyramid() -> None:
    sizes = [(13, 15), (13, 13), (12, 13), (15, 12), (13, 17)]  # odd both ways: levels 0, 1 and 4
    layout = pack_pyramid(sizes)
    canvas = np.zeros((1, 3, layout.height, layout.width), dtype=np.float32)
    shapes = [job.image().shape for job in pnet_jobs(sizes, layout, canvas)]
    # The canvas in one band, the odd-height levels' last rows side by side, the odd-width levels' last
    # columns stacked, and one 11 x 11 corner run (level 4: levels 0 and 1 take the two runs' corners).
    assert shapes == [(1, 3, 69, 17), (1, 3, PNET_EDGE, 59), (1, 3, 53, PNET_EDGE), (1, 3, PNET_EDGE, PNET_EDGE)]


@pytest.mark.parametrize("size", [(1080, 1920), (480, 640), (97, 131), (131, 97), (40, 2000)])
@pytest.mark.parametrize("scale_factor", [0.709, 0.95])
@pytest.mark.parametrize("band_rows", [1, 7, 32])
def test_every_map_cell_comes_from_exactly_one_run(size: tuple[int, int], scale_factor: float,
                                                   band_rows: int) -> None:
    sizes = levels(*size, 12, scale_factor)
    layout = pack_pyramid(sizes)
    canvas = np.zeros((1, 3, layout.height, layout.width), dtype=np.float32)
    written = [np.zeros(pnet_map_size(h, w), dtype=np.int64) for h, w in sizes]
    for job in pnet_jobs(sizes, layout, canvas, band_rows=band_rows):
        run_rows, run_cols = pnet_map_size(*job.image().shape[2:])
        for level, map_row, map_col, run_row, run_col, rows, cols in job.pieces:
            assert run_row + rows <= run_rows and run_col + cols <= run_cols
            written[level][map_row:map_row + rows, map_col:map_col + cols] += 1
    for counts in written:
        assert counts.min() == 1 and counts.max() == 1
