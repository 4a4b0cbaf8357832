"""Fold regions: how a feature map is split before clustering.

The paper's code reshapes the map into ``fold x fold`` equal regions and asserts that the
fold divides the size. Here the split also works when it does not: region ``i`` of ``f``
covers ``[i * L // f, (i + 1) * L // f)``, which is exactly the paper's split when ``f``
divides ``L`` and differs by at most one row/column otherwise.
"""
from functools import lru_cache
from typing import List, Tuple

import torch

Span = Tuple[int, int]


def split_span(length: int, folds: int) -> List[Span]:
    """Cut ``[0, length)`` into ``min(folds, length)`` contiguous, non-empty spans."""
    folds = max(1, min(folds, length))
    return [(i * length // folds, (i + 1) * length // folds) for i in range(folds)]


def grid_regions(height: int, width: int, fold: Tuple[int, int]):
    """Yield ``(row_span, col_span)`` for every fold region of an ``height x width`` map,
    row-major, as the paper's ``(b f1 f2)`` batch order."""
    for rows in split_span(height, fold[0]):
        for cols in split_span(width, fold[1]):
            yield rows, cols


def pooling_regions(height: int, width: int, fold: Tuple[int, int]):
    """Yield ``(in_rows, in_cols, out_rows, out_cols)`` for the stride-2 clustering pooling.

    The output grid is ``ceil(H/2) x ceil(W/2)`` (the size of the 3x3 stride-2 skip conv), split
    into fold regions; each output region pools the input rows/cols it covers twice over.
    """
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    for out_rows in split_span(out_h, fold[0]):
        for out_cols in split_span(out_w, fold[1]):
            in_rows = (2 * out_rows[0], min(2 * out_rows[1], height))
            in_cols = (2 * out_cols[0], min(2 * out_cols[1], width))
            yield in_rows, in_cols, out_rows, out_cols


def adaptive_bins(start: int, stop: int, count: int) -> List[Span]:
    """The input spans ``F.adaptive_avg_pool*d`` averages to shrink ``[start, stop)`` to
    ``count`` cells, ``[floor(i * L / count), ceil((i + 1) * L / count))`` from ``start``
    (bins may overlap when the length is not a multiple of ``count``)."""
    length = stop - start
    return [(start + (i * length) // count, start - (-((i + 1) * length) // count))
            for i in range(count)]


def averaging_matrix(bins: List[Span], length: int, dtype=torch.float64) -> torch.Tensor:
    """``[len(bins), length]``: row ``i`` averages the inputs in ``bins[i]``, so that
    ``averaging_matrix(adaptive_bins(0, L, n), L) @ x`` is adaptive average pooling."""
    matrix = torch.zeros(len(bins), length, dtype=dtype)
    for i, (start, stop) in enumerate(bins):
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


class ClusterLayout:
    """Where a clustering layer's fold regions, points and centers lie for one map size.

    ``regions`` holds ``(point_rows, point_cols, center_rows, center_cols)`` spans; the
    centers of all regions form one ``center_size`` grid, and every center is the mean of
    the points in its ``bins_h[row] x bins_w[col]`` rectangle. Built once per size and
    layer setting (cached), it lets a layer pool, assign and scatter over the whole map at
    once instead of copying each region out and back.
    """

    def __init__(self, size, regions, center_size, bins_h, bins_w):
        self.size = tuple(size)
        self.regions = list(regions)
        self.center_size = tuple(center_size)
        self.bins_h, self.bins_w = list(bins_h), list(bins_w)
        height, width = self.size
        rows, cols = self.center_size
        # Every center is a 2x2 block: plain stride-2 average pooling (pooling, even sizes).
        self.is_stride2 = (height == 2 * rows and width == 2 * cols
                           and self.bins_h == [(2 * i, 2 * i + 2) for i in range(rows)]
                           and self.bins_w == [(2 * j, 2 * j + 2) for j in range(cols)])
        # The bins are those of one adaptive pooling of the whole map.
        self.is_adaptive = (self.bins_h == adaptive_bins(0, height, rows)
                            and self.bins_w == adaptive_bins(0, width, cols))
        self._matrices = {}

    @property
    def num_centers(self) -> int:
        return self.center_size[0] * self.center_size[1]

    def averaging_matrices(self, device, dtype):
        """``A_h`` ``[rows, H]`` and ``A_w`` ``[cols, W]``: centers = ``A_h @ x @ A_w^T``."""
        key = (device, dtype)
        if key not in self._matrices:
            self._matrices[key] = tuple(
                averaging_matrix(bins, length).to(device=device, dtype=dtype)
                for bins, length in ((self.bins_h, self.size[0]), (self.bins_w, self.size[1])))
        return self._matrices[key]


def encoding_layout(height: int, width: int, proposal: Tuple[int, int],
                    fold: Tuple[int, int]) -> ClusterLayout:
    """Layout of a clustering encoding: each fold region holds a ``proposal`` grid of
    centers, adaptive-pooled from the region (the paper's ``(b f1 f2)`` split)."""
    return _encoding_layout(height, width, tuple(proposal), tuple(fold))


def pooling_layout(height: int, width: int, fold: Tuple[int, int]) -> ClusterLayout:
    """Layout of a clustering pooling: centers on the ``ceil(H/2) x ceil(W/2)`` grid, each
    region's centers adaptive-pooled from the input rows/cols it covers."""
    return _pooling_layout(height, width, tuple(fold))


@lru_cache(maxsize=256)
def _encoding_layout(height, width, proposal, fold) -> ClusterLayout:
    ph, pw = proposal
    row_spans, col_spans = split_span(height, fold[0]), split_span(width, fold[1])
    regions = [(rows, cols, (i * ph, (i + 1) * ph), (j * pw, (j + 1) * pw))
               for i, rows in enumerate(row_spans) for j, cols in enumerate(col_spans)]
    bins_h = [b for r in row_spans for b in adaptive_bins(*r, ph)]
    bins_w = [b for c in col_spans for b in adaptive_bins(*c, pw)]
    return ClusterLayout((height, width), regions,
                         (len(row_spans) * ph, len(col_spans) * pw), bins_h, bins_w)


@lru_cache(maxsize=256)
def _pooling_layout(height, width, fold) -> ClusterLayout:
    regions = list(pooling_regions(height, width, fold))
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    bins_h, bins_w = [None] * out_h, [None] * out_w
    for in_rows, in_cols, out_rows, out_cols in regions:
        for o, b in zip(range(*out_rows), adaptive_bins(*in_rows, out_rows[1] - out_rows[0])):
            bins_h[o] = b
        for o, b in zip(range(*out_cols), adaptive_bins(*in_cols, out_cols[1] - out_cols[0])):
            bins_w[o] = b
    return ClusterLayout((height, width), regions, (out_h, out_w), bins_h, bins_w)
