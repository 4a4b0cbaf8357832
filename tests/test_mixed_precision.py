"""Mixed precision: FEC trains under ``torch.autocast`` (bf16 and fp16) and its clustering
stays exact where low precision would not be.

CPU autocast stands in for the GPU's here: mmfec's functions take the same decisions on
every device (``mmfec/models/layers/precision.py``); ``tools/gpu_check.sh`` repeats the
backbone checks on CUDA.
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mmfec  # noqa: F401  (registers FEC)
from mmfec.models.layers import assignment
from mmfec.models.layers.regions import encoding_layout, pooling_layout
from mmfec.testing import clustering_fec, dense_fec_forward

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


def _cpu_autocast_takes(dtype):
    try:
        with torch.autocast('cpu', dtype=dtype):
            pass
    except RuntimeError:  # torch < 2.4 autocasts to bf16 only on CPU
        return False
    return True


LOW = [torch.bfloat16,
       pytest.param(torch.float16, marks=pytest.mark.skipif(
           not _cpu_autocast_takes(torch.float16),
           reason=f'torch {torch.__version__} has no fp16 autocast on CPU'))]
# The two presets of the paper: COCO (detection) and ADE20K (segmentation).
PRESETS = {'coco': dict(proposal_sizes=7, fold_sizes=(2, 2, 1, 1)),
           'ade20k': dict(proposal_sizes=(10, 10, 5, 5), fold_sizes=1)}
TINY_ARCH = dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), mlp_ratios=(2, 2, 2, 2),
                 heads=(2, 2, 2, 2), head_dims=8)


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def _backbone(seed=0, arch='small', **kwargs):
    return clustering_fec(arch, seed, **kwargs)  # as in the dense-oracle tests


def _train_step(model, img, dtype):
    """Forward under autocast, backward outside it. fp16 gradients underflow without loss
    scaling (that is what ``AmpOptimWrapper``'s GradScaler is for), so the loss is
    scaled by 2**12 there and the gradients unscaled, as the scaler does."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=dtype):
        outs = model(img)
    loss = sum((o.float() * o.float()).mean() for o in outs)
    scale = 2.0 ** 12 if dtype == torch.float16 else 1.0
    (loss * scale).backward()
    for param in model.parameters():
        if param.grad is not None:
            param.grad.div_(scale)
    return outs, loss


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
@pytest.mark.parametrize('preset, with_cp, size', [
    ('coco', False, (64, 96)),
    ('coco', True, (75, 97)),  # odd: neither the folds nor 32 divide it
    ('ade20k', False, (97, 75)),
    ('ade20k', True, (64, 64)),
])
def test_backbone_training_step_under_autocast(preset, with_cp, size, dtype):
    model = _backbone(with_cp=with_cp, **PRESETS[preset]).train()
    img = torch.randn(2, 3, *size)
    outs, loss = _train_step(model, img, dtype)
    assert torch.isfinite(loss)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in trainable.items() if p.grad is None]
    assert not missing, f'no gradient under autocast: {missing[:5]}'
    for name, param in trainable.items():
        assert param.grad.dtype == param.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all(), name
    # the same parameters get gradients as in fp32, and they point the same way
    fp32 = _backbone(with_cp=with_cp, **PRESETS[preset]).train()
    sum((o * o).mean() for o in fp32(img)).backward()
    for name, param in fp32.named_parameters():
        if param.grad is not None and name.endswith('patch_embed.proj.weight'):
            cos = torch.nn.functional.cosine_similarity(
                param.grad.flatten(), trainable[name].grad.flatten(), dim=0)
            assert cos > 0.9, (name, float(cos))


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_clustering_functions_return_the_autocast_dtype(dtype):
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 13, 11, dtype=dtype, requires_grad=True)
    values = torch.randn(2, 8, 13, 11, dtype=dtype, requires_grad=True)
    alpha = torch.ones(1, requires_grad=True)
    beta = torch.zeros(1, requires_grad=True)
    with torch.autocast('cpu', dtype=dtype):
        out, index, sim = assignment.cluster_encode(feats, values, alpha, beta,
                                                    encoding_layout(13, 11, (3, 3), (2, 1)))
        layout = pooling_layout(13, 11, (2, 1))
        centers, pool_index = assignment.pooling_assignment(feats, layout)
        pooled = assignment.cluster_average(values, pool_index, layout)
    assert out.dtype == pooled.dtype == dtype
    assert centers.dtype == sim.dtype == torch.float32  # the arg-max's side stays fp32
    (out.float().sum() + pooled.float().sum()).backward()  # outside autocast, as usual
    assert feats.grad.dtype == values.grad.dtype == dtype
    assert alpha.grad.dtype == beta.grad.dtype == torch.float32


