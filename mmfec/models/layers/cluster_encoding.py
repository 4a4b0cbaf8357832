"""Clustering-based encoding: the token mixer of every FEC block."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import assignment
from .assignment import (
    average_members,
    cluster_encode,
    cosine_to_assigned,
    gather_centers,
    nearest_centers,
    normalize,
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
        """The same clustering with plain differentiable ops, region by region (used when
        tracing, e.g. for FLOP counting); returns the output before ``proj``."""
        batch, _, height, width = x.shape
        feats = self.f(x).reshape(batch * self.heads, self.head_dims, height, width)
        values = self.v(x).reshape(batch * self.heads, self.head_dims, height, width)
        regions = list(grid_regions(height, width, self.fold_size))
        if len(regions) == 1:
            out = self._cluster(feats, values)[0]
        else:  # regions are row-major: concatenated along W per row, then along H
            rows = {}
            for (r0, r1), (c0, c1) in regions:
                rows.setdefault(r0, []).append(self._cluster(
                    feats[:, :, r0:r1, c0:c1], values[:, :, r0:r1, c0:c1])[0])
            out = torch.cat([torch.cat(row, dim=3) for row in rows.values()], dim=2)
        return out.reshape(batch, self.heads * self.head_dims, height, width)

    def _cluster(self, feats: Tensor, values: Tensor):
        """One region: ``feats``/``values`` ``[B, c, h, w]`` -> ``[B, c, h, w]``."""
        batch, channels, height, width = values.shape
        points = normalize(feats.flatten(2))  # [B, c, N]
        # [B, c, M]
        centers = normalize(F.adaptive_avg_pool2d(feats, self.proposal_size).flatten(2))
        center_values = F.adaptive_avg_pool2d(values, self.proposal_size).flatten(2)  # [B, c, M]
        index = nearest_centers(points, centers, score=self.similarity)  # [B, N]
        sim = self.similarity(cosine_to_assigned(points, centers, index))  # [B, N]
        new_values = average_members(values.flatten(2), center_values, index)  # [B, c, M]
        out = gather_centers(new_values, index) * sim.unsqueeze(1)  # [B, c, N]
        hw = (height, width)
        return (out.reshape(batch, channels, *hw), index.reshape(batch, *hw),
                sim.reshape(batch, *hw))
