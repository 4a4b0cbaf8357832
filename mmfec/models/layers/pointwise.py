"""Per-pixel linear maps on ``[B, C, H, W]`` maps as plain GEMMs.

A 1x1 convolution or a ``Linear`` over channels is ``W @ x`` on the ``[C, H*W]`` view of
each image. Doing it as one ``addmm``/``baddbmm`` avoids mkldnn's layout reorders (1x1
convs) and the permute copies a channels-last ``Linear`` needs, and it lets a residual
``x + scale * (W z + b)`` be a single GEMM that accumulates into ``x``. Weights may be
``[O, C]`` (Linear) or ``[O, C, 1, 1]`` (Conv2d); parameter names and shapes stay those
of the modules that own them.

Under ``torch.autocast`` the GEMMs run in the autocast dtype, as the built-in ``mm`` would,
while the residual keeps the dtype the unfused ``x + scale * branch`` would give it
(``scale`` is an fp32 parameter, so fp32): a bf16 residual would swallow updates of
``1e-5`` layer scale whole.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules import module as module_mod

from .precision import _rounded, autocast_dtype, autocast_off, emulates_low_gemm, low_matmul


def conv1x1(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``W @ x + b`` per pixel: ``[B, C, H, W]`` -> ``[B, O, H, W]``. Under autocast the
    GEMM runs in the autocast dtype (emulated in fp32 where the CPU has no native one:
    see :mod:`.precision`)."""
    device = x.device.type
    low = autocast_dtype(device)
    if low is not None and emulates_low_gemm(device, low):
        with autocast_off(device):
            out = _conv1x1(_rounded(x, low), _rounded(weight, low),
                           None if bias is None else _rounded(bias, low))
        return out.to(low)
    return _conv1x1(x, weight, bias)


