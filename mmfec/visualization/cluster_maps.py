"""Turn the records of :class:`mmfec.models.ClusterRecorder` into per-pixel cluster maps.

Why: a record holds one center id per *point* of a layer's own grid (stride 4, 8, 16 or 32),
with ids on that layer's center grid. A person wants to see which *pixels* of the image
went together. So every pixel is sent to its stride-4 point, then through the chain of
pooling assignments (stage-1 point -> the stage-2 point that pooled it -> ...), and read:

* for an encoding layer of stage s: the center its stage-s point joined (one head);
* for a pooling into stage s: the stage-s point it ended in, i.e. the hard assignments of
  the poolings chained up to that stage (the hierarchy maps of the paper's release).

Layers get friendly names: ``stage{s}.block{b}`` (stages from 1, blocks from 0) for the
encodings and ``pool{s}`` for the pooling that feeds stage ``s``.
"""
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..models.cluster_recorder import ClusterRecorder
from ..models.find_backbone import find_backbone  # noqa: F401  (re-exported)
from ..models.layers import ClusterEncoding, ClusterPooling

DEFAULT_LAYERS = 'default'
ALL_LAYERS = 'all'
STEM_STRIDE = 4


@dataclass
class LayerInfo:
    """A clustering layer: friendly ``name``, module ``path``, ``kind``, ``stage`` (from 1)."""
    name: str
    path: str
    kind: str
    stage: int
    block: Optional[int] = None


@dataclass
class ClusterMap:
    """One layer's clusters at image resolution.

    ``ids`` is ``[H, W]`` int64, one cluster (center) id per pixel, on the layer's center
    grid, so at most ``num_centers`` distinct values.
    """
    layer: LayerInfo
    ids: np.ndarray
    num_centers: int
    head: Optional[int] = None

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def num_clusters(self) -> int:
        return int(np.unique(self.ids).size)


# ----------------------------------------------------------------------------- naming
def name_layers(entries: Sequence[Tuple[str, str]]) -> List[LayerInfo]:
    """Friendly names for ``(path, kind)`` pairs given in forward order.

    The stage counter moves on at every pooling, so this needs no knowledge of module
    paths and also names FEC variants with other depths.
    """
    infos, stage, block = [], 1, 0
    for path, kind in entries:
        if kind == 'pooling':
            stage, block = stage + 1, 0
            infos.append(LayerInfo(f'pool{stage}', path, kind, stage))
        elif kind == 'encoding':
            infos.append(LayerInfo(f'stage{stage}.block{block}', path, kind, stage, block))
            block += 1
        else:
            raise ValueError(f"unknown clustering layer kind {kind!r} at {path}; expected "
                             "'encoding' or 'pooling'")
    return infos


def clustering_layers(model: nn.Module) -> List[LayerInfo]:
    """Friendly names of every clustering layer of ``model``, in module (= forward) order."""
    entries = [(path, 'encoding' if isinstance(m, ClusterEncoding) else 'pooling')
               for path, m in model.named_modules()
               if isinstance(m, (ClusterEncoding, ClusterPooling))]
    if not entries:
        raise ValueError(f'{type(model).__name__} has no FEC clustering layers; cluster maps '
                         'need a model with an FEC backbone')
    return name_layers(entries)


def default_layer_names(layers: Sequence[LayerInfo]) -> List[str]:
    """The last encoding of every stage and every pooling: one view per scale."""
    last_block = {}
    for info in layers:
        if info.kind == 'encoding':
            last_block[info.stage] = info.name
    return [info.name for info in layers
            if info.kind == 'pooling' or last_block.get(info.stage) == info.name]


def select_layers(layers: Sequence[LayerInfo], requested=None) -> List[LayerInfo]:
    """Resolve ``requested`` (friendly names, module paths, 'default' or 'all') to layers.

    Raises ``ValueError`` naming the valid choices when a name is unknown.
    """
    if requested is None or requested == DEFAULT_LAYERS:
        requested = [DEFAULT_LAYERS]
    if isinstance(requested, str):
        requested = [requested]
    by_key: Dict[str, LayerInfo] = {}
    for info in layers:
        by_key[info.name] = info
        by_key[info.path] = info
    chosen: List[LayerInfo] = []
    for key in requested:
        if key == ALL_LAYERS:
            picks = list(layers)
        elif key == DEFAULT_LAYERS:
            names = default_layer_names(layers)
            picks = [info for info in layers if info.name in names]
        elif key in by_key:
            picks = [by_key[key]]
        else:
            valid = ', '.join(info.name for info in layers)
            raise ValueError(f"unknown layer '{key}'; valid layers: {valid} "
                             f"(or '{DEFAULT_LAYERS}', '{ALL_LAYERS}', or a module path)")
        chosen.extend(p for p in picks if p not in chosen)
    return chosen


