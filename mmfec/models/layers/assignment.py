"""Hard point-to-center assignment and the two aggregations FEC builds on.

Shapes: ``B`` batch (times heads), ``C`` channels, ``M`` centers, ``N`` points.
Everything is linear in ``N``: the only ``M x N`` object is a similarity chunk computed
without autograd to take the arg-max, so a 1344x800 image never holds a full
``N x N/4`` matrix and no ``M x N x C`` tensor is ever built.

Each clustering is written here twice, side by side:

* plain: :func:`cluster_encode_plain` and :func:`cluster_pool_plain` (at the end), made
  of differentiable pieces (:func:`nearest_centers`, :func:`average_members`,
  :func:`gather_centers`, :func:`cosine_to_assigned`), run region by region when a model
  is traced (FLOP counting, the ONNX export) or asked to (:mod:`.paths`);
* fused autograd functions (:class:`ClusterEncodeFunction`, :class:`ClusterAverageFunction`)
  that the layers use otherwise. They compute the same values with hand-written backward
  passes, work on the whole map at once (fold regions are index ranges of a
  :class:`~.regions.ClusterLayout`, never copies), and save only what the backward needs:
  one ``[B, C, N]`` tensor per encoding (the normalised points) and nothing of that size
  per pooling.

Mixed precision: whatever dtype the features arrive in (fp16/bf16 under ``torch.autocast``),
the clustering itself runs in fp32 (see :mod:`.precision`): the similarities the arg-max
ranks, the member counts and the member sums. The functions switch autocast off inside
and return their outputs in the autocast dtype, so they slot in where built-in ops would.
In fp32 nothing is cast and every result is what it was without autocast support.
"""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .centers_major import centers_major_argmax
from .certified_argmax import ScreenedCenters, certified_argmax
from .precision import autocast_off, clustering_dtype, output_dtype
from .regions import ClusterLayout

# Upper bound on the elements of one similarity chunk (B x points-per-chunk x M; per image
# on the centers-major path), 8 MiB.
# Measured on this project's 2-core AMD EPYC (torch 2.13, MKL), pooling shapes (C 64-196,
# M 3800): bmm + arg-max per chunk is fastest around 0.5-4 M elements; much smaller chunks
# lose to per-call overhead, much larger ones to cache misses (docs/performance.md).
SIMILARITY_CHUNK_ELEMENTS = 1 << 21

EPS = 1e-12  # F.normalize's default

# Arg-max over many centers in blocks of this many (see first_argmax).
ARGMAX_BLOCK = 64

# On CPU, regions with at least this many centers (and no score) take their similarity
# centers-major (:mod:`.centers_major`): measured faster for the poolings' 3800 centers
# (C 64 and 196), not for the 950 of pool4 or the encodings' 49.
CENTERS_MAJOR_MIN_CENTERS = 2048


def first_argmax(scores: Tensor) -> Tensor:
    """``scores.argmax(-1)`` for ``[B, n, M]`` (first index among equal maxima), faster for
    large ``M``: ATen's CPU arg-max is a scalar loop, its ``amax`` is vectorised, so the
    maximum of every block of ``ARGMAX_BLOCK`` centers is found with ``amax``, then the
    arg-max runs over the block maxima and inside the winning block only (~2x faster for
    the poolings' 950-3800 centers). Exactly ``argmax``: the first block holding the
    maximum, the first position in it, and a trailing partial block wins only if larger
    (or NaN where the rest has none: ``argmax`` ranks NaN above everything).
    """
    batch, points, centers = scores.shape
    blocks = centers // ARGMAX_BLOCK
    if blocks < 4:
        return scores.argmax(dim=2)
    main = scores[..., :blocks * ARGMAX_BLOCK].view(batch, points, blocks, ARGMAX_BLOCK)
    block_max = main.amax(dim=3)
    best_block = block_max.argmax(dim=2, keepdim=True)  # [B, n, 1]
    inside = torch.gather(main, 2, best_block.unsqueeze(3).expand(-1, -1, 1, ARGMAX_BLOCK))
    best = inside.squeeze(2).argmax(dim=2) + best_block.squeeze(2) * ARGMAX_BLOCK
    if blocks * ARGMAX_BLOCK < centers:
        tail_max, tail_index = scores[..., blocks * ARGMAX_BLOCK:].max(dim=2)
        best_max = block_max.gather(2, best_block).squeeze(2)
        larger = (tail_max > best_max) | (tail_max.isnan() & ~best_max.isnan())
        best = torch.where(larger, tail_index + blocks * ARGMAX_BLOCK, best)
    return best


