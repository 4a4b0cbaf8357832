"""The adaptive-pooling bin arithmetic is written once (``regions.adaptive_bins``) and is
PyTorch's: the layers' center pooling and the ONNX export's constant matrices both use it."""
import pytest
import torch
import torch.nn.functional as F

from mmfec.deployment.onnx_ops import averaging_matrix as onnx_matrix
from mmfec.models.layers.regions import adaptive_bins, averaging_matrix


@pytest.mark.parametrize('length, count', [(128, 10), (200, 10), (7, 7), (9, 4), (5, 8)])
def test_bins_average_as_adaptive_avg_pool(length, count):
    x = torch.randn(3, length, dtype=torch.float64)
    pooled = x @ averaging_matrix(adaptive_bins(0, length, count), length).T
    torch.testing.assert_close(pooled, F.adaptive_avg_pool1d(x[None], count)[0])


def test_onnx_constants_are_the_same_bins_in_float32():
    matrix = torch.from_numpy(onnx_matrix(128, 10))
    assert matrix.dtype == torch.float32
    assert torch.equal(matrix, averaging_matrix(adaptive_bins(0, 128, 10), 128).float())
