"""ONNX translations the exporter needs for FEC, beyond PyTorch's own.

Why: FEC pools every fold region to its cluster centers with ``F.adaptive_avg_pool2d``,
mostly to sizes that do not divide the region (128 -> 10 at 512x512). ONNX has no adaptive
average pooling, and PyTorch's fallback decomposition sums one shifted ``Gather`` per
position of the largest bin: 196 ``Gather`` + ``Add`` pairs for 128 -> 10, 651 for
200 -> 10 at 800x1216. Since the export is static-shape, every pooling is instead written
as what it is, a fixed linear map: ``A_h @ x @ A_w^T`` with the row/column averaging
matrices as constants (two ``MatMul``), the same bins as PyTorch's.
"""
import numpy as np
import torch

from ..models.layers.regions import adaptive_bins
from ..models.layers.regions import averaging_matrix as _bins_matrix


def averaging_matrix(length: int, size: int) -> np.ndarray:
    """``[size, length]`` float32: row ``i`` averages the bin ``F.adaptive_avg_pool*d`` uses
    for output ``i`` (:func:`mmfec.models.layers.regions.adaptive_bins`)."""
    return _bins_matrix(adaptive_bins(0, length, size), length, torch.float32).numpy()


def adaptive_avg_pool2d_as_matmul(self, output_size):
    """ONNX for ``aten._adaptive_avg_pool2d(self [.., H, W], (h, w))`` at static ``H, W``."""
    import onnx_ir as ir
    from onnxscript import opset18 as op
    height, width = self.shape[-2], self.shape[-1]
    if not (isinstance(height, int) and isinstance(width, int)):
        raise ValueError('adaptive_avg_pool2d needs a static input size to export; '
                         f'got {self.shape}')
    out_h, out_w = (int(s) for s in output_size)
    rows = op.Constant(value=ir.tensor(averaging_matrix(height, out_h)))
    cols_t = op.Constant(value=ir.tensor(np.ascontiguousarray(averaging_matrix(width, out_w).T)))
    return op.MatMul(rows, op.MatMul(self, cols_t))  # [h, H] @ ([.., H, W] @ [W, w])


def custom_translation_table():
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``."""
    return {torch.ops.aten._adaptive_avg_pool2d.default: adaptive_avg_pool2d_as_matmul}
