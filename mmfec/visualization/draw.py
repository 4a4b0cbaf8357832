"""One call from a model and a normalised batch to finished cluster-map figures.

Why: the tool and the training hook do the same three steps (record one backbone
forward, map the records to pixels, draw); keeping them here keeps the two identical.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .cluster_maps import ClusterMap, cluster_maps, find_backbone, record_clusters
from .render import render_figure


def draw_cluster_maps(model: nn.Module,
                      inputs: torch.Tensor,
                      images: Sequence[np.ndarray],
                      input_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                      layers='default',
                      head: int = 0,
                      alpha: float = 0.5) -> List[Tuple[np.ndarray, List[ClusterMap]]]:
    """Figures for every image of a batch.

    Args:
        model: an FEC, or a detector/segmentor with an FEC ``backbone``.
        inputs: normalised ``[B, 3, H, W]`` batch, on the model's device.
        images: ``B`` uint8 RGB images to draw on; the maps are made at their size.
        input_sizes: per image, the ``(h, w)`` part of ``inputs`` it filled (top-left;
            padding excluded). Defaults to the whole input.
        layers / head: which layers and which encoding head, see :func:`cluster_maps`.
    Returns:
        ``[(figure, maps), ...]``, one per image; figures are uint8 RGB.
    """
    if len(images) != inputs.shape[0]:
        raise ValueError(f'{len(images)} images for a batch of {inputs.shape[0]} inputs')
    records = record_clusters(find_backbone(model), inputs)
    results = []
    for index, image in enumerate(images):
        size = input_sizes[index] if input_sizes is not None else tuple(inputs.shape[-2:])
        maps = cluster_maps(records, image.shape[:2], size, head=head, batch_index=index,
                            layers=layers)
        results.append((render_figure(image, maps, alpha=alpha), maps))
    return results
