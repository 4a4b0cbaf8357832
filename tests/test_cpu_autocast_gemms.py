"""Under CPU autocast on a CPU without native bf16/fp16 dot products, mmfec's own GEMMs and
convolutions run as fp32 GEMMs of the rounded operands (mmfec/models/layers/precision.py):
the values of a native low-precision GEMM with fp32 accumulation, in the autocast dtype.

The native path is forced here by patching the probe, so both paths run on any CPU.
"""
import pytest
import torch

from mmfec.models.layers import precision
from mmfec.models.layers.pointwise import conv1x1, residual_gelu_conv1x1
from mmfec.models.layers.positional_stem import PositionalStem
from mmfec.testing import clustering_fec

LOW = [torch.bfloat16, torch.float16]
IDS = ['bf16', 'fp16']

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture
def native(monkeypatch):
    """Make every low dtype count as native (torch's own low-precision kernels)."""
    monkeypatch.setattr(precision, '_NATIVE_CPU', dict.fromkeys(precision._NATIVE_CPU, True))


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setattr(precision, '_NATIVE_CPU', dict.fromkeys(precision._NATIVE_CPU, False))


def _ulps(a, b, dtype):
    """Largest difference in units of ``dtype``'s spacing at ``max(|a|, |b|)``."""
    a, b = a.detach().double(), b.detach().double()
    scale = torch.maximum(a.abs(), b.abs()).clamp_min(torch.finfo(dtype).tiny)
    return float(((a - b).abs() / (scale * torch.finfo(dtype).eps)).max())


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_emulated_matmul_is_the_rounded_exact_product(dtype, emulated):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 24, 40, generator=gen), torch.randn(2, 40, 33, generator=gen)
    got = precision.low_matmul(a, b, dtype)
    exact = torch.matmul(a.to(dtype).double(), b.to(dtype).double())
    assert got.dtype == dtype
    assert _ulps(got, exact, dtype) <= 0.5 + 1e-3  # one rounding to dtype (plus fp32 sums)


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_conv1x1_under_autocast_matches_the_native_path(dtype, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 5, 7, generator=gen)
    weight, bias = torch.randn(24, 16, 1, 1, generator=gen), torch.randn(24, generator=gen)
    outs = {}
    for native in (True, False):
        monkeypatch.setattr(precision, '_NATIVE_CPU',
                            dict.fromkeys(precision._NATIVE_CPU, native))
        with torch.autocast('cpu', dtype=dtype):
            outs[native] = conv1x1(x, weight, bias)
    assert outs[True].dtype == outs[False].dtype == dtype
    assert _ulps(outs[True], outs[False], dtype) <= 1.0  # each is one rounding of the sum


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_the_gelu_residual_and_its_gradients_match_the_native_path(dtype, monkeypatch):
    gen = torch.Generator().manual_seed(2)
    tensors = dict(x=torch.randn(1, 8, 6, 5, generator=gen),
                   h=torch.randn(1, 32, 6, 5, generator=gen),
                   weight=torch.randn(8, 32, generator=gen) / 6,
                   bias=torch.randn(8, generator=gen), scale=torch.rand(8, generator=gen))
    runs = {}
    for native in (True, False):
        monkeypatch.setattr(precision, '_NATIVE_CPU',
                            dict.fromkeys(precision._NATIVE_CPU, native))
        leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
        with torch.autocast('cpu', dtype=dtype):
            out = residual_gelu_conv1x1(**leaves)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        runs[native] = (out, {k: v.grad for k, v in leaves.items()})
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=1e-2, atol=1e-2)
    for name in tensors:
        torch.testing.assert_close(runs[True][1][name], runs[False][1][name], rtol=2e-2,
                                   atol=2e-2, msg=name)


def test_the_stem_convolution_under_autocast_matches_the_native_path(monkeypatch):
    stem = PositionalStem(3, 16)
    img = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    outs = {}
    for native in (True, False):
        monkeypatch.setattr(precision, '_NATIVE_CPU',
                            dict.fromkeys(precision._NATIVE_CPU, native))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs[native] = stem(img)
    assert outs[True].dtype == outs[False].dtype == torch.bfloat16
    assert _ulps(outs[True], outs[False], torch.bfloat16) <= 1.0


def test_fp32_is_untouched(emulated):
    """Without autocast nothing is rounded: the same bits as before."""
    model = clustering_fec('small', 0, proposal_sizes=7, fold_sizes=(2, 2, 1, 1)).eval()
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        emulated_outs = model(img)
        precision._NATIVE_CPU.update(dict.fromkeys(precision._NATIVE_CPU, True))
        native_outs = model(img)
    for a, b in zip(emulated_outs, native_outs):
        assert torch.equal(a, b)
