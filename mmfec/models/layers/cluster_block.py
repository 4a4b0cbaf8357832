"""One FEC block: clustering-based encoding then a channel MLP, each pre-normed and layer-scaled."""
from typing import Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from torch import Tensor

from .cluster_encoding import ClusterEncoding


class ChannelMlp(nn.Module):
    """Linear-GELU-Linear over the channels of a ``[B, C, H, W]`` map."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc2(self.act(self.fc1(x.permute(0, 2, 3, 1))))
        return x.permute(0, 3, 1, 2)


class ClusterBlock(nn.Module):
    """``x += ls1 * cluster(GN(x)); x += ls2 * mlp(GN(x))`` (with stochastic depth)."""

    def __init__(self, dims: int, mlp_ratio: float, heads: int, head_dims: int,
                 proposal_size: Tuple[int, int], fold_size: Tuple[int, int],
                 drop_path: float = 0., layer_scale_init_value: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dims)
        self.token_mixer = ClusterEncoding(dims, heads, head_dims, proposal_size, fold_size)
        self.norm2 = nn.GroupNorm(1, dims)
        self.mlp = ChannelMlp(dims, int(dims * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dims))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dims))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.token_mixer(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))
        return x