def _ulp_rel(dtype):
    """Half the spacing of ``dtype`` relative to a value: the most one rounding loses."""
    return torch.finfo(dtype).eps / 2


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_thousands_of_members_average_exactly(dtype):
    """Every point of a 30x137 map joins one pooling center (constant similarity
    features: all cosines tie, the first center wins): its value must be the fp32
    average of 4110 members, to within one rounding to ``dtype``. (Counting and summing
    in the low dtype itself misses that here by 1.5x / 2x the rounding, on this CPU;
    GPU atomics lose far more.)"""
    height, width = 30, 137
    torch.manual_seed(0)
    feats = torch.ones(1, 4, height, width, dtype=dtype)
    values = (torch.rand(1, 4, height, width) + 0.5).to(dtype)
    layout = pooling_layout(height, width, (1, 1))
    with torch.autocast('cpu', dtype=dtype):
        _, index = assignment.pooling_assignment(feats, layout)
        pooled = assignment.cluster_average(values, index, layout)
    assert bool((index == 0).all())
    exact = values.double()
    center_value = exact[..., :2, :2].mean(dim=(-2, -1))  # the first center's own bin
    expected = (exact.sum(dim=(-2, -1)) + center_value) / (height * width + 1)
    got = pooled[..., 0, 0].double()
    assert ((got - expected).abs() / expected).max() <= _ulp_rel(dtype)


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_thousands_of_members_in_an_encoding(dtype):
    """One center per map (proposal 1x1): every point gets
    ``sim * (center value + sum of 6000 members) / 6001``, to within the dtype."""
    torch.manual_seed(0)
    feats = torch.randn(1, 4, 60, 100).to(dtype)
    values = (torch.rand(1, 4, 60, 100) + 0.5).to(dtype)
    alpha, beta = torch.ones(1), torch.zeros(1)
    with torch.autocast('cpu', dtype=dtype):
        out, _, sim = assignment.cluster_encode(feats, values, alpha, beta,
                                                encoding_layout(60, 100, (1, 1), (1, 1)))
    exact = values.double().flatten(2)
    mean = (exact.sum(-1) + exact.mean(-1)) / (6000 + 1)  # [1, 4]
    expected = sim.double().unsqueeze(1) * mean.unsqueeze(-1)
    got = out.double().flatten(2)
    # one rounding of the mean to fp32 and one of the product to ``dtype``
    assert ((got - expected).abs() / expected).max() <= _ulp_rel(dtype) * 1.01


def _relative_l2(outs, refs):
    num = sum(float((o.double() - r.double()).norm() ** 2) for o, r in zip(outs, refs))
    return (num / sum(float(r.double().norm() ** 2) for r in refs)) ** 0.5


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_no_more_drift_than_the_dense_formulation(dtype):
    """Under autocast mmfec's output is no further from its fp32 output than the paper's
    dense formulation is from fp32 under the same autocast (summed over seeds, since
    both flip hard assignments at near-ties)."""
    ours, dense = 0.0, 0.0
    for seed in range(3):
        model = _backbone(seed, **PRESETS['coco']).eval()
        img = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = model(img)
            with torch.autocast('cpu', dtype=dtype):
                ours += _relative_l2(model(img), ref)
                dense += _relative_l2(dense_fec_forward(model, img), ref)
    assert ours <= dense, f'mmfec drift {ours / 3:.4f} vs dense {dense / 3:.4f}'


def _from_config(name, scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=True)
    cfg = copy.deepcopy(Config.fromfile(str(CONFIGS / name)).model)
    cfg.backbone.init_cfg = None
    if scope == 'mmseg':
        cfg.decode_head.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN on CPU
    torch.manual_seed(0)
    model = registry.build(cfg)
    model.init_weights()
    return model.train()


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_retinanet_training_step_under_autocast(dtype):
    from mmdet.testing import demo_mm_inputs
    model = _from_config('retinanet_fec.py', 'mmdet')
    packed = demo_mm_inputs(2, [(3, 96, 128)] * 2, num_items=[2, 3], num_classes=80)
    data = model.data_preprocessor(packed, True)
    with torch.autocast('cpu', dtype=dtype):
        losses = model(**data, mode='loss')
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    backbone = model.backbone
    assert backbone.patch_embed.proj.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('dtype', LOW, ids=['bf16', 'fp16'])
def test_semantic_fpn_training_step_under_autocast(dtype):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = _from_config('semfpn_fec.py', 'mmseg')
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(75, 97), ori_shape=(75, 97),
                                             pad_shape=(75, 97)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 75, 97)))
        samples.append(sample)
    with torch.autocast('cpu', dtype=dtype):
        losses = model(torch.randn(2, 3, 75, 97), samples, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_compiled_backbone_under_autocast_matches_eager():
    """torch.compile (graph capture and AOT autograd, no C++ build) around the clustering
    functions under autocast: the same outputs and gradients as eager. (A one-block-per-
    stage arch: tracing time grows with the blocks, the behaviour does not.)"""
    model = _backbone(arch=TINY_ARCH, **PRESETS['coco']).train()
    img = torch.randn(1, 3, 64, 64)
    eager_outs, _ = _train_step(model, img, torch.bfloat16)
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    compiled = torch.compile(model, backend='aot_eager')
    outs, _ = _train_step(compiled, img, torch.bfloat16)
    for a, b in zip(outs, eager_outs):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(param.grad, eager_grads[name], msg=name)
