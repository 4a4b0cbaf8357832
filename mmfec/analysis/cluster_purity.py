"""Measure how pure an FEC model's clusters are: per layer, averaged over images.

Why here: ``tools/analyze_clusters.py`` (a whole val set) and ``ClusterPurityHook`` (the
first val images at every validation) measure the same thing the same way.

For one image and one layer:

* the clusters are the layer's cluster map at the label map's resolution
  (:func:`mmfec.visualization.cluster_maps`: pixel -> stride-4 point -> the chain of
  pooling assignments);
* an encoding layer clusters every head separately; its purity is the mean of its
  heads' purities (each head is a partition of the image of its own);
* the grid purity is that of :func:`~mmfec.analysis.purity.layer_grid`, with as many
  cells per fold region as the layer has centers in it (but not more than it has points
  there), on the same pixels;
* ``clusters`` is that number of cells: the most clusters the layer can form.

A table row averages these over the images that have pixels to count; ``advantage`` is
``purity - grid_purity``.
"""
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmfec.visualization.cluster_maps import (
    ALL_LAYERS,
    cluster_maps,
    find_backbone,
    name_layers,
    record_clusters,
    select_layers,
)

from .ground_truth import DEFAULT_IGNORE_INDEX, label_map
from .purity import layer_grid, num_cells, purity

ROW_KEYS = ('layer', 'clusters', 'purity', 'grid_purity', 'advantage')


def image_purities(records: Sequence[dict], labels: np.ndarray,
                   valid: Optional[np.ndarray] = None,
                   input_size: Optional[Tuple[int, int]] = None,
                   batch_index: int = 0, layers=None) -> List[dict]:
    """Purity of every selected layer for one image of a recorded batch.

    Args:
        records: from :func:`mmfec.visualization.record_clusters`, one forward pass.
        labels: ``[H, W]`` ground-truth label per pixel; the maps are made at this size.
        valid: ``[H, W]`` bool, the pixels to count (None: all).
        input_size: ``(h, w)`` part of the network input holding the image (top-left),
            see :func:`mmfec.visualization.cluster_maps`.
        batch_index: which image of the batch.
        layers: friendly names / module paths / 'default' / 'all' (None = all).
    Returns:
        ``[dict(layer, clusters, purity, grid_purity), ...]`` in forward order; purity
        values are None when no pixel is counted.
    """
    if not records:
        raise ValueError('no cluster records: run the backbone inside ClusterRecorder(...) '
                         '(or use record_clusters) first')
    infos = name_layers([(r['name'], r['kind']) for r in records])
    chosen = select_layers(infos, ALL_LAYERS if layers is None else layers)
    chosen_names = {info.name for info in chosen}
    by_name = {info.name: record for info, record in zip(infos, records)}
    heads = {info.name: by_name[info.name]['assignment'].shape[1]
             for info in chosen if info.kind == 'encoding'}
    size = tuple(labels.shape)
    per_layer: Dict[str, List[Optional[float]]] = {info.name: [] for info in chosen}
    for head in range(max(heads.values(), default=1)):
        wanted = [name for name in chosen_names
                  if (name in heads and heads[name] > head) or (name not in heads and head == 0)]
        for cmap in cluster_maps(records, size, input_size, head=head,
                                 batch_index=batch_index, layers=wanted):
            per_layer[cmap.name].append(purity(cmap.ids, labels, valid))
    rows = []
    for info in chosen:
        record = by_name[info.name]
        values = per_layer[info.name]
        points = tuple(record['assignment'].shape[-2:])
        grid = layer_grid(size, record['center_grid'], record['regions'], points)
        rows.append(dict(
            layer=info.name,
            clusters=num_cells(record['center_grid'], record['regions'], points),
            purity=None if values[0] is None else float(np.mean(values)),
            grid_purity=purity(grid, labels, valid)))
    return rows


