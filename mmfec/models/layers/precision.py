"""Mixed precision for FEC's own autograd functions.

Under ``torch.autocast`` PyTorch's built-in matmuls and convs run in the autocast dtype
(fp16 or bf16), but a custom ``torch.autograd.Function`` gets no such treatment: its
forward sees whatever dtypes arrive, and its backward runs later, often outside the
autocast region. So every FEC function decides its dtypes explicitly, with the helpers
here, in the same way on every device:

* the GEMMs of the fused MLP / residual layers run in the autocast dtype, as the
  built-in ``mm`` would (:func:`autocast_dtype`);
* the clustering (similarities, arg-max, member counts and sums, averages) runs in at
  least fp32 (:func:`clustering_dtype`): bf16 holds integers exactly only up to 256 and
  fp16 up to 2048, and the arg-max must not see ties that rounding made;
* inside the functions autocast is switched off (:func:`autocast_off`), so the chosen
  dtypes are the ones used, in the forward and in the backward.

On a CPU without native low-precision dot products (no avx512_bf16/AMX for bf16, no
avx512_fp16/AMX-FP16 for fp16: an AVX2 or plain AVX-512 CPU) torch's bf16/fp16 GEMMs and
convolutions fall back to slow generic kernels (1 GMAC/s for a bf16 ``mm`` on this
project's AVX2 EPYC, against 17-28 in fp32). There mmfec's own GEMMs and convolutions
under autocast round their operands to the autocast dtype, multiply them in fp32 and round
the result to the autocast dtype (:func:`emulates_low_gemm`, :func:`low_matmul`,
:func:`autocast_conv2d`): the values a native bf16/fp16 GEMM with fp32 accumulation
gives, up to the order of the sums, at fp32 speed.

These work with torch 2.1 (``is_autocast_cpu_enabled``) as well as with the newer
device-generic ``is_autocast_enabled(device_type)``.
"""
import contextlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

_LEGACY_GETTERS = {
    'cpu': ('is_autocast_cpu_enabled', 'get_autocast_cpu_dtype'),
    'cuda': ('is_autocast_enabled', 'get_autocast_gpu_dtype'),
}


def _takes_a_device_argument() -> bool:
    """Whether ``torch.is_autocast_enabled`` takes a device type (torch >= 2.4). Probed
    once here: inside a ``torch.compile`` trace torch 2.1 reports the wrong call as an
    internal error, not as a TypeError."""
    try:
        torch.is_autocast_enabled('cpu')
    except TypeError:
        return False
    return True


_DEVICE_ARGUMENT = _takes_a_device_argument()


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype ``torch.autocast`` casts matmuls to on ``device_type`` right now, or
    ``None`` when autocast is off there."""
    if not _DEVICE_ARGUMENT:  # torch < 2.4: one getter pair per device
        names = _LEGACY_GETTERS.get(device_type)
        if names is None or not getattr(torch, names[0])():
            return None
        return getattr(torch, names[1])()
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know (e.g. 'meta')
        return None
    return torch.get_autocast_dtype(device_type) if enabled else None


def clustering_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the clustering math runs in for inputs of ``dtype``: fp32, or fp64 for
    fp64 inputs (never lower than fp32)."""
    return torch.promote_types(dtype, torch.float32)


def output_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    """What a clustering function returns: the autocast dtype where autocast is on (the
    dtype a built-in op in its place would give), else its inputs' dtype."""
    return autocast_dtype(device_type) or dtype


@contextlib.contextmanager
def autocast_off(device_type: str):
    """Switch autocast off for ``device_type`` inside the block (a no-op where it is off
    already, so fp32 code runs exactly as without it)."""
    if autocast_dtype(device_type) is None:
        yield
        return
    with torch.autocast(device_type=device_type, enabled=False):
        yield


# torch.cpu probes of native low-precision dot products, per dtype.
_NATIVE_CPU_PROBES = {
    torch.bfloat16: ('_is_amx_tile_supported', '_is_avx512_bf16_supported'),
    torch.float16: ('_is_amx_fp16_supported', '_is_avx512_fp16_supported'),
}


def _probe_native(dtype: torch.dtype) -> bool:
    cpu = getattr(torch, 'cpu', None)
    for name in _NATIVE_CPU_PROBES.get(dtype, ()):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # pragma: no cover - a probe without its backend
            pass
    return False


# Probed once at import (a plain dict: torch.compile reads it as a constant).
_NATIVE_CPU = {dtype: _probe_native(dtype) for dtype in _NATIVE_CPU_PROBES}


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` (bf16/fp16) natively (AMX, avx512_bf16,
    avx512_fp16), as torch's own probes report it."""
    return _NATIVE_CPU.get(dtype, False)


def emulates_low_gemm(device_type: str, dtype: Optional[torch.dtype]) -> bool:
    """Whether a GEMM in ``dtype`` on ``device_type`` runs as an fp32 GEMM of rounded
    operands here (a CPU without native ``dtype`` dot products)."""
    return (device_type == 'cpu' and dtype in _NATIVE_CPU_PROBES
            and not cpu_has_native(dtype))


def _rounded(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` rounded to ``dtype`` and held in fp32 (exactly: bf16/fp16 fit in fp32)."""
    return t.to(dtype).to(torch.float32)


def low_matmul(a: Tensor, b: Tensor, dtype: torch.dtype, out: Optional[Tensor] = None):
    """``matmul(a, b)`` in ``dtype`` as autocast would run it, result in ``dtype``
    (written into ``out`` if given); an fp32 GEMM of the rounded operands where
    :func:`emulates_low_gemm`. Call it with autocast off."""
    if not emulates_low_gemm(a.device.type, dtype):
        a, b = a.to(dtype), b.to(dtype)
        if out is None:
            return torch.matmul(a, b)
        return torch.matmul(a, b, out=out)
    result = torch.matmul(_rounded(a, dtype), _rounded(b, dtype))
    return result.to(dtype) if out is None else out.copy_(result)


def autocast_conv2d(conv: torch.nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)``; under autocast, where :func:`emulates_low_gemm`, an fp32 convolution of
    the rounded input, weight and bias, rounded to the autocast dtype (autocast would
    run a slow generic low-precision convolution there)."""
    device = x.device.type
    dtype = autocast_dtype(device)
    if dtype is None or not emulates_low_gemm(device, dtype) or conv.padding_mode != 'zeros':
        return conv(x)
    with autocast_off(device):
        bias = None if conv.bias is None else _rounded(conv.bias, dtype)
        out = F.conv2d(_rounded(x, dtype), _rounded(conv.weight, dtype), bias, conv.stride,
                       conv.padding, conv.dilation, conv.groups)
    return out.to(dtype)
