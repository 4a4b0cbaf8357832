"""The arg-max of the fp32 cosine at the price of a low-precision GEMM: a certified screen.

A clustering pooling ranks ``M`` centers for every point by their cosine, a ``[n, C] x
[C, M]`` GEMM per chunk of points whose only use is the arg-max. Here that GEMM runs in a
low precision (bf16 or fp16, the *screen*), its rounding error is bounded rigorously per
point, every point whose best center leads the runner-up by more than twice the bound is
*certified* (its fp32 arg-max is the same center), and only the other points are
recomputed in fp32, against the few centers that the bound cannot rule out.

Shapes: ``B`` batch, ``C`` channels (the GEMM's ``K``), ``M`` centers (``m`` of one fold
region), ``n`` points of one chunk.

The bound
---------
Let ``p`` and ``c`` be a point and a center as unit vectors in fp32 (``|p|, |c| <= 1 + eta``
with ``eta = (C + 8) 2^-23``, more than fp32 normalisation can leave), ``p^ = low(p)`` and
``c^ = low(c)`` their roundings to the screen dtype (unit roundoff ``u_in``: ``2^-8`` for
bf16, ``2^-11`` for fp16), and ``r = p^ - p``, ``q = c^ - c`` the rounding residuals, which
are exact in fp32 (a difference of a 24-bit number and its 8/11-bit rounding). Write
``rho = |r|`` (per point) and ``sigma = max_m |q_m|`` (per region and image); both are
computed, not assumed (about ``0.42 u_in`` and ``0.5 u_in`` on FEC's features, at most
``u_in (1 + eta)``). The screen computes ``s^ = out(acc)``, ``acc`` the GEMM's fp32
accumulation of ``C`` products ``p^_i c^_i``, each exact in fp32 (8x8 or 11x11 significant
bits < 24), rounded to the GEMM's output dtype. Then

* ``|p^.c^ - p.c| = |r.c^ + p.q| <= rho (1 + eta + sigma) + (1 + eta) sigma``
  (Cauchy-Schwarz, ``|c^| <= |c| + |q|``);
* ``|acc - p^.c^| <= gamma_C |p^| |c^| <= gamma_C (1 + eta + rho)(1 + eta + sigma)``,
  ``gamma_C = C 2^-24 / (1 - C 2^-24)`` (any summation order in fp32, Higham Thm 3.1);
* ``|s^ - acc| <= h(s^)``, half the output dtype's spacing at ``s^`` (round to nearest;
  ``h(s) <= u_out |s|``, ``2^-9`` for a bf16 result in ``[0.5, 1)``; :func:`half_ulp`),
  plus ``2^-24`` absolute for a subnormal fp16 result. On CUDA the GEMM returns fp32
  (``bmm(..., out_dtype=float32)``), so there ``h`` is fp32's; on CPU it returns the low
  dtype.

So ``|s^ - p.c| <= a + h(s^)`` with ``a`` the sum of the first two lines and ``2^-24``,
taken ``(1 + 2^-10)`` times and ``2^-20`` added to cover the fp32 evaluation of ``rho``,
``sigma``, ``a`` and of the comparisons below. ``s +- h(s)`` is non-decreasing in ``s``, so
with ``s1`` the screen's best value (first index among equals) and ``s2`` the runner-up,
the point is *certified* when ``s1 - h(s1) - a > s2 + h(s2) + a`` (the lead is more than
twice the bound): then the best center's exact cosine is larger than every other
center's, and the fp32 arg-max agrees unless two exact cosines are within fp32 rounding
of each other (where today's fused and plain fp32 paths already disagree). Otherwise the
*candidates* are the centers with ``s + h(s) + a >= s1 - h(s1) - a`` (the only ones whose
exact cosine can reach the best center's lower bound, so the exact winner is among them);
their fp32 dot products decide, first index among equals, as ``Tensor.argmax`` does.
Rows with many candidates (constant features: every center ties) are recomputed against
all centers with one fp32 GEMM. Per side the bound is about ``1.5 u_in`` for bf16 on CPU
(``a ~ 0.95 u_in``, ``h ~ 0.5 u_in``): a quarter of the pooling points of a randomly
initialised FEC-S need the recheck in bf16, 2-4% in fp16 (docs/performance.md).

The bound assumes the GEMM accumulates in fp32, as oneDNN/MKL's bf16 GEMMs do on CPU and
cuBLAS does with reduced-precision reductions switched off (the screen switches them off
around its GEMM on CUDA).

When it pays: the screen's GEMM must be faster than fp32's by more than the recheck and
the extra passes cost, and how many points need the recheck depends on the image far more
than on the device: measured on a randomly initialised FEC-S at 800x1216, 28-40% (bf16)
and 4-7% (fp16) of the pooling points for random-normal images, but 97-99.5% (bf16) and
84-93% (fp16) for synthetic scenes with flat textured regions, whose neighbouring centers
are nearly the same vector, and as many after a brief training (docs/performance.md).
Hence :class:`~.ClusterPooling`'s default ``screen='off'``; ``'auto'`` applies
:func:`fast_screen_dtype` (fp16 on CUDA, where the GPU check measures it; nothing on CPU),
``'bf16'``/``'fp16'`` force a dtype.
"""
import contextlib
import math
from typing import Optional, Union