class PurityMeter:
    """Averages the per-image rows of :func:`image_purities` into table rows."""

    def __init__(self):
        self.reset()

    def reset(self):
        self._sums: 'OrderedDict[str, List[float]]' = OrderedDict()
        self.images = 0

    def add(self, rows: Iterable[dict]):
        """Add one image's rows (layers with nothing counted are left out)."""
        self.images += 1
        for row in rows:
            if row['purity'] is None or row['grid_purity'] is None:
                continue
            sums = self._sums.setdefault(row['layer'], [0.0, 0.0, 0.0, 0])
            sums[0] += row['clusters']
            sums[1] += row['purity']
            sums[2] += row['grid_purity']
            sums[3] += 1

    def rows(self) -> List[dict]:
        """``[dict(layer, clusters, purity, grid_purity, advantage), ...]``, image means.

        ``clusters`` is an int when every image gave the layer the same number of
        centers, else their mean.
        """
        table = []
        for layer, (clusters, pure, grid, count) in self._sums.items():
            mean_clusters = clusters / count
            if mean_clusters == int(mean_clusters):
                mean_clusters = int(mean_clusters)
            table.append(dict(layer=layer, clusters=mean_clusters, purity=pure / count,
                              grid_purity=grid / count, advantage=(pure - grid) / count))
        return table


@torch.no_grad()
def batch_purities(model: nn.Module, data_batch: dict, layers=None,
                   ignore_index: int = DEFAULT_IGNORE_INDEX,
                   max_images: Optional[int] = None) -> List[List[dict]]:
    """Per-image rows of :func:`image_purities` for a batch straight from a dataloader.

    The batch goes through the model's own ``data_preprocessor`` (as validation does),
    then only the FEC backbone runs, under a :class:`~mmfec.models.ClusterRecorder`.

    Args:
        model: a detector/segmentor with an FEC backbone (not wrapped).
        data_batch: ``dict(inputs=[...], data_samples=[...])`` with ground truth.
        layers: see :func:`image_purities`.
        ignore_index: segmentation label not counted.
        max_images: measure only the first images of the batch.
    """
    data = model.data_preprocessor(data_batch, False)
    inputs, samples = data['inputs'], data.get('data_samples')
    if samples is None:
        raise ValueError('the batch has no data samples, so no ground truth; use a val '
                         'dataloader whose pipeline loads the annotations')
    count = len(samples) if max_images is None else min(len(samples), max_images)
    labels = [label_map(sample, ignore_index) for sample in samples[:count]]
    records = record_clusters(find_backbone(model), inputs[:count])
    results = []
    for index, (sample, (label, valid)) in enumerate(zip(samples, labels)):
        input_size = tuple(sample.metainfo.get('img_shape', inputs.shape[-2:]))[:2]
        results.append(image_purities(records, label, valid, input_size, index, layers))
    return results


def format_table(rows: Sequence[dict], title: Optional[str] = None) -> str:
    """The rows as an aligned text table (purity values with 3 decimals)."""
    header = ('layer', 'clusters', 'purity', 'grid purity', 'advantage')
    lines = [header]
    for row in rows:
        clusters = row['clusters']
        lines.append((row['layer'],
                      str(clusters) if isinstance(clusters, int) else f'{clusters:.1f}',
                      f"{row['purity']:.3f}", f"{row['grid_purity']:.3f}",
                      f"{row['advantage']:+.3f}"))
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    text = ['  '.join(cell.ljust(w) if k == 0 else cell.rjust(w)
                      for k, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, '  '.join('-' * w for w in widths))
    if title:
        text.insert(0, title)
    return '\n'.join(text)


def measure_purity(model: nn.Module, dataloader: Iterable[dict],
                   num_images: Optional[int] = None, layers=None,
                   ignore_index: int = DEFAULT_IGNORE_INDEX,
                   on_image: Optional[Callable[[], None]] = None) -> Tuple[List[dict], int]:
    """Table rows (see :class:`PurityMeter`) over the first ``num_images`` images of
    ``dataloader`` (all when None), and the number of images measured.

    ``on_image`` is called once per measured image (e.g. a progress bar's ``update``).
    """
    meter = PurityMeter()
    for data_batch in dataloader:
        left = None if num_images is None else num_images - meter.images
        if left is not None and left <= 0:
            break
        for rows in batch_purities(model, data_batch, layers, ignore_index, left):
            meter.add(rows)
            if on_image is not None:
                on_image()
    return meter.rows(), meter.images
