"""Clustering-based encoding: the token mixer of every FEC block."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .assignment import (average_members, cosine_to_assigned, gather_centers, nearest_centers,
                         normalize)
from .recording import emit, is_recording
from .regions import grid_regions, split_span


class ClusterEncoding(nn.Module):
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
        batch, _, height, width = x.shape
        # [B, heads*c, H, W] -> [B*heads, c, H, W]; heads are the outer channel groups.
        feats = self.f(x).reshape(batch * self.heads, self.head_dims, height, width)
        values = self.v(x).reshape(batch * self.heads, self.head_dims, height, width)
        regions = list(grid_regions(height, width, self.fold_size))
        recording = is_recording(self)
        if len(regions) == 1:
            out, assign, sim = self._cluster(feats, values)
        else:
            out = values.new_empty(values.shape)
            assign = sim = None
            if recording:
                assign = torch.empty((batch * self.heads, height, width), dtype=torch.long,
                                     device=x.device)
                sim = values.new_empty((batch * self.heads, height, width))
            col_regions = len(split_span(width, self.fold_size[1]))
            for r, ((r0, r1), (c0, c1)) in enumerate(regions):
                region_out, region_assign, region_sim = self._cluster(
                    feats[:, :, r0:r1, c0:c1], values[:, :, r0:r1, c0:c1])
                out[:, :, r0:r1, c0:c1] = region_out
                if recording:
                    assign[:, r0:r1, c0:c1] = self._to_global_center(
                        region_assign, r // col_regions, r % col_regions, col_regions)
                    sim[:, r0:r1, c0:c1] = region_sim
        if recording:
            rows = len(split_span(height, self.fold_size[0]))
            cols = len(split_span(width, self.fold_size[1]))
            emit(self, dict(
                kind='encoding',
                assignment=assign.reshape(batch, self.heads, height, width),
                similarity=sim.reshape(batch, self.heads, height, width).detach(),
                center_grid=(rows * self.proposal_size[0], cols * self.proposal_size[1]),
                regions=(rows, cols)))
        out = out.reshape(batch, self.heads * self.head_dims, height, width)
        return self.proj(out)

    def _to_global_center(self, local: Tensor, region_row: int, region_col: int,
                          col_regions: int) -> Tensor:
        """Local center id in a region -> id on the layer's whole center grid."""
        ph, pw = self.proposal_size
        row = region_row * ph + local // pw
        col = region_col * pw + local % pw
        return row * (col_regions * pw) + col

    def _cluster(self, feats: Tensor, values: Tensor):
        """One region: ``feats``/``values`` ``[B, c, h, w]`` -> ``[B, c, h, w]``."""
        batch, channels, height, width = values.shape
        points = normalize(feats.flatten(2))  # [B, c, N]
        centers = normalize(F.adaptive_avg_pool2d(feats, self.proposal_size).flatten(2))  # [B, c, M]
        center_values = F.adaptive_avg_pool2d(values, self.proposal_size).flatten(2)  # [B, c, M]
        index = nearest_centers(points, centers, score=self.similarity)  # [B, N]
        sim = self.similarity(cosine_to_assigned(points, centers, index))  # [B, N]
        new_values = average_members(values.flatten(2), center_values, index)  # [B, c, M]
        out = gather_centers(new_values, index) * sim.unsqueeze(1)  # [B, c, N]
        hw = (height, width)
        return (out.reshape(batch, channels, *hw), index.reshape(batch, *hw),
                sim.reshape(batch, *hw))