import torch
from torch import Tensor

SCREEN_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16,
                 'bfloat16': torch.bfloat16, 'float16': torch.float16}
OFF = (False, None, 'off', 'fp32', 'none')

# Uncertified rows with more candidates than this are recomputed against all centers with
# one fp32 GEMM instead of candidate by candidate (a gathered pair costs ~C loads).
CANDIDATE_LIMIT = 32


def unit_roundoff(dtype: torch.dtype) -> float:
    """``u``: the largest relative error of one rounding to ``dtype`` (half its eps)."""
    return torch.finfo(dtype).eps / 2


def half_ulp(values: Tensor, dtype: torch.dtype) -> Tensor:
    """The most a round-to-nearest into ``dtype`` can have moved a result that came out
    as ``values`` (fp32 copies of ``dtype`` numbers): half the spacing of ``dtype`` at
    ``|values|``, ``2^(e - digits - 1)`` for ``values = f 2^e``, ``f`` in ``[0.5, 1)``. At
    most ``u |values|`` and as little as half that; ``v + half_ulp(v)`` and
    ``v - half_ulp(v)`` are non-decreasing in ``v`` (across a power of two too). A zero
    gets ``2^(-digits-1)``, far more than the rounding of anything that rounds to zero."""
    digits = round(-math.log2(torch.finfo(dtype).eps)) + 1  # significant bits
    exponent = torch.frexp(values)[1]
    return torch.ldexp(torch.ones_like(values), (exponent - digits - 1).to(values.dtype))


