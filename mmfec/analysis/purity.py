"""Cluster purity against ground truth, and the grid partition it is compared with.

Why: "the clusters follow objects" needs a number. The purity of a partition of the
pixels is the share of pixels that belong to the largest ground-truth label of their
cluster: 1.0 when no cluster straddles two labels. Purity grows with the number of
clusters (one cluster per pixel is perfectly pure), so a layer's purity only means
something next to a partition with as many parts that knows nothing of the image: the
regular grid with the layer's number of cells in every fold region, i.e. the patches of
grid-style (convolutional or ViT) features.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from mmfec.models.layers.regions import split_span


def purity(clusters: np.ndarray, labels: np.ndarray,
           valid: Optional[np.ndarray] = None) -> Optional[float]:
    """Share of the counted pixels that carry their cluster's most frequent label.

    Args:
        clusters: ``[H, W]`` integer cluster id per pixel.
        labels: ``[H, W]`` integer ground-truth label per pixel (same shape).
        valid: ``[H, W]`` bool, the pixels to count (e.g. not the ignore label); None
            counts every pixel.
    Returns:
        ``sum over clusters of (pixels of the cluster's largest label) / pixels counted``,
        or None when no pixel is counted.
    """
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape:
        raise ValueError(f'cluster map {clusters.shape} and label map {labels.shape} differ '
                         'in size; make the cluster maps at the label map\'s size')
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != labels.shape:
            raise ValueError(f'valid mask {valid.shape} and label map {labels.shape} differ '
                             'in size')
        clusters, labels = clusters[valid], labels[valid]
    clusters, labels = clusters.ravel(), labels.ravel()
    if clusters.size == 0:
        return None
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    label_ids, label_index = np.unique(labels, return_inverse=True)
    pairs, counts = np.unique(cluster_index.astype(np.int64) * label_ids.size + label_index,
                              return_counts=True)
    largest = np.zeros(cluster_ids.size, dtype=np.int64)
    np.maximum.at(largest, pairs // label_ids.size, counts)
    return float(largest.sum()) / clusters.size


def cells_per_region(center_grid: Sequence[int], regions: Sequence[int],
                     point_grid: Optional[Sequence[int]] = None
                     ) -> Tuple[List[int], List[int]]:
    """How many clusters a layer can form per fold region, as rows x columns.

    ``center_grid`` and ``regions`` are a record's (see
    :class:`mmfec.models.ClusterRecorder`). An encoding has ``proposal_size`` centers in
    every region; a pooling's output grid is split into regions as its fold splits it, so
    regions may differ by one row or column. ``point_grid`` (the ``(H, W)`` of the points
    the layer clusters) caps each count at the region's points: a 4x4 map clustered
    around 7x7 centers forms at most 4x4 clusters.
    """
    rows, cols = (int(v) for v in center_grid)
    region_rows, region_cols = (int(v) for v in regions)
    if min(rows, cols, region_rows, region_cols) < 1:
        raise ValueError(f'center_grid {tuple(center_grid)} and regions {tuple(regions)} '
                         'must be positive')
    cells = ([b - a for a, b in split_span(rows, region_rows)],
             [b - a for a, b in split_span(cols, region_cols)])
    if point_grid is None:
        return cells
    capped = []
    for counts, length in zip(cells, point_grid):
        spans = split_span(int(length), len(counts))
        if len(spans) != len(counts):
            raise ValueError(f'point_grid {tuple(point_grid)} has fewer points than the '
                             f'{tuple(regions)} fold regions of center_grid '
                             f'{tuple(center_grid)}')
        capped.append([min(count, b - a) for count, (a, b) in zip(counts, spans)])
    return capped[0], capped[1]


def _axis_cells(length: int, cells: Sequence[int]) -> np.ndarray:
    """Cell index of every pixel along one axis: ``len(cells)`` near-equal regions, region
    ``i`` cut into ``cells[i]`` near-equal cells, numbered on from region to region."""
    index = np.empty(length, dtype=np.int64)
    first = 0
    for (r0, r1), count in zip(split_span(length, len(cells)), cells):
        for k, (c0, c1) in enumerate(split_span(r1 - r0, count)):
            index[r0 + c0:r0 + c1] = first + k
        first += count
    return index


def grid_partition(image_size: Tuple[int, int], row_cells: Sequence[int],
                   col_cells: Sequence[int]) -> np.ndarray:
    """The regular grid over an image: ``[H, W]`` int64 cell id per pixel.

    The image is cut into ``len(row_cells) x len(col_cells)`` near-equal fold regions
    (as :func:`~mmfec.models.layers.regions.split_span` cuts a feature map), and region
    ``(i, j)`` into ``row_cells[i] x col_cells[j]`` near-equal cells. A side shorter than
    its number of cells gets one cell per pixel.
    """
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f'image_size {tuple(image_size)} must be positive')
    rows = _axis_cells(height, row_cells)
    cols = _axis_cells(width, col_cells)
    return rows[:, None] * (int(cols.max()) + 1) + cols[None, :]


def layer_grid(image_size: Tuple[int, int], center_grid: Sequence[int],
               regions: Sequence[int], point_grid: Optional[Sequence[int]] = None
               ) -> np.ndarray:
    """The grid baseline of one layer: as many cells per fold region as the layer can
    form clusters there (see :func:`cells_per_region`)."""
    return grid_partition(image_size, *cells_per_region(center_grid, regions, point_grid))


def num_cells(center_grid: Sequence[int], regions: Sequence[int],
              point_grid: Optional[Sequence[int]] = None) -> int:
    """The number of cells of :func:`layer_grid`: the most clusters the layer can form."""
    rows, cols = cells_per_region(center_grid, regions, point_grid)
    return sum(rows) * sum(cols)
