"""Clustering-based pooling: the down-sampling between FEC stages."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from . import assignment
from .assignment import (
    cluster_average,
    cluster_pool_plain,
    cosine_to_assigned,
    normalize,
    pooling_assignment,
)
from .certified_argmax import check_screen_setting, resolve_screen
from .paths import PlainPath
from .pointwise import conv1x1
from .precision import autocast_conv2d
from .recording import emit, is_recording
from .regions import pooling_layout, pooling_regions


class ClusterPooling(PlainPath, nn.Module):
    """Halve the resolution by clustering points onto a half-size grid of centers.

    Output = ``conv_skip(x) + GN(center values on the half-size grid)``. Centers are the
    adaptive average pool (to half size) of ``conv_f(x)`` and ``conv_v(x)``; each point joins
    its most cosine-similar center (no sigmoid, no scaling); a center's value becomes
    ``(its value + sum of members) / (members + 1)``. The output grid is ``ceil(H/2) x
    ceil(W/2)``, the skip conv's size, so odd sizes work; for even sizes it is the paper's.

    Args:
        in_dims / out_dims: channels before / after.
        fold_size: ``(rows, cols)`` regions clustered independently (the next stage's fold).
        screen: how the point-to-center arg-max is taken (the pooling's quadratic part):
            ``'off'`` (default) the fp32 similarity; ``'bf16'``/``'fp16'`` through the
            certified low-precision screen in that dtype; ``'auto'`` by the dispatch
            rule :func:`~.certified_argmax.fast_screen_dtype` (fp16 on CUDA, fp32 on
            CPU). The assignment is the fp32 one in every case, up to fp32 near-ties
            (:mod:`.certified_argmax`). Off by default because it was measured not to
            pay: on structured images most points need the fp32 recheck
            (docs/performance.md). An attribute: change it on a built model with
            :func:`set_similarity_screen`.

    ``screen_stats``: set it to a dict and every forward adds to it ``points`` and
    ``rechecked`` (points the screen could not certify), ``pairs`` and ``full_rows``.
    """

    def __init__(self, in_dims: int, out_dims: int, fold_size: Tuple[int, int],
                 screen='off'):
        super().__init__()
        self.fold_size = tuple(fold_size)
        self.screen = check_screen_setting(screen)
        self.screen_stats = None
        self.conv_f = nn.Conv2d(in_dims, out_dims, kernel_size=1)  # similarity features
        self.conv_v = nn.Conv2d(in_dims, out_dims, kernel_size=1)  # values
        self.conv_skip = nn.Conv2d(in_dims, out_dims, kernel_size=3, stride=2, padding=1)
        self.norm2 = nn.GroupNorm(1, out_dims)

    def forward(self, x: Tensor) -> Tensor:
        if self.runs_plain():  # FLOP counting: plain, traceable ops
            return self._forward_plain(x)
        skip = autocast_conv2d(self.conv_skip, x)  # [B, C', ceil(H/2), ceil(W/2)]
        batch, _, height, width = x.shape
        layout = pooling_layout(height, width, self.fold_size)
        with torch.no_grad():  # the assignment gets no gradient (the paper's one-hot mask)
            feats = conv1x1(x, self.conv_f.weight, self.conv_f.bias)
        centers, index = pooling_assignment(feats, layout, assignment.SIMILARITY_CHUNK_ELEMENTS,
                                            resolve_screen(self.screen, feats.device),
                                            self.screen_stats)
        values = conv1x1(x, self.conv_v.weight, self.conv_v.bias)
        pooled = cluster_average(values, index, layout)
        if is_recording(self):
            with torch.no_grad():
                sim = cosine_to_assigned(normalize(feats.flatten(2)), centers.flatten(2), index)
            emit(self, dict(kind='pooling', assignment=index.view(batch, height, width),
                            similarity=sim.view(batch, height, width),
                            center_grid=layout.center_size,
                            regions=(len({r[2] for r in layout.regions}),
                                     len({r[3] for r in layout.regions}))))
        return skip + self.norm2(pooled)

    def _forward_plain(self, x: Tensor) -> Tensor:
        """The same pooling with plain differentiable ops (tracing, FLOP counting, the ONNX
        export)."""
        skip = self.conv_skip(x)
        feats, values = self.conv_f(x), self.conv_v(x)
        pooled = cluster_pool_plain(feats, values, pooling_regions(*values.shape[-2:],
                                                                   self.fold_size))
        return skip + self.norm2(pooled)


def set_similarity_screen(model: nn.Module, screen) -> nn.Module:
    """Set ``screen`` (``'auto'``, ``'bf16'``, ``'fp16'``, ``'off'``) on every
    :class:`ClusterPooling` in ``model``; returns ``model``."""
    check_screen_setting(screen)
    for module in model.modules():
        if isinstance(module, ClusterPooling):
            module.screen = screen
    return model
