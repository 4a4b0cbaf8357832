"""One FEC block: clustering-based encoding then a channel MLP, each pre-normed and layer-scaled."""
from typing import Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from torch import Tensor

from .cluster_encoding import ClusterEncoding
from .paths import PlainPath
from .pointwise import conv1x1, is_observed, residual_conv1x1, residual_gelu_conv1x1


class ChannelMlp(PlainPath, nn.Module):
    """Linear-GELU-Linear over the channels of a ``[B, C, H, W]`` map.

    The ``Linear`` layers (the official parameter names and shapes) run as GEMMs on the
    ``[C, H*W]`` view, so no permute copies are made.
    """

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        if self.runs_plain():  # FLOP counting: the plain Linear layers
            x = self.fc2(self.act(self.fc1(x.permute(0, 2, 3, 1))))
            return x.permute(0, 3, 1, 2)
        return conv1x1(self.act(conv1x1(x, self.fc1.weight, self.fc1.bias)), self.fc2.weight,
                       self.fc2.bias)

    def residual(self, x: Tensor, y: Tensor, scale: Tensor) -> Tensor:
        """``x + scale * self(y)``, fused: one GEMM into ``x`` for ``fc2``, and only the
        pre-activation kept for the backward when ``act`` is a GELU."""
        hidden = conv1x1(y, self.fc1.weight, self.fc1.bias)
        if type(self.act) is nn.GELU:
            return residual_gelu_conv1x1(x, hidden, self.fc2.weight, self.fc2.bias, scale,
                                         self.act.approximate)
        return residual_conv1x1(x, self.act(hidden), self.fc2.weight, self.fc2.bias, scale)


class ClusterBlock(PlainPath, nn.Module):
    """``x += ls1 * cluster(GN(x)); x += ls2 * mlp(GN(x))`` (with stochastic depth).

    Without active stochastic depth, each branch's last linear map, its layer scale and the
    residual add are one GEMM accumulating into ``x`` (see :func:`residual_conv1x1`).
    The plain module-by-module path is used when stochastic depth is active in training,
    when the model is traced, or when forward hooks watch the token mixer or the MLP.
    """

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

    def _fusable(self) -> bool:
        dropping = (self.training and isinstance(self.drop_path, DropPath)
                    and self.drop_path.drop_prob > 0)
        return not (dropping or self.runs_plain() or is_observed(self.token_mixer)
                    or is_observed(self.mlp))

    def forward(self, x: Tensor) -> Tensor:
        if not self._fusable():
            x = x + self.drop_path(self.layer_scale_1[:, None, None]
                                   * self.token_mixer(self.norm1(x)))
            return x + self.drop_path(self.layer_scale_2[:, None, None]
                                      * self.mlp(self.norm2(x)))
        x = x.contiguous()
        mixer, mlp = self.token_mixer, self.mlp
        x = residual_conv1x1(x, mixer.cluster(self.norm1(x)), mixer.proj.weight,
                             mixer.proj.bias, self.layer_scale_1)
        return mlp.residual(x, self.norm2(x), self.layer_scale_2)