def _conv1x1(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    batch, channels, height, width = x.shape
    weight = weight.reshape(weight.shape[0], channels)
    if batch == 1:  # a view, not x[0]: select's backward would zero-fill a full-size grad
        points = x.reshape(channels, height * width)
        out = (torch.mm(weight, points) if bias is None
               else torch.addmm(bias.unsqueeze(1), weight, points))
    else:
        points = x.reshape(batch, channels, height * width)
        out = (torch.matmul(weight, points) if bias is None
               else torch.baddbmm(bias.view(1, -1, 1), weight.expand(batch, -1, -1), points))
    return out.view(batch, -1, height, width)


def _accumulate(x: Tensor, weight: Tensor, z: Tensor, bias: Optional[Tensor],
                gemm_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``x + W @ z + b`` on ``[B, C, N]`` / ``[B, K, N]`` as one GEMM into a copy of ``x``.

    With ``gemm_dtype`` (the autocast dtype) ``W @ z`` runs in that dtype and is added to
    ``x`` in the dtype of ``x + W`` (fp32 for fp32 weights), as unfused autocast code does.
    Call it with autocast off.
    """
    if gemm_dtype is not None:
        out = low_matmul(weight, z, gemm_dtype)
        out = x.to(torch.promote_types(x.dtype, weight.dtype)) + out
        return out if bias is None else out.add_(bias.view(1, -1, 1))
    batch, channels, points = x.shape
    if batch == 1:
        out = torch.addmm(x.reshape(channels, points), weight, z.reshape(z.shape[1], points))
        out = out.view(1, channels, points)
    else:
        out = torch.baddbmm(x, weight.expand(batch, -1, -1), z)
    if bias is not None:
        out.add_(bias.view(1, -1, 1))
    return out


def residual_conv1x1(x: Tensor, z: Tensor, weight: Tensor, bias: Optional[Tensor],
                     scale: Tensor) -> Tensor:
    """``x + scale * (W @ z + b)`` per pixel, as one GEMM accumulating into (a copy of) ``x``.

    ``scale`` is the per-channel layer scale; it is folded into the (small) weight and bias,
    which is the same function with the same gradients.
    """
    batch, channels, height, width = x.shape
    weight = weight.reshape(weight.shape[0], -1) * scale.unsqueeze(1)
    gemm_dtype = autocast_dtype(x.device.type)
    with autocast_off(x.device.type):
        out = _accumulate(x.reshape(batch, channels, -1), weight,
                          z.reshape(batch, z.shape[1], -1), None if bias is None else bias * scale,
                          gemm_dtype)
    return out.view(batch, channels, height, width)


class _GeluResidual(torch.autograd.Function):
    """``x + W @ gelu(h) + b`` saving only ``h``: ``gelu(h)`` (the MLP's widest tensor) is
    recomputed in the backward instead of being kept alive.

    Shapes: ``x`` ``[B, C, N]``, ``h`` ``[B, K, N]`` (``K`` hidden channels), ``W``
    ``[C, K]``, ``b`` ``[C]``. Saves ``h`` and ``W``. Under autocast the GEMMs of the
    forward and the backward run in the autocast dtype (the dtype recorded at the forward,
    so a backward outside the autocast region does the same), the residual in the dtype of
    ``x + W``; gradients come back in the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, x, h, weight, bias, approximate):
        device = x.device.type
        ctx.approximate = approximate
        ctx.gemm_dtype = autocast_dtype(device)
        ctx.dtypes = (x.dtype, h.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(h, weight)
        with autocast_off(device):
            if ctx.gemm_dtype is not None:
                h = h.to(ctx.gemm_dtype)
            return _accumulate(x, weight, F.gelu(h, approximate=approximate), bias,
                               ctx.gemm_dtype)

    @staticmethod
    def backward(ctx, grad_out):
        h, weight = ctx.saved_tensors
        with autocast_off(grad_out.device.type):
            grads = _GeluResidual._backward(ctx, grad_out.contiguous(), h, weight)
        return tuple(g if g is None else g.to(d) for g, d in zip(grads, ctx.dtypes)) + (None,)

    @staticmethod
    def _backward(ctx, grad_out, h, weight):
        grad_x = grad_out
        if ctx.gemm_dtype is not None:
            h, weight, grad_out = (t.to(ctx.gemm_dtype) for t in (h, weight, grad_out))
        batch = grad_out.shape[0]
        grad_weight = grad_bias = grad_h = None
        # One hidden-sized buffer serves as gelu(h), then d gelu(h), then d h: fresh large
        # tensors cost page faults on CPU, often more than the arithmetic.
        buffer = None
        low = ctx.gemm_dtype
        emulated = low is not None and emulates_low_gemm(h.device.type, low)
        if ctx.needs_input_grad[2]:
            buffer = F.gelu(h, approximate=ctx.approximate)
            if emulated:
                grad_weight = low_matmul(grad_out, buffer.transpose(1, 2), low).sum(0)
            elif batch == 1:
                grad_weight = torch.mm(grad_out[0], buffer[0].t())
            else:
                grad_weight = torch.bmm(grad_out, buffer.transpose(1, 2)).sum(0)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_x.sum(dim=(0, 2))
        if ctx.needs_input_grad[1]:
            if buffer is None:
                buffer = torch.empty_like(h)
            if emulated:
                low_matmul(weight.t(), grad_out, low, out=buffer)
            elif batch == 1:  # mm straight into [K, N]; matmul would transpose and copy
                torch.mm(weight.t(), grad_out[0], out=buffer[0])
            else:
                torch.bmm(weight.t().expand(batch, -1, -1), grad_out, out=buffer)
            grad_h = torch.ops.aten.gelu_backward.grad_input(
                buffer, h, approximate=ctx.approximate, grad_input=buffer)
        return grad_x, grad_h, grad_weight, grad_bias


def residual_gelu_conv1x1(x: Tensor, h: Tensor, weight: Tensor, bias: Optional[Tensor],
                          scale: Tensor, approximate: str = 'none') -> Tensor:
    """``x + scale * (W @ gelu(h) + b)`` per pixel (an MLP's second layer with its
    activation, layer scale and residual); keeps only ``h`` for the backward."""
    batch, channels, height, width = x.shape
    weight = weight.reshape(weight.shape[0], -1) * scale.unsqueeze(1)
    out = _GeluResidual.apply(x.reshape(batch, channels, -1), h.reshape(batch, h.shape[1], -1),
                              weight, None if bias is None else bias * scale, approximate)
    return out.view(batch, channels, height, width)


def is_observed(module: nn.Module) -> bool:
    """Whether calling ``module`` runs forward hooks (then a fused path that skips the
    module's own ``forward`` would hide its inputs/outputs from them)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module_mod._global_forward_hooks or module_mod._global_forward_pre_hooks)