@torch.no_grad()
def nearest_centers(points: Tensor,
                    centers: Tensor,
                    score: Optional[Callable[[Tensor], Tensor]] = None,
                    chunk_elements: int = SIMILARITY_CHUNK_ELEMENTS) -> Tensor:
    """Index of the best center for every point.

    Args:
        points: ``[B, C, N]`` L2-normalised point features.
        centers: ``[B, C, M]`` L2-normalised center features.
        score: optional map applied to the cosine chunk ``[B, n, M]`` before the arg-max
            (the encoding layer ranks by ``sigmoid(beta + alpha * cos)``, as the paper does,
            which matters when ``alpha < 0`` or the sigmoid saturates into ties).
    Returns:
        ``[B, N]`` int64 indices into ``M``; ties go to the lowest index, like ``Tensor.max``.
        The cosine is computed in at least fp32, whatever the inputs' dtype or autocast.
    """
    dtype = clustering_dtype(torch.promote_types(points.dtype, centers.dtype))
    with autocast_off(points.device.type):
        return _nearest_centers(points.to(dtype), centers.to(dtype), score, chunk_elements)


def _nearest_centers(points, centers, score, chunk_elements):
    batch, _, num_points = points.shape
    num_centers = centers.shape[2]
    step = max(1, chunk_elements // max(1, batch * num_centers))
    chunks = []
    for start in range(0, num_points, step):
        # [B, n, M]: ATen's arg-max over the contiguous last dim is about 2x faster than
        # over dim 1 of a [B, M, n] chunk (the fused path's large regions reduce dim 1
        # blockwise instead, see .centers_major).
        cos = torch.bmm(points[:, :, start:start + step].transpose(1, 2), centers)
        chunks.append(first_argmax(score(cos) if score else cos))
    # Concatenated, not written into a preallocated index: an ONNX export of a write per
    # chunk holds a constant of all N positions per chunk (238 MB at 800x1216).
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)


