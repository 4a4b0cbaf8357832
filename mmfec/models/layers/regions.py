"""Fold regions: how a feature map is split before clustering.

The paper's code reshapes the map into ``fold x fold`` equal regions and asserts that the
fold divides the size. Here the split also works when it does not: region ``i`` of ``f``
covers ``[i * L // f, (i + 1) * L // f)``, which is exactly the paper's split when ``f``
divides ``L`` and differs by at most one row/column otherwise.
"""
from typing import List, Tuple

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
