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

These work with torch 2.1 (``is_autocast_cpu_enabled``) as well as with the newer
device-generic ``is_autocast_enabled(device_type)``.
"""
import contextlib
from typing import Optional

import torch

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
