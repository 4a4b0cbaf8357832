"""The FEC stem: the image as a set of points with their positions."""
import torch
import torch.nn as nn
from torch import Tensor

from .precision import autocast_conv2d


def position_channels(height: int, width: int, like: Tensor) -> Tensor:
    """``[1, 2, H, W]``: row then column index over (size - 1), minus 0.5, as the paper."""
    rows = torch.arange(height, device=like.device) / (height - 1.0)
    cols = torch.arange(width, device=like.device) / (width - 1.0)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing='ij')).float() - 0.5
    return grid.to(like.dtype).unsqueeze(0)


class PositionalStem(nn.Module):
    """Append the two position channels, then a 4x4 stride-4 conv (``proj``)."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(in_channels + 2, embed_dims, kernel_size=patch_size,
                              stride=patch_size)

    def forward(self, img: Tensor) -> Tensor:
        batch, _, height, width = img.shape
        pos = position_channels(height, width, img).expand(batch, -1, -1, -1)
        return autocast_conv2d(self.proj, torch.cat([img, pos], dim=1))
