"""Clustering-based encoding: the token mixer of every FEC block."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from . import assignment
from .assignment import (
    cluster_encode,
    cluster_encode_plain,
)
from .paths import PlainPath
from .pointwise import conv1x1
from .recording import emit, is_recording
from .regions import encoding_layout, grid_regions, split_span


class ClusterEncoding(PlainPath, nn.Module):
    """Cluster the points of each head, then give every point its center's new value.

    Per head and fold region: centers are the adaptive average pool of the similarity
    features ``f`` (and of the values ``v``) to ``proposal_size``; a point joins the center
    with the highest ``s = sigmoid(beta + alpha * cos)``; a center's new value is
    ``(its value + sum of members) / (members + 1)``; a point receives ``new value * s``.

    Args:
        dims: input and output channels.
        heads: number of heads.
        head_dims: channels per head.
        proposal_size: ``(h, w)`` centers per region.
        fold_size: ``(rows, cols)`` regions the map is split into (1 = global).
    """

    def __init__(self, dims: int, heads: int, head_dims: int,
                 proposal_size: Tuple[int, int], fold_size: Tuple[int, int]):
        super().__init__()
        self.heads = heads
        self.head_dims = head_dims
        self.proposal_size = tuple(proposal_size)
        self.fold_size = tuple(fold_size)
        self.f = nn.Conv2d(dims, heads * head_dims, kernel_size=1)  # similarity features
        self.v = nn.Conv2d(dims, heads * head_dims, kernel_size=1)  # values
        self.proj = nn.Conv2d(heads * head_dims, dims, kernel_size=1)
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))

    def similarity(self, cos: Tensor) -> Tensor:
        return torch.sigmoid(self.sim_beta + self.sim_alpha * cos)

    def forward(self, x: Tensor) -> Tensor:
        if self.runs_plain():  # FLOP counting: plain, traceable ops
            return self.proj(self._forward_plain(x))
        return conv1x1(self.cluster(x), self.proj.weight, self.proj.bias)

    def cluster(self, x: Tensor) -> Tensor:
        """Everything but the output projection: ``[B, dims, H, W]`` -> ``[B, heads*c, H, W]``
        (the block fuses ``proj`` with its residual)."""
        if self.runs_plain():
            return self._forward_plain(x)
        batch, _, height, width = x.shape
        # [B, heads*c, H, W] -> [B*heads, c, H, W]; heads are the outer channel groups.
        feats = conv1x1(x, self.f.weight, self.f.bias).view(
            batch * self.heads, self.head_dims, height, width)
        values = conv1x1(x, self.v.weight, self.v.bias).view(
            batch * self.heads, self.head_dims, height, width)
        layout = encoding_layout(height, width, self.proposal_size, self.fold_size)
        out, assign, sim = cluster_encode(feats, values, self.sim_alpha, self.sim_beta, layout,
                                          assignment.SIMILARITY_CHUNK_ELEMENTS)
        if is_recording(self):
            emit(self, dict(
                kind='encoding',
                assignment=assign.reshape(batch, self.heads, height, width),
                similarity=sim.reshape(batch, self.heads, height, width).detach(),
                center_grid=layout.center_size,
                regions=(len(split_span(height, self.fold_size[0])),
                         len(split_span(width, self.fold_size[1])))))
        return out.view(batch, self.heads * self.head_dims, height, width)

    def _forward_plain(self, x: Tensor) -> Tensor:
        """The same clustering with plain differentiable ops (tracing, FLOP counting, the
        ONNX export); returns the output before ``proj``."""
        batch, _, height, width = x.shape
        feats = self.f(x).reshape(batch * self.heads, self.head_dims, height, width)
        values = self.v(x).reshape(batch * self.heads, self.head_dims, height, width)
        out = cluster_encode_plain(feats, values, self.similarity, self.proposal_size,
                                   grid_regions(height, width, self.fold_size))
        return out.reshape(batch, self.heads * self.head_dims, height, width)
