"""Hard point-to-center assignment and the two aggregations FEC builds on.

Shapes: ``B`` batch (times heads), ``C`` channels, ``M`` centers, ``N`` points.
Everything is linear in ``N``: the only ``M x N`` object is a similarity chunk computed
without autograd to take the arg-max, so a 1344x800 image never holds a full
``N x N/4`` matrix and no ``M x N x C`` tensor is ever built.
"""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# Upper bound on the elements of one similarity chunk (B x M x points-per-chunk), ~32 MB.
SIMILARITY_CHUNK_ELEMENTS = 1 << 23


@torch.no_grad()
def nearest_centers(points: Tensor,
                    centers: Tensor,
                    score: Optional[Callable[[Tensor], Tensor]] = None,
                    chunk_elements: int = SIMILARITY_CHUNK_ELEMENTS) -> Tensor:
    """Index of the best center for every point.

    Args:
        points: ``[B, C, N]`` L2-normalised point features.
        centers: ``[B, C, M]`` L2-normalised center features.
        score: optional map applied to the cosine chunk ``[B, M, n]`` before the arg-max
            (the encoding layer ranks by ``sigmoid(beta + alpha * cos)``, as the paper does,
            which matters when ``alpha < 0`` or the sigmoid saturates into ties).
    Returns:
        ``[B, N]`` int64 indices into ``M``; ties go to the lowest index, like ``Tensor.max``.
    """
    batch, _, num_points = points.shape
    num_centers = centers.shape[2]
    step = max(1, chunk_elements // max(1, batch * num_centers))
    centers_t = centers.transpose(1, 2)  # [B, M, C]
    if step >= num_points:
        cos = torch.bmm(centers_t, points)  # [B, M, N]
        return (score(cos) if score else cos).max(dim=1).indices
    index = points.new_empty((batch, num_points), dtype=torch.long)
    for start in range(0, num_points, step):
        cos = torch.bmm(centers_t, points[:, :, start:start + step])  # [B, M, n]
        index[:, start:start + step] = (score(cos) if score else cos).max(dim=1).indices
    return index


def gather_centers(center_feats: Tensor, index: Tensor) -> Tensor:
    """Each point's center feature: ``[B, C, M]`` x ``[B, N]`` -> ``[B, C, N]``."""
    channels = center_feats.shape[1]
    return center_feats.gather(2, index.unsqueeze(1).expand(-1, channels, -1))


def average_members(values: Tensor, center_values: Tensor, index: Tensor) -> Tensor:
    """New center value = (center value + sum of member values) / (members + 1).

    Args:
        values: ``[B, C, N]`` point values.
        center_values: ``[B, C, M]`` the centers' own values (pooled from ``values``).
        index: ``[B, N]`` assignment from :func:`nearest_centers`.
    Returns:
        ``[B, C, M]``.
    """
    batch, channels, num_centers = center_values.shape
    member_sum = values.new_zeros((batch, channels, num_centers)).scatter_add(
        2, index.unsqueeze(1).expand(-1, channels, -1), values)
    members = torch.zeros((batch, num_centers), dtype=values.dtype, device=values.device)
    members.scatter_add_(1, index, torch.ones_like(index, dtype=values.dtype))
    return (member_sum + center_values) / (members.unsqueeze(1) + 1.0)


def cosine_to_assigned(points: Tensor, centers: Tensor, index: Tensor) -> Tensor:
    """Cosine between every point and its own center, with gradients: ``[B, N]``.

    Equals the paper's ``(sim * mask).sum(centers)`` entry by entry, so gradients flow
    to the chosen center only, exactly as the paper's masked product does.
    """
    return (points * gather_centers(centers, index)).sum(dim=1)


def normalize(x: Tensor) -> Tensor:
    """L2 normalisation over channels (dim 1), as the paper's ``pairwise_cos_sim``."""
    return F.normalize(x, dim=1)
