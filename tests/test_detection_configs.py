"""Every detection config in configs/ builds its model and runs forward passes.

So a broken config (wrong FPN widths, a typo in a head, an unknown key) cannot land.
The pretrained placeholder checkpoints are not downloaded here: ``init_cfg`` is set to
None, and a separate test checks the error a missing placeholder file gives.
"""
from pathlib import Path

import pytest
import torch
from det_utils import CONFIGS
from mmengine.config import Config

DETECTION_CONFIGS = sorted(p.name for p in CONFIGS.glob('*.py')
                           if p.name.startswith(('maskrcnn_', 'retinanet_')))
EXPECTED = {'maskrcnn_fec.py', 'maskrcnn_fec_base.py', 'maskrcnn_fec_large.py',
            'maskrcnn_fec_toy.py', 'retinanet_fec.py'}


def _load(name):
    return Config.fromfile(str(CONFIGS / name))


@pytest.fixture(scope='module', autouse=True)
def mmdet_scope():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_all_detection_configs_are_covered():
    assert EXPECTED <= set(DETECTION_CONFIGS), \
        f'missing detection configs: {sorted(EXPECTED - set(DETECTION_CONFIGS))}'


def _build(cfg):
    from mmdet.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _batch(cfg, with_mask, size=(96, 128)):
    from mmdet.testing import demo_mm_inputs
    head = cfg.model.get('roi_head', {}).get('bbox_head') or cfg.model.get('bbox_head')
    packed = demo_mm_inputs(2, [(3, *size)] * 2, num_items=[2, 3],
                            num_classes=head['num_classes'], with_mask=with_mask)
    return packed


@pytest.mark.parametrize('name', DETECTION_CONFIGS)
def test_config_builds_and_runs(name):
    cfg = _load(name)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'FEC'
    assert 'mmfec' in cfg.custom_imports['imports']
    with_mask = 'mask_head' in cfg.model.get('roi_head', {})
    torch.manual_seed(0)
    model = _build(cfg)

    model.train()
    data = model.data_preprocessor(_batch(cfg, with_mask), True)
    losses = model(**data, mode='loss')
    two_stage = 'rpn_head' in cfg.model
    expected = {'loss_cls', 'loss_bbox'} | ({'loss_rpn_cls'} if two_stage else set()) \
        | ({'loss_mask'} if with_mask else set())
    assert expected <= set(losses), sorted(losses)
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    # every trainable weight gets a gradient, so DDP works without find_unused_parameters
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f'trainable but no gradient (DDP would fail): {no_grad[:6]}'

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(cfg, with_mask), False)
        results = model(**data, mode='predict')
    assert len(results) == 2
    for result in results:
        assert result.pred_instances.bboxes.shape[-1] == 4
        if with_mask:
            assert 'masks' in result.pred_instances


def test_fpn_widths_match_the_backbone():
    """The neck must read exactly the backbone's output widths, for every config."""
    from mmfec import FEC
    for name in DETECTION_CONFIGS:
        cfg = _load(name)
        backbone = FEC(arch=cfg.model.backbone.arch,
                       out_indices=cfg.model.backbone.out_indices)
        widths = [backbone.embed_dims[i] for i in backbone.out_indices]
        assert list(cfg.model.neck.in_channels) == widths, name


def test_maskrcnn_fec_has_the_paper_settings():
    cfg = _load('maskrcnn_fec.py')
    backbone = cfg.model.backbone
    assert (backbone.arch, backbone.proposal_sizes, tuple(backbone.fold_sizes)) == \
        ('small', 7, (2, 2, 1, 1))
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint='checkpoints/fec_small_imagenet.pth')
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end, warmup.by_epoch) == \
        ('LinearLR', 0.001, 500, False)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR', [8, 9, 11], 0.2)
    assert cfg.train_cfg.max_epochs == 12
    # 16 images per iteration on the paper's 4 GPUs; --auto-scale-lr rescales from 16.
    assert cfg.train_dataloader.batch_size * 4 == 16
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.data_root == 'data/coco/'
    resize = [t for t in cfg.train_pipeline if t.type == 'Resize'][0]
    assert resize.scale == (1333, 800) and resize.keep_ratio
    assert cfg.model.data_preprocessor.pad_size_divisor == 32


def test_variants_change_only_arch_widths_and_weights():
    small = _load('maskrcnn_fec.py')
    for name, arch in (('maskrcnn_fec_base.py', 'base'), ('maskrcnn_fec_large.py', 'large')):
        cfg = _load(name)
        assert cfg.model.backbone.arch == arch
        assert cfg.model.backbone.init_cfg.checkpoint == f'checkpoints/fec_{arch}_imagenet.pth'
        assert cfg.model.neck.in_channels == [64, 128, 320, 512]
        assert cfg.optim_wrapper == small.optim_wrapper
        assert cfg.param_scheduler == small.param_scheduler


def test_retinanet_reads_stages_1_to_3():
    cfg = _load('retinanet_fec.py')
    assert tuple(cfg.model.backbone.out_indices) == (1, 2, 3)
    assert cfg.model.neck.start_level == 0
    assert cfg.model.neck.add_extra_convs == 'on_input'
    assert cfg.model.neck.num_outs == 5
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'


def test_missing_pretrained_weights_say_which_file(tmp_path):
    """The placeholder path, when its file is absent, fails with the loader's clear
    FileNotFoundError naming the file (not a KeyError deep inside the model)."""
    from mmdet.registry import MODELS
    cfg = _load('maskrcnn_fec.py')
    missing = tmp_path / 'checkpoints' / 'fec_small_imagenet.pth'
    cfg.model.backbone.init_cfg.checkpoint = str(missing)
    model = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError, match='fec_small_imagenet.pth'):
        model.init_weights()


def test_toy_config_classes_follow_the_toy_data():
    from mmfec.datasets import TOY_COCO_CLASSES
    cfg = _load('maskrcnn_fec_toy.py')
    assert cfg.model.backbone.init_cfg is None
    assert tuple(cfg.train_dataloader.dataset.metainfo['classes']) == TOY_COCO_CLASSES
    assert cfg.model.roi_head.bbox_head.num_classes == len(TOY_COCO_CLASSES)
    assert cfg.model.roi_head.mask_head.num_classes == len(TOY_COCO_CLASSES)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.data_root == 'data/toy_coco/'
    assert cfg.test_evaluator.ann_file.startswith('data/toy_coco/')
    assert set(cfg.test_evaluator.metric) == {'bbox', 'segm'}
    assert Path(cfg.filename).name == 'maskrcnn_fec_toy.py'