@torch.no_grad()
def region_nearest_centers(points: Tensor,
                           centers: Tensor,
                           layout: ClusterLayout,
                           score: Optional[Callable[[Tensor], Tensor]] = None,
                           chunk_elements: int = SIMILARITY_CHUNK_ELEMENTS,
                           screen: Optional[torch.dtype] = None,
                           stats: Optional[dict] = None) -> Tensor:
    """Best center of every point among its own fold region's centers.

    Args:
        points: ``[B, C, H, W]`` point features (normalised, unless only the arg-max of
            the cosine is needed: a positive scale per point does not change it).
        centers: ``[B, C, *layout.center_size]`` L2-normalised center features.
        score: as in :func:`nearest_centers`; may work in place on its argument.
        screen: a low dtype (bf16/fp16) to rank through the certified screen of
            :mod:`.certified_argmax` (the same assignment as fp32, up to fp32 near-ties),
            or ``None`` for the fp32 similarity. Used only without ``score`` and for
            fp32 centers.
        stats: with ``screen``, a dict that accumulates how many points needed the fp32
            recheck (see :func:`~.certified_argmax.certified_argmax`).
    Returns:
        ``[B, H * W]`` int64 ids on the whole center grid (row-major). On CPU, regions
        with ``CENTERS_MAJOR_MIN_CENTERS`` centers or more (the poolings' large regions)
        and no ``score`` rank through :func:`~.centers_major.centers_major_argmax` (the
        same dot products).
        Each chunk of points is cast to the centers' dtype (the caller's clustering
        dtype) before the similarity, so low-precision points cost no full-size copy.
    """
    batch, channels, height, width = points.shape
    grid_w = layout.center_size[1]
    index = points.new_empty((batch, height, width), dtype=torch.long)
    screened = screen is not None and score is None and centers.dtype == torch.float32
    for (r0, r1), (c0, c1), (q0, q1), (p0, p1) in layout.regions:
        region_centers = centers[:, :, q0:q1, p0:p1].reshape(batch, channels, -1)
        if screened:
            prepared = ScreenedCenters(region_centers, screen)
        local = torch.arange(region_centers.shape[2], device=points.device)
        to_global = (q0 + local // (p1 - p0)) * grid_w + p0 + local % (p1 - p0)
        if (not screened and score is None and points.device.type == 'cpu'
                and region_centers.shape[2] >= CENTERS_MAJOR_MIN_CENTERS):
            index[:, r0:r1, c0:c1] = to_global[centers_major_argmax(
                points[:, :, r0:r1, c0:c1], region_centers, chunk_elements)]
            continue
        rows = max(1, chunk_elements // max(1, batch * region_centers.shape[2] * (c1 - c0)))
        for s0 in range(r0, r1, rows):
            s1 = min(r1, s0 + rows)
            chunk = points[:, :, s0:s1, c0:c1].reshape(batch, channels, -1)
            if screened:
                best = certified_argmax(chunk, prepared, first_argmax, stats)
                index[:, s0:s1, c0:c1] = to_global[best].view(batch, s1 - s0, c1 - c0)
                continue
            cos = torch.bmm(chunk.to(region_centers.dtype).transpose(1, 2),
                            region_centers)  # [B, n, m]
            best = first_argmax(score(cos) if score else cos)
            index[:, s0:s1, c0:c1] = to_global[best].view(batch, s1 - s0, c1 - c0)
    return index.view(batch, height * width)


# ----------------------------------------------------------------- center pooling
def pool_centers(x: Tensor, layout: ClusterLayout) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, C, *center_size]``: each center the mean of its bin."""
    if layout.is_stride2:
        return F.avg_pool2d(x, 2)
    if layout.is_adaptive:
        return F.adaptive_avg_pool2d(x, layout.center_size)
    mat_h, mat_w = layout.averaging_matrices(x.device, x.dtype)
    batch, channels, height, width = x.shape
    y = torch.mm(x.reshape(-1, width), mat_w.t()).view(batch, channels, height, -1)
    return torch.matmul(mat_h, y)


def pool_centers_backward_(grad_x: Tensor, grad_centers: Tensor, layout: ClusterLayout):
    """Add the gradient of :func:`pool_centers` w.r.t. its input to ``grad_x`` in place."""
    batch, channels, height, width = grad_x.shape
    rows, cols = layout.center_size
    if layout.is_stride2:
        grad_x.view(batch, channels, rows, 2, cols, 2).add_(
            grad_centers.reshape(batch, channels, rows, 1, cols, 1), alpha=0.25)
        return grad_x
    mat_h, mat_w = layout.averaging_matrices(grad_x.device, grad_x.dtype)
    spread_h = torch.matmul(mat_h.t(), grad_centers.reshape(batch, channels, rows, cols))
    grad_x.view(-1, width).addmm_(spread_h.reshape(-1, cols), mat_w)
    return grad_x


# ----------------------------------------------------------------- plain pieces
def gather_centers(center_feats: Tensor, index: Tensor) -> Tensor:
    """Each point's center feature: ``[B, C, M]`` x ``[B, N]`` -> ``[B, C, N]``."""
    channels = center_feats.shape[1]
    return center_feats.gather(2, index.unsqueeze(1).expand(-1, channels, -1))


def count_members(index: Tensor, num_centers: int, dtype) -> Tensor:
    """``[B, N]`` assignment -> ``[B, M]`` number of members of each center, in ``dtype``
    (use fp32 or wider: a count is exact only up to 256 in bf16 and 2048 in fp16)."""
    counts = torch.zeros((index.shape[0], num_centers), dtype=dtype, device=index.device)
    return counts.scatter_add_(1, index, torch.ones((1, 1), dtype=dtype,
                                                    device=index.device).expand_as(index))


def average_members(values: Tensor, center_values: Tensor, index: Tensor) -> Tensor:
    """New center value = (center value + sum of member values) / (members + 1).

    Args:
        values: ``[B, C, N]`` point values.
        center_values: ``[B, C, M]`` the centers' own values (pooled from ``values``).
        index: ``[B, N]`` assignment from :func:`nearest_centers`.
    Returns:
        ``[B, C, M]`` in the values' dtype (the autocast dtype under autocast); the counts,
        sums and the division run in at least fp32.
    """
    batch, channels, num_centers = center_values.shape
    out_dtype = output_dtype(values.device.type,
                             torch.promote_types(values.dtype, center_values.dtype))
    dtype = clustering_dtype(out_dtype)
    with autocast_off(values.device.type):
        member_sum = values.new_zeros((batch, channels, num_centers), dtype=dtype).scatter_add(
            2, index.unsqueeze(1).expand(-1, channels, -1), values.to(dtype))
        members = count_members(index, num_centers, dtype)
        mean = (member_sum + center_values.to(dtype)) / (members.unsqueeze(1) + 1.0)
    return mean.to(out_dtype)


def cosine_to_assigned(points: Tensor, centers: Tensor, index: Tensor) -> Tensor:
    """Cosine between every point and its own center, with gradients: ``[B, N]``.

    Equals the paper's ``(sim * mask).sum(centers)`` entry by entry, so gradients flow
    to the chosen center only, exactly as the paper's masked product does.
    """
    return (points * gather_centers(centers, index)).sum(dim=1)


def normalize(x: Tensor) -> Tensor:
    """L2 normalisation over channels (dim 1), as the paper's ``pairwise_cos_sim``."""
    return F.normalize(x, dim=1)


# ----------------------------------------------------------------- fused functions
def _normalized(x: Tensor):
    """``x / max(|x|, eps)`` over dim 1, and the clamped norm ``[B, 1, ...]``.

    ``(x * x).sum(1)`` rather than ``linalg.vector_norm(dim=1)``: the latter reduces the
    strided channel dim several times slower on CPU."""
    norm = (x * x).sum(dim=1, keepdim=True).sqrt_().clamp_min_(EPS)
    return x / norm, norm


def _normalize_backward(grad: Tensor, unit: Tensor, norm: Tensor, dot: Tensor) -> Tensor:
    """Gradient through ``x / max(|x|, eps)`` given ``dot = <unit, grad>`` (in place on
    ``grad``); where the norm was clamped the map is linear, ``grad / eps``."""
    dot = dot * (norm > EPS)
    return grad.addcmul_(unit, dot, value=-1).div_(norm)


def _members(values: Tensor, index: Tensor, expanded: Tensor, center_values: Tensor):
    """``(sum of members + center value) / (members + 1)`` and ``members + 1``."""
    batch, channels, num_centers = center_values.shape
    counts = count_members(index, num_centers, values.dtype).add_(1.0).unsqueeze(1)
    summed = values.new_zeros((batch, channels, num_centers)).scatter_add_(2, expanded, values)
    return summed.add_(center_values).div_(counts), counts


class ClusterEncodeFunction(torch.autograd.Function):
    """The clustering encoding of one head group over a whole map, all fold regions at
    once: ``(feats, values) [B, C, H, W] -> out [B, C, H, W]`` plus the assignment
    ``[B, N]`` and the similarity ``[B, N]`` of every point to its center (``N = H*W``,
    ``M`` centers on the layout's grid).

    ``out[:, n] = s_n * (v_m + sum_{k in m} v_k) / (|m| + 1)`` with ``m`` the center of point
    ``n`` (arg-max of ``s = sigmoid(beta + alpha * cos)`` within its region) and the
    centers' features/values the layout's average pools.

    Saved for the backward: the normalised points ``[B, C, N]`` (the only map-sized
    tensor; for fp16/bf16 features the features themselves, half the bytes, from which
    the backward rebuilds the same fp32 points with the saved norms), the norms, the
    assignment, cosine and similarity ``[B, N]``, and per center ``[B, C, M]`` the
    normalised features, their norms, the new values and the member counts.

    Precision: the math runs in fp32 (fp64 for fp64 inputs) with autocast off; ``out``
    comes back in the autocast dtype (else the inputs' dtype), the gradients in the
    inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, feats, values, alpha, beta, layout, chunk_elements):
        device = feats.device.type
        in_dtype = torch.promote_types(feats.dtype, values.dtype)
        dtype = clustering_dtype(in_dtype)
        ctx.dtypes = (feats.dtype, values.dtype, alpha.dtype, beta.dtype)
        with autocast_off(device):
            out, index, sim, saved = ClusterEncodeFunction._forward(
                feats.to(dtype), values.to(dtype), alpha.to(dtype), beta.to(dtype), layout,
                chunk_elements)
        points, point_norm = saved[0], saved[1]
        # Low-precision features: keep them (not the fp32 points) and rebuild the points.
        ctx.rebuild_points = feats.dtype != dtype
        if ctx.rebuild_points:
            points = feats
        ctx.layout = layout
        ctx.shape = feats.shape
        ctx.save_for_backward(points, point_norm, *saved[2:])
        ctx.mark_non_differentiable(index, sim)
        return out.to(output_dtype(device, in_dtype)), index, sim

    @staticmethod
    def _forward(feats, values, alpha, beta, layout, chunk_elements):
        batch, channels, height, width = feats.shape
        num_points, num_centers = height * width, layout.num_centers
        points, point_norm = _normalized(feats.reshape(batch, channels, num_points))
        centers, center_norm = _normalized(pool_centers(feats, layout))

        def score(cos):
            return cos.mul_(alpha).add_(beta).sigmoid_()

        index = region_nearest_centers(points.view(batch, channels, height, width), centers,
                                       layout, score, chunk_elements)
        centers = centers.reshape(batch, channels, num_centers)
        expanded = index.unsqueeze(1).expand(-1, channels, -1)
        buffer = torch.gather(centers, 2, expanded)
        cos = buffer.mul_(points).sum(dim=1)  # [B, N]
        sim = torch.sigmoid(beta + alpha * cos)
        new_values, counts = _members(values.reshape(batch, channels, num_points), index,
                                      expanded, pool_centers(values, layout).flatten(2))
        out = torch.gather(new_values, 2, expanded, out=buffer).mul_(sim.unsqueeze(1))
        saved = (points, point_norm, index, cos, sim, centers, center_norm.flatten(2),
                 new_values, counts, alpha)
        return out.view(batch, channels, height, width), index, sim, saved

    @staticmethod
    def backward(ctx, grad_out, _grad_index, _grad_sim):
        (points, point_norm, index, cos, sim, centers, center_norm, new_values, counts,
         alpha) = ctx.saved_tensors
        batch, channels, height, width = ctx.shape
        num_points = height * width
        dtype = new_values.dtype
        with autocast_off(grad_out.device.type):
            if ctx.rebuild_points:  # the same division as the forward's: the same points
                points = points.reshape(batch, channels, num_points).to(dtype) / point_norm
            grad = grad_out.reshape(batch, channels, num_points).to(dtype)
            grads = ClusterEncodeFunction._backward(
                grad, points, point_norm, index, cos, sim, centers, center_norm, new_values,
                counts, alpha, ctx.layout, ctx.shape)
        return tuple(g.to(d) for g, d in zip(grads, ctx.dtypes)) + (None, None)

    @staticmethod
    def _backward(grad, points, point_norm, index, cos, sim, centers, center_norm, new_values,
                  counts, alpha, layout, shape):
        batch, channels, height, width = shape
        expanded = index.unsqueeze(1).expand(-1, channels, -1)
        buffer = torch.gather(new_values, 2, expanded)
        grad_sim = buffer.mul_(grad).sum(dim=1)  # [B, N]
        # values: out = gather(new_values) * sim
        torch.mul(grad, sim.unsqueeze(1), out=buffer)
        grad_summed = torch.zeros_like(new_values).scatter_add_(2, expanded, buffer).div_(counts)
        grad_values = torch.gather(grad_summed, 2, expanded)
        pool_centers_backward_(grad_values.view(shape),
                               grad_summed.view(batch, channels, *layout.center_size), layout)
        # similarity: sim = sigmoid(beta + alpha * cos)
        grad_logit = grad_sim.mul_(sim).mul_(1.0 - sim)
        grad_alpha = (grad_logit * cos).sum().reshape(alpha.shape)
        grad_beta = grad_logit.sum().reshape(alpha.shape)
        grad_cos = grad_logit.mul_(alpha)  # [B, N]
        # centers: cos = <points_n, centers_m>, d centers_m = sum_{n in m} grad_cos_n points_n
        torch.mul(points, grad_cos.unsqueeze(1), out=buffer)
        grad_centers = torch.zeros_like(centers).scatter_add_(2, expanded, buffer)
        grad_centers = _normalize_backward(
            grad_centers, centers, center_norm, (centers * grad_centers).sum(1, keepdim=True))
        # points: d points_n = grad_cos_n * centers_m, and <points_n, d points_n> = grad_cos_n cos_n
        grad_feats = torch.gather(centers, 2, expanded, out=buffer).mul_(grad_cos.unsqueeze(1))
        grad_feats = _normalize_backward(grad_feats, points, point_norm,
                                         (grad_cos * cos).unsqueeze(1))
        pool_centers_backward_(grad_feats.view(shape),
                               grad_centers.view(batch, channels, *layout.center_size), layout)
        return grad_feats.view(shape), grad_values.view(shape), grad_alpha, grad_beta


class ClusterAverageFunction(torch.autograd.Function):
    """Center values of a clustering pooling, differentiable w.r.t. ``values`` only:
    ``values [B, C, H, W]``, assignment ``[B, N]`` -> ``[B, C, *center_size]`` (``M``
    centers) with ``(center value + sum of members) / (members + 1)``.

    Saves the assignment ``[B, N]`` and the member counts ``[B, 1, M]``, nothing of the
    map's size. Counts, sums and the division run in fp32 (fp64 for fp64 values) with
    autocast off; the result comes back in the autocast dtype (else the values' dtype),
    the gradient in the values' dtype.
    """

    @staticmethod
    def forward(ctx, values, index, layout):
        batch, channels, height, width = values.shape
        device = values.device.type
        dtype = clustering_dtype(values.dtype)
        with autocast_off(device):
            full = values.to(dtype)
            expanded = index.unsqueeze(1).expand(-1, channels, -1)
            new_values, counts = _members(full.reshape(batch, channels, -1), index, expanded,
                                          pool_centers(full, layout).flatten(2))
        ctx.layout, ctx.shape, ctx.in_dtype = layout, values.shape, values.dtype
        ctx.save_for_backward(index, counts)
        return new_values.view(batch, channels, *layout.center_size).to(
            output_dtype(device, values.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        index, counts = ctx.saved_tensors
        batch, channels, height, width = ctx.shape
        with autocast_off(grad_out.device.type):
            grad_summed = grad_out.reshape(batch, channels, -1).to(counts.dtype) / counts
            grad_values = torch.gather(grad_summed, 2,
                                       index.unsqueeze(1).expand(-1, channels, -1))
            pool_centers_backward_(grad_values.view(ctx.shape), grad_summed, ctx.layout)
        return grad_values.view(ctx.shape).to(ctx.in_dtype), None, None


# ----------------------------------------------------------------- entry points
def _eager_only(fn):
    """Keep ``fn`` out of ``torch.compile`` graphs (data-dependent loops, custom backward):
    a compiled FEC compiles the dense parts around it and calls this eagerly."""
    disable = getattr(getattr(torch, 'compiler', None), 'disable', None)
    return disable(fn) if disable is not None else fn


@_eager_only
def cluster_encode(feats: Tensor, values: Tensor, alpha: Tensor, beta: Tensor,
                   layout: ClusterLayout, chunk_elements: int = None):
    """:class:`ClusterEncodeFunction` (out, assignment, similarity)."""
    return ClusterEncodeFunction.apply(feats, values, alpha, beta, layout,
                                       chunk_elements or SIMILARITY_CHUNK_ELEMENTS)


@_eager_only
def pooling_assignment(feats: Tensor, layout: ClusterLayout, chunk_elements: int = None,
                       screen: Optional[torch.dtype] = None, stats: Optional[dict] = None):
    """Normalised center features ``[B, C, *center_size]`` (fp32, or fp64 for fp64 features)
    and every point's center ``[B, H*W]`` for a clustering pooling (no gradient: the
    paper's one-hot mask). ``screen``: rank through the certified low-precision screen
    in that dtype (see :mod:`.certified_argmax`; ``None``: the fp32 similarity);
    ``stats``: a dict counting the points the screen had to recheck."""
    with torch.no_grad(), autocast_off(feats.device.type):
        # centers pooled and normalised in at least fp32; the points are cast chunk by
        # chunk (the arg-max of the cosine: the points' own norms do not change it)
        centers = normalize(pool_centers(feats.to(clustering_dtype(feats.dtype)), layout))
        index = region_nearest_centers(feats, centers, layout,
                                       chunk_elements=chunk_elements or SIMILARITY_CHUNK_ELEMENTS,
                                       screen=screen, stats=stats)
    return centers, index


@_eager_only
def cluster_average(values: Tensor, index: Tensor, layout: ClusterLayout) -> Tensor:
    """:class:`ClusterAverageFunction`."""
    return ClusterAverageFunction.apply(values, index, layout)


# ----------------------------------------------------- the plain paths they must equal
# Plain differentiable ops, region by region (autograd through gather / scatter_add): what
# tracing, FLOP counting and the ONNX export run (see :mod:`.paths`), and what the fused
# functions above are tested against on any fold and map size.
def _by_regions(regions, one_region, feats: Tensor, values: Tensor) -> Tensor:
    """Run ``one_region(feats, values, region)`` per region; glue the outputs back along
    W within a row of regions, then along H (regions are row-major)."""
    if len(regions) == 1:
        return one_region(feats, values, regions[0])
    rows = {}
    for region in regions:
        (r0, r1), (c0, c1) = region[:2]
        rows.setdefault(r0, []).append(one_region(
            feats[:, :, r0:r1, c0:c1], values[:, :, r0:r1, c0:c1], region))
    return torch.cat([torch.cat(row, dim=3) for row in rows.values()], dim=2)


def cluster_encode_plain(feats: Tensor, values: Tensor, score: Callable[[Tensor], Tensor],
                         proposal_size, regions) -> Tensor:
    """:func:`cluster_encode`'s output ``[B, C, H, W]``, plain: in every region of
    ``regions`` (``(rows, cols)`` spans), ``proposal_size`` centers adaptive-pooled from
    it, each point's nearest center by ``score`` of the cosine, the members' mean value,
    times the point's score."""
    def one_region(feats, values, region):
        batch, channels, height, width = values.shape
        points = normalize(feats.flatten(2))  # [B, C, N]
        centers = normalize(F.adaptive_avg_pool2d(feats, proposal_size).flatten(2))  # [B, C, M]
        center_values = F.adaptive_avg_pool2d(values, proposal_size).flatten(2)  # [B, C, M]
        index = nearest_centers(points, centers, score=score)  # [B, N]
        sim = score(cosine_to_assigned(points, centers, index))  # [B, N]
        new_values = average_members(values.flatten(2), center_values, index)  # [B, C, M]
        out = gather_centers(new_values, index) * sim.unsqueeze(1)  # [B, C, N]
        return out.reshape(batch, channels, height, width)
    return _by_regions(list(regions), one_region, feats, values)


def cluster_pool_plain(feats: Tensor, values: Tensor, regions) -> Tensor:
    """:func:`pooling_assignment` + :func:`cluster_average`, plain: in every region of
    ``regions`` (``(in_rows, in_cols, out_rows, out_cols)`` spans), centers adaptive-pooled
    to the output size, each point's nearest center, the members' mean value. Returns the
    pooled values ``[B, C, ceil(H/2), ceil(W/2)]``."""
    def one_region(feats, values, region):
        (o0, o1), (p0, p1) = region[2:]
        batch, channels = values.shape[:2]
        out_size = (o1 - o0, p1 - p0)
        points = normalize(feats.flatten(2))  # [B, C, N]
        centers = normalize(F.adaptive_avg_pool2d(feats, out_size).flatten(2))  # [B, C, M]
        center_values = F.adaptive_avg_pool2d(values, out_size).flatten(2)  # [B, C, M]
        index = nearest_centers(points, centers)  # [B, N]
        new_values = average_members(values.flatten(2), center_values, index)  # [B, C, M]
        return new_values.reshape(batch, channels, *out_size)
    return _by_regions(list(regions), one_region, feats, values)