@torch.no_grad()
def record_clusters(backbone: nn.Module, inputs: torch.Tensor,
                    progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Run ``backbone`` on normalised ``inputs`` ``[B, 3, H, W]`` and return its records.
    ``progress`` (e.g. ``print``), if given, gets one line as each stage finishes: a
    large image can take minutes on a CPU."""
    handles, start = [], time.perf_counter()
    if progress is not None and hasattr(backbone, 'stage'):
        stages = len(backbone.embed_dims)
        for i in range(stages):
            def report(*_, i=i):
                progress(f'stage {i + 1}/{stages} done after '
                         f'{time.perf_counter() - start:.1f} s')
            handles.append(backbone.stage(i)[-1].register_forward_hook(report))  # last block
    try:
        with ClusterRecorder(backbone) as records:
            backbone(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return list(records)


# ----------------------------------------------------------------------------- maps
def pixel_points(image_size: Tuple[int, int], input_size: Tuple[int, int],
                 grid_size: Tuple[int, int]) -> np.ndarray:
    """Flat stride-4 point index of every image pixel: ``[H_img, W_img]`` int64.

    ``input_size`` is the part of the network input the image filled (top-left aligned,
    possibly resized from ``image_size``); ``grid_size`` the stage-1 grid. The stem conv
    floors (``H // 4``), so the last rows/cols of the input join the last point.
    """
    coords = []
    for img_len, in_len, grid_len in zip(image_size, input_size, grid_size):
        pix = (np.arange(img_len) + 0.5) * (in_len / img_len)  # pixel centres, input coords
        point = np.floor(pix).astype(np.int64) // STEM_STRIDE
        coords.append(np.clip(point, 0, grid_len - 1))
    rows, cols = coords
    return rows[:, None] * grid_size[1] + cols[None, :]


def _check_records(records: Sequence[dict]):
    if not records:
        raise ValueError('no cluster records: run the backbone inside ClusterRecorder(...) '
                         '(or use record_clusters) before making maps')


def cluster_maps(records: Sequence[dict],
                 image_size: Tuple[int, int],
                 input_size: Optional[Tuple[int, int]] = None,
                 head: int = 0,
                 batch_index: int = 0,
                 layers=None) -> List[ClusterMap]:
    """Per-pixel cluster maps of the recorded layers, for one image of the batch.

    Args:
        records: from :class:`ClusterRecorder` / :func:`record_clusters`, in forward order.
        image_size: ``(H, W)`` of the maps (the image as the user sees it).
        input_size: ``(h, w)`` region of the network input holding that image (top-left;
            smaller than the input when it was padded). Defaults to the whole input,
            ``4 x`` the stage-1 grid.
        head: the head whose assignments the encoding maps show.
        batch_index: which image of the batch.
        layers: friendly names / module paths / 'default' / 'all'; None = all layers.
    Returns:
        One :class:`ClusterMap` per selected layer, in forward order.
    """
    _check_records(records)
    infos = name_layers([(r['name'], r['kind']) for r in records])
    wanted = {id(i) for i in select_layers(infos, ALL_LAYERS if layers is None else layers)}
    batch = records[0]['assignment'].shape[0]
    if not 0 <= batch_index < batch:
        raise ValueError(f'batch_index {batch_index} is out of range for a batch of {batch}')
    grid = tuple(records[0]['assignment'].shape[-2:])
    if input_size is None:
        input_size = (grid[0] * STEM_STRIDE, grid[1] * STEM_STRIDE)
    points = pixel_points(tuple(image_size), tuple(input_size), grid)  # stage-s point per pixel
    maps = []
    for info, record in zip(infos, records):
        assign = record['assignment'][batch_index]
        if tuple(assign.shape[-2:]) != grid:
            raise ValueError(f'{info.name} ({info.path}) has a {tuple(assign.shape[-2:])} '
                             f'grid where the chain of poolings gives {grid}; records must '
                             'come from one forward pass, in order')
        num_centers = int(np.prod(record['center_grid']))
        if info.kind == 'encoding':
            if id(info) in wanted:
                check_head(info, assign.shape[0], head)
                flat = assign[head].reshape(-1).cpu().numpy()
                maps.append(ClusterMap(info, flat[points], num_centers, head))
        else:
            points = assign.reshape(-1).cpu().numpy()[points]
            grid = tuple(record['center_grid'])
            if id(info) in wanted:
                maps.append(ClusterMap(info, points.copy(), num_centers))
    return maps


def check_head(info: LayerInfo, heads: int, head: int):
    """Raise a ``ValueError`` that names the valid heads when ``head`` is out of range."""
    if not isinstance(head, int) or not 0 <= head < heads:
        raise ValueError(f'head {head} is out of range for {info.name} ({heads} heads: '
                         f'0-{heads - 1}); choose another head or other layers')


def hierarchy_maps(records: Sequence[dict], image_size: Tuple[int, int],
                   input_size: Optional[Tuple[int, int]] = None,
                   batch_index: int = 0) -> List[ClusterMap]:
    """The poolings' maps only: pixel -> stage-1 point -> the stage-2 cluster that pooled
    it -> ... One map per pooling; each is a coarsening of the one before."""
    poolings = [info.name for info in name_layers([(r['name'], r['kind']) for r in records])
                if info.kind == 'pooling']
    if not poolings:
        return []
    return cluster_maps(records, image_size, input_size, batch_index=batch_index,
                        layers=poolings)
