"""FLOP counting for models with FEC backbones (used by ``tools/get_flops.py``).

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` traces the model and counts the ops it
has handlers for (convolutions, ``mm``/``addmm``/``bmm``/``matmul``/``einsum``, norms,
adaptive average pooling, upsampling). FEC's clustering adds work it does not see:

* the point-to-center similarity matmuls are counted (``bmm``) only if the traced code
  shows them; FEC layers therefore run their plain path while tracing
  (:func:`mmfec.models.layers.plain_ops`): region by region, chunked ``bmm``
  similarities, ``gather``/``scatter_add`` aggregation;
* ``scatter_add`` (the member sums), ``avg_pool2d`` and ``baddbmm`` have no default
  handler; :func:`fec_flop_handles` adds them.

Convention (fvcore's, which mmengine follows): one multiply-add counts as one FLOP, and
element-wise ops (activations, sigmoid, normalisation divides, arg-max) count zero; a
reduction (pooling, scatter-add) counts one per input element.
"""
import math
from collections import Counter
from typing import Any, Callable, Dict, List

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..models.layers import plain_ops

try:
    from mmengine.analysis.jit_handles import get_shape
except ImportError:  # pragma: no cover - older mmengine
    def get_shape(val):
        return val.type().sizes() if val.isCompleteTensor() else None


def scatter_add_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``scatter_add(self, dim, index, src)``: one add per ``src`` element."""
    shape = get_shape(inputs[3])
    return math.prod(int(v) for v in shape) if shape else 0


def pooling_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Average pooling: one add per input element."""
    shape = get_shape(inputs[0])
    return math.prod(int(v) for v in shape) if shape else 0


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``baddbmm(input, b1 [B, n, k], b2 [B, k, m])``: ``B * n * k * m``."""
    b1, b2 = get_shape(inputs[1]), get_shape(inputs[2])
    return b1[0] * b1[1] * b1[2] * b2[2]


def fec_flop_handles() -> Dict[str, Callable]:
    """Handles to pass to ``FlopAnalyzer.set_op_handle`` for the ops FEC adds."""
    return {
        'aten::scatter_add': scatter_add_flop_jit,
        'aten::scatter_add_': scatter_add_flop_jit,
        'aten::avg_pool2d': pooling_flop_jit,
        'aten::baddbmm': baddbmm_flop_jit,
    }


class _Forward(nn.Module):
    """Wrap ``fn(*inputs)`` as a module's forward, keeping ``model``'s parameters
    visible for parameter counting and scoping."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, *inputs):
        return self._fn(*inputs)


def count_flops(model: nn.Module, inputs, forward: Callable = None) -> Dict[str, Any]:
    """FLOPs (multiply-adds) and parameters of ``model`` on ``inputs``.

    Args:
        model: any module (an FEC backbone, a detector, a segmentor).
        inputs: a tensor or tuple of tensors for ``forward``.
        forward: optional callable used instead of ``model(*inputs)`` (e.g. a
            detector's ``_forward`` bound to its data samples).
    Returns:
        dict with ``flops`` (total), ``params`` (all parameters), ``by_module``
        (Counter of FLOPs per top-level child), ``by_operator`` (Counter per op) and
        ``uncounted`` (ops seen but not counted, with how often).
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    wrapped = _Forward(model, forward or model)
    analyzer = FlopAnalyzer(wrapped, inputs)
    analyzer.set_op_handle(**fec_flop_handles())
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    was_training = model.training
    model.eval()
    try:
        with plain_ops(model), torch.no_grad():
            total = analyzer.total()
            by_module = Counter({name[len('model.'):]: count
                                 for name, count in analyzer.by_module().items()
                                 if name.count('.') == 1 and name.startswith('model.')})
            by_operator = Counter(analyzer.by_operator())
            uncounted = Counter(analyzer.unsupported_ops())
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return dict(flops=total, params=params, by_module=by_module, by_operator=by_operator,
                uncounted=uncounted)
