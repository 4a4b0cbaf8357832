"""Which of its two paths a clustering layer runs: the fused one (custom autograd functions,
GEMMs on ``[C, H*W]`` views) or the plain one (module by module, region by region, autograd
through ``gather``/``scatter_add``), which the fused path must equal and which tracing,
FLOP counting and the ONNX export use.

The choice belongs to each module, not to the process: ``plain`` is set when the backbone
is built (``FEC(..., plain=True)``) or for a block of code on one model with
:func:`plain_ops`; tracing (``torch.jit.trace``, e.g. for FLOP counting) always takes the
plain path.
"""
import contextlib

import torch
import torch.nn as nn


class PlainPath:
    """Mixin of the layers with a plain path beside their fused one."""

    plain = False  # the fused path unless set on the module (or its model)

    def runs_plain(self) -> bool:
        return self.plain or torch.jit.is_tracing()


def set_plain(model: nn.Module, enabled: bool = True) -> None:
    """Make every layer of ``model`` run its plain (``True``) or fused path."""
    for module in model.modules():
        if isinstance(module, PlainPath):
            module.plain = enabled


@contextlib.contextmanager
def plain_ops(model: nn.Module, enabled: bool = True):
    """Within the block, the layers of ``model`` run their plain path (``enabled``) or their
    fused one; each module's own setting comes back afterwards."""
    modules = [m for m in model.modules() if isinstance(m, PlainPath)]
    previous = [m.plain for m in modules]
    for module in modules:
        module.plain = enabled
    try:
        yield model
    finally:
        for module, plain in zip(modules, previous):
            module.plain = plain
