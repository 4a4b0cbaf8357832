"""Export a wrapped model to an ONNX file at one static input size.

Why static: every clustering layer's fold regions, center grid and pooling bins are
computed from ``H, W`` in Python, so a graph is only valid at the size it was traced at
(any size works: odd sizes and sizes the folds or 32 do not divide included).

How: PyTorch's TorchScript exporter refuses FEC (``adaptive_avg_pool2d`` to sizes that do
not divide the input). ``torch.onnx.export(..., dynamo=True)`` traces the model with
``torch.export`` instead; FEC runs its plain-ops path for it (region by region, ``gather``
/ ``scatter_add``; the fused autograd functions are for eager PyTorch), and the adaptive
poolings become two ``MatMul`` each (:mod:`.onnx_ops`). The file is written under a
temporary name next to the target and renamed at the end: an export that fails leaves
nothing behind.
"""
import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from ..models.layers import plain_ops
from ..utils.atomic_write import atomic_path
from .onnx_ops import custom_translation_table
from .wrappers import ExportModule

DEFAULT_OPSET = 18
MIN_OPSET = 18  # what PyTorch's dynamo exporter (onnxscript's torchlib) writes
INPUT_NAME = 'input'


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: ``path``, the names and shapes of the graph's input
    and outputs, and the opset."""
    path: str
    input_shape: Tuple[int, ...]
    output_names: List[str]
    output_shapes: List[Tuple[int, ...]]
    opset: int


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines and its notes about torchvision ops are noise here."""
    logger = logging.getLogger('torch.onnx')
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=FutureWarning)
            warnings.filterwarnings('ignore', message='.*training mode.*')
            yield
    finally:
        logger.setLevel(level)


def simplify(model):
    """Fold constants, drop unused nodes, merge duplicates, in place on an ``onnx_ir`` model.

    The exporter's own ``optimize=True`` also runs onnxscript's pattern rewriter, whose
    matching time grows fast with the graph: on FEC's graphs (thousands of nodes, one set
    per fold region) it was 70% of a RetinaNet export at 97x131, and an 800x1216 export
    with it had not finished after 20 minutes. These are the rest of its passes;
    onnxruntime does its own fusions when it loads the file.
    """
    import onnx_ir as ir
    from onnx_ir.passes import common
    from onnxscript.optimizer import _constant_folding
    fold = _constant_folding.FoldConstantsPass(
        shape_inference=True,
        input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
        output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT)
    ir.passes.Sequential(
        ir.passes.PassManager([fold, common.RemoveUnusedNodesPass()], steps=2,
                              early_stop=True),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.OutputFixPass(),
        common.NameFixPass())(model)


def export_onnx(module: ExportModule, shape: Sequence[int], path: str,
                opset: int = DEFAULT_OPSET, seed: int = 0) -> ExportResult:
    """Trace ``module`` at input ``[1, 3, H, W]`` and write the ONNX graph to ``path``.

    Args:
        module: a wrapped model (:func:`.wrappers.wrap`), in eval mode.
        shape: ``(H, W)``, the one input size the graph serves.
        path: the ``.onnx`` file; its folder is created if missing. Weights are stored
            inside the file.
        opset: ONNX opset of the graph (>= 18).
        seed: seed of the random image the model is traced with.
    Returns:
        :class:`ExportResult`.
    """
    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset} is too old: the exporter writes opset '
                         f'{MIN_OPSET} or newer')
    height, width = (int(s) for s in shape)
    image = torch.randn((1, 3, height, width),
                        generator=torch.Generator().manual_seed(seed))
    module.eval()
    with torch.no_grad(), plain_ops(module):
        outputs = module(image)
    names = module.output_names(outputs)
    with atomic_path(path) as tmp_path:
        with torch.no_grad(), plain_ops(module), _quiet_exporter():
            program = torch.onnx.export(
                module, (image,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=names, verbose=False, optimize=False,
                custom_translation_table=custom_translation_table())
        simplify(program.model)
        program.save(tmp_path, external_data=False)
        import onnx
        onnx.checker.check_model(tmp_path)
    return ExportResult(path, tuple(image.shape), names,
                        [tuple(t.shape) for t in outputs], opset)
