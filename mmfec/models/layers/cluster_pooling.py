"""Clustering-based pooling: the down-sampling between FEC stages."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .assignment import average_members, cosine_to_assigned, nearest_centers, normalize
from .recording import emit, is_recording
from .regions import pooling_regions


class ClusterPooling(nn.Module):
    """Halve the resolution by clustering points onto a half-size grid of centers.

    Output = ``conv_skip(x) + GN(center values on the half-size grid)``. Centers are the
    adaptive average pool (to half size) of ``conv_f(x)`` and ``conv_v(x)``; each point joins
    its most cosine-similar center (no sigmoid, no scaling); a center's value becomes
    ``(its value + sum of members) / (members + 1)``. The output grid is ``ceil(H/2) x
    ceil(W/2)``, the skip conv's size, so odd sizes work; for even sizes it is the paper's.

    Args:
        in_dims / out_dims: channels before / after.
        fold_size: ``(rows, cols)`` regions clustered independently (the next stage's fold).
    """

    def __init__(self, in_dims: int, out_dims: int, fold_size: Tuple[int, int]):
        super().__init__()
        self.fold_size = tuple(fold_size)
        self.conv_f = nn.Conv2d(in_dims, out_dims, kernel_size=1)  # similarity features
        self.conv_v = nn.Conv2d(in_dims, out_dims, kernel_size=1)  # values
        self.conv_skip = nn.Conv2d(in_dims, out_dims, kernel_size=3, stride=2, padding=1)
        self.norm2 = nn.GroupNorm(1, out_dims)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.conv_skip(x)  # [B, C', ceil(H/2), ceil(W/2)]
        feats, values = self.conv_f(x), self.conv_v(x)  # [B, C', H, W]
        batch, channels, height, width = values.shape
        regions = list(pooling_regions(height, width, self.fold_size))
        recording = is_recording(self)
        assign = sim = None
        if recording:
            assign = torch.empty((batch, height, width), dtype=torch.long, device=x.device)
            sim = values.new_empty((batch, height, width))
        if len(regions) == 1:
            pooled = self._cluster(feats, values, skip.shape[-2:], assign, sim)
        else:
            pooled = values.new_empty(skip.shape)
            out_w = skip.shape[-1]
            for (r0, r1), (c0, c1), (o0, o1), (p0, p1) in regions:
                region_assign = region_sim = None
                if recording:
                    region_assign = assign[:, r0:r1, c0:c1]
                    region_sim = sim[:, r0:r1, c0:c1]
                pooled[:, :, o0:o1, p0:p1] = self._cluster(
                    feats[:, :, r0:r1, c0:c1], values[:, :, r0:r1, c0:c1], (o1 - o0, p1 - p0),
                    region_assign, region_sim)
                if recording:  # local grid id -> id on the whole output grid
                    local_w = p1 - p0
                    region_assign.copy_((o0 + region_assign // local_w) * out_w
                                        + p0 + region_assign % local_w)
        if recording:
            emit(self, dict(kind='pooling', assignment=assign, similarity=sim,
                            center_grid=tuple(skip.shape[-2:]),
                            regions=(len({r[2] for r in regions}), len({r[3] for r in regions}))))
        return skip + self.norm2(pooled)

    @staticmethod
    def _cluster(feats: Tensor, values: Tensor, out_size, assign_out=None, sim_out=None) -> Tensor:
        """One region: ``[B, C, h, w]`` -> center values ``[B, C, *out_size]``."""
        batch, channels, height, width = values.shape
        points = normalize(feats.flatten(2))  # [B, C, N]
        centers = normalize(F.adaptive_avg_pool2d(feats, out_size).flatten(2))  # [B, C, M]
        center_values = F.adaptive_avg_pool2d(values, out_size).flatten(2)  # [B, C, M]
        index = nearest_centers(points, centers)  # [B, N]
        if assign_out is not None:
            assign_out.copy_(index.reshape(batch, height, width))
            with torch.no_grad():
                sim_out.copy_(cosine_to_assigned(points, centers, index).reshape(batch, height, width))
        new_values = average_members(values.flatten(2), center_values, index)  # [B, C, M]
        return new_values.reshape(batch, channels, *out_size)