def fast_screen_dtype(device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The dispatch rule of ``screen='auto'``: the screen dtype for ``device``, or
    ``None`` (fp32) where the screen was measured or estimated not to pay.

    * CUDA: fp16 (tensor cores, ~15x fp32's rate on an H200; fp16's bound is 8x tighter
      than bf16's: on synthetic scenes at 800x1216 it leaves 84-93% of the points
      uncertified but only 5-10% with more than 32 candidates, ~10 candidate dot products
      per point otherwise). Not measured yet: the GPU check's ``screen_speed`` section.
    * CPU: none. Without avx512_bf16/AMX (this project's AVX2 EPYC) bf16 and fp16 GEMMs
      are 8-18x slower than fp32. With them (bf16 ~2.8x fp32's rate) bf16 still leaves
      97-99.5% of the points of such scenes uncertified, most with more than 32
      candidates, so the recheck alone costs about the fp32 GEMM (docs/performance.md).
    """
    return torch.float16 if torch.device(device).type == 'cuda' else None


def resolve_screen(setting, device) -> Optional[torch.dtype]:
    """A layer's ``screen`` setting -> the screen dtype for ``device`` or ``None`` (off).

    ``'auto'``/``True``: :func:`fast_screen_dtype`; ``'bf16'``/``'fp16'`` (or the torch
    dtypes): always that dtype; ``False``/``None``/``'off'``/``'fp32'``: off."""
    if isinstance(setting, torch.dtype):
        return setting
    if setting in OFF:
        return None
    if setting is True or setting == 'auto':
        return fast_screen_dtype(device)
    if setting in SCREEN_DTYPES:
        return SCREEN_DTYPES[setting]
    raise ValueError(f"screen must be 'auto', 'bf16', 'fp16' or 'off', got {setting!r}")


def check_screen_setting(setting):
    """Raise ValueError for a setting :func:`resolve_screen` would not take."""
    resolve_screen(setting, 'meta')
    return setting


@contextlib.contextmanager
def _fp32_accumulation(device_type: str):
    """cuBLAS may reduce fp16/bf16 GEMMs in their own precision unless told not to; the
    bound needs fp32 accumulation."""
    if device_type != 'cuda':
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved = (matmul.allow_fp16_reduced_precision_reduction,
             matmul.allow_bf16_reduced_precision_reduction)
    matmul.allow_fp16_reduced_precision_reduction = False
    matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        (matmul.allow_fp16_reduced_precision_reduction,
         matmul.allow_bf16_reduced_precision_reduction) = saved


_FP32_OUT = {}


def _screen_bmm(a: Tensor, b: Tensor) -> Tensor:
    """``bmm`` of low-precision operands, accumulated in fp32; the result in fp32 where
    the device offers it (``out_dtype``, CUDA: no output rounding), else in the low
    dtype."""
    device = a.device.type
    with _fp32_accumulation(device):
        if _FP32_OUT.get(device, device == 'cuda'):
            try:
                return torch.bmm(a, b, out_dtype=torch.float32)
            except (TypeError, RuntimeError, NotImplementedError):
                _FP32_OUT[device] = False
        return torch.bmm(a, b)


class ScreenedCenters:
    """One fold region's centers prepared for the screen: ``centers`` ``[B, C, m]`` fp32
    unit vectors, their rounding ``low`` ``[B, C, m]``, and ``sigma`` ``[B, 1]``, the
    largest rounding residual norm ``max_m |low(c_m) - c_m|`` per image."""

    def __init__(self, centers: Tensor, dtype: torch.dtype):
        self.centers = centers
        self.dtype = dtype
        self.low = centers.to(dtype)
        residual = self.low.to(centers.dtype).sub_(centers)
        self.sigma = residual.square_().sum(dim=1).sqrt_().amax(dim=1, keepdim=True)


def error_offset(rho: Tensor, sigma: Tensor, channels: int) -> Tensor:
    """``a`` of the module doc: ``|s^ - p.c| <= a + u |s^|`` for every center, ``[B, n]``
    from the points' residual norms ``rho`` ``[B, n]`` and the centers' ``sigma`` ``[B, 1]``."""
    eta = (channels + 8) * 2.0 ** -23
    gamma = channels * 2.0 ** -24 / (1 - channels * 2.0 ** -24)
    one = 1.0 + eta
    a = rho * (one + sigma) + one * sigma + gamma * (one + rho) * (one + sigma) + 2.0 ** -24
    return a.mul_(1.0 + 2.0 ** -10).add_(2.0 ** -20)


def certified_argmax(points: Tensor, region: ScreenedCenters, argmax,
                     stats: Optional[dict] = None) -> Tensor:
    """The fp32 arg-max over the region's centers of the cosine of every point, through
    the screen: ``points`` ``[B, C, n]`` (any float dtype, any positive scale per point)
    -> ``[B, n]`` local center indices. ``argmax`` is the first-index arg-max over the
    last dim (``first_argmax``). ``stats`` (optional) accumulates ``points``,
    ``rechecked`` (uncertified points), ``pairs`` (candidate dot products) and
    ``full_rows`` (rows recomputed against all centers)."""
    centers = region.centers
    batch, channels, num_points = points.shape
    num_centers = centers.shape[2]
    unit = points.to(centers.dtype)
    unit = unit / unit.square().sum(dim=1, keepdim=True).sqrt_().clamp_min_(1e-12)
    unit_low = unit.to(region.dtype)
    rho = unit_low.to(unit.dtype).sub_(unit).square_().sum(dim=1).sqrt_()  # [B, n]
    scores = _screen_bmm(unit_low.transpose(1, 2), region.low)  # [B, n, m]
    best = argmax(scores)  # [B, n]
    top = scores.gather(2, best.unsqueeze(2)).squeeze(2).float()
    out_dtype = scores.dtype  # the output's rounding (the inputs' is in rho and sigma)
    a = error_offset(rho, region.sigma, channels)
    lower = top - half_ulp(top, out_dtype) - a  # the best center's exact cosine is >= this
    if num_centers > 1:
        scores.scatter_(2, best.unsqueeze(2), float('-inf'))
        second = scores.amax(dim=2).float()
        # NaN -> uncertain; a single finite center leaves second = -inf: certified
        uncertain = ~(second + half_ulp(second, out_dtype) + a < lower)
    else:
        uncertain = torch.zeros_like(best, dtype=torch.bool)
    rows_b, rows_n = uncertain.nonzero(as_tuple=True)  # [U]
    if stats is not None:
        stats['points'] = stats.get('points', 0) + batch * num_points
        stats['rechecked'] = stats.get('rechecked', 0) + int(rows_b.numel())
    if rows_b.numel() == 0:
        return best
    # Candidates of the uncertain rows: every center whose upper bound reaches `lower`.
    row_scores = scores[rows_b, rows_n].float()  # [U, m]; the best's entry is -inf
    row_best = best[rows_b, rows_n]
    reach = (row_scores + half_ulp(row_scores, out_dtype) + a[rows_b, rows_n].unsqueeze(1)
             >= lower[rows_b, rows_n].unsqueeze(1))
    reach.scatter_(1, row_best.unsqueeze(1), True)
    counts = reach.sum(dim=1)
    winners = torch.empty_like(row_best)
    few = counts <= CANDIDATE_LIMIT
    if bool(few.any()):
        pair_row, pair_center = reach[few].nonzero(as_tuple=True)  # sorted by row, center
        few_rows = few.nonzero(as_tuple=True)[0]
        pb = rows_b[few_rows][pair_row]
        dots = (unit[pb, :, rows_n[few_rows][pair_row]]
                * centers[pb, :, pair_center]).sum(dim=1)  # [P] fp32
        winners[few] = _segment_first_argmax(dots, pair_row, pair_center, int(few.sum()),
                                             num_centers)
        if stats is not None:
            stats['pairs'] = stats.get('pairs', 0) + int(dots.numel())
    many = ~few
    if bool(many.any()):
        many_rows = many.nonzero(as_tuple=True)[0]
        for b in rows_b[many_rows].unique().tolist():
            sel = many_rows[rows_b[many_rows] == b]
            cos = torch.mm(unit[b][:, rows_n[sel]].t(), centers[b])  # [k, m] fp32
            winners[sel] = argmax(cos.unsqueeze(0)).squeeze(0)
        if stats is not None:
            stats['full_rows'] = stats.get('full_rows', 0) + int(many_rows.numel())
    best[rows_b, rows_n] = winners
    return best


def _segment_first_argmax(values: Tensor, segment: Tensor, index: Tensor, segments: int,
                          sentinel: int) -> Tensor:
    """Per segment, the ``index`` of its largest value, the smallest index among equal
    maxima (``Tensor.argmax``'s rule); ``values``/``segment``/``index`` ``[P]``."""
    top = values.new_full((segments,), float('-inf')).scatter_reduce(
        0, segment, values, 'amax', include_self=True)
    at_top = values == top[segment]
    # NaN (a NaN feature): the segment's own smallest index, as argmax would pick the NaN
    at_top |= torch.isnan(top[segment])
    return index.new_full((segments,), sentinel).scatter_reduce(
        0, segment[at_top], index[at_top], 'amin', include_self=True)
