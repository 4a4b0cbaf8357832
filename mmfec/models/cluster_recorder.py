"""Record which center every point joined, for one forward pass, only when asked."""
from typing import Dict, List

import torch.nn as nn

from .layers import ClusterEncoding, ClusterPooling
from .layers.recording import set_recorder


class ClusterRecorder:
    """Context manager that collects the assignments of every clustering layer of ``model``.

    Example::

        with ClusterRecorder(model) as records:
            model(images)
        records[0]['name'], records[0]['assignment'].shape  # e.g. 'network.0.0.token_mixer'

    Each record is a dict with ``name`` (module path), ``kind`` ('encoding' or 'pooling'),
    ``assignment`` (int64 center id per point: ``[B, heads, H, W]`` for an encoding,
    ``[B, H, W]`` for a pooling, ids on the layer's ``center_grid`` of ``(rows, cols)``,
    fold regions already accounted for), ``similarity`` (same shape: the sigmoid similarity
    an encoding point joined with, or a pooling point's cosine), ``center_grid`` and
    ``regions``. Outside the ``with`` block the layers record nothing.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.records: List[Dict] = []
        self._layers = [(name, m) for name, m in model.named_modules()
                        if isinstance(m, (ClusterEncoding, ClusterPooling))]
        if not self._layers:
            raise ValueError(f'{type(model).__name__} has no FEC clustering layers to record')

    def __enter__(self) -> List[Dict]:
        self.records.clear()
        for name, layer in self._layers:
            set_recorder(layer, lambda module, record, name=name: self.records.append(
                dict(name=name, **record)))
        return self.records

    def __exit__(self, *exc):
        for _, layer in self._layers:
            set_recorder(layer, None)
        return False
